import { randomUUID } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT, type JWTHeaderParameters, type JWTPayload } from "jose";
import { LRUCache } from "lru-cache";
import { isRole } from "../accounts/ports.js";
import { isUuid } from "../shared/uuid.js";
import { CLOCK_TOLERANCE_S, SIGNING_KEY_ALG, type SigningKeyHandle, type KeyRing } from "./key-ring.js";
import type { AccessClaims, TokenIssuer } from "./ports.js";
import { isAccessTokenShape } from "./token-shape.js";

// Access tokens: JWT (RFC 9068 profile, typ "at+jwt"), EdDSA over Ed25519,
// one algorithm accepted and nothing else. Verification never follows a
// header to find a key (jku, jwk, x5u are ignored): keys come only from the
// key ring, looked up by kid.

export const ACCESS_TOKEN_ALG = SIGNING_KEY_ALG;
export const ACCESS_TOKEN_TYP = "at+jwt";

export interface AccessTokenOptions {
  /** Where signing and verification keys come from. */
  keys: Pick<KeyRing, "signingKey" | "verificationKey" | "isUsable">;
  issuer: string;
  audience: string;
  accessTokenTtlMs: number;
  /** Verified tokens remembered (a repeated token skips the signature check). */
  verifiedCacheSize?: number;
}

/** Our claims from a verified payload, or undefined when one is missing or mistyped. */
function claimsOf(payload: JWTPayload, at: Date): AccessClaims | undefined {
  const { sub, sid, jti, iat, exp } = payload;
  // Ids we issue are UUIDs; anything else never reaches a query.
  if (typeof sub !== "string" || typeof sid !== "string" || typeof jti !== "string") return undefined;
  if (!isUuid(sub) || !isUuid(sid)) return undefined;
  if (typeof iat !== "number" || typeof exp !== "number") return undefined;
  // Only our key signs, but a token "issued" in the future is still wrong.
  if (iat * 1000 > at.getTime() + CLOCK_TOLERANCE_S * 1000) return undefined;
  const claims: AccessClaims = { userId: sub, sessionId: sid, tokenId: jti, issuedAt: new Date(iat * 1000), expiresAt: new Date(exp * 1000) };
  if (isRole(payload.role)) claims.role = payload.role;
  if (typeof payload.auth_time === "number" && Number.isFinite(payload.auth_time)) claims.authTime = new Date(payload.auth_time * 1000);
  if (Array.isArray(payload.amr) && payload.amr.every((v) => typeof v === "string")) claims.amr = payload.amr as string[];
  if (typeof payload.acr === "string") claims.acr = payload.acr;
  return claims;
}

export function createAccessTokenIssuer(opts: AccessTokenOptions): TokenIssuer {
  const ring = opts.keys;
  // The same token string verified once verifies the same way again, as long
  // as its key is still usable and it has not expired: skip the signature.
  const verified = new LRUCache<string, { claims: AccessClaims; kid: string }>({ max: opts.verifiedCacheSize ?? 10_000 });

  async function keyFor(header: JWTHeaderParameters, at: Date): Promise<SigningKeyHandle> {
    if (header.alg !== ACCESS_TOKEN_ALG || typeof header.kid !== "string") throw new joseErrors.JWSInvalid("unacceptable header");
    const key = await ring.verificationKey(header.kid, at);
    if (!key) throw new joseErrors.JWKSNoMatchingKey();
    return key;
  }

  return {
    async issueAccessToken({ userId, sessionId, now: at, role, ttlMs, authTime, amr, emailVerified }) {
      const key = ring.signingKey(at);
      const iat = Math.floor(at.getTime() / 1000);
      const exp = iat + Math.floor((ttlMs ?? opts.accessTokenTtlMs) / 1000);
      const claims: Record<string, unknown> = { sid: sessionId };
      if (role) claims.role = role;
      if (emailVerified !== undefined) claims.email_verified = emailVerified;
      if (authTime) claims.auth_time = Math.floor(authTime.getTime() / 1000);
      if (amr && amr.length > 0) {
        claims.amr = [...amr];
        claims.acr = amr.includes("mfa") ? "aal2" : "aal1";
      }
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg: ACCESS_TOKEN_ALG, kid: key.kid, typ: ACCESS_TOKEN_TYP })
        .setIssuer(opts.issuer)
        .setAudience(opts.audience)
        .setSubject(userId)
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key.privateKey);
      return { token, expiresAt: new Date(exp * 1000) };
    },

    async verifyAccessToken(token, at): Promise<AccessClaims | undefined> {
      // jose decodes base64url leniently: only the canonical spelling of a
      // token is one, whoever calls.
      if (!isAccessTokenShape(token)) return undefined;
      const hit = verified.get(token);
      if (hit) {
        if (ring.isUsable(hit.kid, at) && hit.claims.expiresAt.getTime() + CLOCK_TOLERANCE_S * 1000 > at.getTime()) return hit.claims;
        verified.delete(token);
        return undefined;
      }
      try {
        const { payload, protectedHeader } = await jwtVerify(token, (header) => keyFor(header, at), {
          algorithms: [ACCESS_TOKEN_ALG],
          issuer: opts.issuer,
          audience: opts.audience,
          typ: ACCESS_TOKEN_TYP,
          requiredClaims: ["exp", "iat", "sub", "jti", "sid"],
          clockTolerance: CLOCK_TOLERANCE_S,
          currentDate: at,
        });
        const claims = claimsOf(payload, at);
        if (claims) verified.set(token, { claims, kid: protectedHeader.kid! });
        return claims;
      } catch (err) {
        if (err instanceof joseErrors.JOSEError) return undefined;
        throw err;
      }
    },
  };
}
