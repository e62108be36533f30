// Builders and probes of the e-mail suites: a service with a real SMTP
// server, the e-mail login's two calls over REST, the login mail's link and
// code, and grey-box reads of the outbox and the mail tokens.
import { and, asc, eq } from "drizzle-orm";
import { decodeJwt } from "jose";
import { expect } from "vitest";
import { emailTokens, outbox } from "../../../src/storage/schema.js";
import { rest, type RestResponse } from "../../support/clients.js";
import type { Backend } from "../../support/databases.js";
import type { AppOverrides } from "../../../src/app/app.js";
import { startTestServer, type TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type ReceivedMail, type TestSmtp } from "../../support/smtp.js";

export const APP_URL = "https://shop.example";
/** The subject of an e-mail login mail (APP_NAME is the default, "Identity"). */
export const LOGIN_SUBJECT = /^Your Identity login link$/;
/** An `attempt`, a link token: 32 random bytes, base64url. */
export const SECRET_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** A service whose mails go to a real SMTP server, delivered within ~100 ms. */
export async function startMailServer(
  backend: Backend,
  opts: { env?: Record<string, string>; overrides?: AppOverrides } = {},
): Promise<{ s: TestServer; smtp: TestSmtp; stop(): Promise<void> }> {
  const smtp = await startTestSmtp();
  const s = await startTestServer(backend, {
    env: { SMTP_URL: smtp.url, MAIL_POLL_INTERVAL: "100ms", APP_URL, ...opts.env },
    overrides: opts.overrides,
  });
  return {
    s,
    smtp,
    async stop() {
      await s.destroy();
      await smtp.stop();
    },
  };
}

/** POST /login/email; asserts 202 and the attempt's shape. */
export async function startEmailLogin(s: TestServer, email: string, headers: Record<string, string> = {}): Promise<{ attempt: string; r: RestResponse }> {
  const r = await rest(s.baseUrl, "POST", "/login/email", { body: { email }, headers });
  expect(r.status, r.text).toBe(202);
  expect(r.body.attempt, r.text).toMatch(SECRET_SHAPE);
  return { attempt: r.body.attempt as string, r };
}

export interface LoginMail {
  mail: ReceivedMail;
  link: string;
  token: string;
  code: string;
}

/** The next login mail to `email` (one that arrives after `after` mails in all). */
export async function loginMail(smtp: TestSmtp, email: string, after: number): Promise<LoginMail> {
  const mail = await smtp.waitFor(email, { subject: LOGIN_SUBJECT, after });
  const link = mail.links[0]!;
  expect(link, mail.text).toMatch(/^https:\/\/shop\.example\/magic-login\?token=[A-Za-z0-9_-]{43}$/);
  expect(mail.code, mail.text).toMatch(/^\d{6}$/);
  return { mail, link, token: tokenOf(link), code: mail.code! };
}

/** Asks for a login mail and waits for it. */
export async function requestLoginMail(s: TestServer, smtp: TestSmtp, email: string, headers: Record<string, string> = {}) {
  const after = smtp.mails.length;
  const { attempt, r } = await startEmailLogin(s, email, headers);
  return { attempt, r, ...(await loginMail(smtp, email, after)) };
}

export type CompleteBody = {
  token?: string;
  email?: string;
  code?: string;
  attempt?: string;
  confirm_other_client?: boolean;
  mfa_code?: string;
  recovery_code?: string;
  device_id?: string;
  cookies_only?: boolean;
};

/** POST /login/email/complete. */
export const completeEmailLogin = (s: TestServer, body: CompleteBody, opts: { headers?: Record<string, string>; cookie?: string } = {}) =>
  rest(s.baseUrl, "POST", "/login/email/complete", { body, ...opts });

/** A 6-digit code other than `code`. */
export function wrongCode(code: string, n = 1): string {
  return ((Number(code) + n) % 1_000_000).toString().padStart(6, "0");
}

/** The claims of an access token. */
export function claimsOf(accessToken: string) {
  return decodeJwt(accessToken);
}

/** Outbox rows of `kind`, oldest first (grey-box). */
export async function outboxRows(s: TestServer, kind: string) {
  return s.app.database.db.select().from(outbox).where(eq(outbox.kind, kind)).orderBy(asc(outbox.createdAt), asc(outbox.id));
}

/** The user's e-mail login tokens, oldest first (grey-box). */
export async function loginTokens(s: TestServer, userId: string) {
  return s.app.database.db
    .select()
    .from(emailTokens)
    .where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, "email_login")))
    .orderBy(asc(emailTokens.createdAt), asc(emailTokens.id));
}
