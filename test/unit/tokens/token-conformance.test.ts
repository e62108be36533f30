import { loadTokenVectors } from "@platform/identity-verifier/conformance";
import { importJWK, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { isAccessTokenShape } from "../../../src/tokens/token-shape.js";
import { bearerToken } from "../../../src/transport/rpc/auth.js";
import { createJwtService } from "../../../src/tokens/jwt-service.js";
import { memoryKeyStore } from "../../support/memory-key-store.js";

// The token-spelling vectors, from the verifier package's entry point (its
// own suite, verifier/test/conformance.test.ts, runs the same file), through
// the service's auth path: the bearer shape check, then jose verification
// with the vectors' key. Both must give every vector its `valid` verdict.

const file = loadTokenVectors();
const at = new Date(file.nowSec * 1000);

function service() {
  const jwt = createJwtService({
    keys: memoryKeyStore([
      {
        kid: file.publicJwk.kid,
        alg: "EdDSA",
        publicJwk: file.publicJwk,
        privateJwk: file.privateJwk,
        createdAt: new Date(0),
        activatesAt: new Date(0),
        retiresAt: null,
      },
    ]),
    issuer: file.issuer,
    audience: file.audience,
    accessTokenTtlMs: 15 * 60_000,
    refreshIntervalMs: 0,
    now: () => at,
  });
  return {
    init: () => jwt.init(),
    /** The auth interceptor's path: the bearer header, then the signature and claims. */
    async accepts(token: string): Promise<boolean> {
      let presented: string;
      try {
        presented = bearerToken(`Bearer ${token}`);
      } catch {
        return false;
      }
      return (await jwt.verifyAccessToken(presented, at)) !== undefined;
    },
    verifyAccessToken: (token: string) => jwt.verifyAccessToken(token, at),
  };
}

describe("token-spelling conformance vectors (service)", () => {
  it.each(file.vectors.map((v) => [v.name, v] as const))("%s", async (_name, vector) => {
    const s = service();
    await s.init();
    expect(await s.accepts(vector.token)).toBe(vector.valid);
  });

  it("jose alone would accept the non-canonical signatures: the shape check is what refuses them", async () => {
    const s = service();
    await s.init();
    const flipped = file.vectors.filter((v) => v.name.startsWith("signature: last character"));
    expect(flipped).toHaveLength(15);
    const key = await importJWK(file.publicJwk, "EdDSA");
    for (const v of flipped) {
      await expect(jwtVerify(v.token, key, { issuer: file.issuer, audience: file.audience, currentDate: at }), v.name).resolves.toBeDefined();
      expect(isAccessTokenShape(v.token), v.name).toBe(false);
      // verifyAccessToken applies the same check itself, whoever calls it.
      expect(await s.verifyAccessToken(v.token), v.name).toBeUndefined();
    }
  });

  it("a refused spelling stays refused after the canonical token was verified (and cached)", async () => {
    const s = service();
    await s.init();
    expect(await s.accepts(file.vectors[0]!.token)).toBe(true);
    for (const v of file.vectors.filter((x) => !x.valid)) expect(await s.accepts(v.token), v.name).toBe(false);
  });
});
