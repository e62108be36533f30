import * as grpc from "@grpc/grpc-js";
import { decodeJwt } from "jose";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService, Role } from "../../gen/identity/v1/identity_service_pb.js";
import { setRole } from "../../src/cli/set-role.js";
import { auditEvents, sessions as sessionsTable } from "../../src/storage/schema.js";
import { createUserStore } from "../../src/storage/user-store.js";
import { bearer, bearerMd, connectClient, grpcJsClient, rest, uniqueEmail } from "../support/clients.js";
import { auditRows } from "../support/audit.js";
import { backends } from "../support/databases.js";
import { errorReason, expectConnectError, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { enrolTotp, registerUser, type SeededUser } from "../support/users.js";

// Issue 3, items 1–3 and VerifyToken: the refresh grace window, the user's
// own session control (list, revoke one, revoke the others), lifetimes by
// role with the per-account session cap, and token introspection.
//
// SESSION_CACHE_TTL is 0 here so that every check asks the database; the
// revocations below go through the same instance anyway, which drops its
// own cache entries.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

interface Pair {
  access_token: string;
  refresh_token: string;
  session_id: string;
  expires_in: number;
  refresh_token_expire_time: string;
}

/**
 * Makes the user an admin the way an operator does: the user turns TOTP on,
 * then the set-role command (PostgreSQL) or the store it calls (PGlite,
 * single-process) promotes them. Returns the recovery codes, which the
 * tests log in with (a TOTP code would depend on the time step).
 */
async function makeAdmin(s: TestServer, user: SeededUser, at: Date = new Date()): Promise<string[]> {
  const email = user.email;
  const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password: user.password } });
  expect(r.status, r.text).toBe(201);
  const { recoveryCodes } = await enrolTotp(s, r.body.access_token, user.password, at);
  const db = s.config.database;
  if (db.kind === "postgres") {
    const result = await setRole([email, "admin"], { DATABASE_URL: db.url, LOG_LEVEL: "silent" });
    expect(result, result.message).toMatchObject({ exitCode: 0 });
  } else {
    expect(await createUserStore(s.app.database.db).setRole(email, "admin", new Date())).toBeTruthy();
  }
  return recoveryCodes;
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`identity session control (${backend.name})`, () => {
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let gi: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let c: ReturnType<typeof connectClient>;

    beforeAll(async () => {
      s = await startTestServer(backend.name, { env: { SESSION_CACHE_TTL: "0" } });
      g = grpcJsClient(IdentityService, s.port);
      gi = grpcJsClient(IdentityService, s.grpcPort);
      c = connectClient(s.baseUrl, "connect");
    });
    afterAll(async () => {
      g?.close();
      gi?.close();
      await s?.destroy();
    });

    const loginAs = async (srv: TestServer, user: SeededUser, userAgent = "session-control-test/1.0", recoveryCode?: string): Promise<Pair> => {
      const r = await rest(srv.baseUrl, "POST", "/login", {
        body: { email: user.email, password: user.password, ...(recoveryCode ? { recovery_code: recoveryCode } : {}) },
        headers: { "user-agent": userAgent },
      });
      expect(r.status, r.text).toBe(201);
      return r.body as Pair;
    };
    const profile = (srv: TestServer, token: string) => rest(srv.baseUrl, "GET", "/user/profile", { token });
    const refresh = (srv: TestServer, token: string) => rest(srv.baseUrl, "POST", "/token/refresh", { body: { refresh_token: token } });
    const list = (srv: TestServer, token: string, query = "") => rest(srv.baseUrl, "GET", `/user/sessions${query}`, { token });
    const revoke = (srv: TestServer, token: string, id: string) => rest(srv.baseUrl, "DELETE", `/user/sessions/${id}`, { token });
    const revokeOthers = (srv: TestServer, token: string) =>
      rest(srv.baseUrl, "POST", "/user/sessions:revokeOthers", { token, body: {} });
    const verify = (srv: TestServer, token: string) => rest(srv.baseUrl, "POST", "/token/verify", { body: { access_token: token } });

    describe("ListSessions", () => {
      it("REST: the caller's active sessions, newest first, with times, IP, user agent and which one is current", async () => {
        const user = await registerUser(s);
        const phone = await loginAs(s, user, "phone/1.0");
        const laptop = await loginAs(s, user, "laptop/2.0");
        const gone = await loginAs(s, user, "gone/3.0");
        expect((await rest(s.baseUrl, "POST", "/logout", { token: gone.access_token })).status).toBe(204);
        // Someone else's sessions never show up.
        await loginAs(s, await registerUser(s));

        const r = await list(s, phone.access_token);
        expect(r.status, r.text).toBe(200);
        expect(r.headers.get("cache-control")).toBe("no-store");
        expect(r.body.sessions.map((x: { session_id: string }) => x.session_id)).toEqual([laptop.session_id, phone.session_id]);
        const [l, p] = r.body.sessions;
        expect(p).toMatchObject({ session_id: phone.session_id, ip: "127.0.0.1", user_agent: "phone/1.0", current: true });
        expect(l).toMatchObject({ session_id: laptop.session_id, user_agent: "laptop/2.0" });
        expect(l.current ?? false).toBe(false);
        for (const x of r.body.sessions) {
          expect(Math.abs(Date.parse(x.create_time) - Date.now())).toBeLessThan(60_000);
          expect(Date.parse(x.last_used_time)).toBeGreaterThanOrEqual(Date.parse(x.create_time));
          expect(Date.parse(x.expire_time)).toBeGreaterThan(Date.now() + 29 * 24 * HOUR);
        }
        expect(r.body.next_page_token ?? "").toBe("");
      });

      it("last_used_time follows refreshes, and the session keeps its id", async () => {
        const user = await registerUser(s);
        const a = await loginAs(s, user);
        const before = (await list(s, a.access_token)).body.sessions[0];
        await new Promise((r) => setTimeout(r, 20));
        const next = await refresh(s, a.refresh_token);
        expect(next.status).toBe(200);
        const after = (await list(s, next.body.access_token)).body.sessions[0];
        expect(after.session_id).toBe(a.session_id);
        expect(Date.parse(after.last_used_time)).toBeGreaterThan(Date.parse(before.last_used_time));
        expect(after.create_time).toBe(before.create_time);
      });

      it("pages with page_size and opaque page tokens (AIP-158); a foreign token is 400", async () => {
        const user = await registerUser(s);
        const pairs: Pair[] = [];
        for (let i = 0; i < 3; i++) pairs.push(await loginAs(s, user));
        const token = pairs[0]!.access_token;
        const p1 = await list(s, token, "?page_size=2");
        expect(p1.status, p1.text).toBe(200);
        expect(p1.body.sessions).toHaveLength(2);
        expect(p1.body.next_page_token).toMatch(/^[A-Za-z0-9_-]{22}$/);
        const p2 = await list(s, token, `?page_size=2&page_token=${p1.body.next_page_token}`);
        expect(p2.body.sessions).toHaveLength(1);
        expect(p2.body.next_page_token ?? "").toBe("");
        const ids = [...p1.body.sessions, ...p2.body.sessions].map((x: { session_id: string }) => x.session_id);
        expect(ids).toEqual(pairs.map((p) => p.session_id).reverse());
        expectRestError(await list(s, token, "?page_token=not-a-token"), 400, "VALIDATION_FAILED");
        expectRestError(await list(s, token, "?page_size=-1"), 400, "VALIDATION_FAILED");
      });

      it("over gRPC (main port, internal grpc-js port) and Connect", async () => {
        const user = await registerUser(s);
        const a = await loginAs(s, user);
        const b = await loginAs(s, user);
        for (const client of [g, gi]) {
          const res = await client.listSessions({}, bearerMd(a.access_token));
          expect(res.sessions.map((x) => [x.sessionId, x.current])).toEqual([
            [b.session_id, false],
            [a.session_id, true],
          ]);
          expect(res.sessions[0]!.createTime).toBeDefined();
        }
        const viaConnect = await c.listSessions({ pageSize: 1 }, bearer(b.access_token));
        expect(viaConnect.sessions.map((x) => x.sessionId)).toEqual([b.session_id]);
        expect(viaConnect.sessions[0]!.current).toBe(true);
        expect(viaConnect.nextPageToken).not.toBe("");
      });

      it("needs a token: 401 TOKEN_MISSING on every session-control route", async () => {
        expectRestError(await rest(s.baseUrl, "GET", "/user/sessions"), 401, "TOKEN_MISSING");
        expectRestError(await rest(s.baseUrl, "DELETE", `/user/sessions/${crypto.randomUUID()}`), 401, "TOKEN_MISSING");
        expectRestError(await rest(s.baseUrl, "POST", "/user/sessions:revokeOthers", { body: {} }), 401, "TOKEN_MISSING");
        await expectGrpcError(g.listSessions({}), grpc.status.UNAUTHENTICATED, "TOKEN_MISSING");
      });
    });

    describe("RevokeSession", () => {
      it("REST: 204; that session's access and refresh tokens stop working at once, the others keep going; audited", async () => {
        const user = await registerUser(s);
        const a = await loginAs(s, user);
        const b = await loginAs(s, user);
        expect((await profile(s, b.access_token)).status).toBe(200);

        const r = await revoke(s, a.access_token, b.session_id);
        expect(r.status, r.text).toBe(204);
        expect(r.text).toBe("");
        expectRestError(await profile(s, b.access_token), 401, "TOKEN_INVALID");
        expectRestError(await refresh(s, b.refresh_token), 401, "REFRESH_TOKEN_INVALID");
        await expectGrpcError(g.getProfile({}, bearerMd(b.access_token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        await expectGrpcError(gi.getProfile({}, bearerMd(b.access_token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        expect((await profile(s, a.access_token)).status).toBe(200);
        expect((await list(s, a.access_token)).body.sessions.map((x: { session_id: string }) => x.session_id)).toEqual([a.session_id]);
        // Revoked twice: it is no longer an active session of the caller.
        expectRestError(await revoke(s, a.access_token, b.session_id), 404, "SESSION_NOT_FOUND");

        const db = s.app.database.db;
        const [row] = await db.select().from(sessionsTable).where(eq(sessionsTable.id, b.session_id));
        expect(row).toMatchObject({ revokeReason: "user_revoke" });
        expect(row!.revokedAt).toBeInstanceOf(Date);
        const events = await auditRows(s, "session_revoke", { sessionId: b.session_id });
        expect(events.map((e) => [e.outcome, e.reason, e.userId])).toEqual([
          ["success", "user_revoke", user.userId],
          ["failure", "SESSION_NOT_FOUND", user.userId],
        ]);
      });

      it("another user's session id, an unknown one and a malformed one: 404 SESSION_NOT_FOUND / 400, and nothing happens", async () => {
        const me = await loginAs(s, await registerUser(s));
        const victim = await loginAs(s, await registerUser(s));
        const theirs = await revoke(s, me.access_token, victim.session_id);
        const unknown = await revoke(s, me.access_token, crypto.randomUUID());
        expectRestError(theirs, 404, "SESSION_NOT_FOUND");
        expectRestError(unknown, 404, "SESSION_NOT_FOUND");
        // Indistinguishable: the same body for someone else's session as for none at all.
        expect(theirs.text).toBe(unknown.text);
        expect((await profile(s, victim.access_token)).status).toBe(200);
        expect((await refresh(s, victim.refresh_token)).status).toBe(200);
        expectRestError(await revoke(s, me.access_token, "not-a-uuid"), 400, "VALIDATION_FAILED");

        await expectGrpcError(g.revokeSession({ sessionId: victim.session_id }, bearerMd(me.access_token)), grpc.status.NOT_FOUND, "SESSION_NOT_FOUND");
        await expectGrpcError(gi.revokeSession({ sessionId: victim.session_id }, bearerMd(me.access_token)), grpc.status.NOT_FOUND, "SESSION_NOT_FOUND");
        await expectConnectError(c.revokeSession({ sessionId: victim.session_id }, bearer(me.access_token)), 5, "SESSION_NOT_FOUND");
        await expectGrpcError(g.revokeSession({ sessionId: "" }, bearerMd(me.access_token)), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
      });

      it("revoking the current session is a logout; an upper-case id works too (gRPC)", async () => {
        const user = await registerUser(s);
        const a = await loginAs(s, user);
        const b = await loginAs(s, user);
        await g.revokeSession({ sessionId: a.session_id.toUpperCase() }, bearerMd(b.access_token));
        expectRestError(await profile(s, a.access_token), 401, "TOKEN_INVALID");
        expect((await revoke(s, b.access_token, b.session_id)).status).toBe(204);
        expectRestError(await profile(s, b.access_token), 401, "TOKEN_INVALID");
        expectRestError(await list(s, b.access_token), 401, "TOKEN_INVALID");
      });
    });

    describe("RevokeOtherSessions", () => {
      it("REST: revokes every other active session and counts them; the current one and other users are untouched", async () => {
        const user = await registerUser(s);
        const me = await loginAs(s, user);
        const others = [await loginAs(s, user), await loginAs(s, user)];
        const ended = await loginAs(s, user);
        await revoke(s, me.access_token, ended.session_id);
        const stranger = await loginAs(s, await registerUser(s));

        const r = await revokeOthers(s, me.access_token);
        expect(r.status, r.text).toBe(200);
        expect(r.body).toEqual({ revoked_session_count: 2 });
        for (const o of others) {
          expectRestError(await profile(s, o.access_token), 401, "TOKEN_INVALID");
          expectRestError(await refresh(s, o.refresh_token), 401, "REFRESH_TOKEN_INVALID");
        }
        expect((await profile(s, me.access_token)).status).toBe(200);
        expect((await profile(s, stranger.access_token)).status).toBe(200);
        // Nothing left to revoke: 0 (omitted in proto3 JSON).
        expect((await revokeOthers(s, me.access_token)).body.revoked_session_count ?? 0).toBe(0);

        const events = await s.app.database.db
          .select()
          .from(auditEvents)
          .where(and(eq(auditEvents.userId, user.userId), eq(auditEvents.reason, "user_revoke_others")));
        expect(events.map((e) => e.sessionId).sort()).toEqual(others.map((o) => o.session_id).sort());
      });

      it("over the internal grpc-js port and Connect", async () => {
        const user = await registerUser(s);
        const me = await loginAs(s, user);
        const other = await loginAs(s, user);
        expect((await gi.revokeOtherSessions({}, bearerMd(me.access_token))).revokedSessionCount).toBe(1);
        await expectGrpcError(gi.getProfile({}, bearerMd(other.access_token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        const third = await loginAs(s, user);
        expect((await c.revokeOtherSessions({}, bearer(third.access_token))).revokedSessionCount).toBe(1);
        expectRestError(await profile(s, me.access_token), 401, "TOKEN_INVALID");
      });
    });

    describe("refresh rotation grace: concurrent refreshes", () => {
      it("2 truly concurrent refreshes with one token: exactly one pair, the other REFRESH_TOKEN_SUPERSEDED, the session survives", async () => {
        for (let round = 0; round < 5; round++) {
          const a = await loginAs(s, await registerUser(s));
          const results = await Promise.all([refresh(s, a.refresh_token), refresh(s, a.refresh_token)]);
          const ok = results.filter((r) => r.status === 200);
          const refused = results.filter((r) => r.status !== 200);
          expect(ok, results.map((r) => r.text).join("\n")).toHaveLength(1);
          expectRestError(refused[0]!, 401, "REFRESH_TOKEN_SUPERSEDED");
          expect(refused[0]!.text).not.toContain("refresh_token\":");
          expect(ok[0]!.body.session_id).toBe(a.session_id);
          expect((await profile(s, ok[0]!.body.access_token)).status).toBe(200);
          expect((await profile(s, a.access_token)).status).toBe(200);
          expect((await refresh(s, ok[0]!.body.refresh_token)).status).toBe(200);
        }
      });

      it("the same race over REST and the internal gRPC port at once", async () => {
        const a = await loginAs(s, await registerUser(s));
        const [viaRest, viaGrpc] = await Promise.allSettled([refresh(s, a.refresh_token), gi.refreshToken({ refreshToken: a.refresh_token })]);
        const restOk = viaRest.status === "fulfilled" && viaRest.value.status === 200;
        const grpcOk = viaGrpc.status === "fulfilled";
        expect([restOk, grpcOk].filter(Boolean)).toHaveLength(1);
        if (restOk) {
          const err = (viaGrpc as PromiseRejectedResult).reason;
          expect({ code: err.code, reason: errorReason(err) }).toEqual({ code: grpc.status.UNAUTHENTICATED, reason: "REFRESH_TOKEN_SUPERSEDED" });
        } else {
          expect(viaRest.status === "fulfilled" && errorReason(viaRest.value.body)).toBe("REFRESH_TOKEN_SUPERSEDED");
        }
        expect((await profile(s, a.access_token)).status).toBe(200);
      });
    });

    describe("VerifyToken", () => {
      it("REST, no caller token needed: active with the token's user, session, role and times", async () => {
        const user = await registerUser(s);
        const a = await loginAs(s, user);
        const r = await verify(s, a.access_token);
        expect(r.status, r.text).toBe(200);
        const claims = decodeJwt(a.access_token);
        expect(r.body).toEqual({
          active: true,
          user_id: user.userId,
          session_id: a.session_id,
          role: "ROLE_CUSTOMER",
          expire_time: new Date(claims.exp! * 1000).toISOString().replace(".000Z", "Z"),
          issue_time: new Date(claims.iat! * 1000).toISOString().replace(".000Z", "Z"),
          token_id: claims.jti,
          auth_time: new Date((claims.auth_time as number) * 1000).toISOString().replace(".000Z", "Z"),
          amr: ["pwd"],
          acr: "aal1",
        });
        expect(r.headers.get("cache-control")).toBe("no-store");
        // A broken Authorization header of the caller does not matter: the token under test is in the body.
        const withJunkAuth = await rest(s.baseUrl, "POST", "/token/verify", { body: { access_token: a.access_token }, headers: { authorization: "Bearer junk" } });
        expect(withJunkAuth.body.active).toBe(true);
      });

      it("active: false (200, never an error) for garbage, a forged signature, a refresh token and a revoked session", async () => {
        const a = await loginAs(s, await registerUser(s));
        const [h, p, sig] = a.access_token.split(".");
        const forged = `${h}.${p}.${sig!.slice(0, -4)}AAAA`;
        for (const bad of ["garbage", "a.b.c", forged, a.refresh_token, `${a.access_token}x`]) {
          const r = await verify(s, bad);
          expect({ bad, status: r.status, body: r.body }).toEqual({ bad, status: 200, body: { active: false } });
        }
        expect((await rest(s.baseUrl, "POST", "/logout", { token: a.access_token })).status).toBe(204);
        expect((await verify(s, a.access_token)).body).toEqual({ active: false });
      });

      it("a missing token is still INVALID_ARGUMENT", async () => {
        expectRestError(await rest(s.baseUrl, "POST", "/token/verify", { body: {} }), 400, "VALIDATION_FAILED");
        await expectGrpcError(g.verifyToken({}), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
      });

      it("over gRPC (both ports) and Connect", async () => {
        const user = await registerUser(s);
        const a = await loginAs(s, user);
        for (const client of [g, gi]) {
          const res = await client.verifyToken({ accessToken: a.access_token });
          expect(res).toMatchObject({ active: true, userId: user.userId, sessionId: a.session_id, role: Role.CUSTOMER });
          expect(Number(res.expireTime!.seconds)).toBe(decodeJwt(a.access_token).exp);
          expect((await client.verifyToken({ accessToken: "x.y.z" })).active).toBe(false);
        }
        expect((await c.verifyToken({ accessToken: a.access_token })).active).toBe(true);
        const err = await grpcFailure(g.verifyToken({ accessToken: "" }));
        expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      });
    });

    describe("on a controlled clock (grace window, role lifetimes, session cap)", () => {
      let t = Date.now();
      const clock = { now: () => new Date(t) };
      const advance = (ms: number) => (t += ms);
      let cs: TestServer;

      beforeAll(async () => {
        cs = await startTestServer(backend.name, {
          // Six logins of one account at once: more than the free attempts
          // of the brute-force defence, which counts attempts in flight.
          env: { SESSION_CACHE_TTL: "0", MAX_SESSIONS_PER_USER: "3", BRUTE_FORCE_FREE_ATTEMPTS: "10" },
          overrides: { clock },
        });
      });
      afterAll(async () => {
        await cs?.destroy();
      });

      describe("refresh grace window (REFRESH_REUSE_GRACE = 5 s)", () => {
        it("inside it: the retired token gets 401 REFRESH_TOKEN_SUPERSEDED, no token, and the session lives on", async () => {
          const a = await loginAs(cs, await registerUser(cs));
          const next = await refresh(cs, a.refresh_token);
          expect(next.status).toBe(200);
          advance(4_999);
          const late = await refresh(cs, a.refresh_token);
          expectRestError(late, 401, "REFRESH_TOKEN_SUPERSEDED");
          expect(late.body.access_token).toBeUndefined();
          expect((await profile(cs, next.body.access_token)).status).toBe(200);
          const after = await refresh(cs, next.body.refresh_token);
          expect(after.status, after.text).toBe(200);
          expect(after.body.session_id).toBe(a.session_id);
        });

        it("at its end: reuse — 401 REFRESH_TOKEN_REUSED, the session is revoked, and the audit says why", async () => {
          const user = await registerUser(cs);
          const a = await loginAs(cs, user);
          const next = await refresh(cs, a.refresh_token);
          advance(5_000);
          expectRestError(await refresh(cs, a.refresh_token), 401, "REFRESH_TOKEN_REUSED");
          expectRestError(await profile(cs, next.body.access_token), 401, "TOKEN_INVALID");
          expectRestError(await refresh(cs, next.body.refresh_token), 401, "REFRESH_TOKEN_INVALID");
          const db = cs.app.database.db;
          const [row] = await db.select().from(sessionsTable).where(eq(sessionsTable.id, a.session_id));
          expect(row).toMatchObject({ revokeReason: "refresh_token_reuse" });
          const events = await auditRows(cs, "refresh", { sessionId: a.session_id });
          expect(events.map((e) => [e.outcome, e.reason ?? null])).toEqual([
            ["success", null],
            ["failure", "REFRESH_TOKEN_REUSED"],
          ]);
        });

        it("inside it but after the successor was used: reuse (the grace covers only an unfinished race)", async () => {
          const a = await loginAs(cs, await registerUser(cs));
          const r1 = await refresh(cs, a.refresh_token);
          const r2 = await refresh(cs, r1.body.refresh_token);
          expect(r2.status).toBe(200);
          advance(1_000);
          expectRestError(await refresh(cs, a.refresh_token), 401, "REFRESH_TOKEN_REUSED");
          expectRestError(await profile(cs, r2.body.access_token), 401, "TOKEN_INVALID");
        });

        it("gRPC sees the same reasons", async () => {
          const a = await loginAs(cs, await registerUser(cs));
          const g2 = grpcJsClient(IdentityService, cs.grpcPort);
          try {
            const next = await g2.refreshToken({ refreshToken: a.refresh_token });
            await expectGrpcError(g2.refreshToken({ refreshToken: a.refresh_token }), grpc.status.UNAUTHENTICATED, "REFRESH_TOKEN_SUPERSEDED");
            advance(5_001);
            await expectGrpcError(g2.refreshToken({ refreshToken: a.refresh_token }), grpc.status.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED");
            await expectGrpcError(g2.getProfile({}, bearerMd(next.accessToken)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
          } finally {
            g2.close();
          }
        });
      });

      describe("lifetimes by role", () => {
        it("customers: 15-minute access tokens with role customer", async () => {
          const a = await loginAs(cs, await registerUser(cs));
          const claims = decodeJwt(a.access_token);
          expect(claims.exp! - claims.iat!).toBe(900);
          expect(claims.role).toBe("customer");
          expect(a.expires_in).toBeGreaterThanOrEqual(899); // rounded from the whole-second exp
        });

        it("admins: 5-minute access tokens (login and refresh) with role admin; VerifyToken reports the role", async () => {
          const user = await registerUser(cs);
          const [code] = await makeAdmin(cs, user, clock.now());
          const a = await loginAs(cs, user, undefined, code);
          const claims = decodeJwt(a.access_token);
          expect(claims.exp! - claims.iat!).toBe(300);
          expect(claims.role).toBe("admin");
          expect(a.expires_in).toBeGreaterThanOrEqual(299);
          expect(a.expires_in).toBeLessThanOrEqual(300);
          expect(Date.parse(a.refresh_token_expire_time)).toBe(t + 30 * MINUTE);
          expect((await verify(cs, a.access_token)).body).toMatchObject({ active: true, role: "ROLE_ADMIN" });

          advance(4 * MINUTE);
          const r = await refresh(cs, a.refresh_token);
          expect(r.status, r.text).toBe(200);
          const c2 = decodeJwt(r.body.access_token);
          expect(c2.exp! - c2.iat!).toBe(300);
          expect(c2.role).toBe("admin");
          advance(5 * MINUTE + 6_000); // past exp and the 5 s tolerance
          expectRestError(await profile(cs, r.body.access_token), 401, "TOKEN_INVALID");
          expect((await verify(cs, r.body.access_token)).body).toEqual({ active: false });
        });

        it("admins: the session idles out after 30 minutes without a refresh", async () => {
          const user = await registerUser(cs);
          const [code] = await makeAdmin(cs, user, clock.now());
          const a = await loginAs(cs, user, undefined, code);
          advance(29 * MINUTE);
          const r = await refresh(cs, a.refresh_token);
          expect(r.status, r.text).toBe(200);
          advance(30 * MINUTE);
          expectRestError(await refresh(cs, r.body.refresh_token), 401, "REFRESH_TOKEN_INVALID");
          // A customer's session, idle just as long, is fine.
          const customer = await loginAs(cs, await registerUser(cs));
          advance(31 * MINUTE);
          expect((await refresh(cs, customer.refresh_token)).status).toBe(200);
        });

        it("admins: the session ends 12 hours after the login however often it is refreshed", async () => {
          const user = await registerUser(cs);
          const [code] = await makeAdmin(cs, user, clock.now());
          const a = await loginAs(cs, user, undefined, code);
          const loginAt = t;
          let token = a.refresh_token;
          let last: Pair | undefined;
          while (t + 25 * MINUTE < loginAt + 12 * HOUR) {
            advance(25 * MINUTE);
            const r = await refresh(cs, token);
            expect({ at: t - loginAt, status: r.status }).toEqual({ at: t - loginAt, status: 200 });
            token = r.body.refresh_token;
            last = r.body;
          }
          // The last refresh's expiry is capped at the absolute lifetime.
          expect(Date.parse(last!.refresh_token_expire_time)).toBeLessThanOrEqual(loginAt + 12 * HOUR);
          advance(25 * MINUTE);
          expectRestError(await refresh(cs, token), 401, "REFRESH_TOKEN_INVALID");
        });

        it("set-role refuses bad input without touching anything", async () => {
          expect(await setRole([])).toMatchObject({ exitCode: 2 });
          expect(await setRole(["a@example.com", "root"])).toMatchObject({ exitCode: 2 });
          expect(await setRole(["not an email", "admin"])).toMatchObject({ exitCode: 2 });
          const db = cs.config.database;
          if (db.kind === "postgres") {
            expect(await setRole([uniqueEmail("nobody"), "admin"], { DATABASE_URL: db.url })).toMatchObject({ exitCode: 1 });
          }
        });
      });

      describe("session cap (MAX_SESSIONS_PER_USER = 3)", () => {
        it("a 4th login revokes the least recently used session: refused at once, audited, gone from the list", async () => {
          const user = await registerUser(cs);
          const first = await loginAs(cs, user);
          advance(MINUTE);
          const second = await loginAs(cs, user);
          advance(MINUTE);
          const third = await loginAs(cs, user);
          advance(MINUTE);
          // Using the oldest makes the second the least recently used.
          const firstRefreshed = await refresh(cs, first.refresh_token);
          expect(firstRefreshed.status).toBe(200);
          advance(MINUTE);
          const fourth = await loginAs(cs, user);

          expectRestError(await profile(cs, second.access_token), 401, "TOKEN_INVALID");
          expectRestError(await refresh(cs, second.refresh_token), 401, "REFRESH_TOKEN_INVALID");
          for (const token of [firstRefreshed.body.access_token, third.access_token, fourth.access_token]) {
            expect((await profile(cs, token)).status).toBe(200);
          }
          const listed = (await list(cs, fourth.access_token)).body.sessions.map((x: { session_id: string }) => x.session_id);
          expect(listed).toEqual([fourth.session_id, third.session_id, first.session_id]);

          const db = cs.app.database.db;
          const [row] = await db.select().from(sessionsTable).where(eq(sessionsTable.id, second.session_id));
          expect(row).toMatchObject({ revokeReason: "session_limit" });
          const events = await auditRows(cs, "session_revoke", { sessionId: second.session_id });
          expect(events).toHaveLength(1);
          expect(events[0]).toMatchObject({ outcome: "success", reason: "session_limit", userId: user.userId });
        });

        it("holds under concurrent logins: never more than 3 active sessions", async () => {
          const user = await registerUser(cs);
          const results = await Promise.all(
            Array.from({ length: 6 }, () => rest(cs.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password } })),
          );
          expect(results.map((r) => r.status)).toEqual(Array(6).fill(201));
          const active = await cs.app.database.db
            .select()
            .from(sessionsTable)
            .where(and(eq(sessionsTable.userId, user.userId)));
          expect(active.filter((x) => x.revokedAt === null)).toHaveLength(3);
          expect(active.filter((x) => x.revokeReason === "session_limit")).toHaveLength(3);
        });
      });
    });
  });
}
