import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EmailService } from "../../../gen/identity/v1/email_service_pb.js";
import { grpcJsClient, rest, serviceClient } from "../../support/clients.js";
import { setCookieNames, setCookieOf } from "../../support/cookies.js";
import { backends } from "../../support/databases.js";
import { errorInfo, expectConnectError, expectGrpcError, expectRestError } from "../../support/error-info.js";
import { authClaims, completeMfaRest, controlledClock, DEVICE_TOKEN_SHAPE, expectMfaRequired, mfaUser, SECOND, STEP } from "../../support/mfa.js";
import type { TestServer } from "../../support/server.js";
import type { TestSmtp } from "../../support/smtp.js";
import { registerUser } from "../../support/users.js";
import { claimsOf, completeEmailLogin, outboxRows, requestLoginMail, startMailServer } from "./email-login-helpers.js";

// E-mail login with a second factor (MFA_REQUIRED, then CompleteMfaLogin;
// or the code sent along), and from a browser over REST: the `email_login`
// cookie binding the link to the browser that asked, the session cookies
// the completion sets as /login does, `cookies_only`, and login CSRF on both
// calls. gRPC and Connect never read or set cookies.

const APP = "https://app.example.com";
const EVIL = "https://evil.example";
const SAME_ORIGIN = { "sec-fetch-site": "same-origin" };
/** What browsers reveal of a request from another site. */
const CROSS_SITE: Record<string, string>[] = [{ "sec-fetch-site": "cross-site", origin: EVIL }, { "sec-fetch-site": "cross-site" }, { origin: EVIL }];

describe.each(backends)("e-mail login with MFA and from browsers ($name)", ({ name, skip }) => {
  const c = controlledClock();
  let s: TestServer;
  let smtp: TestSmtp;
  let stop: () => Promise<void>;
  let g: ReturnType<typeof grpcJsClient<typeof EmailService>>;

  beforeAll(async () => {
    if (skip) return;
    ({ s, smtp, stop } = await startMailServer(name, { env: { CORS_ORIGINS: APP }, overrides: { clock: c.clock } }));
    g = grpcJsClient(EmailService, s.grpcPort);
  });
  afterAll(async () => {
    g?.close();
    await stop?.();
  });

  const mailFor = (email: string, headers: Record<string, string> = {}) => {
    c.advance(SECOND);
    return requestLoginMail(s, smtp, email, headers);
  };
  const profile = (opts: Parameters<typeof rest>[3]) => rest(s.baseUrl, "GET", "/user/profile", opts);

  describe("accounts with MFA", () => {
    it.skipIf(skip)("the link's completion without a code is MFA_REQUIRED; CompleteMfaLogin then starts a session with amr email, otp, mfa (no pwd)", async () => {
      const u = await mfaUser(s, c.now());
      const m = await mailFor(u.email);
      const required = await completeEmailLogin(s, { token: m.token, attempt: m.attempt }, { headers: SAME_ORIGIN });
      const challenge = expectMfaRequired(required);
      // The challenge now stands for the link, which is spent.
      expectRestError(await completeEmailLogin(s, { token: m.token, attempt: m.attempt }, { headers: SAME_ORIGIN }), 400, "EMAIL_TOKEN_INVALID");
      expect(setCookieNames(required)).toEqual([]);
      c.advance(STEP);
      const r = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) });
      expect(r.status, r.text).toBe(201);
      expect(authClaims(r.body.access_token)).toMatchObject({ amr: ["email", "otp", "mfa"], acr: "aal2" });
      expect(claimsOf(r.body.access_token)).toMatchObject({ sub: u.userId, email_verified: true });
      // The challenge is spent.
      expectRestError(await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }), 401, "MFA_CHALLENGE_INVALID");
    });

    it.skipIf(skip)("the TOTP or a recovery code sent with the completion logs in at once; a wrong one is MFA_CODE_INVALID", async () => {
      const u = await mfaUser(s, c.now());
      const byCode = await mailFor(u.email);
      c.advance(STEP);
      const r = await completeEmailLogin(s, { email: u.email, code: byCode.code, mfa_code: await c.code(u.secret) });
      expect(r.status, r.text).toBe(201);
      expect(authClaims(r.body.access_token)).toMatchObject({ amr: ["email", "otp", "mfa"], acr: "aal2" });

      const byLink = await mailFor(u.email);
      const recovery = await completeEmailLogin(s, { token: byLink.token, attempt: byLink.attempt, recovery_code: u.recoveryCodes[0] });
      expect(recovery.status, recovery.text).toBe(201);
      expect(authClaims(recovery.body.access_token)).toMatchObject({ amr: ["email", "kba", "mfa"], acr: "aal2" });

      const wrong = await mailFor(u.email);
      c.advance(STEP);
      expectRestError(await completeEmailLogin(s, { token: wrong.token, attempt: wrong.attempt, mfa_code: "000000" === (await c.code(u.secret)) ? "111111" : "000000" }), 401, "MFA_CODE_INVALID");
      // A mistyped second factor does not cost the mail: the same link with the right code logs in, once.
      c.advance(STEP);
      const retried = await completeEmailLogin(s, { token: wrong.token, attempt: wrong.attempt, mfa_code: await c.code(u.secret) });
      expect(retried.status, retried.text).toBe(201);
      expectRestError(await completeEmailLogin(s, { token: wrong.token, attempt: wrong.attempt, mfa_code: await c.code(u.secret) }), 400, "EMAIL_TOKEN_INVALID");
    });
  });

  describe("browsers over REST", () => {
    it.skipIf(skip)("StartEmailLogin sets the attempt as an HttpOnly email_login cookie on /login/email; with only the cookie the completion is bound, sets the session cookies as /login does and clears it", async () => {
      const user = await registerUser(s);
      // A password login from the same page first, to compare its cookies with
      // (the e-mail login that verifies the address ends it and the password).
      const login = await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password }, headers: SAME_ORIGIN });
      expect(login.status, login.text).toBe(201);
      const m = await mailFor(user.email, SAME_ORIGIN);
      expect(setCookieNames(m.r)).toEqual(["email_login"]);
      const cookie = setCookieOf(m.r, "email_login")!;
      expect(cookie.value).toBe(m.attempt);
      expect(Object.fromEntries(cookie.attrs)).toEqual({ "max-age": "900", path: "/login/email", httponly: "", samesite: "Strict" });

      const r = await completeEmailLogin(s, { token: m.token }, { cookie: `email_login=${m.attempt}`, headers: SAME_ORIGIN });
      expect(r.status, r.text).toBe(201);
      expect(r.headers.get("cache-control")).toBe("no-store");
      expect(authClaims(r.body.access_token).amr).toEqual(["email"]);
      expect(setCookieNames(r).sort()).toEqual(["access_token", "device_token", "email_login", "refresh_token"]);
      expect(Object.fromEntries(setCookieOf(r, "email_login")!.attrs)).toMatchObject({ "max-age": "0", path: "/login/email" });
      expect(setCookieOf(r, "email_login")!.value).toBe("");
      expect(setCookieOf(r, "access_token")!.value).toBe(r.body.access_token);
      expect(setCookieOf(r, "refresh_token")!.value).toBe(r.body.refresh_token);
      expect(setCookieOf(r, "device_token")!.value).toBe(r.body.device_token);
      expect(r.body.device_token).toMatch(DEVICE_TOKEN_SHAPE);

      // The same cookies, with the same attributes, as a password login from the same page.
      for (const name of ["access_token", "refresh_token", "device_token"]) {
        const attrs = (res: typeof r) => ({ ...Object.fromEntries(setCookieOf(res, name)!.attrs), "max-age": undefined });
        expect({ name, ...attrs(r) }).toEqual({ name, ...attrs(login) });
      }
      expect(Number(setCookieOf(r, "access_token")!.attrs.get("max-age"))).toBe(r.body.expires_in);
      expect((await profile({ cookie: `access_token=${setCookieOf(r, "access_token")!.value}` })).body.user.user_id).toBe(user.userId);
    });

    it.skipIf(skip)("another browser's email_login cookie binds nothing: the link asks for confirmation", async () => {
      const user = await registerUser(s);
      const other = await registerUser(s);
      const mine = await mailFor(user.email, SAME_ORIGIN);
      const theirs = await mailFor(other.email, SAME_ORIGIN);
      const r = await completeEmailLogin(s, { token: mine.token }, { cookie: `email_login=${theirs.attempt}`, headers: SAME_ORIGIN });
      expectRestError(r, 400, "EMAIL_LOGIN_CONFIRMATION_REQUIRED");
      expect(setCookieNames(r)).toEqual([]);
      expect((await completeEmailLogin(s, { token: mine.token }, { cookie: `email_login=${mine.attempt}`, headers: SAME_ORIGIN })).status).toBe(201);
    });

    it.skipIf(skip)("cookies_only leaves every token out of the body; the cookies hold them", async () => {
      const user = await registerUser(s);
      const m = await mailFor(user.email, SAME_ORIGIN);
      const r = await completeEmailLogin(s, { token: m.token, cookies_only: true }, { cookie: `email_login=${m.attempt}`, headers: SAME_ORIGIN });
      expect(r.status, r.text).toBe(201);
      expect(r.body).toEqual({
        token_type: "Bearer",
        expires_in: 900,
        refresh_token_expire_time: expect.any(String),
        session_id: expect.any(String),
        user_id: user.userId,
      });
      const access = setCookieOf(r, "access_token")!.value;
      const refresh = setCookieOf(r, "refresh_token")!.value;
      expect(setCookieOf(r, "device_token")!.value).toMatch(DEVICE_TOKEN_SHAPE);
      expect(r.text).not.toContain(access);
      expect(r.text).not.toContain(refresh);
      expect((await profile({ cookie: `access_token=${access}` })).status).toBe(200);
      const refreshed = await rest(s.baseUrl, "POST", "/token/refresh", { body: { cookies_only: true }, cookie: `refresh_token=${refresh}`, headers: SAME_ORIGIN });
      expect(refreshed.status, refreshed.text).toBe(200);
    });

    it.skipIf(skip)("a cross-site /login/email or /login/email/complete is refused 403 CSRF_REJECTED as /login is: no mail, no cookie, the link not spent", async () => {
      const user = await registerUser(s);
      const m = await mailFor(user.email, SAME_ORIGIN);
      const mailsBefore = (await outboxRows(s, "email_login")).length;
      for (const headers of CROSS_SITE) {
        // What /login does with the same request.
        expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password }, headers }), 403, "CSRF_REJECTED");
        const start = await rest(s.baseUrl, "POST", "/login/email", { body: { email: user.email }, headers });
        expectRestError(start, 403, "CSRF_REJECTED");
        expect(setCookieNames(start)).toEqual([]);
        expect(start.body.attempt).toBeUndefined();
        const complete = await completeEmailLogin(s, { token: m.token, attempt: m.attempt }, { cookie: `email_login=${m.attempt}`, headers });
        expectRestError(complete, 403, "CSRF_REJECTED");
        expect(setCookieNames(complete)).toEqual([]);
        expect(complete.text).not.toContain("access_token");
      }
      expect((await outboxRows(s, "email_login")).length).toBe(mailsBefore);
      // From an allowed origin the same link still works.
      const ok = await completeEmailLogin(s, { token: m.token }, { cookie: `email_login=${m.attempt}`, headers: { origin: APP, "sec-fetch-site": "cross-site" } });
      expect(ok.status, ok.text).toBe(201);
      // Allowed origins and non-browser callers may start one.
      expect((await rest(s.baseUrl, "POST", "/login/email", { body: { email: user.email }, headers: { origin: APP, "sec-fetch-site": "same-site" } })).status).toBe(202);
      expect((await rest(s.baseUrl, "POST", "/login/email", { body: { email: user.email } })).status).toBe(202);
    });
  });

  describe("gRPC and Connect", () => {
    it.skipIf(skip)("refuse cookies_only with VALIDATION_FAILED (the link is not spent), set no cookie and never read the email_login cookie", async () => {
      const user = await registerUser(s);
      const m = await mailFor(user.email);
      const connect = serviceClient(EmailService, s.baseUrl);
      const err = await expectConnectError(connect.completeEmailLogin({ token: m.token, attempt: m.attempt, cookiesOnly: true }), Code.InvalidArgument, "VALIDATION_FAILED");
      expect(errorInfo(err).metadata).toMatchObject({ field: "cookies_only" });
      await expectGrpcError(g.completeEmailLogin({ token: m.token, attempt: m.attempt, cookiesOnly: true }), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED");
      // The cookie means nothing off REST: the link asks for confirmation.
      await expectConnectError(
        connect.completeEmailLogin({ token: m.token }, { headers: { cookie: `email_login=${m.attempt}` } }),
        Code.FailedPrecondition,
        "EMAIL_LOGIN_CONFIRMATION_REQUIRED",
      );
      const ok = await g.completeEmailLogin({ token: m.token, attempt: m.attempt });
      expect(authClaims(ok.accessToken)).toMatchObject({ amr: ["email"], acr: "aal1" });
      expect(ok.userId).toBe(user.userId);

      // Connect's StartEmailLogin sets no cookie.
      const res = await fetch(`${s.baseUrl}/identity.v1.EmailService/StartEmailLogin`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: user.email }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.getSetCookie()).toEqual([]);
    });
  });
});
