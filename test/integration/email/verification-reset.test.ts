import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmailService } from "../../../gen/identity/v1/email_service_pb.js";
import { bearer, rest, serviceClient, STRONG_PASSWORD, uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { errorReason, expectConnectError, expectRestError } from "../../support/error-info.js";
import { controlledClock, MINUTE, mfaUser, SECOND, STEP, type ControlledClock } from "../../support/mfa.js";
import type { TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type TestSmtp } from "../../support/smtp.js";
import { login, registerUser, strongPassword } from "../../support/users.js";
import {
  emailVerifiedClaim,
  expectNoSecretInMails,
  forgotPassword,
  linkOf,
  loginRaw,
  mark,
  outboxIds,
  profileOf,
  refresh,
  resetPassword,
  settledRowsSince,
  startMailServer,
  SUBJECTS,
  verifyEmail,
} from "./email-helpers.js";

// Verification and password reset end to end: real mails through a real
// SMTP server, links followed over REST (and Connect's gRPC protocol), on a
// clock the tests move. The clock stands still between moves, so a test
// moves it a second between two events whose order matters (a login after a
// reset mail, a newer mail after an older one), as a person would take.

describe.each(backends)("verification and password reset ($name)", ({ name, skip }) => {
  let smtp: TestSmtp;
  let s: TestServer;
  let c: ControlledClock;
  const passwords = new Set<string>([STRONG_PASSWORD]);
  const fresh = (tag: string) => {
    const p = strongPassword(tag);
    passwords.add(p);
    return p;
  };

  beforeAll(async () => {
    if (skip) return;
    c = controlledClock();
    smtp = await startTestSmtp();
    // A lock after 10 failures, counted without delay: the reset must clear it.
    s = await startMailServer(name, smtp, { env: { BRUTE_FORCE_LOCKOUT: "10", BRUTE_FORCE_BASE_DELAY: "0" }, clock: c.clock });
  });
  afterAll(async () => {
    await s?.destroy();
    await smtp?.stop();
  });

  /** Registers a user and waits for the verification mail: the user and the token of its link (not followed). */
  async function registered() {
    const user = await registerUser(s);
    const mail = await smtp.waitFor(user.email, { subject: SUBJECTS.verify });
    return { ...user, verifyToken: tokenOf(linkOf(mail, "/verify-email")) };
  }

  /** A reset mail for `email`, requested now: its token. */
  async function resetMail(email: string): Promise<string> {
    const after = mark(smtp);
    const r = await forgotPassword(s, email);
    expect(r.status, r.text).toBe(202);
    return tokenOf(linkOf(await smtp.waitFor(email, { subject: SUBJECTS.reset, after }), "/reset-password"));
  }

  describe("verification", () => {
    it.skipIf(skip)("the registration link verifies once: profile, claim and refresh agree; replays and forged tokens are EMAIL_TOKEN_INVALID", async () => {
      const user = await registered();
      const before = await login(s, user.email, user.password);
      expect(emailVerifiedClaim(before.accessToken)).toBe(false);
      expect((await profileOf(s, before.accessToken)).email_verified).toBe(false);

      const v = await verifyEmail(s, user.verifyToken);
      expect({ status: v.status, body: v.body }, v.text).toEqual({ status: 200, body: { email: user.email } });
      expectRestError(await verifyEmail(s, user.verifyToken), 400, "EMAIL_TOKEN_INVALID");

      expect((await profileOf(s, before.accessToken)).email_verified).toBe(true);
      // A new login and a refresh of the older session both carry the claim.
      c.advance(SECOND);
      expect(emailVerifiedClaim((await login(s, user.email, user.password)).accessToken)).toBe(true);
      const refreshed = await refresh(s, before.refreshToken);
      expect(refreshed.status, refreshed.text).toBe(200);
      expect(emailVerifiedClaim(refreshed.body.access_token)).toBe(true);

      // Unknown, malformed, and another purpose's token.
      c.advance(SECOND);
      const resetToken = await resetMail(user.email);
      const forged = [
        "A".repeat(43),
        `${user.verifyToken}A`,
        user.verifyToken.slice(0, 42),
        `${user.verifyToken.slice(0, 42)}!`,
        "../../etc/passwd",
        resetToken,
      ];
      for (const token of forged) {
        const r = await verifyEmail(s, token);
        expect({ token, status: r.status, reason: errorReason(r.body) }, r.text).toEqual({ token, status: 400, reason: "EMAIL_TOKEN_INVALID" });
      }
      // Trying the reset token as a verification token did not spend it (the policy answers, not the token check).
      expectRestError(await resetPassword(s, { token: resetToken, new_password: "short" }), 400, "PASSWORD_TOO_SHORT");
    });

    it.skipIf(skip)("a new verification mail voids the earlier link; a verified account is refused (REST and gRPC FAILED_PRECONDITION)", async () => {
      const user = await registered();
      const session = await login(s, user.email, user.password);
      c.advance(SECOND);
      const after = mark(smtp);
      const again = await rest(s.baseUrl, "POST", "/user/email/verification", { token: session.accessToken, body: {} });
      expect(again.status, again.text).toBe(202);
      const second = tokenOf(linkOf(await smtp.waitFor(user.email, { subject: SUBJECTS.verify, after }), "/verify-email"));
      expect(second).not.toBe(user.verifyToken);
      expectRestError(await verifyEmail(s, user.verifyToken), 400, "EMAIL_TOKEN_INVALID");

      // The newer link, followed over gRPC (Connect's gRPC protocol).
      const grpc = serviceClient(EmailService, s.baseUrl, "grpc");
      expect((await grpc.verifyEmail({ token: second })).email).toBe(user.email);
      await expectConnectError(grpc.verifyEmail({ token: second }), Code.InvalidArgument, "EMAIL_TOKEN_INVALID");
      expect((await profileOf(s, session.accessToken)).email_verified).toBe(true);

      // Nothing left to verify.
      expectRestError(await rest(s.baseUrl, "POST", "/user/email/verification", { token: session.accessToken, body: {} }), 400, "VALIDATION_FAILED");
      await expectConnectError(grpc.sendVerificationEmail({}, bearer(session.accessToken)), Code.FailedPrecondition, "VALIDATION_FAILED");
      expectRestError(await rest(s.baseUrl, "POST", "/user/email/verification", { body: {} }), 401, "TOKEN_MISSING");
    });

    it.skipIf(skip)("without REQUIRE_EMAIL_VERIFICATION an unverified account logs in, and a taken address stays 409", async () => {
      const user = await registered();
      expect((await loginRaw(s, user.email, user.password)).status).toBe(201);
      const dup = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: user.email.toUpperCase(), password: fresh("dup") } } });
      expectRestError(dup, 409, "EMAIL_ALREADY_REGISTERED");
    });
  });

  describe("password reset", () => {
    it.skipIf(skip)("ForgotPassword answers a known and an unknown address byte for byte alike; only the known one is mailed", async () => {
      const user = await registered();
      const unknown = uniqueEmail("nobody");
      const before = await outboxIds(s, "password_reset");
      const known = await forgotPassword(s, user.email);
      c.advance(SECOND);
      const none = await forgotPassword(s, unknown);
      expect(known.status, known.text).toBe(202);
      expect(none.status, none.text).toBe(202);
      expect(none.text).toBe(known.text);
      expect(none.headers.get("content-type")).toBe(known.headers.get("content-type"));

      const [sent, dropped] = await settledRowsSince(s, "password_reset", before, 2);
      expect(sent).toMatchObject({ status: "sent", lastError: null });
      // Finished rows keep no address.
      expect(dropped).toMatchObject({ status: "dropped", lastError: "no account", address: null, userId: null });
      expect(linkOf(await smtp.waitFor(user.email, { subject: SUBJECTS.reset }), "/reset-password")).toBeTruthy();
      expect(smtp.to(unknown)).toEqual([]);
    });

    it.skipIf(skip)("the link sets a new password once: sessions end, the lock is cleared, a notice is mailed", async () => {
      const user = await registered();
      const [a, b] = [await login(s, user.email, user.password), await login(s, user.email, user.password)];
      // Lock the account: 10 failures, after which the right password fails too.
      for (let i = 0; i < 10; i++) expectRestError(await loginRaw(s, user.email, `wrong guess ${i} ${Math.random()}`), 401, "INVALID_CREDENTIALS");
      expectRestError(await loginRaw(s, user.email, user.password), 401, "INVALID_CREDENTIALS");

      c.advance(SECOND);
      const token = await resetMail(user.email);
      const next = fresh("reset");
      const after = mark(smtp);
      const r = await resetPassword(s, { token, new_password: next });
      expect({ status: r.status, body: r.body }, r.text).toEqual({ status: 200, body: {} });
      expectRestError(await resetPassword(s, { token, new_password: fresh("replay") }), 400, "EMAIL_TOKEN_INVALID");

      for (const old of [a, b]) {
        expectRestError(await refresh(s, old.refreshToken), 401, "REFRESH_TOKEN_INVALID");
        expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { token: old.accessToken }), 401, "TOKEN_INVALID");
      }
      expectRestError(await loginRaw(s, user.email, user.password), 401, "INVALID_CREDENTIALS");
      // Unlocked: the new password logs in at once.
      expect((await loginRaw(s, user.email, next)).status).toBe(201);

      const notice = await smtp.waitFor(user.email, { subject: SUBJECTS.resetNotice, after });
      expect(notice.text).toMatch(/reset with a link from a reset mail/);
      expect(notice.links).toEqual([]);
    });

    it.skipIf(skip)("a reset link dies when the account logs in after it was mailed", async () => {
      const user = await registered();
      const token = await resetMail(user.email);
      c.advance(SECOND);
      await login(s, user.email, user.password);
      expectRestError(await resetPassword(s, { token, new_password: fresh("late") }), 400, "EMAIL_TOKEN_INVALID");
      expect((await loginRaw(s, user.email, user.password)).status).toBe(201);
    });

    it.skipIf(skip)("a reset link dies when a newer reset mail is sent; the newer one works", async () => {
      const user = await registered();
      const older = await resetMail(user.email);
      c.advance(SECOND);
      const newer = await resetMail(user.email);
      expect(newer).not.toBe(older);
      expectRestError(await resetPassword(s, { token: older, new_password: fresh("old") }), 400, "EMAIL_TOKEN_INVALID");
      expect((await resetPassword(s, { token: newer, new_password: fresh("new") })).status).toBe(200);
    });

    it.skipIf(skip)("a reset link lives 30 minutes, and the new password must pass the policy (a refusal does not spend it)", async () => {
      const user = await registered();
      const token = await resetMail(user.email);
      c.advance(30 * MINUTE - SECOND);
      expectRestError(await resetPassword(s, { token, new_password: "short" }), 400, "PASSWORD_TOO_SHORT");
      expectRestError(await resetPassword(s, { token, new_password: "password123" }), 400, "PASSWORD_TOO_COMMON");
      c.advance(2 * SECOND);
      expectRestError(await resetPassword(s, { token, new_password: fresh("expired") }), 400, "EMAIL_TOKEN_INVALID");
      expect((await loginRaw(s, user.email, user.password)).status).toBe(201);

      // Within its 30 minutes, after refusals, a link still works.
      c.advance(SECOND);
      const again = await resetMail(user.email);
      expectRestError(await resetPassword(s, { token: again, new_password: "password123" }), 400, "PASSWORD_TOO_COMMON");
      const next = fresh("policy");
      expect((await resetPassword(s, { token: again, new_password: next })).status).toBe(200);
      expect((await loginRaw(s, user.email, next)).status).toBe(201);
    });

    it.skipIf(skip)("with MFA on, a reset needs the second factor: none → MFA_REQUIRED, wrong → MFA_CODE_INVALID, right → 200", async () => {
      const u = await mfaUser(s, c.now());
      c.advance(STEP);
      const token = await resetMail(u.email);
      const next = fresh("mfa");
      expectRestError(await resetPassword(s, { token, new_password: next }), 401, "MFA_REQUIRED");
      const right = await c.code(u.secret);
      const wrong = right === "000000" ? "111111" : "000000";
      expectRestError(await resetPassword(s, { token, new_password: next, mfa_code: wrong }), 401, "MFA_CODE_INVALID");
      // Nothing changed so far.
      expectRestError(await loginRaw(s, u.email, next), 401, "INVALID_CREDENTIALS");
      expect((await resetPassword(s, { token, new_password: next, mfa_code: right })).status).toBe(200);
      // The reset kept the second factor.
      expectRestError(await loginRaw(s, u.email, next), 401, "MFA_REQUIRED");
    });

    it.skipIf(skip)("with MFA on, a lock run up by someone guessing passwords does not stop the owner's reset; five wrong factors void the link", async () => {
      const u = await mfaUser(s, c.now());
      // Ten wrong passwords lock the account (BRUTE_FORCE_LOCKOUT=10).
      for (let i = 0; i < 10; i++) expectRestError(await loginRaw(s, u.email, `wrong ${i} ${STRONG_PASSWORD}`), 401, "INVALID_CREDENTIALS");
      c.advance(STEP);
      const token = await resetMail(u.email);
      const next = fresh("locked-mfa");
      expect((await resetPassword(s, { token, new_password: next, mfa_code: await c.code(u.secret) })).status).toBe(200);
      c.advance(STEP);
      // The lock is gone with the reset.
      expectRestError(await loginRaw(s, u.email, next), 401, "MFA_REQUIRED");

      // A second link, and wrong factors: five tries, then the link is void even with the right one.
      c.advance(SECOND);
      const another = await resetMail(u.email);
      const right = await c.code(u.secret);
      const wrong = right === "000000" ? "111111" : "000000";
      for (let i = 0; i < 5; i++) expectRestError(await resetPassword(s, { token: another, new_password: fresh(`w${i}`), mfa_code: wrong }), 401, "MFA_CODE_INVALID");
      expectRestError(await resetPassword(s, { token: another, new_password: fresh("late"), mfa_code: right }), 400, "EMAIL_TOKEN_INVALID");
    });
  });

  it.skipIf(skip)("no mail carries a password", () => {
    expectNoSecretInMails(smtp, passwords);
  });
});
