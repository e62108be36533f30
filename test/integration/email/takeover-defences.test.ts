import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rest, STRONG_PASSWORD, uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { expectRestError } from "../../support/error-info.js";
import { controlledClock, SECOND, type ControlledClock } from "../../support/mfa.js";
import type { TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type TestSmtp } from "../../support/smtp.js";
import { login, registerUser } from "../../support/users.js";
import { changeEmail, linkOf, loginRaw, mark, outboxDrained, refresh, startMailServer, SUBJECTS, verifyEmail } from "./email-helpers.js";

// Account takeovers that go through the mailbox, attacked end to end:
// pre-hijacking (registering someone's address before they do), and a
// mailbox someone else names in address changes.

describe.each(backends)("takeover defences of the e-mail channel ($name)", ({ name, skip }) => {
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

  it.skipIf(skip)("pre-hijacking: whoever registered the owner's address first loses the password and sessions once the owner logs in by e-mail", async () => {
    const victim = uniqueEmail("victim");
    // The attacker registers the victim's address with a password of theirs and keeps a session.
    const attacker = await registerUser(s, { email: victim, password: `${STRONG_PASSWORD} attacker` });
    const attackerSession = await login(s, victim, attacker.password);
    c.advance(SECOND);
    // The owner, who never registered, logs in with a link sent to their mailbox.
    const after = mark(smtp);
    const started = await rest(s.baseUrl, "POST", "/login/email", { body: { email: victim } });
    expect(started.status, started.text).toBe(202);
    const mail = await smtp.waitFor(victim, { subject: /login link/, after });
    const owner = await rest(s.baseUrl, "POST", "/login/email/complete", { body: { token: tokenOf(linkOf(mail, "/magic-login")), attempt: started.body.attempt } });
    expect(owner.status, owner.text).toBe(201);
    // The attacker's password and session are gone; the owner's session works.
    expectRestError(await loginRaw(s, victim, attacker.password), 401, "INVALID_CREDENTIALS");
    expectRestError(await refresh(s, attackerSession.refreshToken), 401, "REFRESH_TOKEN_INVALID");
    expect((await rest(s.baseUrl, "GET", "/user/profile", { token: owner.body.access_token })).status).toBe(200);
    // A verified account's later e-mail logins change nothing.
    c.advance(SECOND);
    const again = mark(smtp);
    const second = await rest(s.baseUrl, "POST", "/login/email", { body: { email: victim } });
    const mail2 = await smtp.waitFor(victim, { subject: /login link/, after: again });
    expect((await rest(s.baseUrl, "POST", "/login/email/complete", { body: { token: tokenOf(linkOf(mail2, "/magic-login")), attempt: second.body.attempt } })).status).toBe(201);
    expect((await rest(s.baseUrl, "GET", "/user/profile", { token: owner.body.access_token })).status).toBe(200);
  });

  it.skipIf(skip)("a mailbox named by other accounts' address changes gets at most 5 verification mails an hour", async () => {
    const target = uniqueEmail("target");
    const after = mark(smtp);
    for (let i = 0; i < 7; i++) {
      const u = await registerUser(s);
      const session = await login(s, u.email, u.password);
      c.advance(SECOND);
      expect((await changeEmail(s, session.accessToken, target)).status).toBe(202);
    }
    await outboxDrained(s);
    expect(smtp.mails.slice(after).filter((m) => m.to === target && SUBJECTS.verify.test(m.subject))).toHaveLength(5);
  });

  it.skipIf(skip)("a change verified days later still tells the former address, with an undo link of its own", async () => {
    const u = await registerUser(s);
    const session = await login(s, u.email, u.password);
    const next = uniqueEmail("late");
    let after = mark(smtp);
    expect((await changeEmail(s, session.accessToken, next)).status).toBe(202);
    await smtp.waitFor(u.email, { subject: SUBJECTS.changeNotice, after });
    // Eight days on, the first notice's undo link has expired; a new verification mail is asked for and followed.
    c.advance(8 * 24 * 3_600 * 1_000);
    const fresh = await login(s, u.email, u.password);
    after = mark(smtp);
    expect((await rest(s.baseUrl, "POST", "/user/email/verification", { token: fresh.accessToken, body: {} })).status).toBe(202);
    const verify = await smtp.waitFor(next, { subject: SUBJECTS.verify, after });
    after = mark(smtp);
    expect((await verifyEmail(s, tokenOf(linkOf(verify, "/verify-email")))).status).toBe(200);
    const notice = await smtp.waitFor(u.email, { subject: SUBJECTS.changeNotice, after });
    const undo = await rest(s.baseUrl, "POST", "/email/revert", { body: { token: tokenOf(linkOf(notice, "/revert-email")) } });
    expect({ status: undo.status, body: undo.body }, undo.text).toEqual({ status: 200, body: { email: u.email } });
  });
});
