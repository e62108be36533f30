import type { IncomingMessage, ServerResponse } from "node:http";
import { create, type Message } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  CompleteMfaLoginRequestSchema,
  CompleteMfaLoginResponseSchema,
  IdentityService,
  LoginRequestSchema,
  LogoutResponseSchema,
  RefreshTokenRequestSchema,
  RefreshTokenResponseSchema,
} from "../../../../gen/identity/v1/identity_service_pb.js";
import { ConfigError, loadConfig, longestAccessTokenTtlMs } from "../../../../src/config/config.js";
import { createBrowserCredentials } from "../../../../src/transport/http/browser-credentials.js";
import { createCookiePolicy, readCookie } from "../../../../src/transport/http/cookies.js";
import { createCors } from "../../../../src/transport/http/cors.js";
import { createCsrfGuard } from "../../../../src/transport/http/csrf.js";
import { setCookieNames, setCookiePairs } from "../../../support/cookies.js";
import { errorReason } from "../../../support/error-info.js";

// The pieces of browser support on their own: cookie names and attributes,
// the CSRF decision table, CORS headers, and the configuration behind them.

describe("configuration", () => {
  it("defaults: contract cookie names, no CORS origins, same-site not trusted, 10 min key publish lead", () => {
    const c = loadConfig({});
    expect(c.cookieHostPrefix).toBe(false);
    expect(c.corsOrigins).toEqual([]);
    expect(c.csrfAllowSameSite).toBe(false);
    expect(c.signingKeys.publishLeadMs).toBe(600_000);
  });

  it("refuses __Host- cookies without Secure, naming the variable", () => {
    expect(() => loadConfig({ COOKIE_HOST_PREFIX: "true", COOKIE_SECURE: "false" })).toThrow(ConfigError);
    expect(() => loadConfig({ COOKIE_HOST_PREFIX: "true", COOKIE_SECURE: "false" })).toThrow(/COOKIE_HOST_PREFIX/);
    expect(loadConfig({ COOKIE_HOST_PREFIX: "true" }).cookieHostPrefix).toBe(true);
  });

  it("takes CORS_ORIGINS as exact origins and refuses anything else", () => {
    expect(loadConfig({ CORS_ORIGINS: " https://a.example.com, http://localhost:3000 " }).corsOrigins).toEqual([
      "https://a.example.com",
      "http://localhost:3000",
    ]);
    for (const bad of ["*", "https://a.example.com/", "https://a.example.com/app", "a.example.com", "ftp://a.example.com", "null", "https://A.example.com"]) {
      expect(() => loadConfig({ CORS_ORIGINS: bad }), bad).toThrow(/CORS_ORIGINS/);
    }
  });

  it("keeps KEY_PUBLISH_LEAD above the JWKS cache lifetime plus the verifiers' refetch interval", () => {
    expect(loadConfig({ KEY_PUBLISH_LEAD: "6m" }).signingKeys.publishLeadMs).toBe(360_000);
    expect(() => loadConfig({ KEY_PUBLISH_LEAD: "5m" })).toThrow(/KEY_PUBLISH_LEAD/);
    expect(() => loadConfig({ KEY_PUBLISH_LEAD: "8d" })).toThrow(/KEY_PUBLISH_LEAD/);
  });

  it("retires signing keys after the longest access-token lifetime of any role", () => {
    const c = loadConfig({ ACCESS_TOKEN_TTL: "20m" });
    expect(longestAccessTokenTtlMs(c)).toBe(20 * 60_000);
    expect(longestAccessTokenTtlMs({ ...c, lifetimes: { ...c.lifetimes, admin: { ...c.lifetimes.admin, accessTokenTtlMs: 45 * 60_000 } } })).toBe(
      45 * 60_000,
    );
  });
});

describe("cookies", () => {
  it("names and attributes without the prefix", () => {
    const p = createCookiePolicy({ secure: true, hostPrefix: false });
    expect(p.accessCookie("tok", 900)).toBe("access_token=tok; Max-Age=900; Path=/; HttpOnly; SameSite=Strict; Secure");
    expect(p.refreshCookie("ref", 86_400.7)).toBe("refresh_token=ref; Max-Age=86400; Path=/token/refresh; HttpOnly; SameSite=Strict; Secure");
    expect(p.refreshCookie("ref", undefined)).toBe("refresh_token=ref; Path=/token/refresh; HttpOnly; SameSite=Strict; Secure");
    expect(p.refreshCookie("", -5)).toContain("Max-Age=0");
    expect(createCookiePolicy({ secure: false, hostPrefix: false }).accessCookie("t", 1)).not.toContain("Secure");
  });

  it("__Host- for the access cookie (Path=/), __Secure- for the path-scoped refresh cookie, never without Secure", () => {
    const p = createCookiePolicy({ secure: true, hostPrefix: true });
    expect(p.access).toBe("__Host-access_token");
    expect(p.refresh).toBe("__Secure-refresh_token");
    expect(p.accessCookie("t", 1)).toMatch(/^__Host-access_token=t; .*Path=\/;.*Secure$/);
    expect(p.accessCookie("t", 1)).not.toMatch(/Domain/i);
    expect(() => createCookiePolicy({ secure: false, hostPrefix: true })).toThrow();
  });

  it("the device cookie: HttpOnly, SameSite=Strict, only to /login (and /login/mfa), __Secure- with the prefix option", () => {
    const plain = createCookiePolicy({ secure: false, hostPrefix: false });
    expect(plain.device).toBe("device_token");
    expect(plain.deviceCookie("d", 2_592_000)).toBe("device_token=d; Max-Age=2592000; Path=/login; HttpOnly; SameSite=Strict");
    const prefixed = createCookiePolicy({ secure: true, hostPrefix: true });
    expect(prefixed.device).toBe("__Secure-device_token");
    expect(prefixed.deviceCookie("d", 60)).toBe("__Secure-device_token=d; Max-Age=60; Path=/login; HttpOnly; SameSite=Strict; Secure");
  });

  it("reads a cookie by exact name", () => {
    const header = "x_access_token=a; access_token=b; __Host-access_token=c";
    expect(readCookie(header, "access_token")).toBe("b");
    expect(readCookie(header, "__Host-access_token")).toBe("c");
    expect(readCookie(header, "refresh_token")).toBeUndefined();
    expect(readCookie(undefined, "access_token")).toBeUndefined();
  });
});

describe("CSRF guard", () => {
  const guard = createCsrfGuard({ trustedOrigins: ["https://app.example.com"], allowSameSite: false, secure: true });
  const req = (method: string, headers: Record<string, string>) => ({ method, headers: { host: "id.example.com", ...headers } });
  const json = { "content-type": "application/json; charset=utf-8" };

  function reason(fn: () => void): string | undefined {
    try {
      fn();
      return undefined;
    } catch (err) {
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.PermissionDenied);
      return errorReason(err);
    }
  }
  const cookieCheck = (method: string, headers: Record<string, string>) => reason(() => guard.checkCookieRequest(req(method, headers)));

  it.each([
    ["same-origin fetch with JSON", "PUT", { "sec-fetch-site": "same-origin", ...json }, undefined],
    ["user-initiated", "POST", { "sec-fetch-site": "none", ...json }, undefined],
    ["bodyless with X-Requested-With", "POST", { "sec-fetch-site": "same-origin", "x-requested-with": "x" }, undefined],
    ["allowed origin, cross-site", "POST", { "sec-fetch-site": "cross-site", origin: "https://app.example.com", ...json }, undefined],
    ["own origin, no Sec-Fetch-Site", "DELETE", { origin: "https://id.example.com", ...json }, undefined],
    ["GET from anywhere", "GET", { "sec-fetch-site": "cross-site" }, undefined],
    ["cross-site", "POST", { "sec-fetch-site": "cross-site", origin: "https://evil.example", ...json }, "CSRF_REJECTED"],
    ["same-site not allowed", "POST", { "sec-fetch-site": "same-site", origin: "https://blog.example.com", ...json }, "CSRF_REJECTED"],
    ["own host over http while cookies are Secure", "POST", { origin: "http://id.example.com", ...json }, "CSRF_REJECTED"],
    ["neither Origin nor Sec-Fetch-Site", "POST", json, "CSRF_REJECTED"],
    // Sec-Fetch-Site: same-origin is set by the browser itself: it needs no second proof.
    ["same-origin, no body, no marker", "POST", { "sec-fetch-site": "same-origin" }, undefined],
    ["same-origin form post", "POST", { "sec-fetch-site": "same-origin", "content-type": "application/x-www-form-urlencoded" }, undefined],
    ["same-origin with our own Origin, no body", "DELETE", { "sec-fetch-site": "same-origin", origin: "https://id.example.com" }, undefined],
    // Everything else still needs JSON or X-Requested-With.
    ["own origin without Sec-Fetch-Site, no marker (older browser)", "POST", { origin: "https://id.example.com" }, "CSRF_REJECTED"],
    ["own origin without Sec-Fetch-Site, form-like", "POST", { origin: "https://id.example.com", "content-type": "text/plain" }, "CSRF_REJECTED"],
    ["allowed origin, cross-site, no marker", "POST", { "sec-fetch-site": "cross-site", origin: "https://app.example.com" }, "CSRF_REJECTED"],
    ["allowed origin without Sec-Fetch-Site, no marker", "POST", { origin: "https://app.example.com" }, "CSRF_REJECTED"],
    ["user-initiated, no marker", "POST", { "sec-fetch-site": "none" }, "CSRF_REJECTED"],
    ["cross-site, no marker", "POST", { "sec-fetch-site": "cross-site", origin: "https://evil.example" }, "CSRF_REJECTED"],
  ] as const)("cookie request: %s", (_name, method, headers, expected) => {
    expect(cookieCheck(method, headers)).toBe(expected);
  });

  it("trusts same-site when configured, with the JSON or X-Requested-With proof", () => {
    const lax = createCsrfGuard({ trustedOrigins: [], allowSameSite: true, secure: true });
    expect(reason(() => lax.checkCookieRequest(req("POST", { "sec-fetch-site": "same-site", ...json })))).toBeUndefined();
    expect(reason(() => lax.checkCookieRequest(req("POST", { "sec-fetch-site": "same-site" })))).toBe("CSRF_REJECTED");
  });

  it("login: refused only when the browser reveals another site", () => {
    const login = (headers: Record<string, string>) => reason(() => guard.checkLogin(req("POST", headers)));
    expect(login({})).toBeUndefined();
    expect(login({ "sec-fetch-site": "same-origin" })).toBeUndefined();
    expect(login({ origin: "https://app.example.com", "sec-fetch-site": "cross-site" })).toBeUndefined();
    expect(login({ "sec-fetch-site": "cross-site" })).toBe("CSRF_REJECTED");
    expect(login({ origin: "https://evil.example" })).toBe("CSRF_REJECTED");
  });
});

describe("browser credentials", () => {
  const m = IdentityService.method;
  const NOW = Date.UTC(2030, 0, 1);
  const DEVICE = "D".repeat(43);
  const DAY_S = 86_400;
  const browser = () =>
    createBrowserCredentials({
      cookieSecure: true,
      cookieHostPrefix: false,
      corsOrigins: ["https://app.example.com"],
      csrfAllowSameSite: false,
      publicMethods: new Set([m.login, m.completeMfaLogin, m.refreshToken]),
      now: () => new Date(NOW),
    });
  const req = (headers: Record<string, string> = {}) => ({ method: "POST", headers: { host: "id.example.com", ...headers } }) as unknown as IncomingMessage;
  function res() {
    const cookies: string[] = [];
    return { cookies, appendHeader: (name: string, value: string) => (name === "set-cookie" ? cookies.push(value) : undefined) };
  }
  const tokens = {
    accessToken: "a.b.c",
    refreshToken: "R".repeat(43),
    tokenType: "Bearer",
    expiresIn: 900,
    refreshTokenExpireTime: timestampFromMs(NOW + 3_600_000),
    sessionId: "s1",
  };
  const mfaDone = create(CompleteMfaLoginResponseSchema, { ...tokens, userId: "u1", deviceToken: DEVICE });
  const success = (b: ReturnType<typeof browser>, method: (typeof m)[keyof typeof m], input: Message, response: Message) => {
    const r = res();
    const shown = b.onSuccess({ method, res: r as unknown as ServerResponse, input, response });
    return { cookies: r.cookies, shown };
  };

  it("CompleteMfaLogin sets the access, refresh and device cookies, the device cookie for 400 days (the device outlives its MFA trust)", () => {
    const { cookies, shown } = success(browser(), m.completeMfaLogin, create(CompleteMfaLoginRequestSchema), mfaDone);
    expect(cookies).toEqual([
      "access_token=a.b.c; Max-Age=900; Path=/; HttpOnly; SameSite=Strict; Secure",
      `refresh_token=${"R".repeat(43)}; Max-Age=3600; Path=/token/refresh; HttpOnly; SameSite=Strict; Secure`,
      `device_token=${DEVICE}; Max-Age=${400 * DAY_S}; Path=/login; HttpOnly; SameSite=Strict; Secure`,
    ]);
    expect(shown).toBeUndefined(); // the body as it was
  });

  it("a refresh has no device cookie to set", () => {
    const refreshed = create(RefreshTokenResponseSchema, tokens);
    expect(setCookieNames(success(browser(), m.refreshToken, create(RefreshTokenRequestSchema), refreshed).cookies)).toEqual([
      "access_token",
      "refresh_token",
    ]);
  });

  it("cookies_only: the same cookies, and a body without the tokens but with their expiry", () => {
    const { cookies, shown } = success(browser(), m.completeMfaLogin, create(CompleteMfaLoginRequestSchema, { cookiesOnly: true }), mfaDone);
    expect(cookies).toHaveLength(3);
    expect(shown).toMatchObject({ accessToken: "", refreshToken: "", deviceToken: "", expiresIn: 900, sessionId: "s1", userId: "u1", tokenType: "Bearer" });
    expect((shown as typeof mfaDone).refreshTokenExpireTime).toEqual(tokens.refreshTokenExpireTime);
    // The message the call returned is left alone.
    expect(mfaDone.accessToken).toBe("a.b.c");
    const refreshed = success(browser(), m.refreshToken, create(RefreshTokenRequestSchema, { cookiesOnly: true }), create(RefreshTokenResponseSchema, tokens));
    expect(refreshed.shown).toMatchObject({ accessToken: "", refreshToken: "", expiresIn: 900 });
  });

  it("Logout clears the access and refresh cookies, not the device cookie", () => {
    const { cookies } = success(browser(), m.logout, create(LogoutResponseSchema), create(LogoutResponseSchema));
    expect(setCookiePairs(cookies)).toEqual(["access_token=", "refresh_token="]);
  });

  it("Login takes the device token from the cookie only when the body has none, and only a token-shaped one", () => {
    const login = (body: { deviceId?: string }, cookie: string) => {
      const input = create(LoginRequestSchema, { email: "a@example.com", password: "p", ...body });
      browser().prepareCall({ method: m.login, req: req({ cookie }), input });
      return input.deviceId;
    };
    expect(login({}, `device_token=${DEVICE}`)).toBe(DEVICE);
    expect(login({ deviceId: "from-the-body" }, `device_token=${DEVICE}`)).toBe("from-the-body");
    // Planted or damaged: ignored, rather than failing the login's validation.
    expect(login({}, `device_token=${"x".repeat(200)}`)).toBeUndefined();
    expect(login({}, "device_token=short")).toBeUndefined();
    expect(login({}, `__Secure-device_token=${DEVICE}`)).toBeUndefined();
  });

  it("CompleteMfaLogin meets Login's CSRF rule: refused from another site, accepted from ours or a non-browser", () => {
    const complete = (headers: Record<string, string>) => {
      try {
        browser().prepareCall({ method: m.completeMfaLogin, req: req(headers), input: create(CompleteMfaLoginRequestSchema) });
        return undefined;
      } catch (err) {
        return errorReason(err);
      }
    };
    expect(complete({ "sec-fetch-site": "cross-site", origin: "https://evil.example" })).toBe("CSRF_REJECTED");
    expect(complete({ "sec-fetch-site": "cross-site" })).toBe("CSRF_REJECTED");
    expect(complete({ origin: "https://evil.example" })).toBe("CSRF_REJECTED");
    expect(complete({ "sec-fetch-site": "same-origin" })).toBeUndefined();
    expect(complete({ "sec-fetch-site": "cross-site", origin: "https://app.example.com" })).toBeUndefined();
    expect(complete({})).toBeUndefined();
  });
});

describe("CORS", () => {
  function fakeResponse() {
    const headers = new Map<string, string>();
    let status: number | undefined;
    let ended = false;
    return {
      headers,
      get status() {
        return status;
      },
      get ended() {
        return ended;
      },
      setHeader: (n: string, v: string | number) => headers.set(n, String(v)),
      getHeader: (n: string) => headers.get(n),
      writeHead: (s: number) => (status = s),
      end: () => (ended = true),
    };
  }
  const cors = createCors({ origins: ["https://app.example.com"] });

  it("answers an allowed preflight itself", () => {
    const res = fakeResponse();
    const handled = cors.handle(
      { method: "OPTIONS", headers: { origin: "https://app.example.com", "access-control-request-method": "POST" } },
      res,
    );
    expect(handled).toBe(true);
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect(res.headers.get("vary")).toBe("Origin");
  });

  it("lets other requests through, with headers for allowed origins only", () => {
    const ok = fakeResponse();
    expect(cors.handle({ method: "POST", headers: { origin: "https://app.example.com" } }, ok)).toBe(false);
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    const other = fakeResponse();
    expect(cors.handle({ method: "POST", headers: { origin: "https://evil.example" } }, other)).toBe(false);
    expect([...other.headers.keys()]).toEqual(["vary"]);
    // A plain OPTIONS (no preflight) is not CORS's business.
    expect(cors.handle({ method: "OPTIONS", headers: {} }, fakeResponse())).toBe(false);
  });

  it("adds nothing at all when no origin is configured", () => {
    const res = fakeResponse();
    expect(createCors({ origins: [] }).handle({ method: "GET", headers: { origin: "https://app.example.com" } }, res)).toBe(false);
    expect(res.headers.size).toBe(0);
  });
});
