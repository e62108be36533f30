import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { auditOf } from "../support/audit.js";
import { bearerMd, grpcJsClient, rest } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorInfo, expectRestError, grpcFailure } from "../support/error-info.js";
import { controlledClock, loginRest, MINUTE, SECOND } from "../support/mfa.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { registerUser, type SeededUser } from "../support/users.js";
import { eventOf, startWebhookReceiver } from "../support/webhook-receiver.js";

// Enrolling an authenticator with a stolen access token: StartTotpEnrollment
// needs the password as well as a recent login, wrong passwords count with
// the account's failed logins (a stolen token is no password oracle), a
// refused start leaves the owner's pending enrolment alone, and the user is
// alerted when an enrolment starts (and again when it is confirmed).

let wrongCount = 0;
/** A new wrong password per attempt (one password on many accounts would look like a spray). */
const wrong = () => `not the password ${process.pid}.${++wrongCount}`;

for (const backend of backends) {
  describe.skipIf(backend.skip)(`TOTP enrolment needs the password (${backend.name})`, () => {
    const c = controlledClock();
    let s: TestServer;
    let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
    let gi: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      hooks = await startWebhookReceiver();
      s = await startTestServer(backend.name, { env: hooks.env, overrides: { clock: c.clock } });
      gi = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      gi?.close();
      await s?.destroy();
      await hooks?.close();
    });

    const start = (token: string, body: Record<string, unknown>) => rest(s.baseUrl, "POST", "/user/mfa/totp", { token, body });
    const confirm = (token: string, code: string) => rest(s.baseUrl, "POST", "/user/mfa/totp/confirm", { token, body: { code } });
    /** A fresh user and the access token of a login that just happened (recent, no MFA yet). */
    async function loggedIn(): Promise<SeededUser & { token: string; sessionId: string }> {
      const user = await registerUser(s);
      const r = await loginRest(s, { email: user.email, password: user.password });
      expect(r.status, r.text).toBe(201);
      return { ...user, token: r.body.access_token as string, sessionId: r.body.session_id as string };
    }
    /** Nothing is pending: a confirmation finds no enrolment. */
    const expectNothingPending = async (token: string) => expectRestError(await confirm(token, "123456"), 400, "MFA_NOT_ENABLED");

    it("without the password: 400 VALIDATION_FAILED naming the field (REST and gRPC); nothing starts, nobody is alerted", async () => {
      const u = await loggedIn();
      for (const body of [{}, { password: "" }]) {
        const r = await start(u.token, body);
        expect({ status: r.status, ...errorInfo(r.body) }, r.text).toEqual({ status: 400, reason: "VALIDATION_FAILED", metadata: { field: "password" } });
        expect(r.body.secret).toBeUndefined();
      }
      const err = await grpcFailure(gi.startTotpEnrollment({}, bearerMd(u.token)));
      expect({ code: err.code, ...errorInfo(err) }).toEqual({ code: grpc.status.INVALID_ARGUMENT, reason: "VALIDATION_FAILED", metadata: { field: "password" } });
      await expectNothingPending(u.token);
      await new Promise((r) => setTimeout(r, 200));
      expect(hooks.ofType("mfa_enrollment_started", u.userId)).toEqual([]);
    });

    it("with a wrong password: 401 INVALID_CREDENTIALS, counted with the account's failed logins (the owner's login waits too)", async () => {
      const u = await loggedIn();
      for (let i = 0; i < 5; i++) expectRestError(await start(u.token, { password: wrong() }), 401, "INVALID_CREDENTIALS");
      await expectNothingPending(u.token);
      // Five failures: the next attempt anywhere on the account must wait
      // (BRUTE_FORCE_BASE_DELAY, 1 s), even with the right password.
      expectRestError(await start(u.token, { password: u.password }), 401, "INVALID_CREDENTIALS");
      expectRestError(await loginRest(s, { email: u.email, password: u.password }), 401, "INVALID_CREDENTIALS");
      expect((await auditOf(s, u.userId, "login_throttled")).map((e) => e.reason)).toEqual(["progressive_delay"]);
      c.advance(1_500);
      const started = await start(u.token, { password: u.password });
      expect(started.status, started.text).toBe(201);
      expect(started.body.secret).toMatch(/^[A-Z2-7]{32}$/);
      const enrol = await auditOf(s, u.userId, "mfa_enrol");
      expect(enrol.map((e) => [e.outcome, e.reason])).toEqual([
        ...Array(6).fill(["failure", "INVALID_CREDENTIALS"]),
        ["success", "started"],
      ]);
      // The success reset the counter: the owner logs in at once.
      expect((await loginRest(s, { email: u.email, password: u.password })).status).toBe(201);
    });

    it("with a stale login: 401 RECENT_AUTH_REQUIRED before the password is even looked at (no oracle, nothing counted)", async () => {
      const u = await loggedIn();
      c.advance(11 * MINUTE);
      for (const password of [u.password, wrong(), wrong(), wrong(), wrong(), wrong(), wrong()]) {
        const r = await start(u.token, { password });
        expect({ status: r.status, ...errorInfo(r.body) }, r.text).toEqual({
          status: 401,
          reason: "RECENT_AUTH_REQUIRED",
          metadata: { max_age_seconds: "600" },
        });
      }
      // Six wrong guesses that counted would make this login wait.
      expect((await loginRest(s, { email: u.email, password: u.password })).status).toBe(201);
      expect(await auditOf(s, u.userId, "login_throttled")).toEqual([]);
      const fresh = await rest(s.baseUrl, "POST", "/user/reauthenticate", { token: u.token, body: { password: u.password } });
      expect(fresh.status, fresh.text).toBe(200);
      expect((await start(fresh.body.access_token, { password: u.password })).status).toBe(201);
    });

    it("a refused start leaves the owner's enrolment alone: the confirmation stays bound to the one started with the password", async () => {
      const u = await loggedIn();
      const owner = await start(u.token, { password: u.password });
      expect(owner.status, owner.text).toBe(201);
      const secret = owner.body.secret as string;
      // The thief holds the same (stolen) token, but not the password.
      expectRestError(await start(u.token, {}), 400, "VALIDATION_FAILED");
      expectRestError(await start(u.token, { password: wrong() }), 401, "INVALID_CREDENTIALS");
      expectRestError(await confirm(u.token, await c.code(secret, 5)), 401, "MFA_CODE_INVALID");
      const confirmed = await confirm(u.token, await c.code(secret));
      expect(confirmed.status, confirmed.text).toBe(200);
      expect(confirmed.body.recovery_codes).toHaveLength(10);
    });

    it("alerts the user when an enrolment starts (mfa_enrollment_started, no secret in it) and when it is confirmed (mfa_enabled)", async () => {
      const u = await loggedIn();
      expectRestError(await start(u.token, { password: wrong() }), 401, "INVALID_CREDENTIALS");
      c.advance(2 * SECOND);
      const started = await start(u.token, { password: u.password });
      expect(started.status, started.text).toBe(201);
      const [alert] = await hooks.waitFor("mfa_enrollment_started", u.userId);
      expect(eventOf(alert!)).toEqual({ type: "mfa_enrollment_started", verified: true, data: { user_id: u.userId, session_id: u.sessionId, ip: "127.0.0.1" } });
      const sent = JSON.stringify(alert);
      for (const secret of [started.body.secret, started.body.otpauth_uri, u.password]) expect(sent).not.toContain(secret);

      expect((await confirm(u.token, await c.code(started.body.secret))).status).toBe(200);
      await hooks.waitFor("mfa_enabled", u.userId);
      // The refused attempt was not alerted as a start: exactly one.
      await new Promise((r) => setTimeout(r, 200));
      expect(hooks.ofType("mfa_enrollment_started", u.userId)).toHaveLength(1);
    });
  });
}
