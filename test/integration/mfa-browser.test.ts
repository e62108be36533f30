import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { sessions as sessionsTable } from "../../src/storage/schema.js";
import { connectClient, grpcJsClient, rest } from "../support/clients.js";
import { setCookieNames, setCookieOf, setCookiePairs } from "../support/cookies.js";
import { backends } from "../support/databases.js";
import { connectFailure, errorInfo, errorReason, expectRestError, grpcFailure } from "../support/error-info.js";
import {
  authClaims,
  completeMfaRest,
  controlledClock,
  DEVICE_TOKEN_SHAPE,
  expectMfaRequired,
  loginRest,
  mfaUser,
  type MfaUser,
  MINUTE,
  SECOND,
  STEP,
} from "../support/mfa.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { registerUser } from "../support/users.js";

// Browsers and the two-step MFA login over REST, attacked over the network:
// /login/mfa sets the access, refresh and device cookies and refuses a
// cross-site call as /login does; the device cookie lets the next REST login
// skip MFA on that device; `cookies_only` keeps every token out of the JSON
// body (only the HttpOnly cookies hold them) and is refused where no cookie
// can be set (gRPC, Connect).

const APP = "https://app.example.com";
const EVIL = "https://evil.example";
const SAME_ORIGIN = { "sec-fetch-site": "same-origin" };
const CROSS_SITE = { "sec-fetch-site": "cross-site", origin: EVIL };
// The device cookie lives as long as browsers allow (400 days); MFA trust is decided server-side.
const DEVICE_COOKIE_MAX_AGE_S = String(400 * 24 * 3600);

const creds = (u: { email: string; password: string }) => ({ email: u.email, password: u.password });

for (const backend of backends) {
  describe.skipIf(backend.skip)(`two-step MFA login from a browser (${backend.name})`, () => {
    const c = controlledClock();
    let s: TestServer;
    let prefixed: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let gi: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      s = await startTestServer(backend.name, { env: { CORS_ORIGINS: APP }, overrides: { clock: c.clock } });
      prefixed = await startTestServer(backend.name, {
        env: { COOKIE_SECURE: "true", COOKIE_HOST_PREFIX: "true" },
        overrides: { clock: c.clock, database: s.app.database },
      });
      g = grpcJsClient(IdentityService, s.port);
      gi = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      gi?.close();
      await prefixed?.destroy();
      await s?.destroy();
    });

    /** The MFA_REQUIRED challenge of a login from our own page, on a fresh TOTP step. */
    async function challengeOf(server: TestServer, u: MfaUser, headers: Record<string, string> = SAME_ORIGIN) {
      c.advance(STEP);
      return expectMfaRequired(await loginRest(server, creds(u), headers));
    }
    const profile = (opts: Parameters<typeof rest>[3]) => rest(s.baseUrl, "GET", "/user/profile", opts);
    const sessionCount = async (userId: string) =>
      (await s.app.database.db.select().from(sessionsTable).where(eq(sessionsTable.userId, userId))).length;

    describe("cookies", () => {
      it("POST /login/mfa sets the access, refresh and device cookies with their attributes; the access cookie authenticates", async () => {
        const u = await mfaUser(s, c.now());
        const challenge = await challengeOf(s, u);
        const r = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }, SAME_ORIGIN);
        expect(r.status, r.text).toBe(201);
        expect(r.headers.get("cache-control")).toBe("no-store");
        const access = setCookieOf(r, "access_token")!;
        expect(access.value).toBe(r.body.access_token);
        expect(Object.fromEntries(access.attrs)).toEqual({ "max-age": "900", path: "/", httponly: "", samesite: "Strict" });
        const refresh = setCookieOf(r, "refresh_token")!;
        expect(refresh.value).toBe(r.body.refresh_token);
        expect(refresh.attrs.get("path")).toBe("/token/refresh");
        expect([refresh.attrs.has("httponly"), refresh.attrs.get("samesite")]).toEqual([true, "Strict"]);
        const device = setCookieOf(r, "device_token")!;
        expect(device.value).toMatch(DEVICE_TOKEN_SHAPE);
        expect(device.value).toBe(r.body.device_token);
        expect(Object.fromEntries(device.attrs)).toEqual({ "max-age": DEVICE_COOKIE_MAX_AGE_S, path: "/login", httponly: "", samesite: "Strict" });
        const me = await profile({ cookie: `access_token=${access.value}` });
        expect(me.status, me.text).toBe(200);
        expect(me.body.user.user_id).toBe(u.userId);
      });

      it("with COOKIE_HOST_PREFIX: __Host-access_token, __Secure-refresh_token and __Secure-device_token, all Secure", async () => {
        const u = await mfaUser(prefixed, c.now());
        const challenge = await challengeOf(prefixed, u);
        const r = await completeMfaRest(prefixed, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }, SAME_ORIGIN);
        expect(r.status, r.text).toBe(201);
        expect(setCookieNames(r)).toEqual(["__Host-access_token", "__Secure-refresh_token", "__Secure-device_token"]);
        const device = setCookieOf(r, "__Secure-device_token")!;
        expect([device.value, device.attrs.get("path"), device.attrs.has("secure"), device.attrs.has("domain")]).toEqual([
          r.body.device_token,
          "/login",
          true,
          false,
        ]);
      });

      it("Logout clears the session's cookies but not the device cookie (it names the device, not the session)", async () => {
        const u = await mfaUser(s, c.now());
        const challenge = await challengeOf(s, u);
        const done = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }, SAME_ORIGIN);
        const out = await rest(s.baseUrl, "POST", "/logout", {
          cookie: `access_token=${done.body.access_token}`,
          headers: { ...SAME_ORIGIN, "x-requested-with": "fetch" },
        });
        expect(out.status, out.text).toBe(204);
        expect(setCookiePairs(out)).toEqual(["access_token=", "refresh_token="]);
      });
    });

    describe("login CSRF on /login/mfa", () => {
      it("refuses a cross-site completion (Origin or Sec-Fetch-Site) with 403 CSRF_REJECTED and no cookie; the challenge is not spent", async () => {
        const u = await mfaUser(s, c.now());
        const challenge = await challengeOf(s, u);
        const code = await c.code(u.secret);
        const crossSite: Record<string, string>[] = [
          CROSS_SITE,
          { "sec-fetch-site": "cross-site" },
          { origin: EVIL },
          { "sec-fetch-site": "same-site", origin: "https://blog.example.com" },
        ];
        for (const headers of crossSite) {
          const r = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: code }, headers);
          expectRestError(r, 403, "CSRF_REJECTED");
          expect(setCookieNames(r)).toEqual([]);
          expect(r.text).not.toContain("access_token");
        }
        expect(await sessionCount(u.userId)).toBe(1); // the enrolment's login only
        // From our own page (or an allowed origin) the same challenge and code still work.
        const ok = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: code }, { origin: APP, "sec-fetch-site": "cross-site" });
        expect(ok.status, ok.text).toBe(201);
        expect(setCookieOf(ok, "access_token")!.value).toBe(ok.body.access_token);
      });
    });

    describe("the device cookie", () => {
      it("makes the next REST login skip MFA on that device, as the body's device_id does; anything else there is ignored", async () => {
        const u = await mfaUser(s, c.now());
        const challenge = await challengeOf(s, u);
        const done = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }, SAME_ORIGIN);
        const device = setCookieOf(done, "device_token")!.value;
        c.advance(MINUTE);

        const skipped = await loginRest(s, creds(u), { ...SAME_ORIGIN, cookie: `device_token=${device}` });
        expect(skipped.status, skipped.text).toBe(201);
        expect(authClaims(skipped.body.access_token)).toMatchObject({ amr: ["pwd"], acr: "aal1" });
        expect(skipped.body.device_token).toBe(device);
        // Set again: its lifetime runs from this login.
        expect(setCookieOf(skipped, "device_token")).toMatchObject({ value: device });

        // Without it, with a damaged one, or with another device_id in the body: the code is asked for.
        expectMfaRequired(await loginRest(s, creds(u), SAME_ORIGIN));
        expectMfaRequired(await loginRest(s, creds(u), { ...SAME_ORIGIN, cookie: `device_token=${device.slice(1)}x` }));
        expectMfaRequired(await loginRest(s, { ...creds(u), device_id: "an-app-install-id" }, { ...SAME_ORIGIN, cookie: `device_token=${device}` }));
        // A planted oversized cookie is ignored, not a validation failure.
        expectMfaRequired(await loginRest(s, creds(u), { ...SAME_ORIGIN, cookie: `device_token=${"A".repeat(300)}` }));
        // gRPC and Connect never read cookies.
        const err = await connectFailure(connectClient(s.baseUrl).login(creds(u), { headers: { cookie: `device_token=${device}` } }));
        expect({ code: err.code, reason: errorReason(err) }).toEqual({ code: Code.Unauthenticated, reason: "MFA_REQUIRED" });
      });
    });

    describe("cookies_only", () => {
      it("over REST: the body has no token (expiry kept), the cookies hold them, and a later cookie-only refresh works", async () => {
        const u = await mfaUser(s, c.now());
        const challenge = await challengeOf(s, u);
        const r = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret), cookies_only: true }, SAME_ORIGIN);
        expect(r.status, r.text).toBe(201);
        expect(r.body).toEqual({
          token_type: "Bearer",
          expires_in: 900,
          refresh_token_expire_time: expect.any(String),
          session_id: expect.any(String),
          user_id: u.userId,
        });
        const access = setCookieOf(r, "access_token")!.value;
        const refresh = setCookieOf(r, "refresh_token")!.value;
        expect(setCookieOf(r, "device_token")!.value).toMatch(DEVICE_TOKEN_SHAPE);
        expect(r.text).not.toContain(access);
        expect(r.text).not.toContain(refresh);
        expect((await profile({ cookie: `access_token=${access}` })).status).toBe(200);

        c.advance(MINUTE);
        const refreshed = await rest(s.baseUrl, "POST", "/token/refresh", { body: { cookies_only: true }, cookie: `refresh_token=${refresh}`, headers: SAME_ORIGIN });
        expect(refreshed.status, refreshed.text).toBe(200);
        expect(Object.keys(refreshed.body).sort()).toEqual(["expires_in", "refresh_token_expire_time", "session_id", "token_type"]);
        const nextRefresh = setCookieOf(refreshed, "refresh_token")!.value;
        expect(nextRefresh).not.toBe(refresh);
        expect((await profile({ cookie: `access_token=${setCookieOf(refreshed, "access_token")!.value}` })).status).toBe(200);
        // The rotation happened: the cookie's old token is spent (replayed past the grace window).
        c.advance(10 * SECOND);
        expectRestError(
          await rest(s.baseUrl, "POST", "/token/refresh", { body: {}, cookie: `refresh_token=${refresh}`, headers: SAME_ORIGIN }),
          401,
          "REFRESH_TOKEN_REUSED",
        );
      });

      it("over REST on the one-shot /login too, while a login without it still carries the tokens in the body", async () => {
        const user = await registerUser(s);
        const only = await loginRest(s, { ...creds(user), cookies_only: true }, SAME_ORIGIN);
        expect(only.status, only.text).toBe(201);
        expect([only.body.access_token, only.body.refresh_token, only.body.device_token]).toEqual([undefined, undefined, undefined]);
        expect(only.body.expires_in).toBe(900);
        expect(setCookieNames(only)).toEqual(["access_token", "refresh_token", "device_token"]);
        const plain = await loginRest(s, creds(user), SAME_ORIGIN);
        expect(plain.body.access_token).toBe(setCookieOf(plain, "access_token")!.value);
        expect(plain.body.device_token).toMatch(DEVICE_TOKEN_SHAPE);
      });

      it("over gRPC and Connect (no cookies there): INVALID_ARGUMENT / VALIDATION_FAILED naming the field, before anything happens", async () => {
        const u = await mfaUser(s, c.now());
        const sessionsBefore = await sessionCount(u.userId);
        const connect = connectClient(s.baseUrl);
        const expectRefused = async (call: Promise<unknown>, kind: "grpc-js" | "connect") => {
          if (kind === "connect") {
            const err = await connectFailure(call);
            expect({ code: err.code, reason: errorReason(err), message: err.rawMessage }).toEqual({
              code: Code.InvalidArgument,
              reason: "VALIDATION_FAILED",
              message: expect.stringContaining("cookies_only"),
            });
          } else {
            const err = await grpcFailure(call);
            expect({ code: err.code, ...errorInfo(err) }).toEqual({
              code: grpc.status.INVALID_ARGUMENT,
              reason: "VALIDATION_FAILED",
              metadata: { field: "cookies_only" },
            });
          }
        };
        await expectRefused(connect.login({ ...creds(u), cookiesOnly: true }), "connect");
        await expectRefused(g.login({ ...creds(u), cookiesOnly: true }), "grpc-js");
        await expectRefused(gi.login({ ...creds(u), cookiesOnly: true }), "grpc-js");
        await expectRefused(gi.refreshToken({ refreshToken: u.refreshToken, cookiesOnly: true }), "grpc-js");
        await expectRefused(connect.refreshToken({ refreshToken: u.refreshToken, cookiesOnly: true }), "connect");
        const challenge = await challengeOf(s, u);
        const code = await c.code(u.secret);
        await expectRefused(gi.completeMfaLogin({ mfaChallenge: challenge, mfaCode: code, cookiesOnly: true }), "grpc-js");
        await expectRefused(connect.completeMfaLogin({ mfaChallenge: challenge, mfaCode: code, cookiesOnly: true }), "connect");

        // Refused before the call: no session, the refresh token not rotated, the challenge and code unspent.
        expect(await sessionCount(u.userId)).toBe(sessionsBefore);
        expect((await gi.refreshToken({ refreshToken: u.refreshToken, cookiesOnly: false })).accessToken).not.toBe("");
        const done = await gi.completeMfaLogin({ mfaChallenge: challenge, mfaCode: code });
        expect(done.deviceToken).toMatch(DEVICE_TOKEN_SHAPE);
      });
    });
  });
}
