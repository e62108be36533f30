import { createAccessTokenIssuer, type AccessTokenOptions } from "./access-token.js";
import { createKeyRing, type KeyRing, type KeyRingOptions } from "./key-ring.js";
import type { TokenIssuer } from "./ports.js";

// The token service the app wires: one key ring and the access-token profile
// over it, as one object (the JWKS route, the key-change feed and the use
// cases each need part of it).

export type { RotatedKey } from "./key-ring.js";

export interface JwtServiceOptions extends Omit<KeyRingOptions, "maxAccessTokenTtlMs">, Omit<AccessTokenOptions, "keys"> {
  /**
   * The longest lifetime of any access token this service issues (every
   * role's); a rotated-out key stays published until all of them expired.
   * Default accessTokenTtlMs.
   */
  maxAccessTokenTtlMs?: number;
}

export interface JwtService extends Pick<KeyRing, "init" | "jwks" | "rotate" | "reload" | "close">, TokenIssuer {}

export function createJwtService(opts: JwtServiceOptions): JwtService {
  const { issuer, audience, accessTokenTtlMs, verifiedCacheSize, maxAccessTokenTtlMs, ...ringOptions } = opts;
  const ring = createKeyRing({ ...ringOptions, maxAccessTokenTtlMs: Math.max(accessTokenTtlMs, maxAccessTokenTtlMs ?? 0) });
  const tokens = createAccessTokenIssuer({ keys: ring, issuer, audience, accessTokenTtlMs, verifiedCacheSize });
  return {
    init: ring.init,
    jwks: ring.jwks,
    rotate: ring.rotate,
    reload: ring.reload,
    close: ring.close,
    issueAccessToken: tokens.issueAccessToken,
    verifyAccessToken: tokens.verifyAccessToken,
  };
}
