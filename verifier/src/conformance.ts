import { readFileSync } from "node:fs";

// The token-spelling conformance vectors: tokens that every implementation
// (the identity service, this library, a verifier in another language) must
// accept or refuse alike. The data is conformance/token-vectors.json in this
// package, also exported as is for non-Node verifiers.

export interface TokenVector {
  name: string;
  token: string;
  /** Whether a conforming verifier accepts the token. */
  valid: boolean;
}

export interface TokenVectorFile {
  description: string;
  issuer: string;
  audience: string;
  /** The clock (Unix seconds) to verify every vector at. */
  nowSec: number;
  publicJwk: { kty: string; crv: string; x: string; kid: string; alg: string; use: string };
  /** The RFC 8037 A.1 test key that signed the vectors: public test material, not a secret. */
  privateJwk: { kty: string; crv: string; d: string; x: string };
  vectors: TokenVector[];
}

/** The vectors as published in conformance/token-vectors.json. */
export function loadTokenVectors(): TokenVectorFile {
  // Resolved from src/ and from dist/ alike: the file sits at the package root.
  return JSON.parse(readFileSync(new URL("../conformance/token-vectors.json", import.meta.url), "utf8")) as TokenVectorFile;
}
