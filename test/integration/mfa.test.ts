import * as grpc from "@grpc/grpc-js";
import { eq } from "drizzle-orm";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService, Role } from "../../gen/identity/v1/identity_service_pb.js";
import { setRole } from "../../src/cli/set-role.js";
import { sessions as sessionsTable } from "../../src/storage/schema.js";
import { createUserStore } from "../../src/storage/user-store.js";
import { auditOf } from "../support/audit.js";
import { bearerMd, grpcJsClient, rest, type RestResponse } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorInfo, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import {
  authClaims,
  completeMfaRest,
  controlledClock,
  expectMfaRequired,
  expectSensitiveRefused,
  loginRest,
  mfaLogin,
  mfaStatus,
  type MfaUser,
  mfaUser,
  MINUTE,
  SECOND,
  STEP,
} from "../support/mfa.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { enrolTotp, registerUser, strongPassword } from "../support/users.js";

// TOTP enrolment, one-shot and two-step MFA logins, replay protection,
// recovery codes, amr/acr/auth_time, recent authentication for sensitive
// operations, the brute-force counter and the administrators' TOTP rule.
// The server runs on a controlled clock started mid-step, so every TOTP
// code below is exact: `c.code(secret, k)` is the code k steps from now.

const RECOVERY_CODE_SHAPE = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/;

const creds = (u: { email: string; password: string }) => ({ email: u.email, password: u.password });

for (const backend of backends) {
  describe.skipIf(backend.skip)(`MFA (${backend.name})`, () => {
    const c = controlledClock();
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let gi: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      s = await startTestServer(backend.name, { overrides: { clock: c.clock } });
      g = grpcJsClient(IdentityService, s.port);
      gi = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      gi?.close();
      await s?.destroy();
    });

    const nowSeconds = () => Math.floor(c.now().getTime() / 1000);
    /** A code no window of the near future accepts (ten steps ahead). */
    const wrongCode = (u: MfaUser) => c.code(u.secret, 10);
    const start = (token: string, password: string) => rest(s.baseUrl, "POST", "/user/mfa/totp", { token, body: { password } });
    const confirm = (token: string, code: string) => rest(s.baseUrl, "POST", "/user/mfa/totp/confirm", { token, body: { code } });
    const disable = (token: string, password: string, code: string) => rest(s.baseUrl, "DELETE", "/user/mfa/totp", { token, body: { password, code } });
    const regenerate = (token: string) => rest(s.baseUrl, "POST", "/user/mfa/recovery-codes", { token, body: {} });
    const reauth = (token: string, body: Record<string, string>) => rest(s.baseUrl, "POST", "/user/reauthenticate", { token, body });
    const refresh = (token: string) => rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: token } });
    const profile = (token: string) => rest(s.baseUrl, "GET", "/user/profile", { token });
    const sessionRows = (userId: string) => s.app.database.db.select().from(sessionsTable).where(eq(sessionsTable.userId, userId));
    const expect201 = (r: RestResponse) => {
      expect(r.status, r.text).toBe(201);
      return r.body as { access_token: string; refresh_token: string; session_id: string; user_id: string; expires_in: number; token_type: string };
    };

    describe("enrolment", () => {
      it("StartTotpEnrollment: an otpauth URI, a PNG QR code and a base32 secret; MFA stays off until confirmed", async () => {
        const user = await registerUser(s);
        const { access_token: token } = expect201(await loginRest(s, creds(user)));
        const started = await start(token, user.password);
        expect(started.status, started.text).toBe(201);
        const secret = started.body.secret as string;
        expect(secret).toMatch(/^[A-Z2-7]{32}$/);
        const uri = new URL(started.body.otpauth_uri);
        expect(uri.protocol).toBe("otpauth:");
        expect(uri.host).toBe("totp");
        expect(decodeURIComponent(uri.pathname)).toBe(`/Identity:${user.email}`);
        expect(Object.fromEntries(uri.searchParams)).toEqual({ secret, issuer: "Identity", algorithm: "SHA1", digits: "6", period: "30" });
        expect(started.body.qr_code_png_data_url).toMatch(/^data:image\/png;base64,/);
        const png = Buffer.from(started.body.qr_code_png_data_url.split(",")[1], "base64");
        expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
        expect(Date.parse(started.body.expire_time)).toBe(c.now().getTime() + 15 * MINUTE);

        // Pending only: no second factor yet.
        expect(await mfaStatus(s, token)).toEqual({ totp_enabled: false, recovery_codes_remaining: 0 });
        expect201(await loginRest(s, creds(user)));

        expectRestError(await confirm(token, await c.code(secret, 5)), 401, "MFA_CODE_INVALID");
        const confirmed = await confirm(token, await c.code(secret));
        expect(confirmed.status, confirmed.text).toBe(200);
        const codes = confirmed.body.recovery_codes as string[];
        expect(codes).toHaveLength(10);
        expect(new Set(codes).size).toBe(10);
        for (const code of codes) expect(code).toMatch(RECOVERY_CODE_SHAPE);
        expect(await mfaStatus(s, token)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });
        expectMfaRequired(await loginRest(s, creds(user)));
        const events = await auditOf(s, user.userId, "mfa_confirm");
        expect(events.map((e) => [e.outcome, e.reason])).toEqual([
          ["failure", "MFA_CODE_INVALID"],
          ["success", null],
        ]);
      });

      it("restarting an enrolment replaces the pending secret: only the newest one confirms", async () => {
        const user = await registerUser(s);
        const { access_token: token } = expect201(await loginRest(s, creds(user)));
        const first = (await start(token, user.password)).body.secret as string;
        const second = (await start(token, user.password)).body.secret as string;
        expect(second).not.toBe(first);
        expectRestError(await confirm(token, await c.code(first)), 401, "MFA_CODE_INVALID");
        expect((await confirm(token, await c.code(second))).status).toBe(200);
      });

      it("enrolling twice is MFA_ALREADY_ENABLED; confirming or regenerating without TOTP is MFA_NOT_ENABLED (400 / FAILED_PRECONDITION)", async () => {
        const u = await mfaUser(s, c.now());
        // With TOTP on, enrolment needs a session that passed MFA (the enrolment's own did not).
        const { accessToken: token2fa } = await mfaLogin(s, c, u);
        expectRestError(await start(token2fa, u.password), 400, "MFA_ALREADY_ENABLED");
        expectRestError(await confirm(token2fa, await c.code(u.secret, 1)), 400, "MFA_ALREADY_ENABLED");
        await expectGrpcError(gi.startTotpEnrollment({ password: u.password }, bearerMd(token2fa)), grpc.status.FAILED_PRECONDITION, "MFA_ALREADY_ENABLED");
        // The confirmed authenticator was not replaced by the attempts.
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });
        c.advance(STEP);
        expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));

        const plain = await registerUser(s);
        const { access_token: token } = expect201(await loginRest(s, creds(plain)));
        expectRestError(await confirm(token, "123456"), 400, "MFA_NOT_ENABLED");
        expectRestError(await regenerate(token), 400, "MFA_NOT_ENABLED");
        await expectGrpcError(gi.confirmTotpEnrollment({ code: "123456" }, bearerMd(token)), grpc.status.FAILED_PRECONDITION, "MFA_NOT_ENABLED");
      });

      it("an enrolment not confirmed within MFA_ENROLMENT_TTL (15 min) is void", async () => {
        const user = await registerUser(s);
        const { access_token: token } = expect201(await loginRest(s, creds(user)));
        const secret = (await start(token, user.password)).body.secret as string;
        c.advance(15 * MINUTE + SECOND);
        // Recent auth lapsed too: prove it again (no MFA yet, so the password alone).
        const again = await reauth(token, { password: user.password });
        expect(again.status, again.text).toBe(200);
        expectRestError(await confirm(again.body.access_token, await c.code(secret)), 400, "MFA_NOT_ENABLED");
        expect(await mfaStatus(s, token)).toEqual({ totp_enabled: false, recovery_codes_remaining: 0 });
      });
    });

    describe("one-shot login", () => {
      it("without a code: 401 MFA_REQUIRED with a challenge, methods and expires_in_seconds; no tokens and no session", async () => {
        const u = await mfaUser(s, c.now());
        const r = await loginRest(s, creds(u));
        expectMfaRequired(r);
        expect(errorInfo(r.body).metadata.expires_in_seconds).toBe("300");
        expect(await sessionRows(u.userId)).toHaveLength(1); // the enrolment's login
        const decisions = await auditOf(s, u.userId, "risk_decision");
        expect(decisions.at(-1)).toMatchObject({ outcome: "success", reason: "mfa_required" });
        expect(decisions.at(-1)!.details).toMatchObject({ mfa_enabled: true });
        expect(await auditOf(s, u.userId, "mfa_challenge")).toHaveLength(1);
      });

      it("the code that confirmed the enrolment cannot log in; the next step's can: amr pwd+otp+mfa, acr aal2, auth_time; refresh keeps them", async () => {
        const u = await mfaUser(s, c.now());
        expect(authClaims(u.accessToken)).toEqual({ amr: ["pwd"], acr: "aal1", auth_time: expect.any(Number) });
        expectRestError(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }), 401, "MFA_CODE_INVALID");
        c.advance(STEP);
        const ok = expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));
        expect(ok.user_id).toBe(u.userId);
        const loginTime = nowSeconds();
        expect(authClaims(ok.access_token)).toEqual({ amr: ["pwd", "otp", "mfa"], acr: "aal2", auth_time: loginTime });
        c.advance(MINUTE);
        const next = await refresh(ok.refresh_token);
        expect(next.status, next.text).toBe(200);
        expect(authClaims(next.body.access_token)).toEqual({ amr: ["pwd", "otp", "mfa"], acr: "aal2", auth_time: loginTime });
        expect(decodeJwt(next.body.access_token).iat).toBe(nowSeconds());
      });

      it("a recovery code logs in once (amr pwd+kba+mfa), also typed in lower case without hyphens; GetMfaStatus counts what is left", async () => {
        const u = await mfaUser(s, c.now());
        const [first, second] = u.recoveryCodes as [string, string];
        const ok = expect201(await loginRest(s, { ...creds(u), recovery_code: first }));
        expect(authClaims(ok.access_token)).toEqual({ amr: ["pwd", "kba", "mfa"], acr: "aal2", auth_time: nowSeconds() });
        expectRestError(await loginRest(s, { ...creds(u), recovery_code: first }), 401, "MFA_CODE_INVALID");
        expect201(await loginRest(s, { ...creds(u), recovery_code: second.toLowerCase().replaceAll("-", "") }));
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: true, recovery_codes_remaining: 8 });
        const uses = await auditOf(s, u.userId, "recovery_code_use");
        expect(uses.map((e) => [e.outcome, e.details])).toEqual([
          ["success", { remaining: 9 }],
          ["failure", null],
          ["success", { remaining: 8 }],
        ]);
      });

      it("a wrong, malformed or foreign code is MFA_CODE_INVALID", async () => {
        const u = await mfaUser(s, c.now());
        const other = await mfaUser(s, c.now());
        c.advance(STEP);
        for (const second of [
          { mfa_code: await wrongCode(u) },
          { mfa_code: "12a456" },
          { recovery_code: other.recoveryCodes[0]! },
          { recovery_code: "not-a-recovery-code" },
        ]) {
          expectRestError(await loginRest(s, { ...creds(u), ...second }), 401, "MFA_CODE_INVALID");
        }
        // The other user's code is still unused.
        expect201(await loginRest(s, { ...creds(other), recovery_code: other.recoveryCodes[0]! }));
        expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));
      });

      it("replay: a used code and any earlier step are refused; ±1 step (30 s) is accepted, ±2 refused", async () => {
        const u = await mfaUser(s, c.now()); // step N is used by the confirmation
        const attempt = async (steps: number) => loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret, steps) });
        c.advance(STEP); // now N+1
        expect201(await attempt(0));
        expectRestError(await attempt(0), 401, "MFA_CODE_INVALID"); // the same code again
        expect201(await attempt(+1)); // N+2: one step ahead is accepted
        c.advance(STEP); // now N+2, last used N+2
        expectRestError(await attempt(0), 401, "MFA_CODE_INVALID"); // already used, ahead of time
        expectRestError(await attempt(-1), 401, "MFA_CODE_INVALID"); // N+1: earlier than the last used
        c.advance(2 * STEP); // now N+4, last used N+2
        expect201(await attempt(-1)); // N+3: one step behind is accepted
        expectRestError(await attempt(+2), 401, "MFA_CODE_INVALID"); // N+6: too far ahead
        c.advance(4 * STEP); // now N+8, last used N+3
        expectRestError(await attempt(-2), 401, "MFA_CODE_INVALID"); // N+6: too far behind, though never used
        expect201(await attempt(0));
      });
    });

    describe("two-step login (CompleteMfaLogin)", () => {
      it("the challenge and a TOTP code give a session (201, amr otp); the challenge works once", async () => {
        const u = await mfaUser(s, c.now());
        c.advance(STEP);
        const challenge = expectMfaRequired(await loginRest(s, creds(u)));
        const done = expect201(await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }));
        expect(done).toMatchObject({ user_id: u.userId, token_type: "Bearer", expires_in: 900, refresh_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) });
        expect(authClaims(done.access_token)).toEqual({ amr: ["pwd", "otp", "mfa"], acr: "aal2", auth_time: nowSeconds() });
        expect((await profile(done.access_token)).status).toBe(200);
        expect((await refresh(done.refresh_token)).status).toBe(200);
        c.advance(STEP);
        expectRestError(await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }), 401, "MFA_CHALLENGE_INVALID");
        const logins = await auditOf(s, u.userId, "login");
        expect(logins.filter((e) => e.outcome === "success" && e.reason === "mfa_challenge").map((e) => e.sessionId)).toEqual([done.session_id]);
      });

      it("with a recovery code (amr kba); two completions of one challenge at once give exactly one session", async () => {
        const u = await mfaUser(s, c.now());
        const one = expectMfaRequired(await loginRest(s, creds(u)));
        const done = expect201(await completeMfaRest(s, { mfa_challenge: one, recovery_code: u.recoveryCodes[0]! }));
        expect(authClaims(done.access_token)).toMatchObject({ amr: ["pwd", "kba", "mfa"], acr: "aal2" });

        const two = expectMfaRequired(await loginRest(s, creds(u)));
        const raced = await Promise.all([
          completeMfaRest(s, { mfa_challenge: two, recovery_code: u.recoveryCodes[1]! }),
          completeMfaRest(s, { mfa_challenge: two, recovery_code: u.recoveryCodes[2]! }),
        ]);
        expect(raced.map((r) => r.status).sort()).toEqual([201, 401]);
        expect(errorInfo(raced.find((r) => r.status === 401)!.body).reason).toBe("MFA_CHALLENGE_INVALID");
      });

      it("the challenge expires after MFA_CHALLENGE_TTL (5 min)", async () => {
        const u = await mfaUser(s, c.now());
        c.advance(STEP);
        const early = expectMfaRequired(await loginRest(s, creds(u)));
        const late = expectMfaRequired(await loginRest(s, creds(u)));
        c.advance(5 * MINUTE - SECOND);
        expect201(await completeMfaRest(s, { mfa_challenge: early, mfa_code: await c.code(u.secret) }));
        c.advance(2 * SECOND);
        // The next step's code is fresh and in the window: only the challenge's age refuses it.
        expectRestError(await completeMfaRest(s, { mfa_challenge: late, mfa_code: await c.code(u.secret, 1) }), 401, "MFA_CHALLENGE_INVALID");
      });

      it("five wrong codes exhaust the challenge; four do not", async () => {
        // Wrong codes also count with the account's failed logins (5 free,
        // then 1 s, 2 s, …): the clock moves 2 s between attempts so that
        // only the challenge's own limit is under test.
        const tries = async (u: MfaUser, wrong: number) => {
          c.advance(STEP);
          const challenge = expectMfaRequired(await loginRest(s, creds(u)));
          for (let i = 0; i < wrong; i++) {
            c.advance(2 * SECOND);
            expectRestError(await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await wrongCode(u) }), 401, "MFA_CODE_INVALID");
          }
          c.advance(5 * SECOND);
          return completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) });
        };
        expectRestError(await tries(await mfaUser(s, c.now()), 5), 401, "MFA_CHALLENGE_INVALID");
        expect201(await tries(await mfaUser(s, c.now()), 4));
      });

      it("the challenge is good for nothing else, and nothing else is a challenge", async () => {
        const u = await mfaUser(s, c.now());
        c.advance(STEP);
        const challenge = expectMfaRequired(await loginRest(s, creds(u)));
        expectRestError(await profile(challenge), 401, "TOKEN_INVALID");
        await expectGrpcError(gi.getProfile({}, bearerMd(challenge)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        expectRestError(await refresh(challenge), 401, "REFRESH_TOKEN_INVALID");
        for (const bogus of ["x", u.refreshToken, u.accessToken.slice(0, 43), `${challenge.slice(0, 42)}A`]) {
          if (bogus === challenge) continue;
          expectRestError(await completeMfaRest(s, { mfa_challenge: bogus, mfa_code: await c.code(u.secret) }), 401, "MFA_CHALLENGE_INVALID");
        }
        // None of that used the challenge up.
        expect201(await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }));
      });

      it("over gRPC (grpc-js, main and internal ports): MFA_REQUIRED with its metadata, CompleteMfaLogin, one-shot login, replay", async () => {
        const u = await mfaUser(s, c.now());
        for (const client of [g, gi]) {
          c.advance(STEP);
          const err = await grpcFailure(client.login(creds(u)));
          const info = errorInfo(err);
          expect({ code: err.code, reason: info.reason }).toEqual({ code: grpc.status.UNAUTHENTICATED, reason: "MFA_REQUIRED" });
          expect(info.metadata).toEqual({ mfa_challenge: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), methods: "totp,recovery_code", expires_in_seconds: "300" });
          const done = await client.completeMfaLogin({ mfaChallenge: info.metadata.mfa_challenge!, mfaCode: await c.code(u.secret) });
          expect(done).toMatchObject({ userId: u.userId, tokenType: "Bearer" });
          expect(authClaims(done.accessToken).amr).toEqual(["pwd", "otp", "mfa"]);
          await expectGrpcError(
            client.completeMfaLogin({ mfaChallenge: info.metadata.mfa_challenge!, mfaCode: await c.code(u.secret, 1) }),
            grpc.status.UNAUTHENTICATED,
            "MFA_CHALLENGE_INVALID",
          );
          c.advance(STEP);
          const code = await c.code(u.secret);
          const oneShot = await client.login({ ...creds(u), mfaCode: code });
          expect(authClaims(oneShot.accessToken)).toMatchObject({ amr: ["pwd", "otp", "mfa"], acr: "aal2" });
          await expectGrpcError(client.login({ ...creds(u), mfaCode: code }), grpc.status.UNAUTHENTICATED, "MFA_CODE_INVALID");
          const status = await client.getMfaStatus({}, bearerMd(oneShot.accessToken));
          expect(status).toMatchObject({ totpEnabled: true, recoveryCodesRemaining: 10 });
        }
      });
    });

    describe("recovery codes", () => {
      it("RegenerateRecoveryCodes: ten new codes, the old set stops working", async () => {
        const u = await mfaUser(s, c.now());
        // A session that passed MFA (with a recovery code) may regenerate; the enrolment's may not.
        const session = expect201(await loginRest(s, { ...creds(u), recovery_code: u.recoveryCodes[0]! }));
        const r = await regenerate(session.access_token);
        expect(r.status, r.text).toBe(200);
        const fresh = r.body.recovery_codes as string[];
        expect(fresh).toHaveLength(10);
        for (const code of fresh) expect(code).toMatch(RECOVERY_CODE_SHAPE);
        expect(fresh.filter((code) => u.recoveryCodes.includes(code))).toEqual([]);
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });
        expectRestError(await loginRest(s, { ...creds(u), recovery_code: u.recoveryCodes[1]! }), 401, "MFA_CODE_INVALID");
        expect201(await loginRest(s, { ...creds(u), recovery_code: fresh[0]! }));
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: true, recovery_codes_remaining: 9 });
        expect(await auditOf(s, u.userId, "recovery_codes_regenerate")).toHaveLength(1);
      });

      it("20 parallel logins with one recovery code, or with one TOTP code: exactly one session each time", async () => {
        // Attempts in flight count against the account's free attempts.
        const rs = await startTestServer(backend.name, { env: { BRUTE_FORCE_FREE_ATTEMPTS: "50" }, overrides: { clock: c.clock } });
        try {
          const u = await mfaUser(rs, c.now());
          const race = async (second: { recovery_code: string } | { mfa_code: string }) => {
            const results = await Promise.all(Array.from({ length: 20 }, () => loginRest(rs, { ...creds(u), ...second })));
            return results.map((r) => (r.status === 201 ? "201" : `${r.status} ${errorInfo(r.body).reason}`)).sort();
          };
          const oneWinner = ["201", ...Array(19).fill("401 MFA_CODE_INVALID")];
          expect(await race({ recovery_code: u.recoveryCodes[0]! })).toEqual(oneWinner);
          const sessionCount = async () => (await rs.app.database.db.select().from(sessionsTable).where(eq(sessionsTable.userId, u.userId))).length;
          expect(await sessionCount()).toBe(2); // the enrolment's login and the winner
          const status = await rest(rs.baseUrl, "GET", "/user/mfa", { token: u.accessToken });
          expect(status.body.recovery_codes_remaining).toBe(9);

          c.advance(STEP);
          expect(await race({ mfa_code: await c.code(u.secret) })).toEqual(oneWinner);
          expect(await sessionCount()).toBe(3);
        } finally {
          await rs.destroy();
        }
      });
    });

    describe("recent authentication", () => {
      it("past RECENT_AUTH_MAX_AGE (10 min) sensitive RPCs answer 401 RECENT_AUTH_REQUIRED; Reauthenticate (password + code) restores them", async () => {
        const u = await mfaUser(s, c.now());
        c.advance(STEP);
        const session = expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));
        c.advance(9 * MINUTE);
        expect((await regenerate(session.access_token)).status).toBe(200); // still recent

        c.advance(2 * MINUTE);
        // A refresh gives a valid access token, but the same old auth_time.
        const refreshed = await refresh(session.refresh_token);
        expect(refreshed.status, refreshed.text).toBe(200);
        const stale = refreshed.body.access_token as string;
        await expectSensitiveRefused(s, stale, u.password, { max_age_seconds: "600" });
        // Reading is not sensitive.
        expect((await profile(stale)).status).toBe(200);
        expect(await mfaStatus(s, stale)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });

        expectRestError(await reauth(stale, { password: "wrong password entirely" }), 401, "INVALID_CREDENTIALS");
        const noCode = await reauth(stale, { password: u.password });
        expectRestError(noCode, 401, "MFA_REQUIRED");
        expect(errorInfo(noCode.body).metadata.mfa_challenge).toBeUndefined();
        expectRestError(await reauth(stale, { password: u.password, mfa_code: await wrongCode(u) }), 401, "MFA_CODE_INVALID");
        const fresh = await reauth(stale, { password: u.password, mfa_code: await c.code(u.secret) });
        expect(fresh.status, fresh.text).toBe(200);
        expect(fresh.body).toMatchObject({ token_type: "Bearer", expires_in: 900 });
        expect(fresh.body.refresh_token).toBeUndefined();
        const token = fresh.body.access_token as string;
        expect(decodeJwt(token).sid).toBe(session.session_id);
        expect(authClaims(token)).toEqual({ amr: ["pwd", "otp", "mfa"], acr: "aal2", auth_time: nowSeconds() });
        const reauthAt = nowSeconds();

        // The stale token stays stale; the session's refreshes now carry the new auth_time.
        expectRestError(await regenerate(stale), 401, "RECENT_AUTH_REQUIRED");
        const after = await refresh(refreshed.body.refresh_token);
        expect(authClaims(after.body.access_token).auth_time).toBe(reauthAt);

        expect((await regenerate(token)).status).toBe(200);
        expectRestError(await start(token, u.password), 400, "MFA_ALREADY_ENABLED"); // past the gate
        expectRestError(await confirm(token, "123456"), 400, "MFA_ALREADY_ENABLED");
        expect((await rest(s.baseUrl, "POST", "/user/sessions:revokeOthers", { token, body: {} })).status).toBe(200);
        const newPassword = strongPassword("ra");
        const changed = await rest(s.baseUrl, "PUT", "/user/password", { token, body: { old_password: u.password, new_password: newPassword } });
        expect(changed.status, changed.text).toBe(200);
        c.advance(STEP);
        expect((await disable(token, newPassword, await c.code(u.secret))).status).toBe(204);
      });

      it("with TOTP on, a recent session that never passed MFA (the enrolment's) gets RECENT_AUTH_REQUIRED with acr aal2; Reauthenticate with a code lifts it", async () => {
        const u = await mfaUser(s, c.now());
        expect(authClaims(u.accessToken)).toMatchObject({ amr: ["pwd"], acr: "aal1" });
        await expectSensitiveRefused(s, u.accessToken, u.password, { max_age_seconds: "600", acr: "aal2" });
        const err = await grpcFailure(gi.regenerateRecoveryCodes({}, bearerMd(u.accessToken)));
        expect({ code: err.code, ...errorInfo(err) }).toEqual({
          code: grpc.status.UNAUTHENTICATED,
          reason: "RECENT_AUTH_REQUIRED",
          metadata: { max_age_seconds: "600", acr: "aal2" },
        });
        // Nothing was changed by the refused calls.
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });
        expect(await auditOf(s, u.userId, "recovery_codes_regenerate")).toEqual([]);
        expect(await auditOf(s, u.userId, "password_change").then((rows) => rows.filter((e) => e.outcome === "success"))).toEqual([]);

        // The password alone does not lift it; with a code the same session may.
        c.advance(STEP);
        expectRestError(await reauth(u.accessToken, { password: u.password }), 401, "MFA_REQUIRED");
        const fresh = await reauth(u.accessToken, { password: u.password, mfa_code: await c.code(u.secret) });
        expect(fresh.status, fresh.text).toBe(200);
        const token = fresh.body.access_token as string;
        expect(authClaims(token)).toEqual({ amr: ["pwd", "otp", "mfa"], acr: "aal2", auth_time: nowSeconds() });
        expect(decodeJwt(token).sid).toBe(u.sessionId);
        expect((await regenerate(token)).status).toBe(200);
      });

      it("Reauthenticate without MFA: the password alone (amr pwd, aal1); over gRPC RECENT_AUTH_REQUIRED carries max_age_seconds", async () => {
        const user = await registerUser(s);
        const a = expect201(await loginRest(s, creds(user)));
        c.advance(11 * MINUTE);
        const err = await grpcFailure(gi.regenerateRecoveryCodes({}, bearerMd(a.access_token)));
        expect({ code: err.code, ...errorInfo(err) }).toEqual({
          code: grpc.status.UNAUTHENTICATED,
          reason: "RECENT_AUTH_REQUIRED",
          metadata: { max_age_seconds: "600" },
        });
        await expectGrpcError(gi.reauthenticate({ password: "not the password" }, bearerMd(a.access_token)), grpc.status.UNAUTHENTICATED, "INVALID_CREDENTIALS");
        const fresh = await gi.reauthenticate({ password: user.password }, bearerMd(a.access_token));
        expect(authClaims(fresh.accessToken)).toEqual({ amr: ["pwd"], acr: "aal1", auth_time: nowSeconds() });
        // Past the gate: no TOTP to regenerate codes for.
        await expectGrpcError(gi.regenerateRecoveryCodes({}, bearerMd(fresh.accessToken)), grpc.status.FAILED_PRECONDITION, "MFA_NOT_ENABLED");
      });
    });

    describe("DisableTotp", () => {
      it("needs the password and a current code; afterwards login needs no code and the old recovery codes are gone", async () => {
        const u = await mfaUser(s, c.now());
        const { accessToken: token } = await mfaLogin(s, c, u);
        c.advance(STEP);
        expectRestError(await disable(token, "not the password", await c.code(u.secret)), 401, "INVALID_CREDENTIALS");
        expectRestError(await disable(token, u.password, await wrongCode(u)), 401, "MFA_CODE_INVALID");
        const off = await disable(token, u.password, await c.code(u.secret));
        expect(off.status, off.text).toBe(204);
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: false, recovery_codes_remaining: 0 });
        const plain = expect201(await loginRest(s, creds(u)));
        expect(authClaims(plain.access_token)).toMatchObject({ amr: ["pwd"], acr: "aal1" });
        expectRestError(await disable(u.accessToken, u.password, await c.code(u.secret, 1)), 400, "MFA_NOT_ENABLED");
        expect((await auditOf(s, u.userId, "mfa_disable")).map((e) => e.outcome)).toEqual(["failure", "failure", "success", "failure"]);

        // Enrolling again gives a new secret and a new set of codes.
        c.advance(STEP);
        const again = await enrolTotp(s, u.accessToken, u.password, c.now());
        expect(again.secret).not.toBe(u.secret);
        expectRestError(await loginRest(s, { ...creds(u), recovery_code: u.recoveryCodes[0]! }), 401, "MFA_CODE_INVALID");
        expect201(await loginRest(s, { ...creds(u), recovery_code: again.recoveryCodes[0]! }));
      });
    });

    describe("brute-force counter", () => {
      it("wrong codes count with the account's failed logins: after five, even the right code is INVALID_CREDENTIALS until the delay passes", async () => {
        const u = await mfaUser(s, c.now());
        c.advance(STEP);
        for (let i = 0; i < 5; i++) {
          expectRestError(await loginRest(s, { ...creds(u), mfa_code: await wrongCode(u) }), 401, "MFA_CODE_INVALID");
        }
        const code = await c.code(u.secret);
        expectRestError(await loginRest(s, { ...creds(u), mfa_code: code }), 401, "INVALID_CREDENTIALS");
        expectRestError(await loginRest(s, { ...creds(u), recovery_code: u.recoveryCodes[0]! }), 401, "INVALID_CREDENTIALS");
        // BRUTE_FORCE_BASE_DELAY is 1 s after the fifth failure; the refused attempts did not use the code.
        c.advance(1_500);
        const ok = expect201(await loginRest(s, { ...creds(u), mfa_code: code }));
        expect(authClaims(ok.access_token).amr).toEqual(["pwd", "otp", "mfa"]);
        expect(await mfaStatus(s, u.accessToken)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });
      });
    });

    describe("administrators", () => {
      const promote = async (email: string) => {
        expect(await createUserStore(s.app.database.db).setRole(email, "admin", c.now())).toBeTruthy();
      };

      it("promoted without TOTP: login is 403 MFA_ENROLLMENT_REQUIRED (REST and gRPC) and starts no session", async () => {
        const user = await registerUser(s);
        await promote(user.email);
        expectRestError(await loginRest(s, creds(user)), 403, "MFA_ENROLLMENT_REQUIRED");
        await expectGrpcError(gi.login(creds(user)), grpc.status.PERMISSION_DENIED, "MFA_ENROLLMENT_REQUIRED");
        expect(await sessionRows(user.userId)).toEqual([]);
        const decisions = await auditOf(s, user.userId, "risk_decision");
        expect(decisions.map((e) => [e.outcome, e.reason])).toEqual([
          ["failure", "MFA_ENROLLMENT_REQUIRED"],
          ["failure", "MFA_ENROLLMENT_REQUIRED"],
        ]);
        // The refusal is not a failed password: the account is not throttled by it.
        for (let i = 0; i < 6; i++) expectRestError(await loginRest(s, creds(user)), 403, "MFA_ENROLLMENT_REQUIRED");
      });

      it.skipIf(backend.name !== "postgres")("set-role refuses to make an account without TOTP an admin (exit 1), and promotes one with TOTP", async () => {
        const db = s.config.database;
        if (db.kind !== "postgres") throw new Error("unreachable");
        const env = { DATABASE_URL: db.url, LOG_LEVEL: "silent" };
        const plain = await registerUser(s);
        expect(await setRole([plain.email, "admin"], env)).toMatchObject({ exitCode: 1 });
        expect201(await loginRest(s, creds(plain))); // still a customer
        const u = await mfaUser(s, c.now());
        const result = await setRole([u.email, "admin"], env);
        expect(result, result.message).toMatchObject({ exitCode: 0 });
        c.advance(STEP);
        const admin = expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));
        expect(decodeJwt(admin.access_token).role).toBe("admin");
      });

      it("an admin with TOTP logs in with a code (role admin, aal2), is asked for one without, and cannot turn TOTP off (403)", async () => {
        const u = await mfaUser(s, c.now());
        await promote(u.email);
        c.advance(STEP);
        expectMfaRequired(await loginRest(s, creds(u)));
        const admin = expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));
        expect(decodeJwt(admin.access_token)).toMatchObject({ role: "admin", amr: ["pwd", "otp", "mfa"], acr: "aal2" });
        expect((await rest(s.baseUrl, "POST", "/token/verify", { body: { access_token: admin.access_token } })).body.role).toBe("ROLE_ADMIN");
        c.advance(STEP);
        expectRestError(await disable(admin.access_token, u.password, await c.code(u.secret)), 403, "MFA_ENROLLMENT_REQUIRED");
        await expectGrpcError(
          gi.disableTotp({ password: u.password, code: await c.code(u.secret) }, bearerMd(admin.access_token)),
          grpc.status.PERMISSION_DENIED,
          "MFA_ENROLLMENT_REQUIRED",
        );
        expect(await mfaStatus(s, admin.access_token)).toEqual({ totp_enabled: true, recovery_codes_remaining: 10 });
        // The code was not spent by the refused call.
        expect201(await loginRest(s, { ...creds(u), mfa_code: await c.code(u.secret) }));
        expect((await g.verifyToken({ accessToken: admin.access_token })).role).toBe(Role.ADMIN);
      });
    });

    describe.skipIf(backend.name !== "postgres")("two instances on one PostgreSQL database", () => {
      it("a code accepted by one instance is refused by the other, also when both get it at once; challenges work across them", async () => {
        // A pair of its own: 20 attempts in flight exceed the default free attempts.
        const env = { BRUTE_FORCE_FREE_ATTEMPTS: "50" };
        const s1 = await startTestServer("postgres", { env, overrides: { clock: c.clock } });
        const s2 = await startTestServer("postgres", { env, shareDatabaseWith: s1, overrides: { clock: c.clock } });
        try {
          const u = await mfaUser(s1, c.now());
          c.advance(STEP);
          const code = await c.code(u.secret);
          expect201(await loginRest(s1, { ...creds(u), mfa_code: code }));
          expectRestError(await loginRest(s2, { ...creds(u), mfa_code: code }), 401, "MFA_CODE_INVALID");
          // An earlier step than the last used, sent to the other instance.
          expectRestError(await loginRest(s2, { ...creds(u), mfa_code: await c.code(u.secret, -1) }), 401, "MFA_CODE_INVALID");

          c.advance(STEP);
          const next = await c.code(u.secret);
          const raced = await Promise.all(Array.from({ length: 20 }, (_, i) => loginRest(i % 2 ? s2 : s1, { ...creds(u), mfa_code: next })));
          expect(raced.map((r) => (r.status === 201 ? "201" : `${r.status} ${errorInfo(r.body).reason}`)).sort()).toEqual([
            "201",
            ...Array(19).fill("401 MFA_CODE_INVALID"),
          ]);

          c.advance(STEP);
          const challenge = expectMfaRequired(await loginRest(s1, creds(u)));
          const done = expect201(await completeMfaRest(s2, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }));
          expect((await rest(s1.baseUrl, "GET", "/user/profile", { token: done.access_token })).status).toBe(200);
          expectRestError(await completeMfaRest(s1, { mfa_challenge: challenge, mfa_code: await c.code(u.secret, 1) }), 401, "MFA_CHALLENGE_INVALID");
        } finally {
          await s2.stop();
          await s1.destroy();
        }
      });
    });
  });
}
