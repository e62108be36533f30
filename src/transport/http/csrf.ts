import type { IncomingHttpHeaders } from "node:http";
import { Code, type ConnectError } from "@connectrpc/connect";
import { connectErrorOf } from "../rpc/errors.js";

// CSRF defence for requests whose credentials a browser attaches by itself
// (our cookies). SameSite=Strict already keeps the cookies off cross-site
// requests in current browsers; this is the server-side check that does not
// depend on it (older browsers, sibling subdomains, a lax cookie someday).
//
// A cookie-authenticated state change (not GET/HEAD/OPTIONS) passes only if
//   1. it comes from a page we trust: Origin is one of CORS_ORIGINS, or
//      Sec-Fetch-Site says same-origin / none (user-initiated) / same-site
//      when CSRF_ALLOW_SAME_SITE; browsers without Sec-Fetch-Site are judged
//      by Origin, which must then be our own; and
//   2. it carries something a cross-site <form> cannot send without a CORS
//      preflight: a JSON content type, or an X-Requested-With header —
//      unless the browser itself said Sec-Fetch-Site: same-origin, which no
//      page can set or forge and which already proves where it came from
//      (so a same-origin fetch('/logout', {method: 'POST'}) needs no body).
// Bearer-token requests are not checked: a browser never adds the header.

interface RequestLike {
  method?: string | undefined;
  headers: IncomingHttpHeaders;
}

export interface CsrfGuard {
  /** Throws PERMISSION_DENIED / CSRF_REJECTED for a cookie-authenticated state change that fails the checks. */
  checkCookieRequest(req: RequestLike): void;
  /**
   * Login sets the cookies, so a forged login (into the attacker's account)
   * is refused too: only when the browser reveals another site. A caller
   * that sends neither Origin nor Sec-Fetch-Site is not a browser.
   */
  checkLogin(req: RequestLike): void;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function header(req: RequestLike, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === "string" ? v : undefined;
}

function isJsonContentType(value: string | undefined): boolean {
  return value?.split(";")[0]?.trim().toLowerCase() === "application/json";
}

function rejected(message: string): ConnectError {
  return connectErrorOf(Code.PermissionDenied, "CSRF_REJECTED", message);
}

export function createCsrfGuard(opts: {
  /** Exact origins trusted as our own pages (CORS_ORIGINS). */
  trustedOrigins: readonly string[];
  allowSameSite: boolean;
  /** Cookies are Secure, so the browser reached us over https. */
  secure: boolean;
}): CsrfGuard {
  const trusted = new Set(opts.trustedOrigins);

  // Our own origin as the browser saw it: the Host it sent, over https (a
  // Secure cookie is sent only there), or also http when cookies are not
  // Secure (plain-HTTP development).
  function isOwnOrigin(req: RequestLike, origin: string): boolean {
    const host = header(req, "host") ?? header(req, ":authority");
    if (!host) return false;
    return origin === `https://${host}` || (!opts.secure && origin === `http://${host}`);
  }

  function fromTrustedPage(req: RequestLike): boolean {
    const origin = header(req, "origin");
    if (origin !== undefined && trusted.has(origin)) return true;
    const site = header(req, "sec-fetch-site");
    if (site !== undefined) return site === "same-origin" || site === "none" || (site === "same-site" && opts.allowSameSite);
    return origin !== undefined && isOwnOrigin(req, origin);
  }

  return {
    checkCookieRequest(req) {
      if (SAFE_METHODS.has(req.method ?? "GET")) return;
      if (!fromTrustedPage(req)) throw rejected("cross-site request with cookie credentials refused");
      // Browsers without Sec-Fetch-Site, and trusted pages of other origins, still need the second proof.
      if (header(req, "sec-fetch-site") === "same-origin") return;
      if (!isJsonContentType(header(req, "content-type")) && header(req, "x-requested-with") === undefined) {
        throw rejected("a request with cookie credentials needs a JSON body or an X-Requested-With header");
      }
    },
    checkLogin(req) {
      if (header(req, "origin") === undefined && header(req, "sec-fetch-site") === undefined) return;
      if (!fromTrustedPage(req)) throw rejected("cross-site login refused");
    },
  };
}
