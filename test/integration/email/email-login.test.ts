import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { uuidv7 } from "../../../src/shared/uuid.js";
import { sessions as sessionsTable } from "../../../src/storage/schema.js";
import { rest, uniqueEmail } from "../../support/clients.js";
import { auditOf } from "../../support/audit.js";
import { backends } from "../../support/databases.js";
import { errorInfo, expectRestError } from "../../support/error-info.js";
import { controlledClock, MINUTE, SECOND } from "../../support/mfa.js";
import type { TestServer } from "../../support/server.js";
import type { TestSmtp } from "../../support/smtp.js";
import { registerUser } from "../../support/users.js";
import { claimsOf, completeEmailLogin, loginTokens, requestLoginMail, startMailServer, wrongCode } from "./email-login-helpers.js";

// E-mail login end to end over REST, with a real SMTP server: the link
// (bound to the client that asked for it, confirmed when opened elsewhere,
// single use, voided by a newer mail, 15 minutes) and the 6-digit code
// (wrong codes answer as a wrong password does, void the mail after five
// and count toward the account's brute-force lock).

describe.each(backends)("e-mail login ($name)", ({ name, skip }) => {
  const c = controlledClock();
  let s: TestServer;
  let smtp: TestSmtp;
  let stop: () => Promise<void>;

  beforeAll(async () => {
    if (skip) return;
    // No progressive delay (every wrong code is judged, none is throttled);
    // the lockout at its minimum so that a test can reach it.
    ({ s, smtp, stop } = await startMailServer(name, {
      env: { BRUTE_FORCE_BASE_DELAY: "0", BRUTE_FORCE_LOCKOUT: "10" },
      overrides: { clock: c.clock },
    }));
  });
  afterAll(async () => {
    await stop?.();
  });

  /** A login mail to `email`, a second after the previous one (mails are ordered by when they were asked for). */
  const mailFor = (email: string, headers: Record<string, string> = {}) => {
    c.advance(SECOND);
    return requestLoginMail(s, smtp, email, headers);
  };
  const sessionCount = async (userId: string) =>
    (await s.app.database.db.select().from(sessionsTable).where(eq(sessionsTable.userId, userId))).length;
  const profileOf = async (accessToken: string) => {
    const r = await rest(s.baseUrl, "GET", "/user/profile", { token: accessToken });
    expect(r.status, r.text).toBe(200);
    return r.body.user;
  };
  const wrongPassword = (email: string) => rest(s.baseUrl, "POST", "/login", { body: { email, password: `not the password ${Math.random()}` } });

  describe("by link", () => {
    it.skipIf(skip)("mails a link to APP_URL/magic-login and a code; the link with the attempt logs in (amr email, aal1) and verifies the address; a replay is EMAIL_TOKEN_INVALID", async () => {
      const user = await registerUser(s);
      const m = await mailFor(user.email);
      expect(m.r.body).toEqual({ attempt: m.attempt });
      expect(m.mail.html).toContain(m.code);
      expect(m.mail.html).toContain(m.link);

      const r = await completeEmailLogin(s, { token: m.token, attempt: m.attempt });
      expect(r.status, r.text).toBe(201);
      expect(r.body).toMatchObject({ token_type: "Bearer", user_id: user.userId, session_id: expect.any(String), refresh_token: expect.stringMatching(/.{20,}/) });
      expect(claimsOf(r.body.access_token)).toMatchObject({ sub: user.userId, sid: r.body.session_id, amr: ["email"], acr: "aal1", email_verified: true });
      // Registration left the address unverified; following the mail proved it.
      expect((await profileOf(r.body.access_token)).email_verified).toBe(true);
      // The refresh token works like a password login's.
      const refreshed = await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: r.body.refresh_token } });
      expect(refreshed.status, refreshed.text).toBe(200);
      expect(claimsOf(refreshed.body.access_token)).toMatchObject({ amr: ["email"], email_verified: true });

      expectRestError(await completeEmailLogin(s, { token: m.token, attempt: m.attempt }), 400, "EMAIL_TOKEN_INVALID");
      expectRestError(await completeEmailLogin(s, { token: m.token, confirm_other_client: true }), 400, "EMAIL_TOKEN_INVALID");
      // The mail's code was spent with its link.
      expectRestError(await completeEmailLogin(s, { email: user.email, code: m.code }), 401, "INVALID_CREDENTIALS");
      expect(await sessionCount(user.userId)).toBe(1);
    });

    it.skipIf(skip)("opened on another client (no attempt, or another one), the link asks for confirmation with a masked hint and stays unspent; confirm_other_client logs in", async () => {
      const user = await registerUser(s, { email: uniqueEmail("user") });
      const m = await mailFor(user.email);
      const otherClients = [{}, { attempt: "A".repeat(43) }, { attempt: "not-an-attempt" }, { confirm_other_client: false }];
      for (const other of otherClients) {
        const r = await completeEmailLogin(s, { token: m.token, ...other });
        expectRestError(r, 400, "EMAIL_LOGIN_CONFIRMATION_REQUIRED");
        expect(errorInfo(r.body).metadata, r.text).toEqual({ email_hint: "us***@example.com" });
        expect(r.text).not.toContain(user.email);
        expect(r.body.access_token).toBeUndefined();
      }
      expect(await sessionCount(user.userId)).toBe(0);
      expect((await loginTokens(s, user.userId)).map((t) => t.usedAt)).toEqual([null]);

      const r = await completeEmailLogin(s, { token: m.token, confirm_other_client: true });
      expect(r.status, r.text).toBe(201);
      expect(claimsOf(r.body.access_token)).toMatchObject({ sub: user.userId, amr: ["email"], acr: "aal1" });
      expectRestError(await completeEmailLogin(s, { token: m.token, attempt: m.attempt }), 400, "EMAIL_TOKEN_INVALID");
    });

    it.skipIf(skip)("a newer login mail voids the older link and code", async () => {
      const user = await registerUser(s);
      const older = await mailFor(user.email);
      const newer = await mailFor(user.email);
      expect(newer.token).not.toBe(older.token);
      expect(newer.attempt).not.toBe(older.attempt);
      expectRestError(await completeEmailLogin(s, { token: older.token, attempt: older.attempt }), 400, "EMAIL_TOKEN_INVALID");
      expectRestError(await completeEmailLogin(s, { token: older.token, confirm_other_client: true }), 400, "EMAIL_TOKEN_INVALID");
      if (older.code !== newer.code) expectRestError(await completeEmailLogin(s, { email: user.email, code: older.code }), 401, "INVALID_CREDENTIALS");
      // Neither binds the newer link: its own attempt does.
      expectRestError(await completeEmailLogin(s, { token: newer.token, attempt: older.attempt }), 400, "EMAIL_LOGIN_CONFIRMATION_REQUIRED");
      const r = await completeEmailLogin(s, { token: newer.token, attempt: newer.attempt });
      expect(r.status, r.text).toBe(201);
    });

    it.skipIf(skip)("a login mail composed after a newer one (two dispatchers, a backlog sent in parallel) is void from the start", async () => {
      const user = await registerUser(s);
      // What each instance's dispatcher does when it composes a login mail, in the unlucky order: the newer mail first.
      c.advance(SECOND);
      const olderAt = c.now();
      c.advance(SECOND);
      const newerAt = c.now();
      const compose = (at: Date, id = uuidv7(at)) =>
        s.app.mail.tokens.issue(
          { id, kind: "email_login", address: user.email, params: {}, createdAt: at, attempts: 1 },
          { userId: user.userId, purpose: "email_login", email: user.email, ttlMs: 15 * MINUTE },
          c.now(),
        );
      const newer = await compose(newerAt);
      if ("drop" in newer) throw new Error(`the newer mail was dropped: ${newer.drop}`);
      const olderId = uuidv7(olderAt);
      // Not sent at all: its link would be dead on arrival.
      expect(await compose(olderAt, olderId)).toEqual({ drop: "superseded by a newer mail" });
      const older = { token: s.app.mail.secrets.token(olderId), code: s.app.mail.secrets.code(olderId) };
      expectRestError(await completeEmailLogin(s, { token: older.token, confirm_other_client: true }), 400, "EMAIL_TOKEN_INVALID");
      if (older.code !== newer.code) expectRestError(await completeEmailLogin(s, { email: user.email, code: older.code }), 401, "INVALID_CREDENTIALS");
      const r = await completeEmailLogin(s, { token: newer.token, confirm_other_client: true });
      expect(r.status, r.text).toBe(201);

      // Two dispatchers composing at the same moment: whichever commits first, only the newer stays live.
      for (let i = 0; i < 10; i++) {
        c.advance(SECOND);
        const at = c.now();
        const [n] = await Promise.all([compose(new Date(at.getTime() + 1)), compose(at)]);
        const live = (await loginTokens(s, user.userId)).filter((t) => t.usedAt === null);
        expect(live.map((t) => t.createdAt.getTime()), `round ${i}`).toEqual([at.getTime() + 1]);
        expect(n).toBeDefined();
      }
    });

    it.skipIf(skip)("the link and the code work for 15 minutes", async () => {
      const user = await registerUser(s);
      const first = await mailFor(user.email);
      c.advance(15 * MINUTE - 2 * SECOND);
      const r = await completeEmailLogin(s, { token: first.token, attempt: first.attempt });
      expect(r.status, r.text).toBe(201);

      const byLink = await mailFor(user.email);
      c.advance(15 * MINUTE);
      expectRestError(await completeEmailLogin(s, { token: byLink.token, attempt: byLink.attempt }), 400, "EMAIL_TOKEN_INVALID");
      expectRestError(await completeEmailLogin(s, { email: user.email, code: byLink.code }), 401, "INVALID_CREDENTIALS");

      const byCode = await mailFor(user.email);
      c.advance(15 * MINUTE - 2 * SECOND);
      const ok = await completeEmailLogin(s, { email: user.email, code: byCode.code });
      expect(ok.status, ok.text).toBe(201);
    });
  });

  describe("by code", () => {
    it.skipIf(skip)("{email, code} logs in; a wrong code is 401 INVALID_CREDENTIALS, byte for byte a wrong password's answer; the code is single use", async () => {
      const user = await registerUser(s);
      const m = await mailFor(user.email);
      const wrong = await completeEmailLogin(s, { email: user.email, code: wrongCode(m.code) });
      expectRestError(wrong, 401, "INVALID_CREDENTIALS");
      const badPassword = await wrongPassword(user.email);
      expect({ status: wrong.status, text: wrong.text }).toEqual({ status: badPassword.status, text: badPassword.text });

      // The address as typed (case, spaces) and the code as printed.
      const r = await completeEmailLogin(s, { email: ` ${user.email.toUpperCase()} `, code: m.code });
      expect(r.status, r.text).toBe(201);
      expect(claimsOf(r.body.access_token)).toMatchObject({ sub: user.userId, amr: ["email"], acr: "aal1", email_verified: true });
      expect((await profileOf(r.body.access_token)).email_verified).toBe(true);

      expectRestError(await completeEmailLogin(s, { email: user.email, code: m.code }), 401, "INVALID_CREDENTIALS");
      expectRestError(await completeEmailLogin(s, { token: m.token, attempt: m.attempt }), 400, "EMAIL_TOKEN_INVALID");
    });

    it.skipIf(skip)("four wrong codes leave the mail usable; five void it, after which its right code fails too", async () => {
      const user = await registerUser(s);
      const first = await mailFor(user.email);
      for (let i = 1; i <= 4; i++) expectRestError(await completeEmailLogin(s, { email: user.email, code: wrongCode(first.code, i) }), 401, "INVALID_CREDENTIALS");
      expect((await completeEmailLogin(s, { email: user.email, code: first.code })).status).toBe(201);

      const second = await mailFor(user.email);
      for (let i = 1; i <= 5; i++) expectRestError(await completeEmailLogin(s, { email: user.email, code: wrongCode(second.code, i) }), 401, "INVALID_CREDENTIALS");
      const voided = (await loginTokens(s, user.userId)).at(-1)!;
      expect({ failedCodes: voided.failedCodes, used: voided.usedAt !== null }).toEqual({ failedCodes: 5, used: true });
      expectRestError(await completeEmailLogin(s, { email: user.email, code: second.code }), 401, "INVALID_CREDENTIALS");
      // The link of a voided mail is dead too.
      expectRestError(await completeEmailLogin(s, { token: second.token, attempt: second.attempt }), 400, "EMAIL_TOKEN_INVALID");

      // Not a lock of the account: a new mail's code works.
      const third = await mailFor(user.email);
      expect((await completeEmailLogin(s, { email: user.email, code: third.code })).status).toBe(201);
    });

    it.skipIf(skip)("a code for an address without an account, or no address at all, is the same 401 INVALID_CREDENTIALS", async () => {
      const user = await registerUser(s);
      const m = await mailFor(user.email);
      const wrong = await completeEmailLogin(s, { email: user.email, code: wrongCode(m.code) });
      for (const email of [uniqueEmail("ghost"), "not an address"]) {
        const r = await completeEmailLogin(s, { email, code: m.code });
        expectRestError(r, 401, "INVALID_CREDENTIALS");
        expect(r.text).toBe(wrong.text);
      }
      // Neither touched the real account's mail.
      expect((await completeEmailLogin(s, { email: user.email, code: m.code })).status).toBe(201);
    });

    it.skipIf(skip)("wrong codes count toward the account's brute-force lock with wrong passwords: then neither the code, the link nor the password logs in", async () => {
      const user = await registerUser(s);
      // 4 wrong passwords + 5 wrong codes (voiding the first mail) = 9 failures: not locked yet.
      for (let i = 0; i < 4; i++) expectRestError(await wrongPassword(user.email), 401, "INVALID_CREDENTIALS");
      const first = await mailFor(user.email);
      for (let i = 1; i <= 5; i++) expectRestError(await completeEmailLogin(s, { email: user.email, code: wrongCode(first.code, i) }), 401, "INVALID_CREDENTIALS");
      expect(await auditOf(s, user.userId, "account_locked")).toEqual([]);

      // The tenth failure is a wrong code: it locks the account.
      const second = await mailFor(user.email);
      expectRestError(await completeEmailLogin(s, { email: user.email, code: wrongCode(second.code) }), 401, "INVALID_CREDENTIALS");
      const locked = await auditOf(s, user.userId, "account_locked");
      expect(locked.map((e) => e.details)).toEqual([{ failures: 10, threshold: 10, last_factor: "email_code" }]);

      expectRestError(await completeEmailLogin(s, { email: user.email, code: second.code }), 401, "INVALID_CREDENTIALS");
      expectRestError(await completeEmailLogin(s, { token: second.token, attempt: second.attempt }), 401, "INVALID_CREDENTIALS");
      expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password } }), 401, "INVALID_CREDENTIALS");
      const third = await mailFor(user.email);
      expectRestError(await completeEmailLogin(s, { token: third.token, attempt: third.attempt }), 401, "INVALID_CREDENTIALS");
      expect(await sessionCount(user.userId)).toBe(0);
      const throttled = await auditOf(s, user.userId, "login_throttled");
      expect(throttled.map((e) => e.reason)).toEqual(["account_locked", "account_locked", "account_locked", "account_locked"]);
    });
  });

  it.skipIf(skip)("StartEmailLogin refuses a malformed address (and sets no attempt); CompleteEmailLogin needs a token, or an address and a code", async () => {
    const r = await rest(s.baseUrl, "POST", "/login/email", { body: { email: "no-at-sign" } });
    expectRestError(r, 400, "VALIDATION_FAILED");
    expect(r.body.attempt).toBeUndefined();
    expect(r.headers.getSetCookie()).toEqual([]);
    expectRestError(await rest(s.baseUrl, "POST", "/login/email/complete", { body: {} }), 400, "VALIDATION_FAILED");
    expectRestError(await rest(s.baseUrl, "POST", "/login/email/complete", { body: { email: uniqueEmail() } }), 400, "VALIDATION_FAILED");
    expectRestError(await rest(s.baseUrl, "POST", "/login/email/complete", { body: { code: "123456" } }), 400, "VALIDATION_FAILED");
  });
});
