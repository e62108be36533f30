import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescMethod, Message } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import {
  IdentityService,
  type LoginResponse,
  type RevokeSessionResponse,
  type RefreshTokenRequest,
  type RefreshTokenResponse,
} from "../../gen/identity/v1/identity_service_pb.js";
import { createCookiePolicy, readCookie, type CookiePolicy } from "./cookies.js";
import { createCsrfGuard } from "./csrf.js";

// Cookie sessions for browsers on the REST side: Login and RefreshToken set
// the access and refresh cookies, Logout clears them, the access cookie
// stands in for the Authorization header, the refresh cookie for the body's
// refresh_token, and every request whose credentials came from a cookie
// meets the CSRF checks (csrf.ts). gRPC and Connect never read cookies.

export interface BrowserCredentials {
  readonly cookies: CookiePolicy;
  /** The access cookie's token when the request has no Authorization header (it then authenticates the call). */
  accessToken(req: IncomingMessage): string | undefined;
  /** The gateway's prepareCall: the refresh cookie into RefreshToken, then the CSRF checks. */
  prepareCall(ctx: { method: DescMethod; req: IncomingMessage; input: Message }): void;
  /** The gateway's onSuccess: sets or clears the cookies. */
  onSuccess(ctx: { method: DescMethod; res: ServerResponse; response: Message }): void;
}

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

  const accessToken = (req: IncomingMessage) =>
    req.headers.authorization ? undefined : readCookie(req.headers.cookie, cookies.access) || undefined;

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
      try {
        if (fromCookie) csrf.checkCookieRequest(req);
        if (method === m.login) csrf.checkLogin(req);
      } catch (err) {
        opts.onCsrfRejected?.(req, err as ConnectError);
        throw err;
      }
    },

    onSuccess({ method, res, response }) {
      if (method === m.login || method === m.refreshToken) {
        const r = response as LoginResponse | RefreshTokenResponse;
        res.appendHeader("set-cookie", cookies.accessCookie(r.accessToken, r.expiresIn));
        if (r.refreshToken) {
          const expires = r.refreshTokenExpireTime ? timestampMs(r.refreshTokenExpireTime) : undefined;
          const maxAgeS = expires === undefined ? undefined : (expires - opts.now().getTime()) / 1000;
          res.appendHeader("set-cookie", cookies.refreshCookie(r.refreshToken, maxAgeS));
        }
      } else if (method === m.logout || (method === m.revokeSession && (response as RevokeSessionResponse).current)) {
        res.appendHeader("set-cookie", cookies.accessCookie("", 0));
        res.appendHeader("set-cookie", cookies.refreshCookie("", 0));
      }
    },
  };
}
