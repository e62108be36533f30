import type { Role } from "../accounts/ports.js";
import type { ClientInfo } from "../shared/call.js";

// Sessions and their refresh tokens: how long they live by role, and the
// store that creates, rotates, lists and ends them.

export interface SessionLifetime {
  accessTokenTtlMs: number;
  /** A session unused (not refreshed) for this long ends. */
  idleTtlMs: number;
  /** A session ends this long after its login, refreshed or not. */
  absoluteTtlMs: number;
}

export type RoleLifetimes = Readonly<Record<Role, SessionLifetime>>;

export interface NewSession {
  id: string;
  userId: string;
  refreshTokenHash: Uint8Array;
  now: Date;
  expiresAt: Date;
  absoluteExpiresAt: Date;
  client: ClientInfo;
  /** When and how (RFC 8176 amr values) the user proved who they are. */
  authTime: Date;
  amr: readonly string[];
  /**
   * The cap on the user's active sessions, this one included: the oldest
   * (by last use) beyond it are revoked in the same transaction.
   */
  maxActiveSessions: number;
}

/** A session as its user sees it in a list. */
export interface SessionInfo {
  id: string;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  ip?: string | undefined;
  userAgent?: string | undefined;
}

export interface ActiveSession {
  id: string;
  userId: string;
  expiresAt: Date;
}

export type RotateResult =
  | {
      kind: "rotated";
      session: ActiveSession & { role: Role; emailVerified: boolean; authTime?: Date | undefined; amr?: readonly string[] | undefined };
    }
  /** Retired within the grace window and its successor not yet used: a concurrent refresh, not theft. */
  | { kind: "superseded"; sessionId: string; userId: string }
  | { kind: "reused"; sessionId: string; userId: string }
  | { kind: "invalid" };

export interface SessionStore {
  /** Creates the session with its first refresh token; returns the sessions evicted by the cap. */
  create(session: NewSession): Promise<{ evictedSessionIds: string[] }>;
  /** The session if it is neither revoked nor expired at `now`. */
  findActive(sessionId: string, now: Date): Promise<ActiveSession | undefined>;
  /**
   * Retires the refresh token with hash `presented` and issues `next` in one
   * transaction, sliding the session's idle expiry by the user's current
   * role's lifetime (never past its absolute one). A token retired earlier is
   * reuse, which revokes the session, unless it was retired less than
   * `reuseGraceMs` ago and its successor has not been used yet (superseded).
   */
  rotate(input: {
    presented: Uint8Array;
    next: Uint8Array;
    now: Date;
    lifetimes: RoleLifetimes;
    reuseGraceMs: number;
    client: ClientInfo;
  }): Promise<RotateResult>;
  /** A fresh proof of identity on an active session of the user (Reauthenticate); false when it is not active. */
  reauthenticate(input: { sessionId: string; userId: string; authTime: Date; amr: readonly string[] }): Promise<boolean>;
  /** Revokes an active session; false when it was not active. */
  revoke(sessionId: string, now: Date, reason: string): Promise<boolean>;
  /** The user's active sessions, newest first, at most `limit`, only those older than `before` when given. */
  listActive(userId: string, now: Date, page: { limit: number; before?: string | undefined }): Promise<SessionInfo[]>;
  /** Revokes the session if it is active and the user's; false otherwise (unknown, someone else's, ended). */
  revokeOfUser(input: { userId: string; sessionId: string; now: Date; reason: string }): Promise<boolean>;
  /** Revokes every active session of the user except `keepSessionId`; the ids revoked. */
  revokeOthersOfUser(input: { userId: string; keepSessionId: string; now: Date; reason: string }): Promise<string[]>;
}

/**
 * Told of every session the domain ends, after the database says so: caches
 * drop it, and (with Redis) other instances and verifiers hear of it.
 */
export interface RevocationListener {
  sessionsRevoked(sessions: { id: string; userId: string }[]): void;
}
