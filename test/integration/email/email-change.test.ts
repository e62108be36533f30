import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rest, STRONG_PASSWORD, uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { errorInfo, expectRestError } from "../../support/error-info.js";
import { controlledClock, MINUTE, SECOND, type ControlledClock } from "../../support/mfa.js";
import type { TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type TestSmtp } from "../../support/smtp.js";
import { login, registerUser, type Session } from "../../support/users.js";
import {
  accountsWith,
  changeEmail,
  emailVerifiedClaim,
  expectNoSecretInMails,
  forgotPassword,
  linkOf,
  loginRaw,
  mark,
  outboxDrained,
  profileOf,
  refresh,
  resetPassword,
  revertEmail,
  startMailServer,
  SUBJECTS,
  verifyEmail,
  takeBackAfterUndo,
} from "./email-helpers.js";

// Changing the address end to end: the new address must be verified before
// it becomes the account's; the former one is told, with a link that undoes
// the change (restores it, verified, and ends every session). The attacks:
// someone else's address, two accounts racing for one address, a stale
// session, and a taker who changes the address twice or mails themselves
// reset and login links before the owner undoes the change.

describe.each(backends)("address change ($name)", ({ name, skip }) => {
  let smtp: TestSmtp;
  let s: TestServer;
  let c: ControlledClock;
  beforeAll(async () => {
    if (skip) return;
    c = controlledClock();
    smtp = await startTestSmtp();
    s = await startMailServer(name, smtp, { clock: c.clock });
  });
  afterAll(async () => {
    await s?.destroy();
    await smtp?.stop();
  });

  /** A registered user (whose verification mail arrived) with one session, logged in a second after registering. */
  async function member() {
    const user = await registerUser(s);
    await smtp.waitFor(user.email, { subject: SUBJECTS.verify });
    c.advance(SECOND);
    return { ...user, session: await login(s, user.email, user.password) };
  }

  /**
   * Asks for `next` as the address of `session`'s account (202 asserted)
   * and returns the tokens of the two mails: the verification to `next` and
   * the notice's undo link to `current`.
   */
  async function requestChange(session: Session, current: string, next: string) {
    const after = mark(smtp);
    const r = await changeEmail(s, session.accessToken, next);
    expect({ status: r.status, body: r.body }, r.text).toEqual({ status: 202, body: {} });
    const verification = await smtp.waitFor(next, { subject: SUBJECTS.verify, after });
    const notice = await smtp.waitFor(current, { subject: SUBJECTS.changeNotice, after });
    return { verifyToken: tokenOf(linkOf(verification, "/verify-email")), revertToken: tokenOf(linkOf(notice, "/revert-email")), notice };
  }

  const expectSessionEnded = async (session: Session) => {
    expectRestError(await refresh(s, session.refreshToken), 401, "REFRESH_TOKEN_INVALID");
    expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { token: session.accessToken }), 401, "TOKEN_INVALID");
  };

  it.skipIf(skip)("202; the new address is verified first, the old one gets an undo link; the address changes only on verification", async () => {
    const u = await member();
    const next = uniqueEmail("next");
    const { verifyToken, notice } = await requestChange(u.session, u.email, next);
    // The notice names the new address only partly.
    expect(notice.text).toContain(`${next.slice(0, 2)}***@example.com`);
    expect(`${notice.text}${notice.html}`).not.toContain(next);

    expect(await profileOf(s, u.session.accessToken)).toMatchObject({ email: u.email, pending_email: next, email_verified: false });
    expectRestError(await loginRaw(s, next, u.password), 401, "INVALID_CREDENTIALS");
    expect((await loginRaw(s, u.email, u.password)).status).toBe(201);

    const v = await verifyEmail(s, verifyToken);
    expect({ status: v.status, body: v.body }, v.text).toEqual({ status: 200, body: { email: next } });
    // The session that asked goes on, now on the new address.
    expect(await profileOf(s, u.session.accessToken)).toMatchObject({ email: next, pending_email: "", email_verified: true });
    expectRestError(await loginRaw(s, u.email, u.password), 401, "INVALID_CREDENTIALS");
    c.advance(SECOND);
    expect(emailVerifiedClaim((await login(s, next, u.password)).accessToken)).toBe(true);
    expectRestError(await verifyEmail(s, verifyToken), 400, "EMAIL_TOKEN_INVALID");
  });

  it.skipIf(skip)("another account's address is 409 in any spelling; the own address and a malformed one are 400; nothing is mailed", async () => {
    const u = await member();
    const other = await member();
    const after = mark(smtp);
    expectRestError(await changeEmail(s, u.session.accessToken, ` ${other.email.toUpperCase()} `), 409, "EMAIL_ALREADY_REGISTERED");
    expectRestError(await changeEmail(s, u.session.accessToken, u.email), 400, "VALIDATION_FAILED");
    expectRestError(await changeEmail(s, u.session.accessToken, "not an address"), 400, "VALIDATION_FAILED");
    expect((await profileOf(s, u.session.accessToken)).pending_email).toBe("");
    await outboxDrained(s);
    expect(smtp.mails.slice(after).filter((m) => m.to === u.email || m.to === other.email).map((m) => m.subject)).toEqual([]);
  });

  it.skipIf(skip)("two accounts race for one new address: the first to verify gets it, the second gets 409 and keeps its own", async () => {
    const [a, b] = [await member(), await member()];
    const contested = uniqueEmail("contested");
    const forA = await requestChange(a.session, a.email, contested);
    const forB = await requestChange(b.session, b.email, contested);
    expect((await verifyEmail(s, forA.verifyToken)).body).toEqual({ email: contested });
    expectRestError(await verifyEmail(s, forB.verifyToken), 409, "EMAIL_ALREADY_REGISTERED");
    expect(await accountsWith(s, contested)).toBe(1);
    expect((await profileOf(s, a.session.accessToken)).email).toBe(contested);
    expect((await profileOf(s, b.session.accessToken)).email).toBe(b.email);
    expect((await loginRaw(s, b.email, b.password)).status).toBe(201);
    expect((await loginRaw(s, contested, a.password)).body.user_id).toBe(a.userId);
  });

  it.skipIf(skip)("the undo link restores the old address (verified), ends every session and works once", async () => {
    const u = await member();
    c.advance(SECOND);
    const second = await login(s, u.email, u.password);
    const next = uniqueEmail("taken");
    const { verifyToken, revertToken } = await requestChange(u.session, u.email, next);
    expect((await verifyEmail(s, verifyToken)).status).toBe(200);

    const after = mark(smtp);
    const r = await revertEmail(s, revertToken);
    expect({ status: r.status, body: r.body }, r.text).toEqual({ status: 200, body: { email: u.email } });
    for (const session of [u.session, second]) await expectSessionEnded(session);
    expectRestError(await revertEmail(s, revertToken), 400, "EMAIL_TOKEN_INVALID");

    expectRestError(await loginRaw(s, next, u.password), 401, "INVALID_CREDENTIALS");
    // Whoever changed the address may know the password: the owner sets a new one from the mail the undo sent.
    c.advance(SECOND);
    const password = await takeBackAfterUndo(s, smtp, u.email, u.password, after);
    c.advance(SECOND);
    const back = await login(s, u.email, password);
    // Following the undo link proved the old mailbox.
    expect(await profileOf(s, back.accessToken)).toMatchObject({ email: u.email, pending_email: "", email_verified: true });
  });

  it.skipIf(skip)("undoing a change before it is verified voids the pending verification link", async () => {
    const u = await member();
    const next = uniqueEmail("pending");
    const { verifyToken, revertToken } = await requestChange(u.session, u.email, next);
    const after = mark(smtp);
    expect((await revertEmail(s, revertToken)).status).toBe(200);
    await expectSessionEnded(u.session);
    expectRestError(await verifyEmail(s, verifyToken), 400, "EMAIL_TOKEN_INVALID");
    c.advance(SECOND);
    const back = await login(s, u.email, await takeBackAfterUndo(s, smtp, u.email, u.password, after));
    expect(await profileOf(s, back.accessToken)).toMatchObject({ email: u.email, pending_email: "" });
    expect(await accountsWith(s, next)).toBe(0);
  });

  it.skipIf(skip)("a login older than RECENT_AUTH_MAX_AGE (10 min) is refused: RECENT_AUTH_REQUIRED, nothing pending, no mail", async () => {
    const u = await member();
    c.advance(10 * MINUTE + SECOND);
    const after = mark(smtp);
    const r = await changeEmail(s, u.session.accessToken, uniqueEmail("stale"));
    expectRestError(r, 401, "RECENT_AUTH_REQUIRED");
    expect(errorInfo(r.body).metadata).toMatchObject({ max_age_seconds: "600" });
    expect((await profileOf(s, u.session.accessToken)).pending_email).toBe("");
    // A fresh login may.
    const fresh = await login(s, u.email, u.password);
    expect((await changeEmail(s, fresh.accessToken, uniqueEmail("fresh"))).status).toBe(202);
    await smtp.waitFor(u.email, { subject: SUBJECTS.changeNotice, after });
    await outboxDrained(s);
    // The fresh request's notice only.
    expect(smtp.mails.slice(after).filter((m) => m.to === u.email && SUBJECTS.changeNotice.test(m.subject))).toHaveLength(1);
  });

  describe("a taker who changed the address cannot keep the account from its owner's undo link", () => {
    it.skipIf(skip)("changing the address twice does not void the owner's undo link; the taker's own undo link then does nothing", async () => {
      const u = await member();
      const [first, second] = [uniqueEmail("taker1"), uniqueEmail("taker2")];
      const one = await requestChange(u.session, u.email, first);
      expect((await verifyEmail(s, one.verifyToken)).status).toBe(200);
      c.advance(SECOND);
      // The second notice goes to the taker's first address.
      const two = await requestChange(u.session, first, second);
      expect((await verifyEmail(s, two.verifyToken)).status).toBe(200);

      const after = mark(smtp);
      const r = await revertEmail(s, one.revertToken);
      expect({ status: r.status, body: r.body }, r.text).toEqual({ status: 200, body: { email: u.email } });
      // The undo link of the later change would hand the account back to the taker.
      expectRestError(await revertEmail(s, two.revertToken), 400, "EMAIL_TOKEN_INVALID");
      c.advance(SECOND);
      const password = await takeBackAfterUndo(s, smtp, u.email, u.password, after);
      c.advance(SECOND);
      expect((await profileOf(s, (await login(s, u.email, password)).accessToken)).email).toBe(u.email);
    });

    it.skipIf(skip)("the taker undoing their own later change first does not void the owner's undo link", async () => {
      const u = await member();
      const [first, second] = [uniqueEmail("taker1"), uniqueEmail("taker2")];
      const one = await requestChange(u.session, u.email, first);
      expect((await verifyEmail(s, one.verifyToken)).status).toBe(200);
      c.advance(SECOND);
      const two = await requestChange(u.session, first, second);
      expect((await verifyEmail(s, two.verifyToken)).status).toBe(200);
      c.advance(SECOND);
      expect((await revertEmail(s, two.revertToken)).body).toEqual({ email: first });
      c.advance(SECOND);
      expect((await revertEmail(s, one.revertToken)).body).toEqual({ email: u.email });
      expect(await accountsWith(s, u.email)).toBe(1);
      expect(await accountsWith(s, first)).toBe(0);
    });

    it.skipIf(skip)("reset and login links mailed to the taker's address die when the owner undoes the change", async () => {
      const u = await member();
      const taker = uniqueEmail("taker");
      const change = await requestChange(u.session, u.email, taker);
      expect((await verifyEmail(s, change.verifyToken)).status).toBe(200);
      c.advance(SECOND);
      let after = mark(smtp);
      expect((await forgotPassword(s, taker)).status).toBe(202);
      const resetToken = tokenOf(linkOf(await smtp.waitFor(taker, { subject: SUBJECTS.reset, after }), "/reset-password"));
      after = mark(smtp);
      const started = await rest(s.baseUrl, "POST", "/login/email", { body: { email: taker } });
      expect(started.status, started.text).toBe(202);
      const loginMail = await smtp.waitFor(taker, { subject: /login link/, after });
      const loginToken = tokenOf(linkOf(loginMail, "/magic-login"));

      after = mark(smtp);
      expect((await revertEmail(s, change.revertToken)).status).toBe(200);
      expectRestError(await resetPassword(s, { token: resetToken, new_password: `${STRONG_PASSWORD} taken` }), 400, "EMAIL_TOKEN_INVALID");
      expectRestError(
        await rest(s.baseUrl, "POST", "/login/email/complete", { body: { token: loginToken, attempt: started.body.attempt } }),
        400,
        "EMAIL_TOKEN_INVALID",
      );
      // Only the owner's reset mail from the undo works now.
      c.advance(SECOND);
      const password = await takeBackAfterUndo(s, smtp, u.email, u.password, after);
      expect((await loginRaw(s, u.email, password)).status).toBe(201);
    });
  });

  it.skipIf(skip)("no mail carries a password", () => {
    expectNoSecretInMails(smtp, [STRONG_PASSWORD]);
  });
});
