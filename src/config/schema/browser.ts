import { z } from "zod";
import { bool, originList, onceValid, refuse } from "../fields.js";

// What browsers get: cookie attributes, the origins allowed to call with
// credentials (CORS), the CSRF check.

const env = z.object({
  COOKIE_SECURE: bool.default(true),
  COOKIE_HOST_PREFIX: bool.default(false),
  CORS_ORIGINS: originList.default([]),
  CSRF_ALLOW_SAME_SITE: bool.default(false),
});

export const browserSchema = env
  .superRefine((e, ctx) => {
    if (e.COOKIE_HOST_PREFIX && !e.COOKIE_SECURE) {
      refuse(ctx, "COOKIE_HOST_PREFIX", "__Host- and __Secure- cookies must be Secure; unset COOKIE_SECURE=false");
    }
  }, onceValid)
  .transform((e) => ({
    cookieSecure: e.COOKIE_SECURE,
    /** Cookie names get the __Host- (access) and __Secure- (refresh) prefixes. */
    cookieHostPrefix: e.COOKIE_HOST_PREFIX,
    /** Origins allowed to call with credentials (CORS), and trusted by the CSRF check. */
    corsOrigins: e.CORS_ORIGINS,
    /** The CSRF check also accepts Sec-Fetch-Site: same-site (sibling subdomains). */
    csrfAllowSameSite: e.CSRF_ALLOW_SAME_SITE,
  }));
