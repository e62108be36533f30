import type { Role } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { uuidv7 } from "../shared/uuid.js";
import type { TokenIssuer } from "../tokens/ports.js";
import type { RevocationListener, RoleLifetimes, SessionStore } from "./ports.js";
import { newRefreshToken } from "./refresh-token.js";

// Sessions begin here, whichever factor proved the user, and every access
// token of a session is issued through `accessToken`, with its role's
// lifetime and the session's proof of identity (auth_time, amr).

export interface TokenPair {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  sessionId: string;
  userId: string;
  /** The device's token for later logins (see LoginInput.deviceId). */
  deviceToken?: string | undefined;
}

/** How the user proved who they are: when, and how (RFC 8176 amr values). */
export interface SessionAuth {
  authTime: Date;
  amr: readonly string[];
  /** The account's address is verified (the `email_verified` claim). */
  emailVerified?: boolean | undefined;
}

export interface SessionIssuer {
  /** A new session with its first refresh token; the user's oldest sessions beyond the cap end. */
  start(userId: string, role: Role, auth: SessionAuth, call: CallContext): Promise<TokenPair>;
  /** An access token for an existing session. */
  accessToken(input: {
    userId: string;
    sessionId: string;
    role: Role;
    now: Date;
    authTime?: Date | undefined;
    amr?: readonly string[] | undefined;
    emailVerified?: boolean | undefined;
  }): Promise<{ token: string; expiresAt: Date }>;
}

export function createSessionIssuer(deps: {
  sessions: Pick<SessionStore, "create">;
  tokens: Pick<TokenIssuer, "issueAccessToken">;
  /** Access-token, idle and absolute lifetimes of each role. */
  lifetimes: RoleLifetimes;
  /** Active sessions a user may have; a login beyond it ends the least recently used. */
  maxSessionsPerUser: number;
  revocations: RevocationListener;
  trail: AuditTrail;
  clock: Clock;
}): SessionIssuer {
  const accessToken: SessionIssuer["accessToken"] = (input) =>
    deps.tokens.issueAccessToken({ ...input, ttlMs: deps.lifetimes[input.role].accessTokenTtlMs });

  return {
    accessToken,
    async start(userId, role, auth, call) {
      const now = deps.clock.now();
      const lifetime = deps.lifetimes[role];
      const sessionId = uuidv7(now);
      const refresh = newRefreshToken();
      const absoluteExpiresAt = new Date(now.getTime() + lifetime.absoluteTtlMs);
      const expiresAt = new Date(Math.min(now.getTime() + lifetime.idleTtlMs, absoluteExpiresAt.getTime()));
      const { evictedSessionIds } = await deps.sessions.create({
        id: sessionId,
        userId,
        refreshTokenHash: refresh.hash,
        now,
        expiresAt,
        absoluteExpiresAt,
        client: call.client,
        authTime: auth.authTime,
        amr: auth.amr,
        maxActiveSessions: deps.maxSessionsPerUser,
      });
      if (evictedSessionIds.length > 0) {
        deps.revocations.sessionsRevoked(evictedSessionIds.map((id) => ({ id, userId })));
        await deps.trail.sessionsEnded(userId, evictedSessionIds, "session_limit", call);
      }
      const access = await accessToken({ userId, sessionId, role, now, ...auth });
      return {
        accessToken: access.token,
        accessTokenExpiresAt: access.expiresAt,
        refreshToken: refresh.token,
        refreshTokenExpiresAt: expiresAt,
        sessionId,
        userId,
      };
    },
  };
}
