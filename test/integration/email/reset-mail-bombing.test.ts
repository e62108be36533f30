import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rest, uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { controlledClock, MINUTE, SECOND, type ControlledClock } from "../../support/mfa.js";
import type { TestServer } from "../../support/server.js";
import { startTestSmtp, type TestSmtp } from "../../support/smtp.js";
import { login, registerUser } from "../../support/users.js";
import { expectRest429, uniqueIp, xff } from "../abuse-helpers.js";
import { forgotPassword, mark, outboxDrained, outboxIds, settledRowsSince, startMailServer, SUBJECTS } from "./email-helpers.js";

/**
 * `capped` rows refused by the hourly cap, and `issued` tokens within it: of
 * those, the mails composed after a newer one are not sent (their link would
 * be dead), so at least one and at most `issued` went out. How many were sent.
 */
function expectCapped(rows: { status: string; lastError: string | null }[], want: { capped: number; issued: number }): number {
  const outcomes = rows.map((r) => r.lastError ?? r.status);
  expect(outcomes.filter((o) => o === "capped")).toHaveLength(want.capped);
  const sent = outcomes.filter((o) => o === "sent").length;
  expect(sent).toBeGreaterThanOrEqual(1);
  expect(outcomes.filter((o) => o === "superseded by a newer mail")).toHaveLength(want.issued - sent);
  return sent;
}

// Nobody floods a mailbox with reset mails. With the rate limits off (the
// test servers' default) the reset composer still sends at most 5 reset
// mails per account and hour, however many requests come and however they
// overlap; with the limits on, the 6th request for one address in the hour
// is refused (429), for an address with an account and one without alike.

const HOUR = 60 * MINUTE;

describe.each(backends)("reset mail bombing ($name)", ({ name, skip }) => {
  describe("the composer's cap (rate limits off)", () => {
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

    const resetMailsTo = (email: string) => smtp.to(email).filter((m) => SUBJECTS.reset.test(m.subject));

    it.skipIf(skip)("8 requests a second apart: at most 5 mails, 3 rows dropped as capped; an hour later a request is mailed again", async () => {
      const user = await registerUser(s);
      const before = await outboxIds(s, "password_reset");
      for (let i = 0; i < 8; i++) {
        const r = await forgotPassword(s, user.email);
        expect(r.status, r.text).toBe(202);
        c.advance(SECOND);
      }
      const rows = await settledRowsSince(s, "password_reset", before, 8);
      // Which ones go depends on the order the dispatcher composes them in:
      // five tokens are issued in the hour, three requests are capped, and a
      // mail composed after a newer one is not sent (its link would be dead).
      const sent = expectCapped(rows, { capped: 3, issued: 5 });
      await outboxDrained(s);
      expect(resetMailsTo(user.email)).toHaveLength(sent);

      // The cap is per hour: an hour after the burst, a request is mailed again.
      c.advance(HOUR);
      const after = mark(smtp);
      expect((await forgotPassword(s, user.email)).status).toBe(202);
      await smtp.waitFor(user.email, { subject: SUBJECTS.reset, after });
    });

    it.skipIf(skip)("8 requests at once (one burst, one instant): still at most 5 mails", async () => {
      const user = await registerUser(s);
      c.advance(SECOND);
      const before = await outboxIds(s, "password_reset");
      const answers = await Promise.all(Array.from({ length: 8 }, () => forgotPassword(s, user.email)));
      expect(answers.map((r) => r.status)).toEqual(Array(8).fill(202));
      const rows = await settledRowsSince(s, "password_reset", before, 8);
      const sent = expectCapped(rows, { capped: 3, issued: 5 });
      await outboxDrained(s);
      expect(resetMailsTo(user.email)).toHaveLength(sent);
    });

    it.skipIf(skip)("SendVerificationEmail (authenticated, no mailbox limit of its own) is capped too: 8 at once, 5 mails in all", async () => {
      const user = await registerUser(s);
      await smtp.waitFor(user.email, { subject: SUBJECTS.verify });
      const session = await login(s, user.email, user.password);
      c.advance(SECOND);
      const before = await outboxIds(s, "verify_email");
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => rest(s.baseUrl, "POST", "/user/email/verification", { token: session.accessToken, body: {} })),
      );
      expect(answers.map((r) => r.status)).toEqual(Array(8).fill(202));
      const rows = await settledRowsSince(s, "verify_email", before, 8);
      // The registration's mail counts: 4 more tokens in the hour, 4 capped.
      const sent = expectCapped(rows, { capped: 4, issued: 4 });
      await outboxDrained(s);
      expect(smtp.to(user.email).filter((m) => SUBJECTS.verify.test(m.subject))).toHaveLength(1 + sent);
    });

    it.skipIf(skip)("an unknown address gets no mail, however often it is asked for", async () => {
      const unknown = uniqueEmail("nobody");
      const before = await outboxIds(s, "password_reset");
      for (let i = 0; i < 3; i++) expect((await forgotPassword(s, unknown)).status).toBe(202);
      const rows = await settledRowsSince(s, "password_reset", before, 3);
      expect(rows.map((r) => [r.status, r.lastError])).toEqual(Array(3).fill(["dropped", "no account"]));
      expect(smtp.to(unknown)).toEqual([]);
    });
  });

  describe("the rate limit (RATE_LIMITS on)", () => {
    let smtp: TestSmtp;
    let s: TestServer;
    beforeAll(async () => {
      if (skip) return;
      smtp = await startTestSmtp();
      s = await startMailServer(name, smtp, {
        env: { RATE_LIMITS: "password_forgot.account=5/1h:5", TRUSTED_PROXIES: "127.0.0.1" },
      });
    });
    afterAll(async () => {
      await s?.destroy();
      await smtp?.stop();
    });

    it.skipIf(skip)("the 6th request for one address in the hour is 429 with Retry-After, from any client address and spelling", async () => {
      const user = await registerUser(s);
      for (let i = 0; i < 5; i++) expect((await forgotPassword(s, user.email, xff(uniqueIp()))).status).toBe(202);
      const spellings = [user.email, `  ${user.email.toUpperCase()} `];
      for (const spelling of spellings) {
        const retryAfter = expectRest429(await forgotPassword(s, spelling, xff(uniqueIp())), "account");
        // One request per 12 minutes refills.
        expect(retryAfter).toBeGreaterThan(0);
        expect(retryAfter).toBeLessThanOrEqual(12 * 60);
      }
      // Another address has its own budget.
      expect((await forgotPassword(s, uniqueEmail(), xff(uniqueIp()))).status).toBe(202);
      await outboxDrained(s);
      // Five requests got through; of those composed out of order, only the newest is sent.
      const received = smtp.to(user.email).filter((m) => SUBJECTS.reset.test(m.subject)).length;
      expect(received).toBeGreaterThanOrEqual(1);
      expect(received).toBeLessThanOrEqual(5);
    });

    it.skipIf(skip)("an address without an account is limited the same way (the limit tells nothing)", async () => {
      const unknown = uniqueEmail("nobody");
      for (let i = 0; i < 5; i++) expect((await forgotPassword(s, unknown, xff(uniqueIp()))).status).toBe(202);
      expectRest429(await forgotPassword(s, unknown, xff(uniqueIp())), "account");
    });
  });
});
