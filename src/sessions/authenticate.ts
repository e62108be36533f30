import type { Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import type { AccessClaims, TokenIssuer } from "../tokens/ports.js";
import { isAccessTokenShape } from "../tokens/token-shape.js";
import type { SessionStore } from "./ports.js";

// An access token counts only while its session is active: every call is
// checked against the session (through the short-lived session cache), so
// a revocation takes effect at once.

export function tokenInvalid(): DomainError {
  return new DomainError("unauthenticated", "TOKEN_INVALID", "access token is invalid, expired or revoked");
}

/** What VerifyToken tells a resource server (RFC 7662 style): nothing unless active. */
export type TokenIntrospection = { active: false } | ({ active: true } & AccessClaims);

export interface Authentication {
  /** Verifies an access token and that its session is still active. */
  authenticate(accessToken: string): Promise<Principal>;
  /** Introspection: never throws for a bad token, only when the check itself cannot run. */
  verifyToken(accessToken: string): Promise<TokenIntrospection>;
}

export function createAuthentication(deps: {
  tokens: Pick<TokenIssuer, "verifyAccessToken">;
  sessions: Pick<SessionStore, "findActive">;
  clock: Clock;
}): Authentication {
  async function activeClaims(accessToken: string, now: Date): Promise<AccessClaims | undefined> {
    const claims = await deps.tokens.verifyAccessToken(accessToken, now);
    if (!claims) return undefined;
    const session = await deps.sessions.findActive(claims.sessionId, now);
    if (!session || session.userId !== claims.userId) return undefined;
    return claims;
  }

  return {
    async authenticate(accessToken) {
      const claims = await activeClaims(accessToken, deps.clock.now());
      if (!claims) throw tokenInvalid();
      return { userId: claims.userId, sessionId: claims.sessionId, authTime: claims.authTime, amr: claims.amr };
    },
    async verifyToken(accessToken) {
      if (!isAccessTokenShape(accessToken)) return { active: false };
      const claims = await activeClaims(accessToken, deps.clock.now());
      return claims ? { active: true, ...claims } : { active: false };
    },
  };
}
