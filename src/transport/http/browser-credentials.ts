import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescMethod, Message } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import {
  IdentityService,
  type CompleteMfaLoginRequest,
  type CompleteMfaLoginResponse,
  type LoginRequest,
  type LoginResponse,
  type RevokeSessionResponse,
  type RefreshTokenRequest,
  type RefreshTokenResponse,
} from "../../../gen/identity/v1/identity_service_pb.js";
import { EmailService, type CompleteEmailLoginRequest, type CompleteEmailLoginResponse, type StartEmailLoginResponse } from "../../../gen/identity/v1/email_service_pb.js";
import { DEVICE_TOKEN_SHAPE } from "../../risk/assessor.js";
import { createCookiePolicy, readCookie, type CookiePolicy } from "./cookies.js";
import { createCsrfGuard } from "./csrf.js";

// Cookie sessions for browsers on the REST side: Login, CompleteMfaLogin and
// RefreshToken set the access and refresh cookies (the logins also the
// device cookie), Logout clears the session's two, the access cookie stands
// in for the Authorization header, the refresh cookie for the body's
// refresh_token, the device cookie for Login's device_id, and every request
// whose credentials came from a cookie meets the CSRF checks (csrf.ts); both
// logins meet the login-CSRF check. With `cookies_only` the tokens are left
// out of the body, so only the HttpOnly cookies hold them. gRPC and Connect
// never read cookies.

export interface BrowserCredentials {
  readonly cookies: CookiePolicy;
  /** The access cookie's token when the request has no Authorization header (it then authenticates the call). */
  accessToken(req: IncomingMessage): string | undefined;
  /** The gateway's prepareCall: cookies into RefreshToken and Login, then the CSRF checks. */
  prepareCall(ctx: { method: DescMethod; req: IncomingMessage; input: Message }): void;
  /** The gateway's onSuccess: sets or clears the cookies; with `cookies_only`, the body without the tokens. */
  onSuccess(ctx: { method: DescMethod; res: ServerResponse; input: Message; response: Message }): Message | void;
}

type TokenResponse = LoginResponse | CompleteMfaLoginResponse | CompleteEmailLoginResponse | RefreshTokenResponse;
type TokenRequest = LoginRequest | CompleteMfaLoginRequest | CompleteEmailLoginRequest | RefreshTokenRequest;

/** An e-mail login's attempt lives as long as its link. */
const EMAIL_LOGIN_COOKIE_MAX_AGE_S = 15 * 60;

/** 400 days: the longest lifetime browsers grant a cookie (RFC 6265bis). */
export const DEVICE_COOKIE_MAX_AGE_S = 400 * 86_400;

export function createBrowserCredentials(opts: {
  cookieSecure: boolean;
  cookieHostPrefix: boolean;
  corsOrigins: readonly string[];
  csrfAllowSameSite: boolean;
  /** Methods that need no access token: an access cookie sent along is not their credential. */
  publicMethods: ReadonlySet<DescMethod>;
  now: () => Date;
  onCsrfRejected?(req: IncomingMessage, error: ConnectError): void;
}): BrowserCredentials {
  const cookies = createCookiePolicy({ secure: opts.cookieSecure, hostPrefix: opts.cookieHostPrefix });
  const csrf = createCsrfGuard({ trustedOrigins: opts.corsOrigins, allowSameSite: opts.csrfAllowSameSite, secure: opts.cookieSecure });
  const m = IdentityService.method;
  const e = EmailService.method;
  const logins: ReadonlySet<DescMethod> = new Set([m.login, m.completeMfaLogin, e.completeEmailLogin, e.startEmailLogin]);
  const tokenMethods: ReadonlySet<DescMethod> = new Set([m.login, m.completeMfaLogin, e.completeEmailLogin, m.refreshToken]);

  const accessToken = (req: IncomingMessage) =>
    req.headers.authorization ? undefined : readCookie(req.headers.cookie, cookies.access) || undefined;

  function setTokenCookies(res: ServerResponse, r: TokenResponse): void {
    res.appendHeader("set-cookie", cookies.accessCookie(r.accessToken, r.expiresIn));
    if (r.refreshToken) {
      const expires = r.refreshTokenExpireTime ? timestampMs(r.refreshTokenExpireTime) : undefined;
      const maxAgeS = expires === undefined ? undefined : (expires - opts.now().getTime()) / 1000;
      res.appendHeader("set-cookie", cookies.refreshCookie(r.refreshToken, maxAgeS));
    }
    // The device cookie names the device (its own brute-force counter, no
    // new-device alert), which outlives any MFA trust: whether the device may
    // skip MFA is decided server-side from when it last passed it
    // (TRUSTED_DEVICE_TTL), so the cookie lives as long as browsers allow.
    if ("deviceToken" in r && r.deviceToken) {
      res.appendHeader("set-cookie", cookies.deviceCookie(r.deviceToken, DEVICE_COOKIE_MAX_AGE_S));
    }
  }

  return {
    cookies,
    accessToken,

    prepareCall({ method, req, input }) {
      let fromCookie = !opts.publicMethods.has(method) && accessToken(req) !== undefined;
      if (method === m.refreshToken) {
        const request = input as RefreshTokenRequest;
        const cookie = readCookie(req.headers.cookie, cookies.refresh);
        if (request.refreshToken === "" && cookie) {
          request.refreshToken = cookie;
          fromCookie = true;
        }
      }
      if (method === e.completeEmailLogin) {
        const request = input as CompleteEmailLoginRequest;
        const attempt = readCookie(req.headers.cookie, cookies.emailLogin);
        if ((request.attempt ?? "") === "" && attempt) request.attempt = attempt;
      }
      if (method === m.login || method === e.completeEmailLogin) {
        const request = input as LoginRequest | CompleteEmailLoginRequest;
        const cookie = readCookie(req.headers.cookie, cookies.device);
        // Only the shape of our tokens: a cookie planted by a sibling
        // subdomain must not make every login fail validation.
        if ((request.deviceId ?? "") === "" && cookie !== undefined && DEVICE_TOKEN_SHAPE.test(cookie)) request.deviceId = cookie;
      }
      try {
        if (fromCookie) csrf.checkCookieRequest(req);
        if (logins.has(method)) csrf.checkLogin(req);
      } catch (err) {
        opts.onCsrfRejected?.(req, err as ConnectError);
        throw err;
      }
    },

    onSuccess({ method, res, input, response }) {
      if (method === e.startEmailLogin) {
        res.appendHeader("set-cookie", cookies.emailLoginCookie((response as StartEmailLoginResponse).attempt, EMAIL_LOGIN_COOKIE_MAX_AGE_S));
        return;
      }
      if (method === e.completeEmailLogin) res.appendHeader("set-cookie", cookies.emailLoginCookie("", 0));
      if (tokenMethods.has(method)) {
        const r = response as TokenResponse;
        setTokenCookies(res, r);
        if (!(input as TokenRequest).cookiesOnly) return;
        return { ...r, accessToken: "", refreshToken: "", ...("deviceToken" in r ? { deviceToken: "" } : {}) };
      }
      if (method === m.logout || (method === m.revokeSession && (response as RevokeSessionResponse).current)) {
        res.appendHeader("set-cookie", cookies.accessCookie("", 0));
        res.appendHeader("set-cookie", cookies.refreshCookie("", 0));
      }
    },
  };
}
