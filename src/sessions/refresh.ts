import type { AuditTrail } from "../audit/trail.js";
import type { AlertSink } from "../notify/ports.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import type { RevocationListener, RoleLifetimes, SessionStore } from "./ports.js";
import { hashRefreshToken, isRefreshTokenShape, newRefreshToken } from "./refresh-token.js";
import type { SessionIssuer, TokenPair } from "./session-issuer.js";

// RefreshToken: rotation on every use with reuse detection (RFC 9700
// §4.14.2). A retired token presented again ends its session, except the
// loser of a concurrent refresh within the grace window.

function refreshTokenInvalid(): DomainError {
  return new DomainError("unauthenticated", "REFRESH_TOKEN_INVALID", "refresh token is invalid, expired or revoked");
}

export function createRefresh(deps: {
  sessions: Pick<SessionStore, "rotate">;
  issuer: Pick<SessionIssuer, "accessToken">;
  lifetimes: RoleLifetimes;
  /**
   * How long after its rotation a refresh token presented again, while its
   * successor is unused, counts as a concurrent refresh (REFRESH_TOKEN_SUPERSEDED,
   * session kept) rather than reuse (session revoked). 0 disables it.
   */
  refreshReuseGraceMs: number;
  revocations: RevocationListener;
  alerts: AlertSink;
  trail: AuditTrail;
  clock: Clock;
}): (refreshToken: string, call: CallContext) => Promise<TokenPair> {
  return async (refreshToken, call) => {
    let ids: { userId?: string; sessionId?: string } = {};
    try {
      if (!isRefreshTokenShape(refreshToken)) throw refreshTokenInvalid();
      const now = deps.clock.now();
      const next = newRefreshToken();
      const result = await deps.sessions.rotate({
        presented: hashRefreshToken(refreshToken),
        next: next.hash,
        now,
        lifetimes: deps.lifetimes,
        reuseGraceMs: deps.refreshReuseGraceMs,
        client: call.client,
      });
      if (result.kind === "superseded") {
        // The "none" variant of the grace window: only hashes are stored,
        // so the successor cannot be handed out again. The session lives
        // on; the client uses the pair the concurrent refresh returned.
        ids = { userId: result.userId, sessionId: result.sessionId };
        throw new DomainError(
          "unauthenticated",
          "REFRESH_TOKEN_SUPERSEDED",
          "refresh token was just replaced by a concurrent refresh; use the newer token",
        );
      }
      if (result.kind === "reused") {
        ids = { userId: result.userId, sessionId: result.sessionId };
        deps.revocations.sessionsRevoked([{ id: result.sessionId, userId: result.userId }]);
        deps.alerts.notify({
          type: "refresh_token_reuse",
          at: now,
          userId: result.userId,
          details: { session_id: result.sessionId, ip: call.client.ip ?? "" },
        });
        throw new DomainError("unauthenticated", "REFRESH_TOKEN_REUSED", "refresh token was already used; the session has been ended");
      }
      if (result.kind === "invalid") throw refreshTokenInvalid();
      const { session } = result;
      ids = { userId: session.userId, sessionId: session.id };
      const access = await deps.issuer.accessToken({
        userId: session.userId,
        sessionId: session.id,
        role: session.role,
        emailVerified: session.emailVerified,
        now,
        authTime: session.authTime,
        amr: session.amr,
      });
      await deps.trail.record({ type: "refresh", outcome: "success", ...ids }, call);
      return {
        accessToken: access.token,
        accessTokenExpiresAt: access.expiresAt,
        refreshToken: next.token,
        refreshTokenExpiresAt: session.expiresAt,
        sessionId: session.id,
        userId: session.userId,
      };
    } catch (err) {
      return deps.trail.failed("refresh", err, call, ids);
    }
  };
}
