// Builders and probes shared by the e-mail suites: a service wired to a
// real SMTP server, the REST calls that follow mail links, the outbox as a
// grey-box read of the database (never written behind the service's back),
// and the claims of an access token.
import { asc, eq, inArray } from "drizzle-orm";
import { decodeJwt } from "jose";
import { expect } from "vitest";
import type { AppOverrides } from "../../../src/app/app.js";
import type { MailKind } from "../../../src/mail/ports.js";
import { outbox, users } from "../../../src/storage/schema.js";
import { rest } from "../../support/clients.js";
import type { Backend } from "../../support/databases.js";
import { startTestServer, type TestServer } from "../../support/server.js";
import type { ReceivedMail, TestSmtp } from "../../support/smtp.js";
import { expectEventually, sleep } from "../../support/timing.js";

export const APP_URL = "https://shop.example";

/** The service delivering to `smtp`, polling its outbox every 100 ms. */
export function startMailServer(
  backend: Backend,
  smtp: TestSmtp,
  opts: { env?: Record<string, string>; clock?: AppOverrides["clock"] } = {},
): Promise<TestServer> {
  return startTestServer(backend, {
    env: { SMTP_URL: smtp.url, MAIL_POLL_INTERVAL: "100ms", APP_URL, ...opts.env },
    ...(opts.clock ? { overrides: { clock: opts.clock } } : {}),
  });
}

/** A mail's only link; asserts it opens `path` of APP_URL with a 256-bit token. */
export function linkOf(mail: ReceivedMail, path: string): string {
  expect(mail.links, mail.text).toHaveLength(1);
  const link = mail.links[0]!;
  expect(link).toMatch(new RegExp(`^${APP_URL.replace(/\./g, "\\.")}${path}\\?token=[A-Za-z0-9_-]{43}$`));
  return link;
}

export const SUBJECTS = {
  verify: /^Confirm your e-mail address$/,
  reset: /^Reset your password$/,
  resetNotice: /^Your password was reset$/,
  changeNotice: /^Your e-mail address is being changed$/,
  changed: /^Your e-mail address was changed$/,
  registrationAttempt: /^Someone tried to sign up with your address$/,
} as const;

/** How many mails the SMTP server holds now: pass it as `after` to wait only for newer ones. */
export const mark = (smtp: TestSmtp) => smtp.mails.length;

export const verifyEmail = (s: TestServer, token: string) => rest(s.baseUrl, "POST", "/email/verify", { body: { token } });
export const forgotPassword = (s: TestServer, email: string, headers: Record<string, string> = {}) =>
  rest(s.baseUrl, "POST", "/password/forgot", { body: { email }, headers });
export const resetPassword = (s: TestServer, body: { token: string; new_password: string; mfa_code?: string; recovery_code?: string }) =>
  rest(s.baseUrl, "POST", "/password/reset", { body });
export const revertEmail = (s: TestServer, token: string) => rest(s.baseUrl, "POST", "/email/revert", { body: { token } });
export const changeEmail = (s: TestServer, accessToken: string, newEmail: string) =>
  rest(s.baseUrl, "PUT", "/user/email", { token: accessToken, body: { new_email: newEmail } });
export const refresh = (s: TestServer, refreshToken: string) => rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: refreshToken } });
export const loginRaw = (s: TestServer, email: string, password: string) => rest(s.baseUrl, "POST", "/login", { body: { email, password } });

/** GET /user/profile (200 asserted); proto3 JSON leaves false and "" out, so both are filled in. */
export async function profileOf(s: TestServer, accessToken: string): Promise<{ email: string; email_verified: boolean; pending_email: string; user_id: string }> {
  const r = await rest(s.baseUrl, "GET", "/user/profile", { token: accessToken });
  expect(r.status, r.text).toBe(200);
  const u = r.body.user;
  return { email: u.email, email_verified: u.email_verified ?? false, pending_email: u.pending_email ?? "", user_id: u.user_id };
}

/** The `email_verified` claim of an access token. */
export const emailVerifiedClaim = (accessToken: string) => decodeJwt(accessToken).email_verified;

export type OutboxRow = typeof outbox.$inferSelect;

/** The ids of the outbox rows of `kind` so far (to tell which rows a request wrote). */
export async function outboxIds(s: TestServer, kind: MailKind): Promise<Set<string>> {
  const rows = await s.app.database.db.select({ id: outbox.id }).from(outbox).where(eq(outbox.kind, kind));
  return new Set(rows.map((r) => r.id));
}

/**
 * The rows of `kind` written since `before` (outboxIds), once the dispatcher
 * finished with all of them (sent, dropped or dead), oldest first.
 * Finished rows keep no address, so rows are told apart by when they were written.
 */
export async function settledRowsSince(s: TestServer, kind: MailKind, before: Set<string>, expected: number): Promise<OutboxRow[]> {
  const db = s.app.database.db;
  const fresh = async () => (await db.select().from(outbox).where(eq(outbox.kind, kind)).orderBy(asc(outbox.createdAt), asc(outbox.id))).filter((r) => !before.has(r.id));
  await expectEventually(
    `${expected} ${kind} rows settled`,
    async () => {
      const rows = await fresh();
      return rows.length === expected && rows.every((r) => !["pending", "sending"].includes(r.status));
    },
    { timeoutMs: 10_000, intervalMs: 50 },
  );
  return fresh();
}

/** Waits until the dispatcher has nothing pending (e.g. before asserting that no mail came). */
export async function outboxDrained(s: TestServer): Promise<void> {
  const db = s.app.database.db;
  await expectEventually(
    "an empty outbox queue",
    async () => (await db.select({ id: outbox.id }).from(outbox).where(inArray(outbox.status, ["pending", "sending"]))).length === 0,
    { timeoutMs: 10_000, intervalMs: 50 },
  );
  // The SMTP server records a mail just after accepting it.
  await sleep(100);
}

/** How many accounts hold `email`. */
export async function accountsWith(s: TestServer, email: string): Promise<number> {
  return (await s.app.database.db.select({ id: users.id }).from(users).where(eq(users.email, email))).length;
}

/** Every key path of a JSON value ("user.info_user.name"), sorted: the shape of a response. */
export function shapeOf(value: unknown, prefix = ""): string[] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [prefix];
  return Object.entries(value as Record<string, unknown>)
    .flatMap(([k, v]) => shapeOf(v, prefix ? `${prefix}.${k}` : k))
    .sort();
}

/** Asserts that no mail received carries any of `secrets` (passwords) in its subject, text or HTML. */
export function expectNoSecretInMails(smtp: TestSmtp, secrets: Iterable<string>): void {
  const all = [...secrets];
  expect(all.length).toBeGreaterThan(0);
  expect(smtp.mails.length).toBeGreaterThan(0);
  for (const m of smtp.mails) {
    for (const secret of all) {
      expect(`${m.subject}\n${m.text}\n${m.html}`.includes(secret), `a mail to ${m.to} (${m.subject}) carries a password`).toBe(false);
    }
  }
}


/**
 * After an undo the password is one nobody knows: the owner sets a new one
 * from the reset mail the undo sent (found among the mails after `after`).
 * Asserts the old password no longer works; returns the new one.
 */
export async function takeBackAfterUndo(s: TestServer, smtp: TestSmtp, email: string, oldPassword: string, after: number): Promise<string> {
  expect((await loginRaw(s, email, oldPassword)).status, "the password from before the undo").toBe(401);
  const mail = await smtp.waitFor(email, { subject: SUBJECTS.reset, after });
  const password = `${oldPassword} taken back`;
  const r = await resetPassword(s, { token: new URL(linkOf(mail, "/reset-password")).searchParams.get("token")!, new_password: password });
  expect(r.status, r.text).toBe(200);
  return password;
}
