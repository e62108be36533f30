import { createPrivateKey, createPublicKey, sign as cryptoSign } from "node:crypto";
import { createServer, type Server } from "node:http";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { createKeyStore } from "../../src/storage/key-store.js";
import { signingKeys, users } from "../../src/storage/schema.js";
import { bearer, bearerMd, connectClient, grpcJsClient, rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { setCookieOf } from "../support/cookies.js";
import { backends } from "../support/databases.js";
import { errorReason, expect4xx, expectConnectError, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import { closeServer, listenLocal } from "../support/local-http.js";
import { testBox } from "../support/keys.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { login, registerUser, userWithSession } from "../support/users.js";

// The black-box attack catalogue (security checklist, section K) as far as
// this service's surface reaches: forged and confused JWTs, replay after
// logout, injection, CSRF-shaped requests, Unicode e-mail tricks, floods.

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

for (const backend of backends) {
  describe.skipIf(backend.skip)(`identity attacks (${backend.name})`, () => {
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let victim: Awaited<ReturnType<typeof userWithSession>>;

    beforeAll(async () => {
      s = await startTestServer(backend.name);
      g = grpcJsClient(IdentityService, s.port);
      victim = await userWithSession(s);
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    const profile = (token: string) => rest(s.baseUrl, "GET", "/user/profile", { token });

    /** A token must be refused as TOKEN_INVALID over REST (header and cookie) and gRPC. */
    async function expectRefused(name: string, token: string) {
      const r = await profile(token);
      expect({ name, status: r.status, reason: errorReason(r.body) }).toEqual({ name, status: 401, reason: "TOKEN_INVALID" });
      const rc = await rest(s.baseUrl, "GET", "/user/profile", { cookie: `access_token=${token}` });
      expect({ name, status: rc.status, reason: errorReason(rc.body) }).toEqual({ name, status: 401, reason: "TOKEN_INVALID" });
      const e = await grpcFailure(g.getProfile({}, bearerMd(token)));
      expect({ name, code: e.code, reason: errorReason(e) }).toEqual({ name, code: grpc.status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    }

    async function expectStillValid(token: string) {
      const r = await profile(token);
      expect(r.status, r.text).toBe(200);
    }

    describe("JWT: algorithm and key confusion", () => {
      it("alg none (none, None, NONE, nOnE), with and without the original signature → 401", async () => {
        const [, payload, sig] = victim.accessToken.split(".");
        for (const alg of ["none", "None", "NONE", "nOnE"]) {
          const header = b64({ alg, typ: "at+jwt" });
          await expectRefused(`${alg} unsigned`, `${header}.${payload}.`);
          await expectRefused(`${alg} with signature`, `${header}.${payload}.${sig}`);
        }
        await expectStillValid(victim.accessToken);
      });

      it("HS256/384/512 signed with the published public key (raw x, JWK JSON, PEM) → 401", async () => {
        const jwks = (await rest(s.baseUrl, "GET", "/.well-known/jwks.json")).body as { keys: JWK[] };
        const pub = jwks.keys[0]!;
        const pem = createPublicKey({ key: pub as never, format: "jwk" }).export({ type: "spki", format: "pem" }) as string;
        const claims = decodeJwt(victim.accessToken);
        const secrets: Record<string, Uint8Array> = {
          rawX: Buffer.from(pub.x!, "base64url"),
          xString: new TextEncoder().encode(pub.x!),
          jwkJson: new TextEncoder().encode(JSON.stringify(pub)),
          pem: new TextEncoder().encode(pem),
        };
        for (const alg of ["HS256", "HS384", "HS512"]) {
          for (const [name, secret] of Object.entries(secrets)) {
            const token = await new SignJWT(claims).setProtectedHeader({ alg, typ: "at+jwt", kid: pub.kid! }).sign(secret);
            await expectRefused(`${alg}/${name}`, token);
          }
        }
      });

      it("other algorithms in the header, ES256 r=s=0, blank and null signatures → 401; the original stays valid", async () => {
        const [header, payload] = victim.accessToken.split(".") as [string, string];
        const kid = JSON.parse(Buffer.from(header, "base64url").toString()).kid as string;
        const zeros = Buffer.alloc(64).toString("base64url");
        await expectRefused("ES256 r=s=0", `${b64({ alg: "ES256", typ: "at+jwt", kid })}.${payload}.${zeros}`);
        await expectRefused("RS256 header", `${b64({ alg: "RS256", typ: "at+jwt", kid })}.${payload}.${zeros}`);
        await expectRefused("Ed25519 alg name", `${b64({ alg: "Ed25519", typ: "at+jwt", kid })}.${payload}.${zeros}`);
        await expectRefused("EdDSA null signature", `${header}.${payload}.${zeros}`);
        await expectRefused("EdDSA blank signature", `${header}.${payload}.`);
        await expectRefused("EdDSA short signature", `${header}.${payload}.AAAA`);
        await expectRefused("two parts", `${header}.${payload}`);
        await expectRefused("JWE-shaped", `${header}.${payload}.a.b.c`);
        await expectStillValid(victim.accessToken);
      });

      it("an attacker's own key: inline jwk, jku and x5u pointing at an attacker JWKS → 401 and no outbound fetch", async () => {
        const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
        const attackerJwk = { ...(await exportJWK(publicKey)), alg: "EdDSA", use: "sig" };
        const attackerKid = await calculateJwkThumbprint(attackerJwk);
        const realKid = JSON.parse(Buffer.from(victim.accessToken.split(".")[0]!, "base64url").toString()).kid as string;
        let hits = 0;
        const evil: Server = createServer((_req, res) => {
          hits++;
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ keys: [{ ...attackerJwk, kid: realKid }] }));
        });
        const url = `${await listenLocal(evil)}/jwks.json`;
        try {
          const claims = decodeJwt(victim.accessToken);
          const sign = (header: Record<string, unknown>) =>
            new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", ...header }).sign(privateKey);
          await expectRefused("jwk + attacker kid", await sign({ kid: attackerKid, jwk: attackerJwk }));
          await expectRefused("jwk + real kid", await sign({ kid: realKid, jwk: attackerJwk }));
          await expectRefused("jku + real kid", await sign({ kid: realKid, jku: url }));
          await expectRefused("jku + attacker kid", await sign({ kid: attackerKid, jku: url }));
          await expectRefused("x5u", await sign({ kid: realKid, x5u: url }));
          await expectRefused("no kid", await sign({}));
          expect(hits).toBe(0);
        } finally {
          await closeServer(evil);
        }
      });

      it("kid injection (blank, traversal, /dev/null, SQL, shell) → 401, no 500, no delay", { timeout: 10_000 }, async () => {
        const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
        const claims = decodeJwt(victim.accessToken);
        for (const kid of [
          "",
          " ",
          "../../../../../../dev/null",
          "/dev/null",
          "' OR '1'='1",
          "x'; SELECT pg_sleep(20); --",
          "x\"; DROP TABLE signing_keys; --",
          "`sleep 20`",
          "$(sleep 20)",
          "|sleep 20",
          "k".repeat(4000),
          "\u0000",
        ]) {
          const token = await new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", typ: "at+jwt", kid }).sign(privateKey);
          await expectRefused(`kid ${JSON.stringify(kid.slice(0, 30))}`, token);
        }
        // kid of a non-string type
        const [, payload] = victim.accessToken.split(".");
        await expectRefused("kid number", `${b64({ alg: "EdDSA", typ: "at+jwt", kid: 1 })}.${payload}.${Buffer.alloc(64).toString("base64url")}`);
        await expectRefused("kid object", `${b64({ alg: "EdDSA", typ: "at+jwt", kid: { $ne: 1 } })}.${payload}.${Buffer.alloc(64).toString("base64url")}`);
        // The signing keys survived.
        expect(await s.app.database.db.select({ kid: signingKeys.kid }).from(signingKeys)).toHaveLength(1);
        await expectStillValid(victim.accessToken);
      });
    });

    describe("JWT: claims checked even under a genuine signature (grey-box: the service's own key)", () => {
      let sign: (claims: JWTPayload, header?: Record<string, unknown>) => Promise<string>;
      let base: JWTPayload;

      beforeAll(async () => {
        // The grey box holds the key-encryption key too: the private key is sealed in the row.
        const [row] = await createKeyStore(s.app.database.db, testBox()).listUsable(new Date());
        // Signed by hand (not SignJWT) so that headers a library would refuse to emit can be tried too.
        const key = createPrivateKey({ key: row!.privateJwk as never, format: "jwk" });
        sign = async (claims, header = {}) => {
          const input = `${b64({ alg: "EdDSA", typ: "at+jwt", kid: row!.kid, ...header })}.${b64(claims)}`;
          return `${input}.${cryptoSign(null, Buffer.from(input), key).toString("base64url")}`;
        };
        base = decodeJwt(victim.accessToken);
      });

      const now = () => Math.floor(Date.now() / 1000);
      const without = (claims: JWTPayload, name: string) => Object.fromEntries(Object.entries(claims).filter(([k]) => k !== name));

      it("control: a token forged with the real key and valid claims is accepted (the cases below reach the claim checks)", async () => {
        await expectStillValid(await sign({ ...base, jti: crypto.randomUUID(), iat: now(), exp: now() + 600 }));
      });

      it("expired, not yet valid, or missing exp/iat/sub/sid/jti → 401", async () => {
        const fresh = { ...base, iat: now(), exp: now() + 600 };
        await expectRefused("expired", await sign({ ...fresh, iat: now() - 1000, exp: now() - 60 }));
        await expectRefused("nbf in the future", await sign({ ...fresh, nbf: now() + 600 }));
        await expectRefused("issued in the future", await sign({ ...fresh, iat: now() + 600, exp: now() + 1200 }));
        for (const claim of ["exp", "iat", "sub", "sid", "jti"]) {
          await expectRefused(`missing ${claim}`, await sign(without(fresh, claim)));
        }
      });

      it("wrong audience, wrong issuer, ID-token or other JWT types → 401", async () => {
        const fresh = { ...base, iat: now(), exp: now() + 600 };
        await expectRefused("wrong aud", await sign({ ...fresh, aud: "urn:some-other-service" }));
        await expectRefused("aud list without ours", await sign({ ...fresh, aud: ["a", "b"] }));
        await expectRefused("wrong iss", await sign({ ...fresh, iss: "https://evil.example.com" }));
        await expectRefused("typ JWT (an ID token)", await sign({ ...fresh, nonce: "n", azp: "client" }, { typ: "JWT" }));
        await expectRefused("typ refresh", await sign(fresh, { typ: "refresh+jwt" }));
        await expectRefused("no typ", await sign(fresh, { typ: undefined }));
        await expectRefused("crit header", await sign(fresh, { crit: ["exp"] }));
      });

      it("sub and sid that do not belong together, revoked or unknown sessions → 401", async () => {
        const fresh = { ...base, iat: now(), exp: now() + 600 };
        const other = await userWithSession(s);
        await expectRefused("other user's sub, own sid", await sign({ ...fresh, sub: other.userId }));
        await expectRefused("own sub, other user's sid", await sign({ ...fresh, sid: other.sessionId }));
        await expectRefused("unknown sid", await sign({ ...fresh, sid: crypto.randomUUID() }));
        await expectRefused("email as sub", await sign({ ...fresh, sub: victim.email }));
        const ended = await login(s, victim.email, victim.password);
        expect((await rest(s.baseUrl, "POST", "/logout", { token: ended.accessToken })).status).toBe(204);
        await expectRefused("revoked sid, fresh exp", await sign({ ...fresh, sid: ended.sessionId, exp: now() + 3000 }));
        await expectRefused("sid number", await sign({ ...fresh, sid: 42 }));
        await expectRefused("sub not a uuid", await sign({ ...fresh, sub: "' OR 1=1 --" }));
      });

      it("a refresh token used as an access token → 401 TOKEN_INVALID, and it still refreshes afterwards", async () => {
        const u = await userWithSession(s);
        await expectRefused("refresh token as bearer", u.refreshToken);
        expect((await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: u.refreshToken } })).status).toBe(200);
      });

      it("a sid that is not a UUID → 401 TOKEN_INVALID, never 500", async () => {
        const fresh = { ...base, iat: now(), exp: now() + 600 };
        for (const sid of ["not-a-uuid", "' OR 1=1 --", "", "0".repeat(1000)]) {
          await expectRefused(`sid ${JSON.stringify(sid.slice(0, 20))}`, await sign({ ...fresh, sid }));
        }
      });
    });

    describe("replay", () => {
      it("a revoked token and re-encoded (malleable) copies of it stay refused after logout", async () => {
        const u = await userWithSession(s);
        const [h, p, sig] = u.accessToken.split(".") as [string, string, string];
        expect((await rest(s.baseUrl, "POST", "/logout", { token: u.accessToken })).status).toBe(204);
        const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        // The last character of an 86-character Ed25519 signature carries 4 unused bits.
        const last = alphabet.indexOf(sig.at(-1)!);
        const sameBytes = sig.slice(0, -1) + alphabet[last ^ 1];
        expect(Buffer.from(sameBytes, "base64url").equals(Buffer.from(sig, "base64url"))).toBe(true);
        for (const [name, token] of Object.entries({
          original: u.accessToken,
          sameSignatureBytes: `${h}.${p}.${sameBytes}`,
          padded: `${h}.${p}.${sig}==`,
          standardBase64: `${h}.${p}.${Buffer.from(sig, "base64url").toString("base64")}`,
        })) {
          const r = await profile(token);
          expect({ name, status: r.status }).toEqual({ name, status: 401 });
          expect(errorReason(r.body)).toBe("TOKEN_INVALID");
        }
      });

      it("a token is not accepted from the query string", async () => {
        const r = await rest(s.baseUrl, "GET", `/user/profile?access_token=${victim.accessToken}`);
        expect4xx(r);
        expect(r.status).not.toBe(200);
      });
    });

    describe("injection", () => {
      it("SQL metacharacters in e-mail and password: 4xx (REST and gRPC), the tables intact", async () => {
        for (const email of ["' OR 1=1 --", '"; DROP TABLE users; --', "x@example.com' OR '1'='1", "a@b.com; DELETE FROM users"]) {
          const reg = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } });
          expectRestError(reg, 400, "VALIDATION_FAILED");
          await expectGrpcError(g.register({ account: { email, password: STRONG_PASSWORD } }), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
          const log = await rest(s.baseUrl, "POST", "/login", { body: { email, password: "' OR 1=1 --" } });
          expectRestError(log, 401, "INVALID_CREDENTIALS");
          await expectGrpcError(g.login({ email, password: "' OR 1=1 --" }), grpc.status.UNAUTHENTICATED, "INVALID_CREDENTIALS");
        }
        for (const password of ["' OR 1=1 --", '"; DROP TABLE users; --', "' OR ''='"]) {
          expectRestError(
            await rest(s.baseUrl, "POST", "/login", { body: { email: victim.email, password } }),
            401,
            "INVALID_CREDENTIALS",
          );
        }
        // A password made of SQL is just a password.
        const sqlPassword = '"; DROP TABLE users; -- \' OR 1=1 --';
        const u = await registerUser(s, { email: uniqueEmail("sqlpw"), password: sqlPassword });
        expect((await login(s, u.email, sqlPassword)).userId).toBe(u.userId);
        expect((await login(s, victim.email, victim.password)).userId).toBe(victim.userId);
        expect((await s.app.database.db.select({ id: users.id }).from(users)).length).toBeGreaterThanOrEqual(2);
      });

      it("quotes in a valid e-mail are stored literally and match only themselves", async () => {
        const admin = await registerUser(s, { email: uniqueEmail("admin") });
        const local = admin.email.split("@")[0]!;
        const quoted = `${local}'--@example.com`;
        expectRestError(
          await rest(s.baseUrl, "POST", "/login", { body: { email: quoted, password: admin.password } }),
          401,
          "INVALID_CREDENTIALS",
        );
        const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: "o'brien.sql@example.com", password: STRONG_PASSWORD } } });
        expect(r.status, r.text).toBe(201);
        expect(r.body.user.email).toBe("o'brien.sql@example.com");
        expect((await login(s, "o'brien.sql@example.com", STRONG_PASSWORD)).userId).toBe(r.body.user.user_id);
      });

      it("SQL in a name is stored and returned literally (REST and gRPC)", async () => {
        const names = ["Robert'); DROP TABLE users;--", '"; DROP TABLE users; --', "' OR 1=1 --", "\\'; SELECT pg_sleep(5); --"];
        const u = await userWithSession(s);
        for (const name of names) {
          const r = await rest(s.baseUrl, "PUT", "/user/profile", { token: u.accessToken, body: { info_user: { name } } });
          expect(r.status, r.text).toBe(200);
          expect((await profile(u.accessToken)).body.user.info_user.name).toBe(name);
        }
        const viaGrpc = await g.register({ account: { email: uniqueEmail(), password: STRONG_PASSWORD }, infoUser: { name: names[0]!, address: names[1]! } });
        expect(viaGrpc.user?.infoUser).toMatchObject({ name: names[0], address: names[1] });
        // The users table survived all of that: the victim still logs in.
        expect((await login(s, victim.email, victim.password)).userId).toBe(victim.userId);
      });
    });

    describe("Unicode e-mail tricks", () => {
      it("homoglyphs and case-folding characters are refused at registration (REST and gRPC)", async () => {
        for (const email of [
          "ngoc.phu@exаmple.com", // Cyrillic а
          "\u212Aelvin@example.com", // Kelvin sign
          "adm\u0131n@example.com", // dotless ı
          "\u017Fam@example.com", // long s
          "stra\u00DFe@example.com", // ß
          "user\uFF20example.com", // full-width @
          "user@example.com\u200B", // zero-width space
        ]) {
          const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } });
          expect({ email, status: r.status, reason: errorReason(r.body) }).toEqual({ email, status: 400, reason: "VALIDATION_FAILED" });
          await expectGrpcError(g.register({ account: { email, password: STRONG_PASSWORD } }), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
        }
      });

      it("a non-ASCII spelling (Kelvin sign K, U+212A) does not log in to the ASCII account", async () => {
        const user = await registerUser(s, { email: uniqueEmail("kelvin") });
        const spoofed = user.email.replace(/^k/, "\u212A");
        expect(spoofed).not.toBe(user.email);
        expect(spoofed.toLowerCase()).toBe(user.email); // what makes it dangerous
        expectRestError(
          await rest(s.baseUrl, "POST", "/login", { body: { email: spoofed, password: user.password } }),
          401,
          "INVALID_CREDENTIALS",
        );
      });
    });

    describe("cookies and CSRF-shaped requests", () => {
      it("cookie-authenticated writes with a form or text/plain body → 415, nothing changes", async () => {
        const u = await userWithSession(s, { info: { address: "Before" } });
        const cookie = `access_token=${u.accessToken}`;
        for (const [ct, raw] of [
          ["application/x-www-form-urlencoded", "info_user.address=Hacked"],
          ["text/plain", JSON.stringify({ info_user: { address: "Hacked" } })],
          ["multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--'],
        ] as const) {
          const r = await rest(s.baseUrl, "PUT", "/user/profile", { cookie, raw, headers: { "content-type": ct } });
          expect({ ct, status: r.status }).toEqual({ ct, status: 415 });
          const pw = await rest(s.baseUrl, "PUT", "/user/password", {
            cookie,
            raw: JSON.stringify({ old_password: u.password, new_password: "brand new pass 99" }),
            headers: { "content-type": ct },
          });
          expect({ ct, status: pw.status }).toEqual({ ct, status: 415 });
        }
        expect((await profile(u.accessToken)).body.user.info_user.address).toBe("Before");
        // Nor did the password change.
        expect((await login(s, u.email, u.password)).userId).toBe(u.userId);
      });

      it("a pre-set (fixated) cookie is replaced by a fresh token for the real user at login", async () => {
        const attacker = await userWithSession(s);
        const target = await registerUser(s);
        const r = await rest(s.baseUrl, "POST", "/login", {
          cookie: `access_token=${attacker.accessToken}`,
          body: { email: target.email, password: target.password },
        });
        expect(r.status).toBe(201);
        const cookie = setCookieOf(r, "access_token");
        expect(cookie?.value).not.toBe(attacker.accessToken);
        expect(decodeJwt(cookie!.value).sub).toBe(target.userId);
      });

      it("an oversized Authorization header is refused with a 4xx", async () => {
        const r = await rest(s.baseUrl, "GET", "/user/profile", { headers: { authorization: `Bearer ${"a".repeat(20_000)}` } });
        expect4xx(r);
      });
    });

    describe("floods", () => {
      it("a login flood beyond the hashing queue degrades into RESOURCE_EXHAUSTED/OVERLOADED, never 500", async () => {
        // Distinct accounts: on one account the progressive delay would
        // answer most attempts before they reach the hashing queue.
        const tight = await startTestServer(backend.name, {
          env: { HASH_CONCURRENCY: "1", HASH_QUEUE_MAX: "1" },
          overrides: { database: s.app.database },
        });
        const gt = grpcJsClient(IdentityService, tight.port);
        try {
          const attempts = Array.from({ length: 32 }, (_, i) =>
            i % 2 === 0
              ? rest(tight.baseUrl, "POST", "/login", { body: { email: `flood${i}.${victim.email}`, password: `wrong password ${i}` } }).then((r) => ({
                  kind: "rest" as const,
                  status: r.status,
                  reason: errorReason(r.body),
                }))
              : grpcFailure(gt.login({ email: `flood${i}.${victim.email}`, password: `wrong password ${i}` })).then((e) => ({
                  kind: "grpc" as const,
                  status: e.code,
                  reason: errorReason(e),
                })),
          );
          const results = await Promise.all(attempts);
          for (const r of results) {
            if (r.kind === "rest") expect([401, 429, 503]).toContain(r.status);
            else expect([grpc.status.UNAUTHENTICATED, grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNAVAILABLE]).toContain(r.status);
            expect(["INVALID_CREDENTIALS", "OVERLOADED"]).toContain(r.reason);
          }
          expect(results.some((r) => r.reason === "OVERLOADED")).toBe(true);
          expect(results.some((r) => r.reason === "INVALID_CREDENTIALS")).toBe(true);
          // And the service recovers at once.
          expect((await login(tight, victim.email, victim.password)).userId).toBe(victim.userId);
          await expectConnectError(
            connectClient(tight.baseUrl).login({ email: victim.email, password: "still wrong pass" }),
            Code.Unauthenticated,
            "INVALID_CREDENTIALS",
          );
        } finally {
          gt.close();
          await tight.destroy();
        }
      });

      it("the same attack over REST, gRPC and Connect gives the same outcome", async () => {
        const forged = `${b64({ alg: "none" })}.${victim.accessToken.split(".")[1]}.`;
        expectRestError(await profile(forged), 401, "TOKEN_INVALID");
        await expectGrpcError(g.getProfile({}, bearerMd(forged)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
          await expectConnectError(connectClient(s.baseUrl, protocol).getProfile({}, bearer(forged)), Code.Unauthenticated, "TOKEN_INVALID");
        }
      });
    });
  });
}
