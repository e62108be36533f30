import * as grpc from "@grpc/grpc-js";
import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { isUuid } from "../../src/shared/uuid.js";
import { auditEvents, users } from "../../src/storage/schema.js";
import { bearerMd, grpcJsClient, rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { login, registerUser, userWithSession } from "../support/users.js";
import { createVerifier, type Verifier } from "@platform/identity-verifier";

// Attacks from the security review, over the network against a started
// server: other spellings of a signed token, a second account for one
// mailbox, a lock planted on an address before its owner signs up, forged
// request ids, and bidi tricks in profile text.

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** The 15 other spellings of a token's signature: the unused low bits of its last character set. */
function flippedSpellings(token: string): string[] {
  const last = B64URL.indexOf(token.at(-1)!);
  expect(last & 0x0f).toBe(0);
  return Array.from({ length: 15 }, (_, i) => `${token.slice(0, -1)}${B64URL[last | (i + 1)]}`);
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`review hardening, attacked over the network (${backend.name})`, () => {
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      s = await startTestServer(backend.name, { env: { BRUTE_FORCE_LOCKOUT: "10", BRUTE_FORCE_BASE_DELAY: "0" } });
      g = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    describe("token spellings", () => {
      let verifier: Verifier;
      beforeAll(async () => {
        verifier = createVerifier({ jwksUrl: `${s.baseUrl}/.well-known/jwks.json`, issuer: s.config.jwt.issuer, audience: s.config.jwt.audience });
        await verifier.ready();
      });
      afterAll(() => verifier?.close());

      it("a signature with its unused bits flipped is refused by the service (REST, cookie, gRPC, introspection) and by the library", async () => {
        const u = await userWithSession(s);
        // The genuine token works everywhere (and is now cached as verified).
        expect((await rest(s.baseUrl, "GET", "/user/profile", { token: u.accessToken })).status).toBe(200);
        await expect(verifier.verify(u.accessToken)).resolves.toMatchObject({ sessionId: u.sessionId });
        const variants = flippedSpellings(u.accessToken);
        for (const token of variants) {
          expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { token }), 401, "TOKEN_INVALID");
          expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { cookie: `access_token=${token}` }), 401, "TOKEN_INVALID");
          expect((await rest(s.baseUrl, "POST", "/token/verify", { body: { access_token: token } })).body).toEqual({ active: false });
          await expectGrpcError(g.getProfile({}, bearerMd(token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
          await expect(verifier.verify(token)).rejects.toMatchObject({ code: "TOKEN_INVALID" });
        }
        // None of them could log the session out either.
        expectRestError(await rest(s.baseUrl, "POST", "/logout", { token: variants[0] }), 401, "TOKEN_INVALID");
        expect((await rest(s.baseUrl, "POST", "/token/verify", { body: { access_token: u.accessToken } })).body.active).toBe(true);
      });
    });

    describe("one mailbox, one account", () => {
      it('"alice"@… is refused beside alice@… (REST and gRPC), and its login does not reach alice', async () => {
        const alice = await registerUser(s);
        const [local, domain] = alice.email.split("@") as [string, string];
        const quoted = `"${local}"@${domain}`;
        expectRestError(await rest(s.baseUrl, "POST", "/register", { body: { account: { email: quoted, password: STRONG_PASSWORD } } }), 400, "VALIDATION_FAILED");
        await expectGrpcError(g.register({ account: { email: quoted, password: STRONG_PASSWORD } }), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
        expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: quoted, password: alice.password } }), 401, "INVALID_CREDENTIALS");
        const rows = await s.app.database.db.select({ id: users.id }).from(users).where(sql`${users.email} like ${`%${local}%`}`);
        expect(rows).toHaveLength(1);
      });

      it.each(['"bob"@example.com', '"b o b"@example.com', "a<b@example.com", "a(comment)b@example.com", "a;b@example.com", "a\\b@example.com", "a..b@example.com", ".ab@example.com"])(
        "refuses %s with VALIDATION_FAILED",
        async (email) => {
          expectRestError(await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } }), 400, "VALIDATION_FAILED");
        },
      );
    });

    describe("a lock planted before the owner signs up", () => {
      it("failed logins lock an address without an account; registering it clears the lock and the owner logs in at once", async () => {
        const email = uniqueEmail("planted");
        for (let i = 0; i < 10; i++) {
          expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email, password: `guess ${i}` } }), 401, "INVALID_CREDENTIALS");
        }
        // The address is locked now: the next attempt is refused as locked (audited with our request id).
        const refused = await rest(s.baseUrl, "POST", "/login", { body: { email, password: "guess 11" } });
        expectRestError(refused, 401, "INVALID_CREDENTIALS");
        const [throttled] = await s.app.database.db
          .select({ reason: auditEvents.reason })
          .from(auditEvents)
          .where(and(eq(auditEvents.requestId, refused.headers.get("x-request-id")!), eq(auditEvents.eventType, "login_throttled")));
        expect(throttled?.reason).toBe("account_locked");

        await registerUser(s, { email });
        const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD } });
        expect(r.status, r.text).toBe(201);
      });

      it("a failed registration of a taken address does not clear that account's lock", async () => {
        const victim = await registerUser(s);
        for (let i = 0; i < 10; i++) await rest(s.baseUrl, "POST", "/login", { body: { email: victim.email, password: `guess ${i}` } });
        expectRestError(await rest(s.baseUrl, "POST", "/register", { body: { account: { email: victim.email, password: STRONG_PASSWORD } } }), 409, "EMAIL_ALREADY_REGISTERED");
        expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: victim.email, password: victim.password } }), 401, "INVALID_CREDENTIALS");
      });
    });

    describe("request ids", () => {
      const auditOf = (requestId: string) => s.app.database.db.select().from(auditEvents).where(eq(auditEvents.requestId, requestId));

      it("a client's X-Request-Id never becomes ours: REST answers and audits our own id, the client's beside it", async () => {
        const forged = `forged-${Date.now()}`;
        const email = uniqueEmail("rid");
        const a = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } }, headers: { "x-request-id": forged } });
        const b = await rest(s.baseUrl, "POST", "/login", { body: { email, password: "wrong password 1" }, headers: { "x-request-id": forged } });
        const [ridA, ridB] = [a.headers.get("x-request-id")!, b.headers.get("x-request-id")!];
        expect(isUuid(ridA) && isUuid(ridB)).toBe(true);
        expect(ridA).not.toBe(ridB); // the same client id twice: two requests of ours
        expect(await auditOf(forged)).toEqual([]);
        expect(await auditOf(ridA)).toEqual([expect.objectContaining({ eventType: "register", details: { client_request_id: forged } })]);
        expect(await auditOf(ridB)).toEqual([expect.objectContaining({ eventType: "login", reason: "INVALID_CREDENTIALS", details: { client_request_id: forged } })]);
      });

      it("gRPC too; an insane client id is dropped, not recorded", async () => {
        const err = await grpcFailure(g.login({ email: uniqueEmail("rid"), password: "wrong password 2" }, { "x-request-id": "grpc-client-1" }));
        const ours = String(err.metadata.get("x-request-id")[0]);
        expect(isUuid(ours)).toBe(true);
        expect(await auditOf(ours)).toEqual([expect.objectContaining({ details: { client_request_id: "grpc-client-1" } })]);
        for (const insane of ["a b", "x".repeat(65), "id;drop", "100%", "<script>"]) {
          const r = await rest(s.baseUrl, "POST", "/login", { body: { email: uniqueEmail("rid"), password: "wrong password 3" }, headers: { "x-request-id": insane } });
          const rows = await auditOf(r.headers.get("x-request-id")!);
          expect(rows).toHaveLength(1);
          expect(rows[0]!.details).toBeNull();
        }
      });
    });

    it("profile text: bidi overrides and line separators never reach the stored name or address", async () => {
      const u = await userWithSession(s);
      const r = await rest(s.baseUrl, "PUT", "/user/profile", {
        token: u.accessToken,
        body: { info_user: { name: "Mallory\u202Egnp.exe\u2066", address: "1 Main St\u2028Springfield\u200F" } },
      });
      expect(r.status, r.text).toBe(200);
      expect(r.body.user.info_user).toMatchObject({ name: "Mallorygnp.exe", address: "1 Main St Springfield" });
      const again = await login(s, u.email, u.password);
      const read = await rest(s.baseUrl, "GET", "/user/profile", { token: again.accessToken });
      expect(read.body.user.info_user).toMatchObject({ name: "Mallorygnp.exe", address: "1 Main St Springfield" });
    });
  });
}
