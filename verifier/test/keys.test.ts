import { createServer } from "node:http";
import { exportJWK, generateKeyPair } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createVerifier, type Verifier, type VerifierOptions } from "../src/index.js";
import { AUDIENCE, claimsAt, codeOf, createTestKey, ISSUER, startJwksServer, waitFor, type JwksServer, type TestKey } from "./support.js";

const T0 = Date.parse("2025-06-15T12:00:00.000Z");

describe("JWKS fetching and key rotation", () => {
  let ours: TestKey;
  let jwks: JwksServer;
  let clock: number;
  let verifier: Verifier;

  const token = (key: TestKey = ours) => key.sign(claimsAt(Math.floor(clock / 1000)));
  function make(overrides: Partial<VerifierOptions> = {}): Verifier {
    verifier = createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, now: () => clock, ...overrides });
    return verifier;
  }

  beforeEach(async () => {
    clock = T0;
    ours = await createTestKey();
    jwks = await startJwksServer([ours.publicJwk]);
  });
  afterEach(async () => {
    await verifier?.close();
    await jwks.close();
  });

  it("ready() loads the key set once; verification then needs no network", async () => {
    await make().ready();
    expect(jwks.hits).toBe(1);
    for (let i = 0; i < 5; i++) await expect(verifier.verify(await token())).resolves.toBeDefined();
    expect(jwks.hits).toBe(1);
    expect(verifier.stats().keys).toMatchObject({ keys: 1, fetches: 1, fetchFailures: 0, loadedAt: T0 });
  });

  it("loads lazily on the first verify when ready() was not awaited", async () => {
    make();
    await expect(verifier.verify(await token())).resolves.toBeDefined();
    expect(jwks.hits).toBe(1);
  });

  describe("rotation: a new kid in the JWKS", () => {
    let next: TestKey;
    beforeEach(async () => {
      next = await createTestKey();
    });

    it("is picked up on first use when the last fetch is an interval old", async () => {
      await make().ready();
      jwks.keys = [ours.publicJwk, next.publicJwk];
      clock += 60_000;
      await expect(verifier.verify(await token(next))).resolves.toBeDefined();
      expect(jwks.hits).toBe(2);
      // Both keys verify from now on, with no further fetch.
      await expect(verifier.verify(await token(ours))).resolves.toBeDefined();
      await expect(verifier.verify(await token(next))).resolves.toBeDefined();
      expect(jwks.hits).toBe(2);
    });

    it("waits for the refetch interval when the set was fetched recently", async () => {
      await make({ unknownKidRefetchIntervalMs: 10_000 }).ready();
      jwks.keys = [ours.publicJwk, next.publicJwk];
      const t = await token(next);
      clock += 9_999;
      expect(await codeOf(verifier.verify(t))).toBe("TOKEN_INVALID");
      expect(jwks.hits).toBe(1);
      clock += 1;
      await expect(verifier.verify(t)).resolves.toBeDefined();
      expect(jwks.hits).toBe(2);
    });

    it("a key withdrawn from the JWKS stops verifying, cached tokens included, after jwksMaxAgeMs", async () => {
      await make({ jwksMaxAgeMs: 300_000 }).ready();
      jwks.keys = [ours.publicJwk, next.publicJwk];
      clock += 60_000;
      const old = await token(ours);
      await expect(verifier.verify(old)).resolves.toBeDefined(); // now cached
      await expect(verifier.verify(await token(next))).resolves.toBeDefined();
      jwks.keys = [next.publicJwk];
      clock += 300_000;
      // The stale set keeps serving while the refresh runs in the background.
      await expect(verifier.verify(old)).resolves.toBeDefined();
      await waitFor(() => verifier.stats().keys.keys === 1);
      expect(await codeOf(verifier.verify(old))).toBe("TOKEN_INVALID");
      await expect(verifier.verify(await token(next))).resolves.toBeDefined();
    });
  });

  it("takes only Ed25519 EdDSA signing keys from the set", async () => {
    const rsa = await exportJWK((await generateKeyPair("RS256", { extractable: true })).publicKey);
    const ec = await exportJWK((await generateKeyPair("ES256", { extractable: true })).publicKey);
    const wrongAlg = await createTestKey();
    const encOnly = await createTestKey();
    const signOnly = await createTestKey();
    const withPrivate = await createTestKey();
    const twinA = await createTestKey("twin");
    const twinB = await createTestKey("twin");
    jwks.keys = [
      { ...rsa, kid: "rsa", alg: "RS256", use: "sig" },
      { ...ec, kid: "ec", alg: "ES256", use: "sig" },
      { kty: "OKP", crv: "Ed448", x: "A".repeat(76), kid: "ed448", alg: "EdDSA" },
      { kty: "OKP", crv: "X25519", x: ours.publicJwk.x, kid: "x25519" },
      { kty: "oct", k: "c2VjcmV0", kid: "oct", alg: "HS256" },
      "not a key",
      null,
      { ...wrongAlg.publicJwk, alg: "ES256" },
      { ...encOnly.publicJwk, use: "enc" },
      { ...signOnly.publicJwk, key_ops: ["sign"] },
      { ...withPrivate.publicJwk, d: withPrivate.privateJwk.d },
      twinA.publicJwk,
      twinB.publicJwk,
      ours.publicJwk,
    ];
    await make().ready();
    expect(verifier.stats().keys.keys).toBe(1);
    await expect(verifier.verify(await token(ours))).resolves.toBeDefined();
    for (const k of [wrongAlg, encOnly, signOnly, withPrivate, twinA, twinB]) {
      expect(await codeOf(verifier.verify(await token(k)))).toBe("TOKEN_INVALID");
    }
    // An HS256 token under the oct kid: the secret is never a verification key.
    const { createHmac } = await import("node:crypto");
    const b = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const input = `${b({ alg: "HS256", kid: "oct", typ: "at+jwt" })}.${b(claimsAt(T0 / 1000))}`;
    expect(await codeOf(verifier.verify(`${input}.${createHmac("sha256", "secret").update(input).digest("base64url")}`))).toBe("TOKEN_INVALID");
  });

  describe("when the JWKS endpoint fails", () => {
    it("before any successful load: KEYS_UNAVAILABLE (retryable), retried at most once a second", async () => {
      jwks.failWith = 503;
      await expect(make().ready()).rejects.toMatchObject({ code: "KEYS_UNAVAILABLE", retryable: true });
      const t = await token();
      expect(await codeOf(verifier.verify(t))).toBe("KEYS_UNAVAILABLE");
      expect(jwks.hits).toBe(1);
      clock += 1_000;
      expect(await codeOf(verifier.verify(t))).toBe("KEYS_UNAVAILABLE");
      expect(jwks.hits).toBe(2);
      jwks.failWith = undefined;
      expect(await codeOf(verifier.verify(t))).toBe("KEYS_UNAVAILABLE");
      expect(jwks.hits).toBe(2);
      clock += 1_000;
      await expect(verifier.verify(t)).resolves.toBeDefined();
      expect(jwks.hits).toBe(3);
    });

    it("after a load: the last known keys keep verifying; unknown kids get KEYS_UNAVAILABLE until a fetch succeeds", async () => {
      await make({ jwksMaxAgeMs: 120_000 }).ready();
      jwks.failWith = 500;
      clock += 120_000;
      await expect(verifier.verify(await token())).resolves.toBeDefined();
      await waitFor(() => verifier.stats().keys.fetchFailures === 1);
      await expect(verifier.verify(await token())).resolves.toBeDefined();
      const stranger = await createTestKey();
      expect(await codeOf(verifier.verify(await token(stranger)))).toBe("KEYS_UNAVAILABLE");
      expect(jwks.hits).toBe(2);
      jwks.failWith = undefined;
      clock += 60_000;
      expect(await codeOf(verifier.verify(await token(stranger)))).toBe("TOKEN_INVALID");
      expect(jwks.hits).toBe(3);
    });

    it.each([
      ["an empty key set", JSON.stringify({ keys: [] })],
      ["a set of foreign keys only", JSON.stringify({ keys: [{ kty: "RSA", n: "AQAB", e: "AQAB", kid: "r" }] })],
      ["not JSON", "<html>maintenance</html>"],
      ["not a key set", JSON.stringify([{ kty: "OKP" }])],
      ["an oversized body", JSON.stringify({ keys: [], pad: "x".repeat(300 * 1024) })],
    ])("a broken response (%s) is a failure, not a new (empty) set", async (_what, body) => {
      await make({ jwksMaxAgeMs: 60_000 }).ready();
      jwks.rawBody = body;
      clock += 60_000;
      await expect(verifier.verify(await token())).resolves.toBeDefined();
      await waitFor(() => verifier.stats().keys.fetchFailures === 1);
      expect(verifier.stats().keys.keys).toBe(1);
      await expect(verifier.verify(await token())).resolves.toBeDefined();
    });

    it("does not follow redirects away from the configured URL", async () => {
      const elsewhere = createServer((_req, res) => res.writeHead(302, { location: jwks.url }).end());
      await new Promise<void>((resolve) => elsewhere.listen(0, "127.0.0.1", resolve));
      const { port } = elsewhere.address() as { port: number };
      try {
        await expect(make({ jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json` }).ready()).rejects.toMatchObject({ code: "KEYS_UNAVAILABLE" });
        expect(jwks.hits).toBe(0);
      } finally {
        elsewhere.closeAllConnections();
        await new Promise((resolve) => elsewhere.close(resolve));
      }
    });
  });

  it("uses the fetch it is given", async () => {
    const calls: string[] = [];
    await make({
      fetch: (input, init) => {
        calls.push(String(input));
        return fetch(input, init);
      },
    }).ready();
    expect(calls).toEqual([jwks.url]);
  });

  it("rejects bad configuration at construction", () => {
    const base = { jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE };
    expect(() => createVerifier({ ...base, jwksUrl: "file:///etc/passwd" })).toThrow(TypeError);
    expect(() => createVerifier({ ...base, jwksUrl: "not a url" })).toThrow(TypeError);
    expect(() => createVerifier({ ...base, issuer: "" })).toThrow(TypeError);
    expect(() => createVerifier({ ...base, audience: "" })).toThrow(TypeError);
    expect(() => createVerifier({ ...base, clockToleranceSec: -1 })).toThrow(TypeError);
    expect(() => createVerifier({ ...base, cacheSize: 1.5 })).toThrow(TypeError);
  });
});
