// Builders and probes of the MFA, risk and device-trust suites: a
// controlled clock aligned on TOTP steps, an enrolled user, its MFA logins,
// and the sensitive RPCs behind the recent-authentication gate.
import { decodeJwt } from "jose";
import { expect } from "vitest";
import { rest, type RestResponse } from "./clients.js";
import { errorInfo } from "./error-info.js";
import { enrolTotp, registerUser, strongPassword, totpCode } from "./users.js";
import type { TestServer } from "./server.js";

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
/** One TOTP time step. */
export const STEP = 30 * SECOND;

/**
 * A clock the test moves by hand, started in the middle of a TOTP step so
 * that "this step", "the next step" and "two steps back" are exact.
 */
export function controlledClock() {
  let t = Math.floor(Date.now() / STEP) * STEP + STEP / 2;
  return {
    clock: { now: () => new Date(t) },
    now: () => new Date(t),
    advance: (ms: number) => void (t += ms),
    /** The TOTP code of `secret` at the current time shifted by `steps` steps. */
    code: (secret: string, steps = 0) => totpCode(secret, new Date(t + steps * STEP)),
  };
}
export type ControlledClock = ReturnType<typeof controlledClock>;

/** The MFA challenge of a REST 401 MFA_REQUIRED; asserts the error's shape. */
export function expectMfaRequired(r: RestResponse): string {
  const info = errorInfo(r.body);
  expect({ status: r.status, reason: info.reason }, r.text).toEqual({ status: 401, reason: "MFA_REQUIRED" });
  expect(info.metadata, r.text).toMatchObject({ mfa_challenge: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), methods: "totp,recovery_code" });
  expect(r.body.access_token).toBeUndefined();
  return info.metadata.mfa_challenge!;
}

/** The authentication claims of an access token. */
export function authClaims(token: string) {
  const c = decodeJwt(token);
  return { amr: c.amr, acr: c.acr, auth_time: c.auth_time };
}

export interface LoginBody {
  email: string;
  password: string;
  mfa_code?: string;
  recovery_code?: string;
  device_id?: string;
  cookies_only?: boolean;
}

export const loginRest = (s: TestServer, body: LoginBody, headers: Record<string, string> = {}) =>
  rest(s.baseUrl, "POST", "/login", { body, headers });

export const completeMfaRest = (
  s: TestServer,
  body: { mfa_challenge: string; mfa_code?: string; recovery_code?: string; cookies_only?: boolean },
  headers: Record<string, string> = {},
) => rest(s.baseUrl, "POST", "/login/mfa", { body, headers });

export const mfaStatus = async (s: TestServer, token: string) => {
  const r = await rest(s.baseUrl, "GET", "/user/mfa", { token });
  expect(r.status, r.text).toBe(200);
  // proto3 JSON leaves false and 0 out.
  return { totp_enabled: r.body.totp_enabled ?? false, recovery_codes_remaining: r.body.recovery_codes_remaining ?? 0 };
};

/**
 * The sensitive RPCs over REST (behind the recent-authentication gate),
 * each made with `token` when called; `password` is the account's.
 */
export function sensitiveRestCalls(s: TestServer, token: string, password: string): Record<string, () => Promise<RestResponse>> {
  return {
    ChangePassword: () => rest(s.baseUrl, "PUT", "/user/password", { token, body: { old_password: password, new_password: strongPassword("sensitive") } }),
    DisableTotp: () => rest(s.baseUrl, "DELETE", "/user/mfa/totp", { token, body: { password, code: "123456" } }),
    RegenerateRecoveryCodes: () => rest(s.baseUrl, "POST", "/user/mfa/recovery-codes", { token, body: {} }),
    RevokeOtherSessions: () => rest(s.baseUrl, "POST", "/user/sessions:revokeOthers", { token, body: {} }),
    StartTotpEnrollment: () => rest(s.baseUrl, "POST", "/user/mfa/totp", { token, body: { password } }),
    ConfirmTotpEnrollment: () => rest(s.baseUrl, "POST", "/user/mfa/totp/confirm", { token, body: { code: "123456" } }),
  };
}

/** Asserts that every sensitive REST RPC refuses `token`: 401 RECENT_AUTH_REQUIRED with `metadata`. */
export async function expectSensitiveRefused(s: TestServer, token: string, password: string, metadata: Record<string, string>): Promise<void> {
  for (const [name, call] of Object.entries(sensitiveRestCalls(s, token, password))) {
    const r = await call();
    expect({ name, status: r.status, ...errorInfo(r.body) }, r.text).toEqual({ name, status: 401, reason: "RECENT_AUTH_REQUIRED", metadata });
  }
}

/** The shape of a server-issued device token (32 random bytes, base64url). */
export const DEVICE_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** The `device_token` of a successful REST login; asserts its shape. */
export function deviceTokenOf(r: RestResponse): string {
  expect(r.status, r.text).toBe(201);
  const token = r.body.device_token as string;
  // Missing altogether: the generated code predates field 8 (run `npm run generate`).
  expect(token, `no device_token in the login response: ${r.text}`).toMatch(DEVICE_TOKEN_SHAPE);
  return token;
}

/**
 * A registered user who logged in (first login, no factor yet) and turned
 * TOTP on at the clock's current step, which is thereby used up. The
 * enrolment's session (`accessToken`) never passed MFA: sensitive RPCs
 * refuse it (RECENT_AUTH_REQUIRED, acr aal2) now that TOTP is on; use
 * `mfaLogin` for a session that did.
 */
export async function mfaUser(s: TestServer, at: Date, opts: { headers?: Record<string, string>; deviceId?: string } = {}) {
  const user = await registerUser(s);
  const first = await loginRest(s, { email: user.email, password: user.password, ...(opts.deviceId ? { device_id: opts.deviceId } : {}) }, opts.headers);
  expect(first.status, first.text).toBe(201);
  const { secret, recoveryCodes } = await enrolTotp(s, first.body.access_token, user.password, at);
  return {
    ...user,
    accessToken: first.body.access_token as string,
    refreshToken: first.body.refresh_token as string,
    sessionId: first.body.session_id as string,
    /** The device token of the enrolment's login (a known device that never passed MFA); not asserted here. */
    deviceToken: first.body.device_token as string,
    secret,
    recoveryCodes,
  };
}
export type MfaUser = Awaited<ReturnType<typeof mfaUser>>;

/**
 * A one-shot login with the TOTP code of the next step (the clock moves one
 * step first, so the code is fresh): 201 and amr "mfa" asserted;
 * `deviceToken` is the device token it returned (not asserted here: check
 * it with DEVICE_TOKEN_SHAPE where it matters).
 */
export async function mfaLogin(
  s: TestServer,
  c: ControlledClock,
  u: { email: string; password: string; secret: string },
  opts: { headers?: Record<string, string>; deviceId?: string } = {},
) {
  c.advance(STEP);
  const r = await loginRest(
    s,
    { email: u.email, password: u.password, mfa_code: await c.code(u.secret), ...(opts.deviceId === undefined ? {} : { device_id: opts.deviceId }) },
    opts.headers,
  );
  expect(r.status, r.text).toBe(201);
  expect(authClaims(r.body.access_token).amr, r.text).toContain("mfa");
  return {
    accessToken: r.body.access_token as string,
    refreshToken: r.body.refresh_token as string,
    sessionId: r.body.session_id as string,
    deviceToken: r.body.device_token as string,
  };
}
