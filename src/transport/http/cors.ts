import type { IncomingHttpHeaders } from "node:http";
import { cors as connectCors } from "@connectrpc/connect";

// CORS for browser pages on other origins (CORS_ORIGINS, exact matches,
// credentials allowed). An origin not on the list gets no CORS header at
// all, so the browser keeps the response from the page. Same-origin pages
// need none of this.

interface ResponseLike {
  setHeader(name: string, value: string | number): unknown;
  getHeader(name: string): unknown;
  writeHead(status: number): unknown;
  end(): unknown;
}

export interface Cors {
  /**
   * Adds the CORS headers for an allowed Origin. Answers a preflight itself
   * and returns true; otherwise the request continues (false).
   */
  handle(req: { method?: string | undefined; headers: IncomingHttpHeaders }, res: ResponseLike): boolean;
}

// A browser caches a preflight at most 2 h (Chromium) or 24 h (Firefox).
const MAX_AGE_S = 7_200;
const ALLOW_METHODS = [...new Set([...connectCors.allowedMethods, "GET", "POST", "PUT", "DELETE"])].join(", ");
const ALLOW_HEADERS = [
  ...new Set([...connectCors.allowedHeaders, "Content-Type", "Authorization", "X-Requested-With", "X-Request-Id"].map((h) => h.toLowerCase())),
].join(", ");
const EXPOSE_HEADERS = [...new Set([...connectCors.exposedHeaders, "X-Request-Id", "Retry-After"].map((h) => h.toLowerCase()))].join(", ");

export function createCors(opts: { origins: readonly string[] }): Cors {
  const allowed = new Set(opts.origins);
  return {
    handle(req, res) {
      const origin = req.headers.origin;
      const preflight = req.method === "OPTIONS" && origin !== undefined && req.headers["access-control-request-method"] !== undefined;
      if (allowed.size > 0) {
        // Responses differ by Origin: a shared cache must not mix them up.
        const vary = res.getHeader("vary");
        res.setHeader("vary", typeof vary === "string" && vary !== "" ? `${vary}, Origin` : "Origin");
      }
      const ok = typeof origin === "string" && allowed.has(origin);
      if (ok) {
        res.setHeader("access-control-allow-origin", origin);
        res.setHeader("access-control-allow-credentials", "true");
      }
      if (!preflight) {
        if (ok) res.setHeader("access-control-expose-headers", EXPOSE_HEADERS);
        return false;
      }
      if (ok) {
        res.setHeader("access-control-allow-methods", ALLOW_METHODS);
        res.setHeader("access-control-allow-headers", ALLOW_HEADERS);
        res.setHeader("access-control-max-age", MAX_AGE_S);
      }
      res.writeHead(ok ? 204 : 403);
      res.end();
      return true;
    },
  };
}
