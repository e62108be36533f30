// Browser credentials. The access cookie goes everywhere on the host (Path=/);
// the refresh cookie only to the refresh route, so no other request ever
// carries it. Both are HttpOnly (no script reads them) and SameSite=Strict
// (no other site's page makes the browser send them).
//
// With the prefixes the browser itself enforces the attributes: a __Host-
// cookie must be Secure, Path=/ and host-only (no Domain, so a sibling
// subdomain cannot plant or shadow it); __Secure- only requires Secure, the
// most a cookie with a narrower Path can have.
//
// The device cookie names the browser to the account (it may skip MFA for
// TRUSTED_DEVICE_TTL): it goes only to /login and /login/mfa, outlives the
// session and is not cleared by Logout, as it identifies the device.
//
// The e-mail login cookie holds the `attempt` of a StartEmailLogin for its
// completion (Path=/login/email, 15 minutes): the link's token is bound to
// it, so a link opened in another browser asks for confirmation.

export const REFRESH_COOKIE_PATH = "/token/refresh";
export const DEVICE_COOKIE_PATH = "/login";
export const EMAIL_LOGIN_COOKIE_PATH = "/login/email";

export interface CookiePolicy {
  readonly access: string;
  readonly refresh: string;
  readonly device: string;
  readonly emailLogin: string;
  /** The Set-Cookie value for the access token; maxAgeS 0 clears it. */
  accessCookie(value: string, maxAgeS: number): string;
  /** The Set-Cookie value for the refresh token; maxAgeS 0 clears it, undefined makes it a session cookie. */
  refreshCookie(value: string, maxAgeS: number | undefined): string;
  /** The Set-Cookie value for the device token. */
  deviceCookie(value: string, maxAgeS: number): string;
  /** The Set-Cookie value for an e-mail login's attempt; maxAgeS 0 clears it. */
  emailLoginCookie(value: string, maxAgeS: number): string;
}

export function createCookiePolicy(opts: { secure: boolean; hostPrefix: boolean }): CookiePolicy {
  if (opts.hostPrefix && !opts.secure) throw new Error("__Host- and __Secure- cookies must be Secure");
  const access = opts.hostPrefix ? "__Host-access_token" : "access_token";
  const refresh = opts.hostPrefix ? "__Secure-refresh_token" : "refresh_token";
  const device = opts.hostPrefix ? "__Secure-device_token" : "device_token";
  const emailLogin = opts.hostPrefix ? "__Secure-email_login" : "email_login";
  const serialize = (name: string, value: string, path: string, maxAgeS: number | undefined) =>
    `${name}=${value}${maxAgeS === undefined ? "" : `; Max-Age=${Math.max(0, Math.floor(maxAgeS))}`}; Path=${path}; HttpOnly; SameSite=Strict${opts.secure ? "; Secure" : ""}`;
  return {
    access,
    refresh,
    device,
    emailLogin,
    accessCookie: (value, maxAgeS) => serialize(access, value, "/", maxAgeS),
    refreshCookie: (value, maxAgeS) => serialize(refresh, value, REFRESH_COOKIE_PATH, maxAgeS),
    deviceCookie: (value, maxAgeS) => serialize(device, value, DEVICE_COOKIE_PATH, maxAgeS),
    emailLoginCookie: (value, maxAgeS) => serialize(emailLogin, value, EMAIL_LOGIN_COOKIE_PATH, maxAgeS),
  };
}

/** The value of the first cookie called `name` in a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
