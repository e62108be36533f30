// What a presented access token must look like before any crypto runs.

// JWS compact serialisation: three base64url parts, header and payload
// non-empty; no padding, no whitespace, no standard-alphabet characters.
const ACCESS_TOKEN_SHAPE = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$/;
const MAX_ACCESS_TOKEN_LENGTH = 4096;
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Whether an unpadded base64url string is the one spelling of its bytes
 * (RFC 4648 §3.5): never 1 mod 4 characters, and the unused low bits of the
 * last character zero. Decoders (jose's atob among them) ignore those bits,
 * so without this check one signed token has up to 16 spellings per part,
 * and a denylist or cache keyed by the token string sees them as different
 * tokens.
 */
export function isCanonicalBase64url(part: string): boolean {
  const rest = part.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = B64URL.indexOf(part.charAt(part.length - 1));
  // 2 characters carry 1 byte (4 spare bits), 3 carry 2 bytes (2 spare bits).
  return last >= 0 && (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/** Whether a presented access token could be one of ours at all (checked before any crypto). */
export function isAccessTokenShape(token: string): boolean {
  return token.length <= MAX_ACCESS_TOKEN_LENGTH && ACCESS_TOKEN_SHAPE.test(token) && token.split(".").every(isCanonicalBase64url);
}
