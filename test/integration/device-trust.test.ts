import * as grpc from "@grpc/grpc-js";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { createUserStore } from "../../src/storage/user-store.js";
import { auditOf } from "../support/audit.js";
import { bearerMd, grpcJsClient, rest, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorInfo, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import {
  authClaims,
  completeMfaRest,
  controlledClock,
  DEVICE_TOKEN_SHAPE,
  deviceTokenOf,
  expectMfaRequired,
  expectSensitiveRefused,
  loginRest,
  mfaLogin as mfaLoginUnchecked,
  mfaUser as mfaUserUnchecked,
  MINUTE,
  SECOND,
  STEP,
} from "../support/mfa.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { enrolTotp, registerUser, type SeededUser, strongPassword } from "../support/users.js";
import { eventOf, startWebhookReceiver } from "../support/webhook-receiver.js";

// Server-issued device tokens: every successful login returns one, a device
// sends it back as device_id, and only a token this service issued to the
// account makes a device known. A known device that passed MFA skips the
// second factor for TRUSTED_DEVICE_TTL (30 days) when the risk allows it
// (never for administrators); credential changes end that trust; a session
// that skipped MFA cannot change credentials without re-authenticating with
// a code. Known devices are counted apart by the brute-force defence, so an
// attacker without the token cannot lock the owner out. Credential changes
// are alerted by signed webhooks. All on a controlled clock.


/** mfaUser, with the enrolment login's device token asserted. */
async function mfaUser(...args: Parameters<typeof mfaUserUnchecked>) {
  const u = await mfaUserUnchecked(...args);
  expect(u.deviceToken, "no device_token in the login response").toMatch(DEVICE_TOKEN_SHAPE);
  return u;
}

/** mfaLogin, with its device token asserted. */
async function mfaLogin(...args: Parameters<typeof mfaLoginUnchecked>) {
  const m = await mfaLoginUnchecked(...args);
  expect(m.deviceToken, "no device_token in the login response").toMatch(DEVICE_TOKEN_SHAPE);
  return m;
}
const DAY = 24 * 60 * MINUTE;
const TRUSTED_DEVICE_TTL = 30 * DAY;
/** What the service answers sensitive RPCs of a session without amr "mfa" on an MFA account. */
const AAL2_REQUIRED = { reason: "RECENT_AUTH_REQUIRED", metadata: { max_age_seconds: "600", acr: "aal2" } };

const creds = (u: { email: string; password: string }) => ({ email: u.email, password: u.password });
let chosenCount = 0;
/** A device id the client made up (an app install id): the service never issued it. */
const chosenDeviceId = () => `install-${process.pid}-${++chosenCount}-${Math.random().toString(36).slice(2, 8)}`;

let wrongCount = 0;
/** A new wrong password per attempt (one password on many accounts would look like a spray). */
const wrong = () => `not it ${process.pid}.${++wrongCount}`;

for (const backend of backends) {
  describe.skipIf(backend.skip)(`device trust (${backend.name})`, () => {
    const c = controlledClock();
    let s: TestServer;
    let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let gi: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      hooks = await startWebhookReceiver();
      // No progressive delay: only the lockout (100 failures) is in play.
      s = await startTestServer(backend.name, { env: { BRUTE_FORCE_BASE_DELAY: "0", ...hooks.env }, overrides: { clock: c.clock } });
      g = grpcJsClient(IdentityService, s.port);
      gi = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      gi?.close();
      await s?.destroy();
      await hooks?.close();
    });

    const withDevice = (u: { email: string; password: string }, device_id: string, extra: { mfa_code?: string; password?: string } = {}) =>
      loginRest(s, { ...creds(u), device_id, ...extra });
    /** A login that skipped MFA: 201, amr pwd only, and the device keeps its token. */
    const expectSkipped = (r: Awaited<ReturnType<typeof loginRest>>, device: string) => {
      expect(deviceTokenOf(r)).toBe(device);
      expect(authClaims(r.body.access_token)).toMatchObject({ amr: ["pwd"], acr: "aal1" });
      return r.body.access_token as string;
    };
    const regenerate = (token: string) => rest(s.baseUrl, "POST", "/user/mfa/recovery-codes", { token, body: {} });
    const changePassword = (token: string, oldPassword: string, newPassword: string) =>
      rest(s.baseUrl, "PUT", "/user/password", { token, body: { old_password: oldPassword, new_password: newPassword } });
    const disable = (token: string, password: string, code: string) => rest(s.baseUrl, "DELETE", "/user/mfa/totp", { token, body: { password, code } });
    const reauth = (token: string, body: Record<string, string>) => rest(s.baseUrl, "POST", "/user/reauthenticate", { token, body });
    const setRole = async (email: string, role: "admin" | "customer") => {
      expect(await createUserStore(s.app.database.db).setRole(email, role, c.now())).toBeTruthy();
    };
    const lastDecision = async (userId: string) => (await auditOf(s, userId, "risk_decision")).at(-1)!;

    describe("server-issued tokens", () => {
      it("every login returns a device token; a known device keeps it, anything else gets a new one (REST and gRPC)", async () => {
        const user = await registerUser(s);
        const first = deviceTokenOf(await loginRest(s, creds(user)));
        c.advance(MINUTE);
        expect(deviceTokenOf(await withDevice(user, first))).toBe(first);
        const second = deviceTokenOf(await loginRest(s, creds(user)));
        const chosen = chosenDeviceId();
        const third = deviceTokenOf(await withDevice(user, chosen));
        expect(new Set([first, second, third, chosen]).size).toBe(4);
        // The made-up id did not become known by that login: it is still a new device.
        expect((await lastDecision(user.userId)).details).toMatchObject({ reasons: ["new_device"] });
        expect(deviceTokenOf(await withDevice(user, chosen))).not.toBe(chosen);
        // The token is kept whatever the protocol.
        for (const client of [g, gi]) {
          const r = await client.login({ ...creds(user), deviceId: second });
          expect(r.deviceToken).toBe(second);
          const fresh = await client.login(creds(user));
          expect(fresh.deviceToken).toMatch(DEVICE_TOKEN_SHAPE);
          expect(fresh.deviceToken).not.toBe(second);
        }
        // Another account's token is no device of this one.
        const other = await registerUser(s);
        deviceTokenOf(await loginRest(s, creds(other)));
        const foreign = await withDevice(other, first);
        expect(deviceTokenOf(foreign)).not.toBe(first);
        expect((await lastDecision(other.userId)).details).toMatchObject({ reasons: ["new_device"] });
      });

      it("a client-chosen device_id never skips MFA, even after an MFA login with it; the token that login returned does", async () => {
        const u = await mfaUser(s, c.now());
        const chosen = chosenDeviceId();
        const oneShot = await mfaLogin(s, c, u, { deviceId: chosen });
        expect(oneShot.deviceToken).not.toBe(chosen);
        c.advance(MINUTE);
        expectMfaRequired(await withDevice(u, chosen));
        expect(await lastDecision(u.userId)).toMatchObject({ reason: "mfa_required", details: expect.objectContaining({ decision: "require_mfa" }) });

        // Two-step, with the chosen id: CompleteMfaLogin issues a token of its own.
        c.advance(STEP);
        const challenge = expectMfaRequired(await withDevice(u, chosen));
        const done = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) });
        const twoStep = deviceTokenOf(done);
        expect(new Set([twoStep, oneShot.deviceToken, chosen]).size).toBe(3);
        c.advance(MINUTE);
        expectMfaRequired(await withDevice(u, chosen));

        // The issued tokens skip MFA.
        expectSkipped(await withDevice(u, oneShot.deviceToken), oneShot.deviceToken);
        expectSkipped(await withDevice(u, twoStep), twoStep);
        expect(await lastDecision(u.userId)).toMatchObject({ outcome: "success", reason: "allow", details: expect.objectContaining({ reasons: [] }) });
        const viaGrpc = await gi.login({ ...creds(u), deviceId: oneShot.deviceToken });
        expect(viaGrpc.deviceToken).toBe(oneShot.deviceToken);
        expect(authClaims(viaGrpc.accessToken).amr).toEqual(["pwd"]);

        // A completion from a known device gets a new token too; the token it presented stays as it was (untrusted).
        c.advance(STEP);
        const fromKnown = expectMfaRequired(await withDevice(u, u.deviceToken)); // known, never passed MFA
        const renewed = deviceTokenOf(await completeMfaRest(s, { mfa_challenge: fromKnown, mfa_code: await c.code(u.secret) }));
        expect(renewed).not.toBe(u.deviceToken);
        expectSkipped(await withDevice(u, renewed), renewed);
        expectMfaRequired(await withDevice(u, u.deviceToken));

        // A token trusted by another account is nothing here.
        const v = await mfaUser(s, c.now());
        const vToken = (await mfaLogin(s, c, v)).deviceToken;
        expectSkipped(await withDevice(v, vToken), vToken);
        expectMfaRequired(await withDevice(u, vToken));
      });
    });

    describe("lockout separation", () => {
      it("100 wrong passwords without the device token lock the account for token-less logins; the owner's device logs in", { timeout: 60_000 }, async () => {
        const victim = await registerUser(s);
        const victimDevice = deviceTokenOf(await loginRest(s, creds(victim)));
        // The attacker holds a token too, issued to an account of their own.
        const attacker = await registerUser(s);
        const attackerDevice = deviceTokenOf(await loginRest(s, creds(attacker)));
        const chosen = chosenDeviceId();

        for (let i = 0; i < 100; i++) {
          const device = [undefined, chosen, attackerDevice][i % 3];
          const password = wrong();
          if (i % 5 === 4) {
            const req = { email: victim.email, password, ...(device === undefined ? {} : { deviceId: device }) };
            await expectGrpcError(gi.login(req), grpc.status.UNAUTHENTICATED, "INVALID_CREDENTIALS");
          } else {
            expectRestError(await loginRest(s, { email: victim.email, password, ...(device === undefined ? {} : { device_id: device }) }), 401, "INVALID_CREDENTIALS");
          }
        }
        expect((await auditOf(s, victim.userId, "account_locked")).map((e) => e.details)).toEqual([
          { failures: 100, threshold: 100, last_factor: "password" },
        ]);

        // Locked for every attempt without the victim's token, the right password included.
        expectRestError(await loginRest(s, creds(victim)), 401, "INVALID_CREDENTIALS");
        expectRestError(await withDevice(victim, chosen), 401, "INVALID_CREDENTIALS");
        expectRestError(await withDevice(victim, attackerDevice), 401, "INVALID_CREDENTIALS");
        await expectGrpcError(gi.login(creds(victim)), grpc.status.UNAUTHENTICATED, "INVALID_CREDENTIALS");

        // The victim's device has a counter of its own: not throttled, not locked.
        const ok = await withDevice(victim, victimDevice);
        expect(deviceTokenOf(ok)).toBe(victimDevice);
        expect(decodeJwt(ok.body.access_token).sub).toBe(victim.userId);
        const viaGrpc = await g.login({ ...creds(victim), deviceId: victimDevice });
        expect(viaGrpc.deviceToken).toBe(victimDevice);
        // Its own typo is its own failure; the next right password passes.
        expectRestError(await withDevice(victim, victimDevice, { password: wrong() }), 401, "INVALID_CREDENTIALS");
        expect(deviceTokenOf(await withDevice(victim, victimDevice))).toBe(victimDevice);
        // ...and the owner's success did not unlock the account for the others.
        expectRestError(await loginRest(s, creds(victim)), 401, "INVALID_CREDENTIALS");
        // The attacker's own account is untouched.
        expect(deviceTokenOf(await withDevice(attacker, attackerDevice))).toBe(attackerDevice);
      });

      it("with MFA on: a trusted device skips the code and a known one logs in with a code in one step, despite the lock", { timeout: 60_000 }, async () => {
        const u = await mfaUser(s, c.now());
        const trusted = (await mfaLogin(s, c, u)).deviceToken;
        for (let i = 0; i < 100; i++) expectRestError(await loginRest(s, { email: u.email, password: wrong() }), 401, "INVALID_CREDENTIALS");
        c.advance(MINUTE);
        expectRestError(await loginRest(s, creds(u)), 401, "INVALID_CREDENTIALS");
        expectSkipped(await withDevice(u, trusted), trusted);
        // The enrolment's device is known but never passed MFA: asked for a code, which it can give.
        expectMfaRequired(await withDevice(u, u.deviceToken));
        c.advance(STEP);
        const withCode = await withDevice(u, u.deviceToken, { mfa_code: await c.code(u.secret) });
        expect(deviceTokenOf(withCode)).toBe(u.deviceToken);
        expect(authClaims(withCode.body.access_token).amr).toEqual(["pwd", "otp", "mfa"]);
      });

      // The second step counts on the device's own counter, as the first did.
      it("with MFA on: the two-step login (MFA_REQUIRED, then CompleteMfaLogin) of a known device also gets through the lock", { timeout: 60_000 }, async () => {
        const u = await mfaUser(s, c.now());
        for (let i = 0; i < 100; i++) expectRestError(await loginRest(s, { email: u.email, password: wrong() }), 401, "INVALID_CREDENTIALS");
        c.advance(STEP);
        const challenge = expectMfaRequired(await withDevice(u, u.deviceToken));
        const done = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) });
        expect(done.status, done.text).toBe(201);
      });
    });

    // Both steps count on the device's counter, so the completion clears what the first step claimed.
    it("a two-step login from a known device leaves no failure counted on that device", async () => {
      const u = await mfaUser(s, c.now());
      for (let i = 0; i < 2; i++) {
        c.advance(STEP);
        const challenge = expectMfaRequired(await withDevice(u, u.deviceToken));
        deviceTokenOf(await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }));
      }
      expectMfaRequired(await withDevice(u, u.deviceToken));
      expect((await lastDecision(u.userId)).details).toMatchObject({ reasons: [], score: 0 });
    });

    describe("trust ends", () => {
      it("on RegenerateRecoveryCodes, ChangePassword and a new TOTP enrolment: the next login with the token needs MFA again", async () => {
        const u = await mfaUser(s, c.now());
        const first = await mfaLogin(s, c, u);
        const device = first.deviceToken;
        c.advance(MINUTE);
        expectSkipped(await withDevice(u, device), device);

        expect((await regenerate(first.accessToken)).status).toBe(200);
        expectMfaRequired(await withDevice(u, device));
        // Passing MFA again (one-shot, the token kept) restores the trust.
        const second = await mfaLogin(s, c, u, { deviceId: device });
        expect(second.deviceToken).toBe(device);
        expectSkipped(await withDevice(u, device), device);

        const newPassword = strongPassword("trust");
        const changed = await changePassword(second.accessToken, u.password, newPassword);
        expect(changed.status, changed.text).toBe(200);
        const v = { ...u, password: newPassword };
        expectRestError(await withDevice(u, device), 401, "INVALID_CREDENTIALS"); // the old password
        expectMfaRequired(await withDevice(v, device));
        const third = await mfaLogin(s, c, v, { deviceId: device });
        expectSkipped(await withDevice(v, device), device);

        // TOTP off: no second factor at all. On again (a new secret): the old trust is gone.
        c.advance(STEP);
        expect((await disable(third.accessToken, v.password, await c.code(u.secret))).status).toBe(204);
        const plain = expectSkipped(await withDevice(v, device), device);
        c.advance(STEP);
        const again = await enrolTotp(s, plain, v.password, c.now());
        expectMfaRequired(await withDevice(v, device));
        const fourth = await mfaLogin(s, c, { ...v, secret: again.secret }, { deviceId: device });
        expect(fourth.deviceToken).toBe(device);
        expectSkipped(await withDevice(v, device), device);
      });

      it("after TRUSTED_DEVICE_TTL (30 days) from the last MFA, whatever logins came in between", async () => {
        const u = await mfaUser(s, c.now());
        const device = (await mfaLogin(s, c, u)).deviceToken; // the MFA login: t0
        c.advance(15 * DAY);
        expectSkipped(await withDevice(u, device), device); // does not renew the trust
        c.advance(TRUSTED_DEVICE_TTL - 15 * DAY - SECOND); // t0 + 30 d − 1 s
        expectSkipped(await withDevice(u, device), device);
        c.advance(2 * SECOND); // t0 + 30 d + 1 s
        expectMfaRequired(await withDevice(u, device));
        expect(await lastDecision(u.userId)).toMatchObject({ reason: "mfa_required", details: expect.objectContaining({ decision: "allow" }) });
        // A new MFA login starts a new period.
        const renewed = await mfaLogin(s, c, u, { deviceId: device });
        expect(renewed.deviceToken).toBe(device);
        c.advance(29 * DAY);
        expectSkipped(await withDevice(u, device), device);
      });
    });

    it("administrators never skip MFA, even with a device that passed it", async () => {
      const u = await mfaUser(s, c.now());
      const device = (await mfaLogin(s, c, u)).deviceToken;
      c.advance(MINUTE);
      expectSkipped(await withDevice(u, device), device);

      await setRole(u.email, "admin");
      c.advance(MINUTE);
      expectMfaRequired(await withDevice(u, device));
      // The risk allowed it: the admin rule alone asked.
      expect(await lastDecision(u.userId)).toMatchObject({ reason: "mfa_required", details: expect.objectContaining({ decision: "allow", reasons: [] }) });
      const err = await grpcFailure(gi.login({ ...creds(u), deviceId: device }));
      expect({ code: err.code, reason: errorInfo(err).reason }).toEqual({ code: grpc.status.UNAUTHENTICATED, reason: "MFA_REQUIRED" });
      const admin = await mfaLogin(s, c, u, { deviceId: device });
      expect(admin.deviceToken).toBe(device);
      expect(decodeJwt(admin.accessToken)).toMatchObject({ role: "admin", amr: ["pwd", "otp", "mfa"] });
      c.advance(MINUTE);
      expectMfaRequired(await withDevice(u, device));

      // Back to customer: the device's trust was there all along.
      await setRole(u.email, "customer");
      expectSkipped(await withDevice(u, device), device);
    });

    it("a session that skipped MFA gets RECENT_AUTH_REQUIRED (acr aal2) on sensitive RPCs; Reauthenticate with a code lifts it", async () => {
      const u = await mfaUser(s, c.now());
      const mfaSession = await mfaLogin(s, c, u);
      c.advance(MINUTE);
      const skipped = await withDevice(u, mfaSession.deviceToken);
      const token = expectSkipped(skipped, mfaSession.deviceToken);
      // A login a moment ago: recent, but without the second factor.
      expect(authClaims(token).auth_time).toBe(Math.floor(c.now().getTime() / 1000));

      await expectSensitiveRefused(s, token, u.password, AAL2_REQUIRED.metadata);
      for (const call of [
        () => gi.changePassword({ oldPassword: u.password, newPassword: strongPassword("aal2") }, bearerMd(token)),
        () => g.revokeOtherSessions({}, bearerMd(token)),
      ]) {
        const err = await grpcFailure(call());
        expect({ code: err.code, ...errorInfo(err) }).toEqual({ code: grpc.status.UNAUTHENTICATED, ...AAL2_REQUIRED });
      }
      // Nothing changed; reading is not sensitive.
      expect((await rest(s.baseUrl, "GET", "/user/profile", { token })).status).toBe(200);
      expect((await rest(s.baseUrl, "GET", "/user/mfa", { token })).body).toMatchObject({ totp_enabled: true, recovery_codes_remaining: 10 });
      expect((await rest(s.baseUrl, "GET", "/user/sessions", { token: mfaSession.accessToken })).status).toBe(200);
      // The session that passed MFA is past the gate all along.
      expectRestError(
        await rest(s.baseUrl, "POST", "/user/mfa/totp", { token: mfaSession.accessToken, body: { password: u.password } }),
        400,
        "MFA_ALREADY_ENABLED",
      );

      // Re-authentication: the password alone is not enough; with a code the same session is aal2.
      c.advance(STEP);
      expectRestError(await reauth(token, { password: u.password }), 401, "MFA_REQUIRED");
      const fresh = await reauth(token, { password: u.password, mfa_code: await c.code(u.secret) });
      expect(fresh.status, fresh.text).toBe(200);
      const aal2 = fresh.body.access_token as string;
      expect(decodeJwt(aal2).sid).toBe(skipped.body.session_id);
      expect(authClaims(aal2)).toMatchObject({ amr: ["pwd", "otp", "mfa"], acr: "aal2" });
      const revoked = await rest(s.baseUrl, "POST", "/user/sessions:revokeOthers", { token: aal2, body: {} });
      expect(revoked.status, revoked.text).toBe(200);
      expect((await regenerate(aal2)).status).toBe(200);
      // Its refreshes keep the second factor.
      const refreshed = await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: skipped.body.refresh_token } });
      expect(refreshed.status, refreshed.text).toBe(200);
      expect(authClaims(refreshed.body.access_token).amr).toEqual(["pwd", "otp", "mfa"]);
    });

    it("credential changes are alerted by signed webhooks: mfa_enabled, recovery_codes_regenerated, mfa_disabled, password_changed", async () => {
      const user: SeededUser = await registerUser(s, { email: uniqueEmail("alerts") });
      const first = await loginRest(s, creds(user));
      const firstSession = first.body.session_id as string;
      const { secret } = await enrolTotp(s, first.body.access_token, user.password, c.now());
      const u = { ...user, secret };
      const [enabled] = await hooks.waitFor("mfa_enabled", user.userId);
      expect(eventOf(enabled!)).toEqual({ type: "mfa_enabled", verified: true, data: { user_id: user.userId, session_id: firstSession, ip: "127.0.0.1" } });

      const session = await mfaLogin(s, c, u);
      // Refused attempts are not alerted.
      expect((await regenerate(first.body.access_token)).status).toBe(401);
      expectRestError(await changePassword(session.accessToken, "not the password at all", strongPassword("x")), 401, "INVALID_CREDENTIALS");

      expect((await regenerate(session.accessToken)).status).toBe(200);
      const [regenerated] = await hooks.waitFor("recovery_codes_regenerated", user.userId);
      expect(eventOf(regenerated!)).toEqual({
        type: "recovery_codes_regenerated",
        verified: true,
        data: { user_id: user.userId, session_id: session.sessionId, ip: "127.0.0.1" },
      });

      c.advance(STEP);
      expect((await disable(session.accessToken, user.password, await c.code(secret))).status).toBe(204);
      const [disabled] = await hooks.waitFor("mfa_disabled", user.userId);
      expect(eventOf(disabled!)).toEqual({ type: "mfa_disabled", verified: true, data: { user_id: user.userId, session_id: session.sessionId, ip: "127.0.0.1" } });

      const changed = await changePassword(session.accessToken, user.password, strongPassword("renewed"));
      expect(changed.status, changed.text).toBe(200);
      const [passwordChanged] = await hooks.waitFor("password_changed", user.userId);
      expect(eventOf(passwordChanged!)).toEqual({
        type: "password_changed",
        verified: true,
        data: { user_id: user.userId, session_id: session.sessionId, ip: "127.0.0.1" },
      });

      // Exactly one of each, a moment later.
      await new Promise((r) => setTimeout(r, 200));
      for (const type of ["mfa_enabled", "recovery_codes_regenerated", "mfa_disabled", "password_changed"]) {
        expect({ type, count: hooks.ofType(type, user.userId).length }).toEqual({ type, count: 1 });
      }
    });
  });
}
