import { createHmac, createPrivateKey, createPublicKey, randomUUID, sign as edSign } from "node:crypto";
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  SignJWT,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
} from "jose";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { KeyStore, StoredKey } from "../../../src/keys/ports.js";
import { createJwtService, type JwtService } from "../../../src/tokens/jwt-service.js";
import { newSigningKey } from "../../../src/tokens/key-ring.js";
import { memoryKeyStore, type MemoryKeyStore } from "../../support/memory-key-store.js";

const ISSUER = "urn:test:identity";
const AUDIENCE = "urn:test:platform";
const TTL_MS = 15 * 60_000;
const NOW = new Date("2025-06-15T12:00:00.000Z");
const nowS = Math.floor(NOW.getTime() / 1000);
const U = "0190a1b2-0000-7000-8000-0000000000b1";
const S = "0190a1b2-0000-7000-8000-0000000000c1";


function service(keys: KeyStore, overrides: { now?: () => Date; reloadIntervalMs?: number } = {}): JwtService {
  return createJwtService({
    keys,
    issuer: ISSUER,
    audience: AUDIENCE,
    accessTokenTtlMs: TTL_MS,
    now: () => NOW,
    ...overrides,
  });
}

const b64url = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

function parts(token: string): [string, string, string] {
  const [h = "", p = "", s = ""] = token.split(".");
  return [h, p, s];
}

function validClaims(overrides: JWTPayload = {}): JWTPayload {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "0190a1b2-0000-7000-8000-000000000001",
    sid: "0190a1b2-0000-7000-8000-0000000000a1",
    jti: randomUUID(),
    iat: nowS,
    exp: nowS + TTL_MS / 1000,
    ...overrides,
  };
}

describe("JWT access tokens", () => {
  let store: MemoryKeyStore;
  let jwt: JwtService;
  let ourKey: StoredKey;
  let ourPrivateKey: Awaited<ReturnType<typeof importJWK>>;

  /** Signs arbitrary claims and header with the service's own private key. */
  async function signWithOurKey(claims: JWTPayload, header: Partial<JWTHeaderParameters> = {}): Promise<string> {
    return new SignJWT(claims)
      .setProtectedHeader({ alg: "EdDSA", kid: ourKey.kid, typ: "at+jwt", ...header } as JWTHeaderParameters)
      .sign(ourPrivateKey);
  }

  /** Signs any header, even one jose refuses to produce, with our key. */
  function signRaw(header: Record<string, unknown>, claims: JWTPayload): string {
    const input = `${b64url(header)}.${b64url(claims)}`;
    const key = createPrivateKey({ key: ourKey.privateJwk as never, format: "jwk" });
    return `${input}.${edSign(null, Buffer.from(input), key).toString("base64url")}`;
  }

  const verify = (token: string, at: Date = NOW) => jwt.verifyAccessToken(token, at);

  beforeEach(async () => {
    store = memoryKeyStore();
    jwt = service(store);
    await jwt.init();
    ourKey = store.rows[0]!;
    ourPrivateKey = await importJWK(ourKey.privateJwk, "EdDSA");
  });

  describe("issue and verify", () => {
    it("verifies its own token and returns the claims", async () => {
      const { token, expiresAt } = await jwt.issueAccessToken({ userId: "0190a1b2-0000-7000-8000-000000000042", sessionId: "0190a1b2-0000-7000-8000-0000000000a7", now: NOW });
      expect(expiresAt).toEqual(new Date(NOW.getTime() + TTL_MS));
      const claims = await verify(token);
      expect(claims).toEqual({
        userId: "0190a1b2-0000-7000-8000-000000000042",
        sessionId: "0190a1b2-0000-7000-8000-0000000000a7",
        tokenId: expect.stringMatching(/^[0-9a-f-]{36}$/),
        issuedAt: NOW,
        expiresAt,
      });
    });

    it("signs with EdDSA, typ at+jwt and the store's kid", async () => {
      const { token } = await jwt.issueAccessToken({ userId: U, sessionId: S, now: NOW });
      expect(decodeProtectedHeader(token)).toEqual({ alg: "EdDSA", typ: "at+jwt", kid: ourKey.kid });
      const payload = JSON.parse(Buffer.from(parts(token)[1], "base64url").toString()) as JWTPayload;
      expect(payload).toMatchObject({ iss: ISSUER, aud: AUDIENCE, sub: U, sid: S, iat: nowS, exp: nowS + 900 });
    });

    it("gives every token its own jti", async () => {
      const a = await jwt.issueAccessToken({ userId: U, sessionId: S, now: NOW });
      const b = await jwt.issueAccessToken({ userId: U, sessionId: S, now: NOW });
      expect((await verify(a.token))?.tokenId).not.toBe((await verify(b.token))?.tokenId);
    });

    it("accepts a token hand-made with our key and valid claims (control for the attacks below)", async () => {
      await expect(verify(await signWithOurKey(validClaims()))).resolves.toMatchObject({ userId: "0190a1b2-0000-7000-8000-000000000001", sessionId: "0190a1b2-0000-7000-8000-0000000000a1" });
    });

    it("tolerates 5 s of clock skew on expiry, not more", async () => {
      const { token, expiresAt } = await jwt.issueAccessToken({ userId: U, sessionId: S, now: NOW });
      await expect(verify(token, new Date(expiresAt.getTime() + 4_000))).resolves.toBeDefined();
      await expect(verify(token, new Date(expiresAt.getTime() + 6_000))).resolves.toBeUndefined();
    });
  });

  describe("attacks: each verifies as undefined and never throws", () => {
    let fetchSpy: ReturnType<typeof vi.spyOn>;
    beforeEach(() => {
      fetchSpy = vi.spyOn(globalThis, "fetch").mockRejectedValue(new Error("no network in verification"));
    });
    afterEach(() => {
      // Verification never follows a header to the network.
      expect(fetchSpy).not.toHaveBeenCalled();
      fetchSpy.mockRestore();
    });

    async function expectRejected(token: string, at: Date = NOW): Promise<void> {
      await expect(verify(token, at)).resolves.toBeUndefined();
    }

    it.each(["none", "None", "NONE", "nOnE"])('alg "%s" with an empty signature', async (alg) => {
      const token = `${b64url({ alg, typ: "at+jwt", kid: ourKey.kid })}.${b64url(validClaims())}.`;
      await expectRejected(token);
      // ...and with the signature of a genuine token left in place.
      const genuine = parts((await jwt.issueAccessToken({ userId: U, sessionId: S, now: NOW })).token)[2];
      await expectRejected(`${b64url({ alg, typ: "at+jwt", kid: ourKey.kid })}.${b64url(validClaims())}.${genuine}`);
    });

    it.each([
      ["the public JWK as JSON", () => Buffer.from(JSON.stringify(ourKey.publicJwk))],
      ["the raw public key bytes", () => Buffer.from(ourKey.publicJwk.x!, "base64url")],
      ["the public key as PEM", () => Buffer.from(createPublicKey({ key: ourKey.publicJwk as never, format: "jwk" }).export({ type: "spki", format: "pem" }))],
    ])("HS256 signed with %s as the HMAC secret (key confusion)", async (_what, secret) => {
      for (const alg of ["HS256", "HS512"]) {
        const input = `${b64url({ alg, typ: "at+jwt", kid: ourKey.kid })}.${b64url(validClaims())}`;
        const mac = createHmac(alg === "HS256" ? "sha256" : "sha512", secret()).update(input).digest("base64url");
        await expectRejected(`${input}.${mac}`);
      }
    });

    it("a tampered payload under a genuine signature", async () => {
      const [h, p, s] = parts(await signWithOurKey(validClaims()));
      const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as JWTPayload;
      await expectRejected(`${h}.${b64url({ ...claims, sub: "admin" })}.${s}`);
      await expectRejected(`${h}.${b64url({ ...claims, exp: claims.exp! + 86_400 })}.${s}`);
    });

    it("a tampered header under a genuine signature", async () => {
      const [, p, s] = parts(await signWithOurKey(validClaims()));
      await expectRejected(`${b64url({ alg: "EdDSA", typ: "at+jwt", kid: ourKey.kid, extra: 1 })}.${p}.${s}`);
    });

    it("a truncated, empty, swapped or garbage signature", async () => {
      const [h, p, s] = parts(await signWithOurKey(validClaims()));
      const other = parts(await signWithOurKey(validClaims({ sub: "someone-else" })))[2];
      await expectRejected(`${h}.${p}.${s.slice(0, -4)}`);
      await expectRejected(`${h}.${p}.${s.slice(0, 10)}`);
      await expectRejected(`${h}.${p}.`);
      await expectRejected(`${h}.${p}`);
      await expectRejected(`${h}.${p}.${other}`);
      await expectRejected(`${h}.${p}.${"A".repeat(86)}`);
      await expectRejected(`${h}.${p}.!!!not-base64url!!!`);
    });

    it.each([
      ["an unknown kid", "not-a-kid-we-have"],
      ["a path-traversal kid", "../../dev/null"],
      ["an SQL-injection kid", "' OR 1=1 --"],
      ["an empty kid", ""],
      ["a prototype kid", "__proto__"],
    ])("%s, even when signed by our key", async (_what, kid) => {
      await expectRejected(await signWithOurKey(validClaims(), { kid }));
    });

    it("no kid at all, or a non-string kid", async () => {
      const claims = validClaims();
      await expectRejected(await new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt" }).sign(ourPrivateKey));
      await expectRejected(await signWithOurKey(claims, { kid: 123 as unknown as string }));
    });

    describe("keys named by the token itself (jwk, jku, x5u)", () => {
      let attacker: { privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"]; publicJwk: JWK; kid: string };
      beforeAll(async () => {
        const pair = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
        const publicJwk = await exportJWK(pair.publicKey);
        attacker = { privateKey: pair.privateKey, publicJwk, kid: await calculateJwkThumbprint(publicJwk) };
      });

      async function signAsAttacker(header: Partial<JWTHeaderParameters>): Promise<string> {
        return new SignJWT(validClaims())
          .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", ...header } as JWTHeaderParameters)
          .sign(attacker.privateKey);
      }

      it("an embedded jwk with the attacker's kid", async () => {
        await expectRejected(await signAsAttacker({ kid: attacker.kid, jwk: attacker.publicJwk }));
      });

      it("an embedded jwk with our kid", async () => {
        await expectRejected(await signAsAttacker({ kid: ourKey.kid, jwk: attacker.publicJwk }));
      });

      it("a jku pointing elsewhere", async () => {
        await expectRejected(await signAsAttacker({ kid: attacker.kid, jku: "https://attacker.example/.well-known/jwks.json" }));
        await expectRejected(await signAsAttacker({ kid: ourKey.kid, jku: "https://attacker.example/.well-known/jwks.json" }));
      });

      it("an x5u pointing elsewhere", async () => {
        await expectRejected(await signAsAttacker({ kid: attacker.kid, x5u: "https://attacker.example/cert.pem" }));
        await expectRejected(await signAsAttacker({ kid: ourKey.kid, x5u: "https://attacker.example/cert.pem" }));
      });

      it("another Ed25519 key using our kid", async () => {
        await expectRejected(await signAsAttacker({ kid: ourKey.kid }));
      });
    });

    it("an algorithm other than EdDSA, even over our own key (Ed25519 alg name)", async () => {
      await expectRejected(await signWithOurKey(validClaims(), { alg: "Ed25519" }));
    });

    it.each([
      ["wrong iss", { iss: "urn:someone-else" }],
      ["wrong aud", { aud: "urn:another-service" }],
      ["aud list without ours", { aud: ["urn:a", "urn:b"] }],
      ["expired beyond the 5 s tolerance", { iat: nowS - 3_600, exp: nowS - 6 }],
      ["nbf in the future", { nbf: nowS + 60 }],
    ])("%s", async (_what, overrides) => {
      await expectRejected(await signWithOurKey(validClaims(overrides)));
    });

    it.each(["exp", "sid", "sub", "jti", "iat", "iss", "aud"])("missing %s", async (claim) => {
      const claims = validClaims();
      delete claims[claim];
      await expectRejected(await signWithOurKey(claims));
    });

    it.each([
      ["sid", 123],
      ["sub", { id: 1 }],
      ["exp", "tomorrow"],
    ])("%s of the wrong type", async (claim, value) => {
      await expectRejected(await signWithOurKey(validClaims({ [claim]: value })));
    });

    it.each([
      ['typ "JWT"', { typ: "JWT" }],
      ['typ "jwt"', { typ: "jwt" }],
      ["no typ", { typ: undefined }],
    ])("%s instead of at+jwt (an ID token or other JWT replayed as an access token)", async (_what, header) => {
      await expectRejected(await signWithOurKey(validClaims(), header));
    });

    it("an unknown critical header", async () => {
      const header = { alg: "EdDSA", typ: "at+jwt", kid: ourKey.kid };
      await expect(verify(signRaw(header, validClaims()))).resolves.toBeDefined(); // control
      await expectRejected(signRaw({ ...header, crit: ["x-must-understand"], "x-must-understand": true }, validClaims()));
    });

    it.each(["", "a", "a.b", "a.b.c", "a.b.c.d.e", "....", "not a jwt", "eyJhbGciOiJFZERTQSJ9", "x".repeat(100_000)])(
      "garbage token %#",
      async (token) => {
        await expectRejected(token);
      },
    );
  });

  describe("keys", () => {
    it("init() creates a key when the store is empty", () => {
      expect(store.inserts).toBe(1);
      expect(store.rows).toHaveLength(1);
      expect(ourKey).toMatchObject({ alg: "EdDSA", retiresAt: null });
      expect(jwt.jwks().keys.map((k) => k.kid)).toEqual([ourKey.kid]);
    });

    it("init() reuses the stored key instead of creating another", async () => {
      const second = service(store);
      await second.init();
      expect(store.inserts).toBe(1);
      expect(store.rows).toHaveLength(1);
      const { token } = await second.issueAccessToken({ userId: U, sessionId: S, now: NOW });
      expect(decodeProtectedHeader(token).kid).toBe(ourKey.kid);
      // Tokens of one instance verify on the other.
      await expect(jwt.verifyAccessToken(token, NOW)).resolves.toMatchObject({ userId: U });
    });

    it("jwks() publishes public keys only: never the private part", async () => {
      await store.insert(await newSigningKey(new Date(NOW.getTime() + 1_000)));
      const fresh = service(store);
      await fresh.init();
      const { keys } = fresh.jwks();
      expect(keys).toHaveLength(2);
      for (const key of keys) {
        expect(key).not.toHaveProperty("d");
        expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
        expect(key.kid).toBe(await calculateJwkThumbprint(key));
      }
      expect(JSON.stringify(fresh.jwks())).not.toContain('"d"');
    });

    it("picks up a key another instance inserted after init when a token with its kid arrives", async () => {
      const reloading = service(store, { reloadIntervalMs: 0 });
      await reloading.init();
      const later = new Date(NOW.getTime() + 60_000);
      await store.insert(await newSigningKey(later));
      const other = service(store, { now: () => later });
      await other.init();
      const { token } = await other.issueAccessToken({ userId: U, sessionId: S, now: later });
      expect(decodeProtectedHeader(token).kid).not.toBe(ourKey.kid);

      await expect(reloading.verifyAccessToken(token, later)).resolves.toMatchObject({ userId: U, sessionId: S });
      expect(reloading.jwks().keys).toHaveLength(2);
    });

    it("reloads keys for unknown kids at most once per reloadIntervalMs", async () => {
      const before = store.lists;
      const tokens = await Promise.all(
        Array.from({ length: 20 }, (_, i) => signWithOurKey(validClaims(), { kid: `flood-${i}` })),
      );
      for (const token of tokens) await expect(jwt.verifyAccessToken(token, NOW)).resolves.toBeUndefined();
      // Just initialised with the default interval (60 s): a flood of unknown kids costs no store reads.
      expect(store.lists - before).toBe(0);

      const eager = service(store, { reloadIntervalMs: 0 });
      await eager.init();
      const eagerBefore = store.lists;
      for (const token of tokens.slice(0, 3)) await eager.verifyAccessToken(token, NOW);
      expect(store.lists - eagerBefore).toBe(3);
    });

    it("signs with the newest active key and not with one published for later", async () => {
      const future = await newSigningKey(NOW);
      future.activatesAt = new Date(NOW.getTime() + 3_600_000);
      await store.insert(future);
      const svc = service(store);
      await svc.init();
      expect(svc.jwks().keys.map((k) => k.kid).sort()).toEqual([ourKey.kid, future.kid].sort());
      const now = await svc.issueAccessToken({ userId: U, sessionId: S, now: NOW });
      expect(decodeProtectedHeader(now.token).kid).toBe(ourKey.kid);
      const afterActivation = new Date(NOW.getTime() + 2 * 3_600_000);
      const later = await svc.issueAccessToken({ userId: U, sessionId: S, now: afterActivation });
      expect(decodeProtectedHeader(later.token).kid).toBe(future.kid);
    });

    it("stops accepting a loaded key once its retiresAt has passed", async () => {
      // Retiring a key (say, after a leak) must take effect on instances
      // that loaded it earlier, not only on those that start afterwards.
      const retiring = await newSigningKey(new Date(NOW.getTime() - 86_400_000));
      retiring.retiresAt = new Date(NOW.getTime() + 3_600_000);
      const svc = service(memoryKeyStore([retiring, ourKey]));
      await svc.init();
      const afterRetirement = new Date(NOW.getTime() + 2 * 3_600_000);
      const afterS = Math.floor(afterRetirement.getTime() / 1000);
      const token = await new SignJWT(validClaims({ iat: afterS, exp: afterS + 900 }))
        .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: retiring.kid })
        .sign(await importJWK(retiring.privateJwk, "EdDSA"));
      const before = await new SignJWT(validClaims())
        .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: retiring.kid })
        .sign(await importJWK(retiring.privateJwk, "EdDSA"));
      await expect(svc.verifyAccessToken(before, NOW)).resolves.toBeDefined(); // control: not yet retired
      await expect(svc.verifyAccessToken(token, afterRetirement)).resolves.toBeUndefined();
    });

    it("does not load retired keys, so their tokens no longer verify", async () => {
      const retired = await newSigningKey(new Date(NOW.getTime() - 86_400_000));
      retired.retiresAt = new Date(NOW.getTime() - 1_000);
      const retiredStore = memoryKeyStore([retired, ourKey]);
      const svc = service(retiredStore, { reloadIntervalMs: 0 });
      await svc.init();
      expect(svc.jwks().keys.map((k) => k.kid)).toEqual([ourKey.kid]);
      const token = await new SignJWT(validClaims())
        .setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid: retired.kid })
        .sign(await importJWK(retired.privateJwk, "EdDSA"));
      await expect(svc.verifyAccessToken(token, NOW)).resolves.toBeUndefined();
    });
  });
});
