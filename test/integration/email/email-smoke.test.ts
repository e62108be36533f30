import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rest, STRONG_PASSWORD, uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { expectRestError } from "../../support/error-info.js";
import { startTestServer, type TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type TestSmtp } from "../../support/smtp.js";

describe.each(backends)("e-mail smoke ($name)", ({ name, skip }) => {
  let smtp: TestSmtp;
  let s: TestServer;
  beforeAll(async () => {
    if (skip) return;
    smtp = await startTestSmtp();
    s = await startTestServer(name, { env: { SMTP_URL: smtp.url, MAIL_POLL_INTERVAL: "100ms", APP_URL: "https://shop.example" } });
  });
  afterAll(async () => {
    await s?.destroy();
    await smtp?.stop();
  });

  it.skipIf(skip)("registration mails a verification link that verifies the address once", async () => {
    const email = uniqueEmail();
    const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } });
    expect(r.status, r.text).toBe(201);
    expect(r.body.user.email_verified).toBeFalsy();
    const mail = await smtp.waitFor(email);
    expect(mail.subject).toBe("Confirm your e-mail address");
    expect(mail.links[0]).toMatch(/^https:\/\/shop\.example\/verify-email\?token=[A-Za-z0-9_-]{43}$/);
    const token = tokenOf(mail.links[0]);
    const v = await rest(s.baseUrl, "POST", "/email/verify", { body: { token } });
    expect(v.status, v.text).toBe(200);
    expect(v.body.email).toBe(email);
    expectRestError(await rest(s.baseUrl, "POST", "/email/verify", { body: { token } }), 400, "EMAIL_TOKEN_INVALID");
    const login = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD } });
    expect(login.status).toBe(201);
    const profile = await rest(s.baseUrl, "GET", "/user/profile", { token: login.body.access_token });
    expect(profile.body.user.email_verified).toBe(true);
    const claims = JSON.parse(Buffer.from(login.body.access_token.split(".")[1], "base64url").toString());
    expect(claims.email_verified).toBe(true);
  });
});
