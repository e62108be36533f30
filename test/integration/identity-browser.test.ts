import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, rest, STRONG_PASSWORD } from "../support/clients.js";
import { setCookieNames, setCookieOf } from "../support/cookies.js";
import { backends } from "../support/databases.js";
import { expectRestError } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { registerUser, type SeededUser } from "../support/users.js";

// Browsers behind the gateway: the cookies Login and RefreshToken set, the
// refresh cookie standing in for the body, Logout clearing both, the CSRF
// checks on every cookie-authenticated state change, and the CORS allowlist.

const APP = "https://app.example.com";
const EVIL = "https://evil.example";


// What a browser adds to a request from our own page (fetch, same origin).
const SAME_ORIGIN = { "sec-fetch-site": "same-origin" };
const CROSS_SITE = { "sec-fetch-site": "cross-site", origin: EVIL };

for (const backend of backends) {
  describe.skipIf(backend.skip)(`browsers: cookies, CSRF, CORS (${backend.name})`, () => {
    let s: TestServer;
    let secure: TestServer;
    let prefixed: TestServer;

    beforeAll(async () => {
      s = await startTestServer(backend.name, { env: { CORS_ORIGINS: `${APP}, https://admin.example.com` } });
      const shared = { overrides: { database: s.app.database } };
      secure = await startTestServer(backend.name, { env: { COOKIE_SECURE: "true" }, ...shared });
      prefixed = await startTestServer(backend.name, { env: { COOKIE_SECURE: "true", COOKIE_HOST_PREFIX: "true" }, ...shared });
    });
    afterAll(async () => {
      await prefixed?.destroy();
      await secure?.destroy();
      await s?.destroy();
    });

    /** Logs in as a browser on our own page would; returns the cookies. */
    async function browserLogin(server: TestServer, user?: SeededUser) {
      const u = user ?? (await registerUser(server));
      const r = await rest(server.baseUrl, "POST", "/login", {
        body: { email: u.email, password: u.password },
        headers: SAME_ORIGIN,
      });
      expect(r.status, r.text).toBe(201);
      return { user: u, r, accessToken: r.body.access_token as string, refreshToken: r.body.refresh_token as string };
    }

    const profile = (server: TestServer, opts: Parameters<typeof rest>[3]) => rest(server.baseUrl, "GET", "/user/profile", opts);

    describe("cookies", () => {
      it("Login sets an HttpOnly, SameSite=Strict access cookie on / and a refresh cookie scoped to /token/refresh (COOKIE_SECURE=false)", async () => {
        const { r, accessToken, refreshToken } = await browserLogin(s);
        expect(r.headers.get("cache-control")).toBe("no-store");
        const access = setCookieOf(r, "access_token")!;
        expect(access.value).toBe(accessToken);
        expect(Object.fromEntries(access.attrs)).toEqual({ "max-age": String(r.body.expires_in), path: "/", httponly: "", samesite: "Strict" });
        const refresh = setCookieOf(r, "refresh_token")!;
        expect(refresh.value).toBe(refreshToken);
        expect(refresh.attrs.get("path")).toBe("/token/refresh");
        expect(refresh.attrs.has("httponly")).toBe(true);
        expect(refresh.attrs.get("samesite")).toBe("Strict");
        expect(refresh.attrs.has("secure")).toBe(false);
        expect(refresh.attrs.has("domain")).toBe(false);
        // Lives as long as the refresh token (the session's idle expiry), give or take a second.
        const expiresS = (Date.parse(r.body.refresh_token_expire_time) - Date.now()) / 1000;
        expect(Math.abs(Number(refresh.attrs.get("max-age")) - expiresS)).toBeLessThan(5);
      });

      it("marks both cookies Secure by default (COOKIE_SECURE unset)", async () => {
        const { r } = await browserLogin(secure);
        expect(setCookieOf(r, "access_token")!.attrs.has("secure")).toBe(true);
        expect(setCookieOf(r, "refresh_token")!.attrs.has("secure")).toBe(true);
        expect(setCookieOf(r, "__Host-access_token")).toBeUndefined();
      });

      it("uses __Host-access_token (Path=/, Secure, no Domain) and __Secure-refresh_token with COOKIE_HOST_PREFIX", async () => {
        const { r, accessToken, refreshToken } = await browserLogin(prefixed);
        expect(setCookieOf(r, "access_token")).toBeUndefined();
        const access = setCookieOf(r, "__Host-access_token")!;
        expect(access.value).toBe(accessToken);
        expect(access.attrs.get("path")).toBe("/");
        expect(access.attrs.has("secure")).toBe(true);
        expect(access.attrs.has("domain")).toBe(false);
        const refresh = setCookieOf(r, "__Secure-refresh_token")!;
        expect(refresh.value).toBe(refreshToken);
        expect(refresh.attrs.get("path")).toBe("/token/refresh");
        expect(refresh.attrs.has("secure")).toBe(true);

        // The prefixed name authenticates; the plain one means nothing there.
        expect((await profile(prefixed, { cookie: `__Host-access_token=${accessToken}` })).status).toBe(200);
        expectRestError(await profile(prefixed, { cookie: `access_token=${accessToken}` }), 401, "TOKEN_MISSING");
        const refreshed = await rest(prefixed.baseUrl, "POST", "/token/refresh", {
          body: {},
          cookie: `__Secure-refresh_token=${refreshToken}`,
          headers: SAME_ORIGIN,
        });
        expect(refreshed.status, refreshed.text).toBe(200);
        expect(setCookieOf(refreshed, "__Secure-refresh_token")!.value).toBe(refreshed.body.refresh_token);
      });

      it("refuses to boot with COOKIE_HOST_PREFIX=true and COOKIE_SECURE=false", async () => {
        await expect(startTestServer(backend.name, { env: { COOKIE_HOST_PREFIX: "true" } })).rejects.toThrow(/COOKIE_HOST_PREFIX/);
      });
    });

    describe("refresh with the cookie", () => {
      it("takes the refresh token from the cookie when the body has none, and sets both cookies again", async () => {
        const { refreshToken } = await browserLogin(s);
        const r = await rest(s.baseUrl, "POST", "/token/refresh", { body: {}, cookie: `refresh_token=${refreshToken}`, headers: SAME_ORIGIN });
        expect(r.status, r.text).toBe(200);
        expect(r.headers.get("cache-control")).toBe("no-store");
        expect(r.body.refresh_token).not.toBe(refreshToken);
        expect(setCookieOf(r, "refresh_token")!.value).toBe(r.body.refresh_token);
        expect(setCookieOf(r, "access_token")!.value).toBe(r.body.access_token);
        expect((await profile(s, { token: r.body.access_token })).status).toBe(200);
      });

      it("accepts a bodyless same-origin refresh; without Sec-Fetch-Site it needs X-Requested-With", async () => {
        const { refreshToken } = await browserLogin(s);
        let cookie = `refresh_token=${refreshToken}`;
        // An older browser: our own Origin, no Sec-Fetch-Site, no marker.
        expectRestError(await rest(s.baseUrl, "POST", "/token/refresh", { cookie, headers: { origin: s.baseUrl } }), 403, "CSRF_REJECTED");
        let r = await rest(s.baseUrl, "POST", "/token/refresh", { cookie, headers: { origin: s.baseUrl, "x-requested-with": "fetch" } });
        expect(r.status, r.text).toBe(200);
        cookie = `refresh_token=${r.body.refresh_token}`;
        r = await rest(s.baseUrl, "POST", "/token/refresh", { cookie, headers: SAME_ORIGIN });
        expect(r.status, r.text).toBe(200);
      });

      it("prefers the body's refresh token over the cookie (the body still works)", async () => {
        const { refreshToken } = await browserLogin(s);
        const r = await rest(s.baseUrl, "POST", "/token/refresh", {
          body: { refresh_token: refreshToken },
          cookie: "refresh_token=not-the-token",
        });
        expect(r.status, r.text).toBe(200);
      });

      it("refuses a cross-site refresh with the cookie, and the token stays good", async () => {
        const { refreshToken } = await browserLogin(s);
        const cookie = `refresh_token=${refreshToken}`;
        const r = await rest(s.baseUrl, "POST", "/token/refresh", { body: {}, cookie, headers: CROSS_SITE });
        expectRestError(r, 403, "CSRF_REJECTED");
        expect(setCookieNames(r)).toEqual([]);
        expect((await rest(s.baseUrl, "POST", "/token/refresh", { body: {}, cookie, headers: SAME_ORIGIN })).status).toBe(200);
      });

      it("without a cookie or a body token it is still a validation error", async () => {
        const r = await rest(s.baseUrl, "POST", "/token/refresh", { body: {}, headers: SAME_ORIGIN });
        expectRestError(r, 400, "VALIDATION_FAILED");
      });
    });

    describe("logout", () => {
      it("clears both cookies (same names and paths, Max-Age=0) and ends the session", async () => {
        const { accessToken } = await browserLogin(s);
        const r = await rest(s.baseUrl, "POST", "/logout", {
          cookie: `access_token=${accessToken}`,
          headers: { ...SAME_ORIGIN, "x-requested-with": "XMLHttpRequest" },
        });
        expect(r.status, r.text).toBe(204);
        const access = setCookieOf(r, "access_token")!;
        const refresh = setCookieOf(r, "refresh_token")!;
        expect([access.value, access.attrs.get("max-age"), access.attrs.get("path")]).toEqual(["", "0", "/"]);
        expect([refresh.value, refresh.attrs.get("max-age"), refresh.attrs.get("path")]).toEqual(["", "0", "/token/refresh"]);
        expectRestError(await profile(s, { token: accessToken }), 401, "TOKEN_INVALID");
      });

      it("ending one's own current session with DELETE /user/sessions/{id} clears the cookies too; ending another does not", async () => {
        const first = await browserLogin(s);
        const second = await browserLogin(s, first.user);
        const headers = { ...SAME_ORIGIN, "x-requested-with": "XMLHttpRequest" };
        const other = await rest(s.baseUrl, "DELETE", `/user/sessions/${first.r.body.session_id}`, {
          cookie: `access_token=${second.accessToken}`,
          headers,
        });
        expect(other.status, other.text).toBe(204);
        expect(setCookieNames(other)).toEqual([]);
        const own = await rest(s.baseUrl, "DELETE", `/user/sessions/${second.r.body.session_id}`, {
          cookie: `access_token=${second.accessToken}`,
          headers,
        });
        expect(own.status, own.text).toBe(204);
        expect(setCookieOf(own, "access_token")!.attrs.get("max-age")).toBe("0");
        expect(setCookieOf(own, "refresh_token")!.attrs.get("max-age")).toBe("0");
        expectRestError(await profile(s, { token: second.accessToken }), 401, "TOKEN_INVALID");
      });

      it("clears the prefixed cookies with the prefix option", async () => {
        const { accessToken } = await browserLogin(prefixed);
        const r = await rest(prefixed.baseUrl, "POST", "/logout", { token: accessToken });
        expect(r.status).toBe(204);
        expect(setCookieOf(r, "__Host-access_token")!.attrs.get("max-age")).toBe("0");
        expect(setCookieOf(r, "__Secure-refresh_token")!.attrs.get("max-age")).toBe("0");
      });

      it("refuses a bodyless cookie logout without Sec-Fetch-Site or X-Requested-With (a form could send it), and the session lives on", async () => {
        const { accessToken } = await browserLogin(s);
        const refused: Record<string, string>[] = [{ origin: s.baseUrl }, { origin: s.baseUrl, "content-type": "text/plain" }, { "sec-fetch-site": "none" }, CROSS_SITE];
        for (const headers of refused) {
          const r = await rest(s.baseUrl, "POST", "/logout", { cookie: `access_token=${accessToken}`, headers });
          expectRestError(r, 403, "CSRF_REJECTED");
          expect(setCookieNames(r)).toEqual([]);
        }
        expect((await profile(s, { token: accessToken })).status).toBe(200);
      });

      it("ends the session on a same-origin page's bodyless fetch('/logout', {method: 'POST', credentials: 'include'})", async () => {
        const { accessToken } = await browserLogin(s);
        // What the browser sends for that fetch: the cookie, Sec-Fetch-Site, no body.
        const r = await rest(s.baseUrl, "POST", "/logout", { cookie: `access_token=${accessToken}`, headers: { ...SAME_ORIGIN, origin: s.baseUrl } });
        expect(r.status, r.text).toBe(204);
        expect(setCookieOf(r, "access_token")!.attrs.get("max-age")).toBe("0");
        expectRestError(await profile(s, { token: accessToken }), 401, "TOKEN_INVALID");
      });
    });

    describe("CSRF on cookie-authenticated state changes", () => {
      const update = (server: TestServer, opts: Parameters<typeof rest>[3]) =>
        rest(server.baseUrl, "PUT", "/user/profile", { body: { info_user: { address: "Changed" } }, ...opts });

      it("refuses a cross-site cookie PUT and POST with 403 CSRF_REJECTED; nothing changes", async () => {
        const { accessToken } = await browserLogin(s);
        const cookie = `access_token=${accessToken}`;
        expectRestError(await update(s, { cookie, headers: CROSS_SITE }), 403, "CSRF_REJECTED");
        expectRestError(
          await rest(s.baseUrl, "PUT", "/user/password", {
            cookie,
            body: { old_password: STRONG_PASSWORD, new_password: "a brand new passphrase 7" },
            headers: CROSS_SITE,
          }),
          403,
          "CSRF_REJECTED",
        );
        expectRestError(
          await rest(s.baseUrl, "POST", "/logout", { cookie, headers: { ...CROSS_SITE, "x-requested-with": "fetch" } }),
          403,
          "CSRF_REJECTED",
        );
        const p = await profile(s, { token: accessToken });
        expect(p.status).toBe(200);
        expect(p.body.user.info_user?.address).toBeUndefined();
      });

      it("refuses same-site (a sibling subdomain) unless it is an allowed origin", async () => {
        const { accessToken } = await browserLogin(s);
        const cookie = `access_token=${accessToken}`;
        const sameSite = { "sec-fetch-site": "same-site" };
        expectRestError(await update(s, { cookie, headers: { ...sameSite, origin: "https://blog.example.com" } }), 403, "CSRF_REJECTED");
        expect((await update(s, { cookie, headers: { ...sameSite, origin: APP } })).status).toBe(200);
      });

      it("accepts same-origin and user-initiated (Sec-Fetch-Site: none) requests", async () => {
        const { accessToken } = await browserLogin(s);
        const cookie = `access_token=${accessToken}`;
        expect((await update(s, { cookie, headers: SAME_ORIGIN })).status).toBe(200);
        expect((await update(s, { cookie, headers: { "sec-fetch-site": "none" } })).status).toBe(200);
      });

      it("without Sec-Fetch-Site, judges by Origin: our own or an allowed one passes, anything else or nothing is refused", async () => {
        const { accessToken } = await browserLogin(s);
        const cookie = `access_token=${accessToken}`;
        expect((await update(s, { cookie, headers: { origin: s.baseUrl } })).status).toBe(200);
        expect((await update(s, { cookie, headers: { origin: APP } })).status).toBe(200);
        expectRestError(await update(s, { cookie, headers: { origin: EVIL } }), 403, "CSRF_REJECTED");
        expectRestError(await update(s, { cookie, headers: { origin: "null" } }), 403, "CSRF_REJECTED");
        expectRestError(await update(s, { cookie }), 403, "CSRF_REJECTED");
        // Secure cookies travel only over https, so http://host is not our origin there.
        const sec = await browserLogin(secure);
        const secCookie = `access_token=${sec.accessToken}`;
        const host = new URL(secure.baseUrl).host;
        expectRestError(await update(secure, { cookie: secCookie, headers: { origin: `http://${host}` } }), 403, "CSRF_REJECTED");
        expect((await update(secure, { cookie: secCookie, headers: { origin: `https://${host}` } })).status).toBe(200);
      });

      it("leaves bearer-authenticated requests alone, whatever the browser headers say", async () => {
        const { accessToken } = await browserLogin(s);
        expect((await update(s, { token: accessToken, headers: CROSS_SITE })).status).toBe(200);
        // Bearer wins over a cookie sent along.
        expect((await update(s, { token: accessToken, cookie: `access_token=${accessToken}`, headers: CROSS_SITE })).status).toBe(200);
        expect((await rest(s.baseUrl, "POST", "/logout", { token: accessToken, headers: CROSS_SITE })).status).toBe(204);
      });

      it("does not check safe methods: a cookie GET answers from anywhere", async () => {
        const { accessToken } = await browserLogin(s);
        expect((await profile(s, { cookie: `access_token=${accessToken}`, headers: CROSS_SITE })).status).toBe(200);
      });

      it("refuses a cross-site login (login CSRF) and sets no cookie; non-browser callers log in as before", async () => {
        const user = await registerUser(s);
        const body = { email: user.email, password: user.password };
        const crossSite: Record<string, string>[] = [CROSS_SITE, { "sec-fetch-site": "cross-site" }, { origin: EVIL }];
        for (const headers of crossSite) {
          const r = await rest(s.baseUrl, "POST", "/login", { body, headers });
          expectRestError(r, 403, "CSRF_REJECTED");
          expect(setCookieNames(r)).toEqual([]);
        }
        expect((await rest(s.baseUrl, "POST", "/login", { body })).status).toBe(201);
        expect((await rest(s.baseUrl, "POST", "/login", { body, headers: { origin: APP, "sec-fetch-site": "cross-site" } })).status).toBe(201);
        expect((await rest(s.baseUrl, "POST", "/login", { body, headers: SAME_ORIGIN })).status).toBe(201);
      });
    });

    describe("CORS", () => {
      const preflight = (server: TestServer, origin: string, path = "/user/profile", method = "PUT") =>
        fetch(`${server.baseUrl}${path}`, {
          method: "OPTIONS",
          headers: { origin, "access-control-request-method": method, "access-control-request-headers": "content-type, x-requested-with" },
        });

      it("answers a preflight from an allowed origin with the exact origin, credentials, methods and headers", async () => {
        const r = await preflight(s, APP);
        expect(r.status).toBe(204);
        expect(r.headers.get("access-control-allow-origin")).toBe(APP);
        expect(r.headers.get("access-control-allow-credentials")).toBe("true");
        const methods = r.headers.get("access-control-allow-methods")!.split(/,\s*/);
        expect(methods).toEqual(expect.arrayContaining(["GET", "POST", "PUT", "DELETE"]));
        const headers = r.headers.get("access-control-allow-headers")!.split(/,\s*/);
        expect(headers).toEqual(
          expect.arrayContaining(["content-type", "authorization", "x-requested-with", "x-request-id", "connect-protocol-version", "x-grpc-web"]),
        );
        expect(Number(r.headers.get("access-control-max-age"))).toBeGreaterThan(0);
        expect(r.headers.get("vary")).toMatch(/origin/i);
        // The second allowed origin is echoed, not the first.
        expect((await preflight(s, "https://admin.example.com")).headers.get("access-control-allow-origin")).toBe("https://admin.example.com");
      });

      it("gives a disallowed origin no CORS headers at all", async () => {
        for (const origin of [EVIL, "https://app.example.com.evil.example", "http://app.example.com", "null"]) {
          const r = await preflight(s, origin);
          expect(r.status).toBe(403);
          const cors = [...r.headers.keys()].filter((k) => k.startsWith("access-control-"));
          expect({ origin, cors }).toEqual({ origin, cors: [] });
        }
      });

      it("allows no cross-origin access when CORS_ORIGINS is empty (the default)", async () => {
        const r = await preflight(secure, APP);
        expect(r.status).toBe(403);
        expect(r.headers.get("access-control-allow-origin")).toBeNull();
      });

      it("adds the headers to actual REST and Connect responses for allowed origins only", async () => {
        const { accessToken } = await browserLogin(s);
        const ok = await profile(s, { token: accessToken, headers: { origin: APP } });
        expect(ok.status).toBe(200);
        expect(ok.headers.get("access-control-allow-origin")).toBe(APP);
        expect(ok.headers.get("access-control-allow-credentials")).toBe("true");
        expect(ok.headers.get("access-control-expose-headers")).toMatch(/grpc-status/);
        const refused = await profile(s, { token: accessToken, headers: { origin: EVIL } });
        expect(refused.status).toBe(200);
        expect(refused.headers.get("access-control-allow-origin")).toBeNull();
        // Errors carry them too, so the page can read the reason.
        const err = await profile(s, { headers: { origin: APP } });
        expectRestError(err, 401, "TOKEN_MISSING");
        expect(err.headers.get("access-control-allow-origin")).toBe(APP);

        const connect = await fetch(`${s.baseUrl}/identity.v1.IdentityService/GetProfile`, {
          method: "POST",
          headers: { origin: APP, "content-type": "application/json", authorization: `Bearer ${accessToken}` },
          body: "{}",
        });
        expect(connect.status).toBe(200);
        expect(connect.headers.get("access-control-allow-origin")).toBe(APP);
        // The Connect side never reads cookies: no cookie credentials to forge there.
        const c = connectClient(s.baseUrl);
        await expect(c.getProfile({}, { headers: { cookie: `access_token=${accessToken}` } })).rejects.toMatchObject({ code: Code.Unauthenticated });
      });
    });
  });
}
