// Registered users, their sessions and their TOTP, as the integration
// suites of every feature build them. Data is seeded through the public
// REST API; the database is only read (grey-box checks), never written
// behind the service's back.
import { expect } from "vitest";
import { createTotp } from "../../src/mfa/totp.js";
import { rest, type RestResponse, STRONG_PASSWORD, uniqueEmail } from "./clients.js";
import type { TestServer } from "./server.js";

/** The registration body of issue 2, verbatim except for the password. */
export function issueRegistrationBody(password = STRONG_PASSWORD) {
  return {
    account: { email: "ngoc.phu@example.com", password },
    info_user: {
      name: "Ngoc Phu",
      phone_number: "1234567890",
      date_of_birth: "2023-11-12T08:00:23.719000",
      gender: true,
      address: "Ha Noi",
    },
  };
}

/** The user the service stores and returns for issueRegistrationBody() (REST names; the date of birth as a date). */
export const ISSUE_USER = {
  email: "ngoc.phu@example.com",
  info_user: {
    name: "Ngoc Phu",
    phone_number: "1234567890",
    date_of_birth: "2023-11-12",
    gender: true,
    address: "Ha Noi",
  },
};

export interface SeededUser {
  email: string;
  password: string;
  userId: string;
}

/** Registers a user over REST (201 asserted). */
export async function registerUser(
  s: TestServer,
  opts: { email?: string; password?: string; info?: Record<string, unknown> } = {},
): Promise<SeededUser> {
  const email = opts.email ?? uniqueEmail();
  const password = opts.password ?? STRONG_PASSWORD;
  const r = await rest(s.baseUrl, "POST", "/register", {
    body: { account: { email, password }, ...(opts.info ? { info_user: opts.info } : {}) },
  });
  expect(r.status, r.text).toBe(201);
  return { email: email.trim().toLowerCase(), password, userId: r.body.user.user_id };
}

export interface Session {
  accessToken: string;
  refreshToken: string;
  sessionId: string;
  userId: string;
  response: RestResponse;
}

/** Logs in over REST (201 asserted). */
export async function login(s: TestServer, email: string, password: string): Promise<Session> {
  const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password } });
  expect(r.status, r.text).toBe(201);
  return {
    accessToken: r.body.access_token,
    refreshToken: r.body.refresh_token,
    sessionId: r.body.session_id,
    userId: r.body.user_id,
    response: r,
  };
}

/** A registered user with one logged-in session. */
export async function userWithSession(s: TestServer, opts: Parameters<typeof registerUser>[1] = {}) {
  const user = await registerUser(s, opts);
  const session = await login(s, user.email, user.password);
  return { ...user, ...session };
}

/** A password the policy accepts and no other test uses. */
export function strongPassword(tag = ""): string {
  return `vivid lantern ${tag}${Math.random().toString(36).slice(2, 8)} orbit`;
}

/** A TOTP code of `secret` at `at` (the server's clock in tests that control it). */
export async function totpCode(secret: string, at: Date = new Date()): Promise<string> {
  return createTotp().generate({ secret, now: at });
}

/**
 * Turns TOTP on for the caller over REST (start with the password, then
 * confirm with the current code) and returns the secret and the ten
 * recovery codes.
 */
export async function enrolTotp(
  s: TestServer,
  accessToken: string,
  password: string,
  at: Date = new Date(),
): Promise<{ secret: string; recoveryCodes: string[] }> {
  const started = await rest(s.baseUrl, "POST", "/user/mfa/totp", { token: accessToken, body: { password } });
  expect(started.status, started.text).toBe(201);
  const secret = started.body.secret as string;
  const confirmed = await rest(s.baseUrl, "POST", "/user/mfa/totp/confirm", { token: accessToken, body: { code: await totpCode(secret, at) } });
  expect(confirmed.status, confirmed.text).toBe(200);
  return { secret, recoveryCodes: confirmed.body.recovery_codes as string[] };
}
