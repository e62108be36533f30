import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, rest, STRONG_PASSWORD, uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { expectConnectError, expectRestError } from "../../support/error-info.js";
import type { TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type TestSmtp } from "../../support/smtp.js";
import { login, strongPassword } from "../../support/users.js";
import {
  accountsWith,
  APP_URL,
  changeEmail,
  emailVerifiedClaim,
  expectNoSecretInMails,
  forgotPassword,
  linkOf,
  loginRaw,
  mark,
  outboxDrained,
  shapeOf,
  startMailServer,
  SUBJECTS,
  verifyEmail,
} from "./email-helpers.js";

// REQUIRE_EMAIL_VERIFICATION: unverified accounts do not log in, and
// registration no longer tells whether an address has an account (the
// owner is mailed instead). Mails in the user's language, with every
// variable escaped in the HTML part and no password anywhere.

/** HTML specials in the product name: every mail quotes it. */
const APP_NAME = `Shop & <Co> "Best"`;
const APP_NAME_HTML = "Shop &amp; &lt;Co&gt; &quot;Best&quot;";
const NASTY_NAME = `<img src=x onerror=alert(1)> & "Phu"`;

describe.each(backends)("registration with REQUIRE_EMAIL_VERIFICATION, and mail locales ($name)", ({ name, skip }) => {
  let smtp: TestSmtp;
  let s: TestServer;
  const passwords = new Set<string>([STRONG_PASSWORD]);
  beforeAll(async () => {
    if (skip) return;
    smtp = await startTestSmtp();
    s = await startMailServer(name, smtp, { env: { REQUIRE_EMAIL_VERIFICATION: "true", APP_NAME } });
  });
  afterAll(async () => {
    await s?.destroy();
    await smtp?.stop();
  });

  const register = (email: string, password: string, info: Record<string, unknown> = {}) => {
    passwords.add(password);
    return rest(s.baseUrl, "POST", "/register", { body: { account: { email, password }, info_user: info } });
  };
  const info = { name: "Ngoc Phu", phone_number: "1234567890", date_of_birth: "2023-11-12T08:00:23.719000", gender: true, address: "Ha Noi" };

  /** Registers (201 asserted) and returns the verification mail. */
  async function registerAndMail(email: string, password = STRONG_PASSWORD, extra: Record<string, unknown> = {}) {
    const r = await register(email, password, { ...info, ...extra });
    expect(r.status, r.text).toBe(201);
    return { userId: r.body.user.user_id as string, mail: await smtp.waitFor(email, { subject: /./ }) };
  }

  describe("REQUIRE_EMAIL_VERIFICATION=true", () => {
    it.skipIf(skip)("unverified: the right password is 403 EMAIL_NOT_VERIFIED (REST and gRPC), a wrong one 401; verified: 201", async () => {
      const email = uniqueEmail();
      const { mail } = await registerAndMail(email);
      expectRestError(await loginRaw(s, email, STRONG_PASSWORD), 403, "EMAIL_NOT_VERIFIED");
      expectRestError(await loginRaw(s, email, "not the password at all"), 401, "INVALID_CREDENTIALS");
      await expectConnectError(connectClient(s.baseUrl, "grpc").login({ email, password: STRONG_PASSWORD }), Code.PermissionDenied, "EMAIL_NOT_VERIFIED");
      expect((await verifyEmail(s, tokenOf(linkOf(mail, "/verify-email")))).status).toBe(200);
      const session = await login(s, email, STRONG_PASSWORD);
      expect(emailVerifiedClaim(session.accessToken)).toBe(true);
    });

    it.skipIf(skip)("a taken address is answered 201 like a new one, creates nothing, and mails its owner", async () => {
      const owner = uniqueEmail("owner");
      const registered = await registerAndMail(owner);
      expect((await verifyEmail(s, tokenOf(linkOf(registered.mail, "/verify-email")))).status).toBe(200);

      const newcomer = uniqueEmail("newcomer");
      const fresh = await register(newcomer, strongPassword("new"), info);
      const after = mark(smtp);
      const intruder = strongPassword("intruder");
      const dup = await register(` ${owner.toUpperCase()}`, intruder, info);
      expect([fresh.status, dup.status], dup.text).toEqual([201, 201]);
      expect(shapeOf(dup.body)).toEqual(shapeOf(fresh.body));
      expect(dup.body.user.info_user).toEqual(fresh.body.user.info_user);
      expect(dup.body.user).toMatchObject({ email: owner });
      expect(dup.body.user.email_verified ?? false).toBe(false);
      expect(dup.body.user.user_id).not.toBe(registered.userId);

      expect(await accountsWith(s, owner)).toBe(1);
      expect((await loginRaw(s, owner, STRONG_PASSWORD)).body.user_id).toBe(registered.userId);
      expectRestError(await loginRaw(s, owner, intruder), 401, "INVALID_CREDENTIALS");

      const notice = await smtp.waitFor(owner, { subject: SUBJECTS.registrationAttempt, after });
      expect(notice.links).toEqual([`${APP_URL}/login`]);
      // The new address got its verification mail; the owner nothing else.
      expect(linkOf(await smtp.waitFor(newcomer, { subject: SUBJECTS.verify }), "/verify-email")).toBeTruthy();
      await outboxDrained(s);
      expect(smtp.mails.slice(after).filter((m) => m.to === owner).map((m) => m.subject)).toEqual([notice.subject]);
    });
  });

  describe("locales and escaping", () => {
    it.skipIf(skip)("locale vi (and vi-VN) gets Vietnamese mails; an unsupported locale gets English", async () => {
      const cases = [
        { locale: "vi", subject: "Xác nhận địa chỉ e-mail của bạn", lang: "vi" },
        { locale: "vi-VN", subject: "Xác nhận địa chỉ e-mail của bạn", lang: "vi" },
        { locale: "fr", subject: "Confirm your e-mail address", lang: "en" },
      ];
      for (const c of cases) {
        const email = uniqueEmail(c.locale);
        const { mail } = await registerAndMail(email, STRONG_PASSWORD, { locale: c.locale });
        expect({ locale: c.locale, subject: mail.subject }).toEqual({ locale: c.locale, subject: c.subject });
        expect(mail.html).toContain(`<html lang="${c.lang}">`);
        linkOf(mail, "/verify-email");
      }
    });

    it.skipIf(skip)("a Vietnamese user's reset and address-change mails are Vietnamese too", async () => {
      const email = uniqueEmail("viet");
      const { mail } = await registerAndMail(email, STRONG_PASSWORD, { locale: "vi" });
      expect((await verifyEmail(s, tokenOf(linkOf(mail, "/verify-email")))).status).toBe(200);
      let after = mark(smtp);
      expect((await forgotPassword(s, email)).status).toBe(202);
      linkOf(await smtp.waitFor(email, { subject: /^Đặt lại mật khẩu$/, after }), "/reset-password");

      after = mark(smtp);
      const session = await login(s, email, STRONG_PASSWORD);
      const next = uniqueEmail("viet.new");
      expect((await changeEmail(s, session.accessToken, next)).status).toBe(202);
      linkOf(await smtp.waitFor(email, { subject: /^Địa chỉ e-mail của bạn đang được thay đổi$/, after }), "/revert-email");
      linkOf(await smtp.waitFor(next, { subject: /^Xác nhận địa chỉ e-mail của bạn$/, after }), "/verify-email");
    });

    it.skipIf(skip)("the HTML part escapes every variable: the product name, a masked address with '&'; the user's name never appears", async () => {
      const email = uniqueEmail("escape");
      const { mail } = await registerAndMail(email, STRONG_PASSWORD, { name: NASTY_NAME });
      expect(mail.text).toContain(APP_NAME);
      expect(mail.html).toContain(APP_NAME_HTML);
      expect(mail.html).not.toContain("<Co>");
      expect((await verifyEmail(s, tokenOf(linkOf(mail, "/verify-email")))).status).toBe(200);

      const session = await login(s, email, STRONG_PASSWORD);
      const after = mark(smtp);
      // Masked to its first two characters: "a&***@example.com".
      expect((await changeEmail(s, session.accessToken, uniqueEmail("a&b"))).status).toBe(202);
      const notice = await smtp.waitFor(email, { subject: SUBJECTS.changeNotice, after });
      expect(notice.text).toContain("a&***@example.com");
      expect(notice.html).toContain("a&amp;***@example.com");
      expect(notice.html).not.toContain("a&***");

      await outboxDrained(s);
      for (const m of smtp.mails) {
        expect(m.html, `${m.to}: ${m.subject}`).not.toMatch(/<img|<script/);
      }
    });
  });

  it.skipIf(skip)("no mail carries a password", () => {
    expectNoSecretInMails(smtp, passwords);
  });
});
