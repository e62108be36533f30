import { createHash } from "node:crypto";
import { connect as tcpConnect } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { eq, sql } from "drizzle-orm";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../../gen/identity/v1/admin_service_pb.js";
import { auditEvents } from "../../src/storage/schema.js";
import { createUserStore } from "../../src/storage/user-store.js";
import { auditRows } from "../support/audit.js";
import { bearerMd, grpcJsClient, rest, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorInfo, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { enrolTotp, login, registerUser } from "../support/users.js";
import { makeAdmin, uniqueIp, xff } from "./abuse-helpers.js";

// The audit trail as administrators see it: ListAuditEvents (filter and
// pagination, REST and gRPC), VerifyAuditChain (healthy with the head's hash,
// then a row edited behind the triggers' back), the admin-only rule (role
// and a session that passed MFA), and user-controlled text coming back
// without control characters.

const PERMISSION_DENIED = 7;
const CONTROL = /\p{Cc}/u;

/** A page token as the service makes them: base64url("<before id>.<tag of the filter>"). */
const pageToken = (beforeId: string, filter: string) =>
  Buffer.from(`${beforeId}.${createHash("sha256").update(filter).digest("base64url").slice(0, 8)}`).toString("base64url");

let wrongCount = 0;
const wrong = () => `audit wrong ${process.pid}.${++wrongCount}`;

/** Every string inside a JSON value. */
function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value && typeof value === "object") return Object.values(value).flatMap(strings);
  return [];
}

/** One raw HTTP/1.1 request; the status line of the answer. */
function rawStatusLine(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ port, host: "127.0.0.1" });
    let answer = "";
    const done = () => {
      socket.destroy();
      resolve(answer.split("\r\n")[0] ?? "");
    };
    socket.setTimeout(2_000, done);
    socket.on("data", (d) => (answer += d.toString("latin1")));
    socket.on("end", done);
    socket.on("error", done);
    socket.write(Buffer.from(request, "latin1"));
  });
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`audit trail for administrators (${backend.name})`, () => {
    let s: TestServer;
    let adminToken: string;
    let g: ReturnType<typeof grpcJsClient<typeof AdminService>>;

    beforeAll(async () => {
      s = await startTestServer(backend.name, { env: { TRUSTED_PROXIES: "127.0.0.1" } });
      adminToken = await makeAdmin(s);
      g = grpcJsClient(AdminService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    const list = (query: Record<string, string | number>, token = adminToken) =>
      rest(s.baseUrl, "GET", `/admin/audit-events?${new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]))}`, { token });

    it("ListAuditEvents: filter by user, type and outcome; pages of 2, newest first, the same over REST and gRPC", async () => {
      const user = await registerUser(s);
      const other = await registerUser(s);
      for (let i = 0; i < 3; i++) await login(s, user.email, user.password);
      await login(s, other.email, other.password);
      expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: wrong() } }), 401, "INVALID_CREDENTIALS");

      const filter = `user_id = "${user.userId}" AND event_type = "login" AND outcome = "success"`;
      const first = await list({ filter, page_size: 2 });
      expect(first.status, first.text).toBe(200);
      expect(first.body.audit_events).toHaveLength(2);
      expect(first.body.next_page_token).toMatch(/^[A-Za-z0-9_-]+$/);
      const second = await list({ filter, page_size: 2, page_token: first.body.next_page_token });
      expect(second.status, second.text).toBe(200);
      expect(second.body.audit_events).toHaveLength(1);
      expect(second.body.next_page_token ?? "").toBe("");

      const events = [...first.body.audit_events, ...second.body.audit_events];
      for (const e of events) {
        expect(e).toMatchObject({ event_type: "login", outcome: "success", user_id: user.userId, ip: "127.0.0.1" });
        expect(e.session_id).toMatch(/^[0-9a-f-]{36}$/);
        expect(e.hash).toMatch(/^[0-9a-f]{64}$/);
      }
      const ids = events.map((e) => BigInt(e.id));
      expect(ids).toEqual([...ids].sort((a, b) => (a > b ? -1 : 1)));
      expect(new Set(ids).size).toBe(3);
      // The same three rows the database holds.
      const stored = (await auditRows(s, "login")).filter((r) => r.userId === user.userId && r.outcome === "success");
      expect(events.map((e) => e.id)).toEqual(stored.map((r) => String(r.id)).reverse());

      // gRPC: the same pages.
      const p1 = await g.listAuditEvents({ filter, pageSize: 2 }, bearerMd(adminToken));
      const p2 = await g.listAuditEvents({ filter, pageSize: 2, pageToken: p1.nextPageToken }, bearerMd(adminToken));
      expect([...p1.auditEvents, ...p2.auditEvents].map((e) => e.id)).toEqual(events.map((e) => e.id));
      expect(p2.nextPageToken).toBe("");
      expect(p1.auditEvents[0]?.occurTime).toBeDefined();

      // Without the outcome, the register event is excluded by the type only.
      const all = await list({ filter: `user_id = "${user.userId}" AND event_type = "register"` });
      expect(all.body.audit_events).toHaveLength(1);
    });

    it("a wrong password on an existing account is listed under that user's id (README: user id when known)", async () => {
      const user = await registerUser(s);
      for (let i = 0; i < 2; i++) expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: wrong() } }), 401, "INVALID_CREDENTIALS");
      const failures = await list({ filter: `user_id = "${user.userId}" AND event_type = "login" AND outcome = "failure"` });
      expect(failures.status, failures.text).toBe(200);
      expect((failures.body.audit_events ?? []).map((e: { reason: string }) => e.reason)).toEqual(["INVALID_CREDENTIALS", "INVALID_CREDENTIALS"]);
    });

    it("a page token is bound to its filter: reused with another filter (or forged) it is 400 / INVALID_ARGUMENT", async () => {
      const user = await registerUser(s);
      for (let i = 0; i < 3; i++) await login(s, user.email, user.password);
      const filter = `user_id = "${user.userId}" AND event_type = "login"`;
      const first = await list({ filter, page_size: 2 });
      const token = first.body.next_page_token as string;
      expect(token).toBeTruthy();
      expectRestError(await list({ filter: `${filter} AND outcome = "failure"`, page_size: 2, page_token: token }), 400, "VALIDATION_FAILED");
      expectRestError(await list({ page_size: 2, page_token: token }), 400, "VALIDATION_FAILED");
      await expectGrpcError(g.listAuditEvents({ filter: `event_type = "register"`, pageSize: 2, pageToken: token }, bearerMd(adminToken)), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
      for (const forged of ["abc", Buffer.from(`1.${"x".repeat(8)}`).toString("base64url"), "!!!"]) {
        expectRestError(await list({ filter, page_size: 2, page_token: forged }), 400, "VALIDATION_FAILED");
      }
      // Malformed filters.
      for (const bad of ['password = "x"', 'event_type = "login" OR outcome = "failure"', 'user_id = "not-a-uuid"', "event_type ="]) {
        expectRestError(await list({ filter: bad }), 400, "VALIDATION_FAILED");
      }
      // With its own filter it still works.
      expect((await list({ filter, page_size: 2, page_token: token })).status).toBe(200);
    });

    it("a page token with an id beyond 2^63 − 1 is 400 / INVALID_ARGUMENT VALIDATION_FAILED (not a 500); 2^63 − 1 itself is a page", async () => {
      const filter = `event_type = "login"`;
      // The token format is what the service itself makes: a real token decodes to it.
      const user = await registerUser(s);
      for (let i = 0; i < 2; i++) await login(s, user.email, user.password);
      const real = (await list({ filter: `user_id = "${user.userId}" AND ${filter}`, page_size: 1 })).body.next_page_token as string;
      expect(Buffer.from(real, "base64url").toString()).toMatch(/^[1-9][0-9]*\.[A-Za-z0-9_-]{8}$/);
      expect(pageToken(Buffer.from(real, "base64url").toString().split(".")[0]!, `user_id = "${user.userId}" AND ${filter}`)).toBe(real);

      for (const id of ["9223372036854775808", "9999999999999999999"]) {
        expectRestError(await list({ filter, page_size: 2, page_token: pageToken(id, filter) }), 400, "VALIDATION_FAILED");
        await expectGrpcError(g.listAuditEvents({ filter, pageSize: 2, pageToken: pageToken(id, filter) }, bearerMd(adminToken)), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
      }
      const max = await list({ filter, page_size: 2, page_token: pageToken("9223372036854775807", filter) });
      expect(max.status, max.text).toBe(200);
      expect(max.body.audit_events).toHaveLength(2); // the two newest logins
    });

    it("admin RPCs need a session that passed MFA: an admin's token without amr mfa gets 401 RECENT_AUTH_REQUIRED (acr aal2) until Reauthenticate with a second factor", async () => {
      // Admin logins always pass MFA (the admin tokens here carry it)...
      expect(decodeJwt(adminToken).amr).toEqual(["pwd", "kba", "mfa"]);
      // ...but a session that began before the promotion did not: a customer logs in
      // (password only), turns TOTP on with that session, and is promoted.
      const user = await registerUser(s);
      const early = await login(s, user.email, user.password);
      const { recoveryCodes } = await enrolTotp(s, early.accessToken, user.password);
      expect(await createUserStore(s.app.database.db).setRole(user.email, "admin", new Date())).toBeTruthy();
      // Its refresh now carries the admin role, still without the second factor.
      const refreshed = await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: early.refreshToken } });
      expect(refreshed.status, refreshed.text).toBe(200);
      const token = refreshed.body.access_token as string;
      expect(decodeJwt(token)).toMatchObject({ role: "admin", amr: ["pwd"], acr: "aal1" });

      for (const t of [early.accessToken, token]) {
        for (const r of [
          await list({ filter: "" }, t),
          await rest(s.baseUrl, "POST", "/admin/audit-events:verifyChain", { token: t, body: {} }),
          await rest(s.baseUrl, "POST", "/admin/accounts:unlock", { token: t, body: { email: user.email } }),
        ]) {
          const info = errorInfo(r.body);
          expect({ status: r.status, reason: info.reason, acr: info.metadata.acr }, r.text).toEqual({ status: 401, reason: "RECENT_AUTH_REQUIRED", acr: "aal2" });
        }
        for (const call of [() => g.listAuditEvents({}, bearerMd(t)), () => g.verifyAuditChain({}, bearerMd(t))]) {
          const err = await grpcFailure(call());
          expect({ code: err.code }).toEqual({ code: grpc.status.UNAUTHENTICATED });
        }
      }
      expect((await auditRows(s, "audit_verify")).filter((e) => e.userId === user.userId)).toEqual([]);

      // Re-authenticated with a second factor, the same session may.
      const reauth = await rest(s.baseUrl, "POST", "/user/reauthenticate", { token, body: { password: user.password, recovery_code: recoveryCodes[0] } });
      expect(reauth.status, reauth.text).toBe(200);
      const aal2 = reauth.body.access_token as string;
      expect(decodeJwt(aal2)).toMatchObject({ role: "admin", sid: early.sessionId, amr: ["pwd", "kba", "mfa"] });
      expect((await list({ filter: `user_id = "${user.userId}"` }, aal2)).status).toBe(200);
      expect((await g.listAuditEvents({ filter: `user_id = "${user.userId}"` }, bearerMd(aal2))).auditEvents.length).toBeGreaterThan(0);
    });

    it("only administrators: a customer gets 403 / PERMISSION_DENIED ADMIN_ROLE_REQUIRED on every admin RPC; no token is 401", async () => {
      const customer = await registerUser(s);
      const token = (await login(s, customer.email, customer.password)).accessToken;
      expectRestError(await list({ filter: "" }, token), 403, "ADMIN_ROLE_REQUIRED");
      expectRestError(await rest(s.baseUrl, "POST", "/admin/audit-events:verifyChain", { token, body: {} }), 403, "ADMIN_ROLE_REQUIRED");
      expectRestError(await rest(s.baseUrl, "POST", "/admin/accounts:unlock", { token, body: { email: customer.email } }), 403, "ADMIN_ROLE_REQUIRED");
      await expectGrpcError(g.listAuditEvents({}, bearerMd(token)), PERMISSION_DENIED, "ADMIN_ROLE_REQUIRED");
      await expectGrpcError(g.verifyAuditChain({}, bearerMd(token)), PERMISSION_DENIED, "ADMIN_ROLE_REQUIRED");
      expectRestError(await rest(s.baseUrl, "GET", "/admin/audit-events"), 401, "TOKEN_MISSING");
      await expectGrpcError(g.listAuditEvents({}), grpc.status.UNAUTHENTICATED, "TOKEN_MISSING");
    });

    it("user-controlled text (a user agent with control characters, a crafted e-mail) is stored without control characters and returned safely", async () => {
      const ip = uniqueIp();
      // What an HTTP client can put in a header: tab and C1 controls (CR, LF, NUL, DEL are refused before the service).
      const agent = "evil\tagent\u0085\u009b[31m <script>alert(1)</script>";
      const crafted = 'victim\r\n\u0000\u001b[2J"<script>@example.com';
      const headers = { ...xff(ip), "user-agent": agent };
      const attempts = [
        await rest(s.baseUrl, "POST", "/login", { body: { email: crafted, password: wrong() }, headers }),
        await rest(s.baseUrl, "POST", "/register", { body: { account: { email: crafted, password: wrong() } }, headers }),
        await rest(s.baseUrl, "POST", "/login", { body: { email: "victim@example.com\nX-Injected: 1", password: wrong() }, headers }),
      ];
      for (const r of attempts) {
        expect(r.status, r.text).toBeGreaterThanOrEqual(400);
        expect(r.status, r.text).toBeLessThan(500);
      }
      // A bare CR in a header is refused by the HTTP parser: nothing reaches the audit trail.
      const body = JSON.stringify({ email: "x@example.com", password: wrong() });
      const status = await rawStatusLine(
        s.port,
        `POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: ${ip}\r\nUser-Agent: evil\rinjected\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
      expect(status).toMatch(/^HTTP\/1\.1 400/);

      const listed = await list({ filter: `ip = "${ip}"` });
      expect(listed.status, listed.text).toBe(200);
      const events = listed.body.audit_events as Record<string, unknown>[];
      expect(events.length).toBeGreaterThanOrEqual(attempts.length);
      // The raw JSON carries no control character, not even escaped.
      expect(listed.text).not.toMatch(CONTROL);
      expect(listed.text).not.toMatch(/\\u00[01][0-9a-f]|\\[rnt]/i);
      for (const e of events) {
        expect(e.user_agent).toBe("evil?agent??[31m <script>alert(1)</script>");
        for (const text of strings(e)) expect(text).not.toMatch(CONTROL);
        expect(JSON.stringify(e)).not.toContain("victim");
      }
      // Stored that way (not only rendered so).
      const stored = (await auditRows(s, "login", { ip })).concat(await auditRows(s, "register", { ip }));
      expect(stored.length).toBe(events.length);
      for (const row of stored) for (const text of strings(row)) expect(text).not.toMatch(CONTROL);
      // gRPC returns the same text.
      const viaGrpc = await g.listAuditEvents({ filter: `ip = "${ip}"` }, bearerMd(adminToken));
      expect(viaGrpc.auditEvents.map((e) => e.userAgent)).toEqual(events.map((e) => e.user_agent));
    });

    it("VerifyAuditChain: ok on a healthy trail; a row changed behind the triggers' back is reported at its seq (hash_mismatch)", async () => {
      // Runs last in this suite: it breaks the chain.
      const user = await registerUser(s, { email: uniqueEmail("chain") });
      expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: wrong() } }), 401, "INVALID_CREDENTIALS");
      await login(s, user.email, user.password);

      const healthy = await rest(s.baseUrl, "POST", "/admin/audit-events:verifyChain", { token: adminToken, body: {} });
      expect(healthy.status, healthy.text).toBe(200);
      expect(healthy.body).toMatchObject({ ok: true });
      expect(Number(healthy.body.checked_count)).toBeGreaterThan(5);
      expect(healthy.body.problem ?? "").toBe("");
      expect(healthy.body.first_broken_seq ?? "").toBe("");
      // The head's hash, to be kept where the database cannot write: the stored hash of the row at head_seq.
      expect(healthy.body.head_hash).toMatch(/^[0-9a-f]{64}$/);
      const [head] = await s.app.database.db.select().from(auditEvents).where(eq(auditEvents.seq, Number(healthy.body.head_seq)));
      expect(Buffer.from(head!.hash!).toString("hex")).toBe(healthy.body.head_hash);
      const viaGrpc = await g.verifyAuditChain({}, bearerMd(adminToken));
      expect(viaGrpc.ok).toBe(true);
      // Later rows (the verification itself is one) move the head on.
      expect(Number(viaGrpc.headSeq)).toBeGreaterThan(Number(healthy.body.head_seq));
      const [grpcHead] = await s.app.database.db.select().from(auditEvents).where(eq(auditEvents.seq, Number(viaGrpc.headSeq)));
      expect(viaGrpc.headHash).toBe(Buffer.from(grpcHead!.hash!).toString("hex"));

      // A superuser edits the user's registration, with the append-only guard off.
      const [target] = (await auditRows(s, "register")).filter((r) => r.userId === user.userId);
      expect(target?.seq).toBeTruthy();
      await s.app.database.db.transaction(async (tx) => {
        await tx.execute(sql`alter table audit_events disable trigger audit_events_no_update_delete`);
        await tx.execute(sql`update audit_events set reason = 'x' where seq = ${target!.seq}`);
        await tx.execute(sql`alter table audit_events enable trigger audit_events_no_update_delete`);
      });

      const broken = await rest(s.baseUrl, "POST", "/admin/audit-events:verifyChain", { token: adminToken, body: {} });
      expect(broken.status, broken.text).toBe(200);
      // proto3 JSON leaves out a false `ok`.
      expect({ ok: broken.body.ok ?? false, seq: broken.body.first_broken_seq, problem: broken.body.problem, head_hash: broken.body.head_hash }).toEqual({
        ok: false,
        seq: String(target!.seq),
        problem: "hash_mismatch",
        head_hash: undefined, // no head hash vouched for when the chain does not verify
      });
      const brokenGrpc = await g.verifyAuditChain({}, bearerMd(adminToken));
      expect({ ok: brokenGrpc.ok, seq: brokenGrpc.firstBrokenSeq, problem: brokenGrpc.problem, headHash: brokenGrpc.headHash }).toEqual({
        ok: false,
        seq: String(target!.seq),
        problem: "hash_mismatch",
        headHash: "",
      });
      // Every verification is itself in the trail.
      const verifications = await auditRows(s, "audit_verify");
      expect(verifications.map((v) => [v.outcome, v.reason ?? null])).toEqual([
        ["success", null],
        ["success", null],
        ["failure", "hash_mismatch"],
        ["failure", "hash_mismatch"],
      ]);
    });
  });
}
