import { createPrivateKey, sign } from "node:crypto";
import { pathToFileURL } from "node:url";
import type { TokenVector, TokenVectorFile } from "../../src/conformance.js";

// Builds the token-spelling conformance vectors that the package exports
// (src/conformance.ts, conformance/token-vectors.json). The service
// (test/unit/tokens/token-conformance.test.ts) and this library
// (verifier/test/conformance.test.ts) run them, and both must give every
// vector its `valid` verdict. Ed25519 signatures are deterministic, so this
// module always builds the same vectors, and a test keeps the JSON equal to
// its output. Regenerate with
//   node verifier/test/conformance/token-vectors.ts > verifier/conformance/token-vectors.json

// The Ed25519 test key of RFC 8037, Appendix A.1: public test material, not a secret.
const TEST_JWK = {
  kty: "OKP",
  crv: "Ed25519",
  d: "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
  x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
} as const;
// Its RFC 7638 thumbprint (RFC 8037, Appendix A.3), as the service names its keys.
const KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const ISSUER = "urn:test:identity";
const AUDIENCE = "urn:test:platform";
// 2025-06-15T15:06:40Z: the clock both suites verify at.
const NOW_SEC = 1_750_000_000;

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const key = createPrivateKey({ key: TEST_JWK, format: "jwk" });
const encode = (text: string) => Buffer.from(text).toString("base64url");
const signed = (header: string, payload: string) => `${header}.${payload}.${sign(null, Buffer.from(`${header}.${payload}`), key).toString("base64url")}`;

/** The same bytes with the unused low bits of the last character set to `low`. */
function withLowBits(part: string, low: number): string {
  const last = B64URL.indexOf(part.at(-1)!);
  return `${part.slice(0, -1)}${B64URL[last | low]}`;
}

/** JSON padded with trailing spaces (still the same JSON) until its encoding is `rest` mod 4 characters long. */
function encodedWithRest(json: string, rest: 0 | 2 | 3): string {
  for (let pad = 0; pad < 3; pad++) {
    const part = encode(json + " ".repeat(pad));
    if (part.length % 4 === rest) return part;
  }
  throw new Error("unreachable: three paddings cover every length mod 3");
}

/** The part with "A"s appended until it is 1 mod 4 characters long. */
const oneModFour = (part: string) => part + "A".repeat((5 - (part.length % 4)) % 4);
const padded = (part: string) => part + "=".repeat((4 - (part.length % 4)) % 4);
const standardAlphabet = (part: string) => part.replaceAll("-", "+").replaceAll("_", "/");

export function buildTokenVectors(): TokenVectorFile {
  const headerJson = JSON.stringify({ alg: "EdDSA", typ: "at+jwt", kid: KID });
  const claims = {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "0190a1b2-0000-7000-8000-000000000001",
    sid: "0190a1b2-0000-7000-8000-0000000000a1",
    jti: "0190a1b2-0000-7000-8000-0000000000f1",
    iat: NOW_SEC - 60,
    exp: NOW_SEC + 840,
  };
  const payloadJson = JSON.stringify(claims);
  const h = encode(headerJson);
  const p = encode(payloadJson);
  const token = signed(h, p);
  const s = token.split(".")[2]!;
  const vectors: TokenVector[] = [{ name: "canonical token", token, valid: true }];

  // The signature: 86 characters, the last carrying 4 unused bits.
  if (s.length !== 86 || (B64URL.indexOf(s.at(-1)!) & 0x0f) !== 0) throw new Error("the canonical signature is not canonical");
  for (let low = 1; low < 16; low++) {
    vectors.push({ name: `signature: last character with unused bits ${low.toString(2).padStart(4, "0")}`, token: `${h}.${p}.${withLowBits(s, low)}`, valid: false });
  }

  // Header and payload of 2 and 3 mod 4 characters: canonical ones verify,
  // signed spellings with unused bits set do not.
  for (const rest of [2, 3] as const) {
    const spare = rest === 2 ? 0x0f : 0x03;
    const hr = encodedWithRest(headerJson, rest);
    const pr = encodedWithRest(payloadJson, rest);
    vectors.push({ name: `header of ${rest} mod 4 characters, canonical`, token: signed(hr, p), valid: true });
    vectors.push({ name: `payload of ${rest} mod 4 characters, canonical`, token: signed(h, pr), valid: true });
    for (let low = 1; low <= spare; low++) {
      vectors.push({ name: `header of ${rest} mod 4 characters, unused bits ${low}, signed`, token: signed(withLowBits(hr, low), p), valid: false });
      vectors.push({ name: `payload of ${rest} mod 4 characters, unused bits ${low}, signed`, token: signed(h, withLowBits(pr, low)), valid: false });
    }
    // Padding, even where it is the standard padded form, signed as such.
    vectors.push({ name: `header of ${rest} mod 4 characters with = padding, signed`, token: signed(padded(hr), p), valid: false });
    vectors.push({ name: `payload of ${rest} mod 4 characters with = padding, signed`, token: signed(h, padded(pr)), valid: false });
  }

  // A part of 1 mod 4 characters is not base64url at all.
  vectors.push({ name: "header of 1 mod 4 characters", token: `${oneModFour(h)}.${p}.${s}`, valid: false });
  const p1 = oneModFour(p);
  vectors.push({ name: "payload of 1 mod 4 characters", token: `${h}.${p1}.${s}`, valid: false });
  vectors.push({ name: "payload of 1 mod 4 characters, signed", token: signed(h, p1), valid: false });
  vectors.push({ name: "signature of 85 characters", token: `${h}.${p}.${s.slice(0, 85)}`, valid: false });
  vectors.push({ name: "signature with = padding", token: `${token}==`, valid: false });
  vectors.push({ name: "signature with one =", token: `${token}=`, valid: false });

  // The standard alphabet: the same bytes with + and / instead of - and _.
  const stdSignature = standardAlphabet(s);
  if (stdSignature === s) throw new Error("the test signature has neither - nor _");
  vectors.push({ name: "signature in the standard alphabet (+ /)", token: `${h}.${p}.${stdSignature}`, valid: false });
  const urlPayload = [0, 1, 2].map((n) => encode(JSON.stringify({ ...claims, note: `${"a".repeat(n)}~~~???` }))).find((x) => x !== standardAlphabet(x))!;
  vectors.push({ name: "payload with - or _, canonical", token: signed(h, urlPayload), valid: true });
  vectors.push({ name: "payload in the standard alphabet (+ /), signed", token: signed(h, standardAlphabet(urlPayload)), valid: false });

  // Empty and extra parts.
  vectors.push({ name: "empty header", token: `.${p}.${s}`, valid: false });
  vectors.push({ name: "empty payload", token: `${h}..${s}`, valid: false });
  vectors.push({ name: "empty signature", token: `${h}.${p}.`, valid: false });
  vectors.push({ name: "two parts", token: `${h}.${p}`, valid: false });
  vectors.push({ name: "four parts", token: `${token}.${s}`, valid: false });
  vectors.push({ name: "a trailing dot", token: `${token}.`, valid: false });
  vectors.push({ name: "a leading dot", token: `.${token}`, valid: false });

  return {
    description:
      "Access-token spellings: every token must get `valid` from the identity service and from every verifier library. " +
      "Signed with the RFC 8037 A.1 test key; verify at nowSec with issuer and audience.",
    issuer: ISSUER,
    audience: AUDIENCE,
    nowSec: NOW_SEC,
    publicJwk: { kty: TEST_JWK.kty, crv: TEST_JWK.crv, x: TEST_JWK.x, kid: KID, alg: "EdDSA", use: "sig" },
    privateJwk: TEST_JWK,
    vectors,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.stdout.write(`${JSON.stringify(buildTokenVectors(), null, 2)}\n`);
