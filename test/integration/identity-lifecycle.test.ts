import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { auditEvents, loginThrottle, passwordCredentials, profiles, refreshTokens, sessions, users } from "../../src/storage/schema.js";
import { grpcJsClient, rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { backends, createPostgresDatabase, openTestDatabase } from "../support/databases.js";
import { expectRestError, grpcFailure } from "../support/error-info.js";
import { readText } from "../support/local-http.js";
import { TEST_KEY_ENCRYPTION_KEYS } from "../support/keys.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { login, registerUser, strongPassword, userWithSession } from "../support/users.js";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK } from "jose";
import { eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";

// The service over time: restarts, health and keys, the audit trail, and a
// real process drained by SIGTERM.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** The built service's SHUTDOWN_TIMEOUT in the graceful-shutdown test. */
const SHUTDOWN_TIMEOUT_MS = 10_000;

const jwks = async (s: TestServer) => {
  const r = await rest(s.baseUrl, "GET", "/.well-known/jwks.json");
  expect(r.status).toBe(200);
  return r.body as { keys: JWK[] };
};

for (const backend of backends) {
  describe.skipIf(backend.skip)(`identity lifecycle (${backend.name})`, () => {
    describe("persistence and multiple instances", () => {
      it("access and refresh tokens keep working, the JWKS kid is unchanged, a logged-out session stays revoked", async () => {
        let s = await startTestServer(backend.name);
        try {
          const u = await userWithSession(s);
          const ended = await login(s, u.email, u.password);
          expect((await rest(s.baseUrl, "POST", "/logout", { token: ended.accessToken })).status).toBe(204);
          const kid = (await jwks(s)).keys[0]!.kid;

          s = await s.restart();

          const keys = (await jwks(s)).keys;
          expect(keys).toHaveLength(1);
          expect(keys[0]!.kid).toBe(kid);
          const p = await rest(s.baseUrl, "GET", "/user/profile", { token: u.accessToken });
          expect(p.status, p.text).toBe(200);
          expect(p.body.user.email).toBe(u.email);
          const r = await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: u.refreshToken } });
          expect(r.status, r.text).toBe(200);
          expect(decodeProtectedHeader(r.body.access_token).kid).toBe(kid);

          expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { token: ended.accessToken }), 401, "TOKEN_INVALID");
          expectRestError(
            await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: ended.refreshToken } }),
            401,
            "REFRESH_TOKEN_INVALID",
          );
          expect((await login(s, u.email, u.password)).userId).toBe(u.userId);
        } finally {
          await s.destroy();
        }
      });

      it("two instances on one database: a logout on one is honoured by the other (at once without a session cache, within SESSION_CACHE_TTL with one)", async () => {
        const a = await startTestServer(backend.name);
        const b = await startTestServer(backend.name, { env: { SESSION_CACHE_TTL: "1s" }, overrides: { database: a.app.database } });
        const c = await startTestServer(backend.name, { env: { SESSION_CACHE_TTL: "0" }, overrides: { database: a.app.database } });
        try {
          const u = await userWithSession(a);
          for (const x of [a, b, c]) expect((await rest(x.baseUrl, "GET", "/user/profile", { token: u.accessToken })).status).toBe(200);
          expect((await rest(a.baseUrl, "POST", "/logout", { token: u.accessToken })).status).toBe(204);
          expectRestError(await rest(a.baseUrl, "GET", "/user/profile", { token: u.accessToken }), 401, "TOKEN_INVALID");
          expectRestError(await rest(c.baseUrl, "GET", "/user/profile", { token: u.accessToken }), 401, "TOKEN_INVALID");
          expectRestError(
            await rest(b.baseUrl, "POST", "/token/refresh", { body: { refresh_token: u.refreshToken } }),
            401,
            "REFRESH_TOKEN_INVALID",
          );
          await new Promise((r) => setTimeout(r, 1_500)); // the documented bound: SESSION_CACHE_TTL
          expectRestError(await rest(b.baseUrl, "GET", "/user/profile", { token: u.accessToken }), 401, "TOKEN_INVALID");
        } finally {
          await c.destroy();
          await b.destroy();
          await a.destroy();
        }
      });

      it("re-hashes a password at login when the configured argon2 cost changed", async () => {
        const db = await openTestDatabase(backend.name);
        const storedHash = async (userId: string) =>
          (
            await db.database.db
              .select({ hash: passwordCredentials.passwordHash, changedAt: passwordCredentials.changedAt })
              .from(passwordCredentials)
              .where(eq(passwordCredentials.userId, userId))
          )[0]!;
        try {
          const before = await startTestServer(backend.name, { env: { ARGON2_TIME_COST: "1" }, overrides: { database: db.database } });
          const u = await registerUser(before);
          await before.destroy();
          const old = await storedHash(u.userId);
          expect(old.hash).toMatch(/^\$argon2id\$v=19\$m=8192,t=1,p=1\$/);

          const after = await startTestServer(backend.name, { env: { ARGON2_TIME_COST: "2" }, overrides: { database: db.database } });
          try {
            await login(after, u.email, u.password);
            const now = await storedHash(u.userId);
            expect(now.hash).toMatch(/^\$argon2id\$v=19\$m=8192,t=2,p=1\$/);
            expect(now.changedAt.getTime()).toBe(old.changedAt.getTime()); // a re-hash is not a password change
            await login(after, u.email, u.password);
            expectRestError(
              await rest(after.baseUrl, "POST", "/login", { body: { email: u.email, password: "not the password" } }),
              401,
              "INVALID_CREDENTIALS",
            );
          } finally {
            await after.destroy();
          }
        } finally {
          await db.destroy();
        }
      });
    });

    describe("expiry on a controlled clock", () => {
      it("access tokens expire after 15 minutes, sessions after 30 idle days and 90 days in all", async () => {
        let t = Date.now();
        const clock = { now: () => new Date(t) };
        const minutes = (n: number) => (t += n * 60_000);
        const days = (n: number) => (t += n * 86_400_000);
        const s = await startTestServer(backend.name, { overrides: { clock } });
        try {
          const profile = (token: string) => rest(s.baseUrl, "GET", "/user/profile", { token });
          const refresh = (token: string) => rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: token } });
          const u = await userWithSession(s);
          expect((await profile(u.accessToken)).status).toBe(200);
          minutes(14);
          expect((await profile(u.accessToken)).status).toBe(200);
          minutes(1.5); // 15.5 minutes: past exp and the 5 s tolerance
          expectRestError(await profile(u.accessToken), 401, "TOKEN_INVALID");
          const r1 = await refresh(u.refreshToken);
          expect(r1.status, r1.text).toBe(200);
          expect((await profile(r1.body.access_token)).status).toBe(200);

          // Refreshing every 20 days keeps the session alive until its 90-day absolute limit.
          let refreshToken = r1.body.refresh_token as string;
          for (let day = 20; day <= 80; day += 20) {
            days(20);
            const r = await refresh(refreshToken);
            expect({ day, status: r.status }).toEqual({ day, status: 200 });
            refreshToken = r.body.refresh_token;
          }
          days(11); // day 91
          expectRestError(await refresh(refreshToken), 401, "REFRESH_TOKEN_INVALID");

          // A session left alone for more than 30 days is over.
          const idle = await login(s, u.email, u.password);
          days(31);
          expectRestError(await refresh(idle.refreshToken), 401, "REFRESH_TOKEN_INVALID");
          expectRestError(await profile(idle.accessToken), 401, "TOKEN_INVALID");
        } finally {
          await s.destroy();
        }
      });
    });

    describe("health, keys, token format and audit trail", () => {
      let s: TestServer;
      beforeAll(async () => {
        s = await startTestServer(backend.name);
      });
      afterAll(async () => {
        await s?.destroy();
      });

      it("GET /healthz and /readyz answer 200", async () => {
        const h = await rest(s.baseUrl, "GET", "/healthz");
        expect(h.status).toBe(200);
        const r = await rest(s.baseUrl, "GET", "/readyz");
        expect(r.status).toBe(200);
      });

      it("the JWKS has exactly one public OKP Ed25519 signing key with kid, alg EdDSA, use sig and no private part", async () => {
        const { keys } = await jwks(s);
        expect(keys).toHaveLength(1);
        const key = keys[0]!;
        expect(key).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
        expect(typeof key.kid).toBe("string");
        expect(key.kid!.length).toBeGreaterThan(0);
        expect(Buffer.from(key.x!, "base64url")).toHaveLength(32);
        for (const secret of ["d", "p", "q", "dp", "dq", "qi", "k"]) expect(key).not.toHaveProperty(secret);
      });

      it("access tokens: header alg EdDSA, typ at+jwt, the JWKS kid; iss, aud, sub = user_id (never the e-mail), sid, jti, iat, exp = iat + 900", async () => {
        const u = await userWithSession(s);
        const { keys } = await jwks(s);
        const header = decodeProtectedHeader(u.accessToken);
        expect(header).toEqual({ alg: "EdDSA", typ: "at+jwt", kid: keys[0]!.kid });
        const claims = decodeJwt(u.accessToken);
        expect(claims).toMatchObject({
          iss: s.config.jwt.issuer,
          aud: s.config.jwt.audience,
          sub: u.userId,
          sid: u.sessionId,
        });
        expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
        expect(typeof claims.iat).toBe("number");
        expect(claims.exp! - claims.iat!).toBe(900);
        expect(Math.abs(claims.iat! - Date.now() / 1000)).toBeLessThan(60);
        expect(JSON.stringify(claims)).not.toContain(u.email);
        expect(JSON.stringify(claims)).not.toContain("@");

        // An internal service can verify it with nothing but the published JWKS.
        const verified = await jwtVerify(u.accessToken, createLocalJWKSet({ keys }), {
          algorithms: ["EdDSA"],
          issuer: s.config.jwt.issuer,
          audience: s.config.jwt.audience,
          typ: "at+jwt",
        });
        expect(verified.payload.sub).toBe(u.userId);

        const again = await login(s, u.email, u.password);
        const c2 = decodeJwt(again.accessToken);
        expect(c2.jti).not.toBe(claims.jti);
        expect(c2.sid).not.toBe(claims.sid);
      });

      it("audit (grey-box): records every attempt with type, outcome, reason, user id, IP, user agent and request ids, and no secret", async () => {
        const db = s.app.database.db;
        const ua = "identity-audit-test/1.0";
        let n = 0;
        const rid = () => `audit-${backend.name}-${Date.now().toString(36)}-${++n}`;
        // The client names its request; the trail files it under our id (the
        // answer's x-request-id) with the client's beside it.
        const clientIds = new Map<string, string>();
        const call = async (method: string, path: string, opts: Parameters<typeof rest>[3] = {}) => {
          const clientRequestId = rid();
          const r = await rest(s.baseUrl, method, path, { ...opts, headers: { "user-agent": ua, "x-request-id": clientRequestId, ...opts.headers } });
          const requestId = r.headers.get("x-request-id")!;
          expect(requestId).not.toBe(clientRequestId);
          clientIds.set(requestId, clientRequestId);
          return { ...r, requestId };
        };
        const email = uniqueEmail("audit");
        const password = strongPassword("p1");
        const newPassword = strongPassword("p2");
        const unknownPassword = "unknown user pass 1";
        const wrongPassword = "wrong password attempt";

        const reg = await call("POST", "/register", { body: { account: { email, password } } });
        expect(reg.status).toBe(201);
        const userId = reg.body.user.user_id as string;
        const dup = await call("POST", "/register", { body: { account: { email, password } } });
        expect(dup.status).toBe(409);
        const weak = await call("POST", "/register", { body: { account: { email: uniqueEmail(), password: "password123" } } });
        expect(weak.status).toBe(400);
        const unknown = await call("POST", "/login", { body: { email: uniqueEmail("nobody"), password: unknownPassword } });
        expect(unknown.status).toBe(401);
        const wrong = await call("POST", "/login", { body: { email, password: wrongPassword } });
        expect(wrong.status).toBe(401);
        const ok = await call("POST", "/login", { body: { email, password } });
        expect(ok.status).toBe(201);
        const ok2 = await call("POST", "/login", { body: { email, password } });
        const refreshed = await call("POST", "/token/refresh", { body: { refresh_token: ok.body.refresh_token } });
        expect(refreshed.status).toBe(200);
        // Using the successor first puts a replay outside the concurrent-refresh grace.
        expect((await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: refreshed.body.refresh_token } })).status).toBe(200);
        const reused = await call("POST", "/token/refresh", { body: { refresh_token: ok.body.refresh_token } });
        expect(reused.status).toBe(401);
        const badChange = await call("PUT", "/user/password", {
          token: ok2.body.access_token,
          body: { old_password: wrongPassword, new_password: newPassword },
        });
        expect(badChange.status).toBe(401);
        const change = await call("PUT", "/user/password", {
          token: ok2.body.access_token,
          body: { old_password: password, new_password: newPassword },
        });
        expect(change.status).toBe(200);
        const logout = await call("POST", "/logout", { token: ok2.body.access_token });
        expect(logout.status).toBe(204);
        const grpcClientRid = rid();
        const g = grpcJsClient(IdentityService, s.port);
        let grpcRid: string;
        try {
          const err = await grpcFailure(g.login({ email, password: wrongPassword }, { "x-request-id": grpcClientRid }));
          grpcRid = String(err.metadata.get("x-request-id")[0]);
          clientIds.set(grpcRid, grpcClientRid);
        } finally {
          g.close();
        }

        const rows = await db.select().from(auditEvents).where(
          inArray(auditEvents.requestId, [
            reg.requestId,
            dup.requestId,
            weak.requestId,
            unknown.requestId,
            wrong.requestId,
            ok.requestId,
            refreshed.requestId,
            reused.requestId,
            badChange.requestId,
            change.requestId,
            logout.requestId,
            grpcRid,
          ]),
        );
        // One row of the attempt's own type per request (a login also
        // records its risk decision under the same request id).
        const byRid = (requestId: string, eventType: string | undefined) => {
          const found = rows.filter((r) => r.requestId === requestId && r.eventType === eventType);
          expect(found, requestId).toHaveLength(1);
          expect(found[0]!.details).toMatchObject({ client_request_id: clientIds.get(requestId) });
          return found[0]!;
        };
        const expectRow = (requestId: string, want: Partial<(typeof rows)[number]>) => {
          const row = byRid(requestId, want.eventType);
          expect(row).toMatchObject(want);
          expect(row.ip).toBe("127.0.0.1");
          expect(Math.abs(row.occurredAt.getTime() - Date.now())).toBeLessThan(120_000);
        };
        const sessionId = ok.body.session_id as string;
        expectRow(reg.requestId, { eventType: "register", outcome: "success", userId, userAgent: ua });
        expectRow(dup.requestId, { eventType: "register", outcome: "failure", reason: "EMAIL_ALREADY_REGISTERED", userId: null });
        expectRow(weak.requestId, { eventType: "register", outcome: "failure", reason: "PASSWORD_TOO_COMMON" });
        expectRow(unknown.requestId, { eventType: "login", outcome: "failure", reason: "INVALID_CREDENTIALS", userId: null, userAgent: ua });
        expectRow(wrong.requestId, { eventType: "login", outcome: "failure", reason: "INVALID_CREDENTIALS" });
        expectRow(ok.requestId, { eventType: "login", outcome: "success", userId, sessionId });
        expectRow(refreshed.requestId, { eventType: "refresh", outcome: "success", userId, sessionId });
        expectRow(reused.requestId, { eventType: "refresh", outcome: "failure", reason: "REFRESH_TOKEN_REUSED", userId, sessionId });
        expectRow(badChange.requestId, { eventType: "password_change", outcome: "failure", reason: "INVALID_CREDENTIALS", userId });
        expectRow(change.requestId, { eventType: "password_change", outcome: "success", userId });
        expectRow(logout.requestId, { eventType: "logout", outcome: "success", userId, sessionId: ok2.body.session_id });
        // grpc-js sends its own user-agent; what matters is that one is recorded.
        expectRow(grpcRid, { eventType: "login", outcome: "failure", reason: "INVALID_CREDENTIALS", userAgent: expect.stringMatching(/grpc/) });

        // No password or token anywhere in the audit trail, nor in plain text in any other table.
        const secrets = [
          password,
          newPassword,
          wrongPassword,
          unknownPassword,
          ok.body.access_token,
          ok.body.access_token.split(".")[2],
          ok.body.refresh_token,
          ok2.body.access_token,
          ok2.body.refresh_token,
          refreshed.body.access_token,
          refreshed.body.refresh_token,
          Buffer.from(ok.body.refresh_token, "base64url").toString("hex"),
        ] as string[];
        const dump = (v: unknown) =>
          JSON.stringify(v, (_k, x: unknown) =>
            x instanceof Uint8Array ? Buffer.from(x).toString("hex") : typeof x === "bigint" ? x.toString() : x,
          );
        const everything = {
          audit: await db.select().from(auditEvents),
          users: await db.select().from(users),
          profiles: await db.select().from(profiles),
          credentials: await db.select().from(passwordCredentials),
          sessions: await db.select().from(sessions),
          refreshTokens: await db.select().from(refreshTokens),
          loginThrottle: await db.select().from(loginThrottle),
        };
        for (const [table, content] of Object.entries(everything)) {
          const text = dump(content);
          for (const secret of secrets) expect(text.includes(secret), `${table} contains a secret`).toBe(false);
        }
      });

      it("audit (grey-box): audit_events is append-only: UPDATE, DELETE and TRUNCATE fail and change nothing", async () => {
        const db = s.app.database.db;
        await registerUser(s);
        const count = async () => Number((await db.select({ n: sql<number>`count(*)::int` }).from(auditEvents))[0]!.n);
        const before = await count();
        expect(before).toBeGreaterThan(0);
        const snapshot = await db.select().from(auditEvents);
        await expect(db.update(auditEvents).set({ reason: "TAMPERED" })).rejects.toThrow();
        await expect(db.update(auditEvents).set({ outcome: "success" }).where(eq(auditEvents.outcome, "failure"))).rejects.toThrow();
        await expect(db.delete(auditEvents)).rejects.toThrow();
        await expect(db.delete(auditEvents).where(eq(auditEvents.id, snapshot[0]!.id))).rejects.toThrow();
        await expect(db.execute(sql`truncate audit_events`)).rejects.toThrow();
        expect(await count()).toBe(before);
        expect(await db.select().from(auditEvents)).toEqual(snapshot);
        // The service still writes to it afterwards.
        await registerUser(s);
        expect(await count()).toBe(before + 1);
      });
    });

    describe("graceful shutdown of the built service", () => {
      beforeAll(buildOnce, 120_000);

      it(
        "SIGTERM lets an in-flight request finish, refuses new connections, exits 0; the data survives",
        { timeout: 60_000 },
        async () => {
          const tmp = mkdtempSync(join(tmpdir(), "identity-shutdown-"));
          const pg = backend.name === "postgres" ? await createPostgresDatabase() : undefined;
          const env: Record<string, string> = {
            PATH: process.env.PATH ?? "",
            PORT: "0",
            GRPC_PORT: "0",
            HOST: "127.0.0.1",
            LOG_LEVEL: "info",
            ARGON2_MEMORY_KIB: "8192",
            ARGON2_TIME_COST: "1",
            COOKIE_SECURE: "false",
            SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_MS}ms`,
            // PGlite without KEY_ENCRYPTION_KEYS: the key file beside the data directory.
            ...(pg ? { DATABASE_URL: pg.url, KEY_ENCRYPTION_KEYS: TEST_KEY_ENCRYPTION_KEYS } : { DATA_DIR: join(tmp, "data") }),
          };
          const output: string[] = [];
          try {
            // First run: drain an in-flight registration.
            const first = startService(env, output);
            const listening = await first.waitFor((l) => l.msg === "identity service listening", 30_000);
            const port = listening.port as number;
            expect(port).toBeGreaterThan(0);
            const base = `http://127.0.0.1:${port}`;

            // Idle connections that must not hold the shutdown up: HTTP/1.1 keep-alive and HTTP/2 (gRPC)
            // sessions on the main port and on the internal grpc-js port.
            const agent = new http.Agent({ keepAlive: true });
            expect((await request(port, "GET", "/healthz", undefined, agent)).status).toBe(200);
            const g = grpcJsClient(IdentityService, port);
            const email = uniqueEmail("drain");
            await grpcFailure(g.login({ email, password: "nobody here yet" }));
            const gInternal = typeof listening.grpcPort === "number" ? grpcJsClient(IdentityService, listening.grpcPort) : undefined;
            if (gInternal) await grpcFailure(gInternal.login({ email, password: "nobody here yet" }));

            const body = JSON.stringify({ account: { email, password: STRONG_PASSWORD } });
            const slow = slowRequest(port, "/register", body);
            await slow.headersSent;
            await new Promise((r) => setTimeout(r, 300)); // the server is now waiting for the rest of the body

            first.child.kill("SIGTERM");
            const draining = await first.waitFor((l) => l.msg === "draining", 5_000);
            expect(draining.inFlight).toBeGreaterThanOrEqual(1);
            await expect(fetch(`${base}/healthz`)).rejects.toThrow(); // no new connections

            slow.finish();
            const finishedAt = performance.now();
            const res = await slow.response;
            expect(res.status, res.text).toBe(201);
            expect(JSON.parse(res.text).user.email).toBe(email);

            const exit = await first.exited;
            expect(exit).toEqual({ code: 0, signal: null });
            // Once the in-flight request is done nothing may hold the drain up: had an idle
            // connection kept a server open, it would close only at SHUTDOWN_TIMEOUT.
            // Half of it tells the two apart with room to spare on a busy machine.
            expect(performance.now() - finishedAt).toBeLessThan(SHUTDOWN_TIMEOUT_MS / 2);
            expect(first.lines.some((l) => l.msg === "stopped")).toBe(true);
            g.close();
            gInternal?.close();
            agent.destroy();

            // Second run on the same database: what was written during the drain is there.
            const second = startService(env, output);
            const port2 = (await second.waitFor((l) => l.msg === "identity service listening", 30_000)).port as number;
            const loginRes = await request(port2, "POST", "/login", JSON.stringify({ email, password: STRONG_PASSWORD }));
            expect(loginRes.status, loginRes.text).toBe(201);
            const tokens = JSON.parse(loginRes.text) as { access_token: string; refresh_token: string };
            const wrong = await request(port2, "POST", "/login", JSON.stringify({ email, password: "wrong password here" }));
            expect(wrong.status).toBe(401);
            second.child.kill("SIGTERM");
            expect(await second.exited).toEqual({ code: 0, signal: null });

            // Nothing secret was logged.
            const log = output.join("\n");
            expect(log).toContain("identity service listening");
            const kek = (pg ? TEST_KEY_ENCRYPTION_KEYS : readFileSync(join(tmp, "data.kek"), "utf8").trim()).split(":")[1]!;
            for (const secret of [STRONG_PASSWORD, "wrong password here", "nobody here yet", tokens.access_token, tokens.refresh_token, kek]) {
              expect(log.includes(secret)).toBe(false);
            }
          } finally {
            await pg?.drop();
            rmSync(tmp, { recursive: true, force: true });
          }
        },
      );

      it.skipIf(backend.name !== "postgres")("refuses to start against PostgreSQL without KEY_ENCRYPTION_KEYS: exit 2, saying how to make one", async () => {
        const output: string[] = [];
        // Nothing listens there: the refusal comes before any connection.
        const refused = startService({ PATH: process.env.PATH ?? "", LOG_LEVEL: "info", DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" }, output);
        expect(await refused.exited).toEqual({ code: 2, signal: null });
        expect(output.join("")).toContain("KEY_ENCRYPTION_KEYS: required with DATABASE_URL");
        expect(output.join("")).toContain("crypto.randomBytes(32)");
      });
    });
  });
}

let built = false;
/** `npm run build` (the verifier workspace, then the service) once per test file, so dist/ matches src/. */
function buildOnce(): void {
  if (built) return;
  for (const project of ["verifier/tsconfig.build.json", "tsconfig.build.json"]) {
    execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", project], { cwd: ROOT, stdio: "pipe" });
  }
  built = true;
}

interface Service {
  child: ChildProcess;
  lines: Record<string, any>[];
  waitFor(pred: (line: Record<string, any>) => boolean, timeoutMs: number): Promise<Record<string, any>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `node dist/src/main.js` with exactly `env`; collects its JSON log lines. */
function startService(env: Record<string, string>, output: string[]): Service {
  const child = spawn(process.execPath, ["dist/src/main.js"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: Record<string, any>[] = [];
  const waiters = new Set<() => void>();
  let buffered = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    output.push(chunk);
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, any>);
      } catch {
        lines.push({ raw: line });
      }
    }
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => output.push(chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      for (const w of waiters) w();
      resolve({ code, signal });
    }),
  );
  // A test that fails midway must not leave the process behind.
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return {
    child,
    lines,
    exited,
    waitFor(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.find(pred);
          if (hit) {
            cleanup();
            resolve(hit);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`service exited before the expected log line:\n${output.join("").slice(-2000)}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for a log line:\n${output.join("").slice(-2000)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

function request(
  port: number,
  method: string,
  path: string,
  body?: string,
  agent?: http.Agent,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method, path, agent, headers: body ? { "content-type": "application/json", "content-length": Buffer.byteLength(body) } : {} },
      (res) => readText(res).then((text) => resolve({ status: res.statusCode ?? 0, text }), reject),
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A POST whose body arrives in two halves: in flight until finish() is called. */
function slowRequest(port: number, path: string, body: string) {
  const bytes = Buffer.from(body);
  const half = Math.floor(bytes.length / 2);
  let headersSent!: () => void;
  const sent = new Promise<void>((r) => (headersSent = r));
  let req!: http.ClientRequest;
  const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
    req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path,
        agent: false,
        headers: { "content-type": "application/json", "content-length": bytes.length },
      },
      (res) => readText(res).then((text) => resolve({ status: res.statusCode ?? 0, text }), reject),
    );
    req.on("error", reject);
    req.flushHeaders();
    req.write(bytes.subarray(0, half), () => headersSent());
  });
  return { headersSent: sent, response, finish: () => req.end(bytes.subarray(half)) };
}
