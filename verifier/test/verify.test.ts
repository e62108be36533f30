import { createHmac, createPublicKey, randomUUID } from "node:crypto";
import { SignJWT, type JWTPayload } from "jose";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createVerifier, VerificationError, type Verifier } from "../src/index.js";
import { AUDIENCE, b64url, claimsAt, codeOf, createTestKey, ISSUER, parts, startJwksServer, type JwksServer, type TestKey } from "./support.js";

const NOW_MS = Date.parse("2025-06-15T12:00:00.000Z");
const nowS = NOW_MS / 1000;

describe("verify", () => {
  let ours: TestKey;
  let attacker: TestKey;
  let jwks: JwksServer;
  let clock: number;
  let verifier: Verifier;

  const claims = (overrides: JWTPayload = {}) => claimsAt(nowS, overrides);
  const verify = (token: string) => verifier.verify(token);

  beforeAll(async () => {
    ours = await createTestKey();
    attacker = await createTestKey();
    jwks = await startJwksServer([ours.publicJwk]);
  });
  afterAll(() => jwks.close());

  beforeEach(async () => {
    clock = NOW_MS;
    verifier = createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, now: () => clock });
    await verifier.ready();
  });
  afterEach(() => verifier.close());

  describe("a valid token", () => {
    it("resolves with the identity and every claim", async () => {
      const c = claims({ sub: "user-42", scope: "orders:read" });
      const result = await verify(await ours.sign(c));
      expect(result).toEqual({
        userId: "user-42",
        sessionId: c.sid,
        tokenId: c.jti,
        issuedAt: new Date(NOW_MS),
        expiresAt: new Date(NOW_MS + 900_000),
        claims: c,
      });
      expect(Object.isFrozen(result.claims)).toBe(true);
    });

    it("accepts an aud list containing ours and typ application/at+jwt (RFC 9068)", async () => {
      await expect(verify(await ours.sign(claims({ aud: ["urn:other", AUDIENCE] })))).resolves.toBeDefined();
      await expect(verify(await ours.sign(claims(), { typ: "application/at+jwt" }))).resolves.toBeDefined();
    });

    it("tolerates clockToleranceSec (5 s) of skew on exp, nbf and iat, not more", async () => {
      const token = await ours.sign(claims({ exp: nowS + 60 }));
      clock = NOW_MS + 64_000;
      await expect(verify(token)).resolves.toBeDefined();
      clock = NOW_MS;
      await expect(verify(await ours.sign(claims({ nbf: nowS + 4 })))).resolves.toBeDefined();
      await expect(verify(await ours.sign(claims({ iat: nowS + 4 })))).resolves.toBeDefined();
      await expect(codeOf(verify(await ours.sign(claims({ iat: nowS + 60 }))))).resolves.toBe("TOKEN_INVALID");
      clock = NOW_MS + 66_000;
      await expect(codeOf(verify(await ours.sign(claims({ iat: nowS, exp: nowS + 60 }))))).resolves.toBe("TOKEN_EXPIRED");
    });

    it("throws VerificationError with a fixed message that says nothing about why", async () => {
      const err = await verify(await ours.sign(claims({ iss: "urn:evil" }))).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VerificationError);
      expect(err).toMatchObject({ code: "TOKEN_INVALID", retryable: false, message: "access token is invalid" });
      expect((err as Error).message).not.toMatch(/iss|claim|urn/);
    });
  });

  describe("attacks: each refused with a stable code, with no network call", () => {
    let hitsBefore: number;
    beforeEach(() => {
      hitsBefore = jwks.hits;
    });
    afterEach(() => {
      // The key set is fresh (just loaded by ready()), so nothing below may
      // cause a JWKS fetch, and nothing may send us anywhere else.
      expect(jwks.hits).toBe(hitsBefore);
    });

    const expectCode = async (token: string, code: string) => expect(await codeOf(verify(token))).toBe(code);

    it.each(["none", "None", "NONE", "nOnE"])('alg "%s", with an empty or a borrowed signature', async (alg) => {
      await expectCode(`${b64url({ alg, typ: "at+jwt", kid: ours.kid })}.${b64url(claims())}.`, "TOKEN_INVALID");
      const genuine = parts(await ours.sign(claims()))[2];
      await expectCode(`${b64url({ alg, typ: "at+jwt", kid: ours.kid })}.${b64url(claims())}.${genuine}`, "TOKEN_INVALID");
    });

    it.each([
      ["the public JWK as JSON", () => Buffer.from(JSON.stringify(ours.publicJwk))],
      ["the raw public key bytes", () => Buffer.from(ours.publicJwk.x!, "base64url")],
      ["the public key as PEM", () => Buffer.from(createPublicKey({ key: ours.publicJwk as never, format: "jwk" }).export({ type: "spki", format: "pem" }))],
    ])("HS256 signed with %s as the HMAC secret", async (_what, secret) => {
      for (const [alg, hash] of [["HS256", "sha256"], ["HS512", "sha512"]] as const) {
        const input = `${b64url({ alg, typ: "at+jwt", kid: ours.kid })}.${b64url(claims())}`;
        await expectCode(`${input}.${createHmac(hash, secret()).update(input).digest("base64url")}`, "TOKEN_INVALID");
      }
    });

    it("another algorithm name over our own key (Ed25519 instead of EdDSA)", async () => {
      await expectCode(await ours.sign(claims(), { alg: "Ed25519" }), "TOKEN_INVALID");
    });

    it("a tampered payload or header under a genuine signature", async () => {
      const [h, p, s] = parts(await ours.sign(claims()));
      const c = JSON.parse(Buffer.from(p, "base64url").toString()) as JWTPayload;
      await expectCode(`${h}.${b64url({ ...c, sub: "admin" })}.${s}`, "TOKEN_INVALID");
      await expectCode(`${h}.${b64url({ ...c, exp: c.exp! + 86_400 })}.${s}`, "TOKEN_INVALID");
      await expectCode(`${b64url({ alg: "EdDSA", typ: "at+jwt", kid: ours.kid, x: 1 })}.${p}.${s}`, "TOKEN_INVALID");
    });

    it("an empty, truncated, swapped or garbage signature", async () => {
      const [h, p, s] = parts(await ours.sign(claims()));
      const other = parts(await ours.sign(claims({ sub: "someone-else" })))[2];
      await expectCode(`${h}.${p}.`, "TOKEN_INVALID");
      await expectCode(`${h}.${p}.${s.slice(0, -4)}`, "TOKEN_INVALID");
      await expectCode(`${h}.${p}.${s.slice(0, 10)}`, "TOKEN_INVALID");
      await expectCode(`${h}.${p}.${other}`, "TOKEN_INVALID");
      await expectCode(`${h}.${p}.${"A".repeat(86)}`, "TOKEN_INVALID");
      await expectCode(`${h}.${p}`, "TOKEN_MALFORMED");
      await expectCode(`${h}.${p}.!!!not-base64url!!!`, "TOKEN_MALFORMED");
    });

    it.each([
      ["an unknown kid", "not-a-kid-we-have"],
      ["a path-traversal kid", "../../../../dev/null"],
      ["an SQL-injection kid", "' OR 1=1 --"],
      ["a URL kid", "https://attacker.example/key.json"],
      ["a prototype kid", "__proto__"],
      ["a constructor kid", "constructor"],
      ["a NUL kid", "k\u0000id"],
      ["a huge kid", "k".repeat(5_000)],
    ])("%s, even when signed by our key", async (_what, kid) => {
      await expectCode(await ours.sign(claims(), { kid }), "TOKEN_INVALID");
    });

    it("no kid, an empty kid, or a non-string kid", async () => {
      await expectCode(await new SignJWT(claims()).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt" }).sign(ours.privateKey), "TOKEN_INVALID");
      await expectCode(await ours.sign(claims(), { kid: "" }), "TOKEN_INVALID");
      await expectCode(ours.signRaw({ alg: "EdDSA", typ: "at+jwt", kid: 123 }, claims()), "TOKEN_INVALID");
      await expectCode(ours.signRaw({ alg: "EdDSA", typ: "at+jwt", kid: [ours.kid] }, claims()), "TOKEN_INVALID");
    });

    describe("keys named by the token itself", () => {
      const jku = "https://attacker.example/.well-known/jwks.json";
      it.each([
        ["an embedded jwk, attacker's kid", () => attacker.sign(claims(), { kid: attacker.kid, jwk: attacker.publicJwk })],
        ["an embedded jwk, our kid", () => attacker.sign(claims(), { kid: ours.kid, jwk: attacker.publicJwk })],
        ["a jku, attacker's kid", () => attacker.sign(claims(), { kid: attacker.kid, jku })],
        ["a jku, our kid", () => attacker.sign(claims(), { kid: ours.kid, jku })],
        ["an x5u, our kid", () => attacker.sign(claims(), { kid: ours.kid, x5u: "https://attacker.example/cert.pem" })],
        ["an x5c, our kid", () => attacker.sign(claims(), { kid: ours.kid, x5c: ["MIIB"] })],
        ["another Ed25519 key under our kid", () => attacker.sign(claims(), { kid: ours.kid })],
      ])("%s", async (_what, make) => {
        await expectCode(await make(), "TOKEN_INVALID");
      });

      it("a jku/jwk header is refused even when our key signed the token", async () => {
        await expectCode(await ours.sign(claims(), { jku }), "TOKEN_INVALID");
        await expectCode(await ours.sign(claims(), { jwk: ours.publicJwk }), "TOKEN_INVALID");
      });
    });

    it.each([
      ["wrong iss", { iss: "urn:someone-else" }],
      ["wrong aud", { aud: "urn:another-service" }],
      ["aud list without ours", { aud: ["urn:a", "urn:b"] }],
      ["nbf in the future beyond the leeway", { nbf: nowS + 60 }],
      ["iat in the future beyond the leeway", { iat: nowS + 60 }],
    ])("%s", async (_what, overrides) => {
      await expectCode(await ours.sign(claims(overrides)), "TOKEN_INVALID");
    });

    it("expired beyond the leeway", async () => {
      await expectCode(await ours.sign(claims({ iat: nowS - 3_600, exp: nowS - 6 })), "TOKEN_EXPIRED");
    });

    it("expired and badly signed is invalid, not expired (the signature comes first)", async () => {
      await expectCode(await attacker.sign(claims({ iat: nowS - 3_600, exp: nowS - 6 }), { kid: ours.kid }), "TOKEN_INVALID");
    });

    it.each([
      ['typ "JWT"', { typ: "JWT" }],
      ['typ "jwt"', { typ: "jwt" }],
      ['typ "at+JWT "', { typ: "at+JWT " }],
      ["no typ", { typ: undefined }],
    ])("%s: an ID token or other JWT replayed as an access token", async (_what, header) => {
      await expectCode(await ours.sign(claims(), header), "TOKEN_INVALID");
    });

    it.each(["exp", "sid", "sub", "jti", "iat", "iss", "aud"])("missing %s", async (claim) => {
      const c = claims();
      delete c[claim];
      await expectCode(await ours.sign(c), "TOKEN_INVALID");
    });

    it.each([
      ["sid", 123],
      ["sid", ""],
      ["sid", "with space"],
      ["sub", { id: 1 }],
      ["sub", ""],
      ["jti", 7],
      ["exp", "tomorrow"],
      ["iat", "today"],
    ])("%s of the wrong type or empty (%j)", async (claim, value) => {
      await expectCode(await ours.sign(claims({ [claim]: value })), "TOKEN_INVALID");
    });

    it("an unknown critical header", async () => {
      const header = { alg: "EdDSA", typ: "at+jwt", kid: ours.kid };
      await expect(verify(ours.signRaw(header, claims()))).resolves.toBeDefined(); // control
      await expectCode(ours.signRaw({ ...header, crit: ["x-must-understand"], "x-must-understand": true }, claims()), "TOKEN_INVALID");
    });

    it("a payload that is not a JSON object", async () => {
      const header = { alg: "EdDSA", typ: "at+jwt", kid: ours.kid };
      await expectCode(ours.signRaw(header, [claims()]), "TOKEN_MALFORMED");
      await expectCode(ours.signRaw(header, "just a string"), "TOKEN_MALFORMED");
    });

    it.each(["", "a", "a.b", "a.b.c", "a.b.c.d.e", "....", "not a jwt", "eyJhbGciOiJFZERTQSJ9", "x".repeat(100_000), "é.é.é"])(
      "garbage token %#",
      async (token) => {
        await expectCode(token, "TOKEN_MALFORMED");
      },
    );

    it("non-string input", async () => {
      for (const value of [undefined, null, 42, {}, ["a.b.c"]]) expect(await codeOf(verify(value as never))).toBe("TOKEN_MALFORMED");
    });
  });

  it("a flood of unknown kids costs at most one JWKS fetch per unknownKidRefetchIntervalMs", async () => {
    const flood = await Promise.all(Array.from({ length: 50 }, () => ours.sign(claims(), { kid: randomUUID() })));
    // Just loaded: the whole flood, concurrent and sequential, costs nothing.
    const before = jwks.hits;
    await Promise.all(flood.map(async (t) => expect(await codeOf(verify(t))).toBe("TOKEN_INVALID")));
    for (const t of flood) expect(await codeOf(verify(t))).toBe("TOKEN_INVALID");
    expect(jwks.hits).toBe(before);

    // One interval later: one fetch for the whole concurrent flood...
    clock += 60_000;
    await Promise.all(flood.map(async (t) => expect(await codeOf(verify(t))).toBe("TOKEN_INVALID")));
    expect(jwks.hits).toBe(before + 1);
    // ...and none for the rest of that interval.
    clock += 59_000;
    for (const t of flood) expect(await codeOf(verify(t))).toBe("TOKEN_INVALID");
    expect(jwks.hits).toBe(before + 1);
    clock += 1_000;
    for (const t of flood) expect(await codeOf(verify(t))).toBe("TOKEN_INVALID");
    expect(jwks.hits).toBe(before + 2);
    // Genuine tokens were never affected.
    await expect(verify(await ours.sign(claimsAt(clock / 1000)))).resolves.toBeDefined();
  });
});
