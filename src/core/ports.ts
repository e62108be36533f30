// The small interfaces the domain needs from the outside world. Storage,
// hashing and token signing implement them; the domain depends only on these.

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface Profile {
  name?: string | undefined;
  phoneNumber?: string | undefined;
  /** ISO date, YYYY-MM-DD. */
  dateOfBirth?: string | undefined;
  gender?: boolean | undefined;
  address?: string | undefined;
}

export interface User {
  id: string;
  email: string;
  profile: Profile;
  createdAt: Date;
  updatedAt: Date;
}

export interface PasswordCredential {
  userId: string;
  passwordHash: string;
}

export interface NewUser {
  id: string;
  email: string;
  passwordHash: string;
  profile: Profile;
  now: Date;
}

export interface UserStore {
  /** Creates user, profile and credential atomically. Throws EMAIL_ALREADY_REGISTERED on a duplicate. */
  create(user: NewUser): Promise<User>;
  get(userId: string): Promise<User | undefined>;
  findCredentialByEmail(email: string): Promise<PasswordCredential | undefined>;
  findCredentialByUserId(userId: string): Promise<PasswordCredential | undefined>;
  /** Replaces the hash only if it is still `expected` (a concurrent change wins). */
  rehashPassword(userId: string, expected: string, next: string, now: Date): Promise<boolean>;
  /** Replaces the hash if it is still `expected` and, in the same transaction, revokes the user's sessions except `keepSessionId`. */
  replacePassword(input: {
    userId: string;
    expected: string;
    next: string;
    now: Date;
    revokeSessions: boolean;
    keepSessionId: string;
  }): Promise<{ replaced: boolean; revokedSessionIds: string[] }>;
  /** Applies the present fields of `patch`; undefined leaves a field alone, null clears it. */
  updateProfile(userId: string, patch: ProfilePatch, now: Date): Promise<User | undefined>;
}

export type ProfilePatch = { [K in keyof Profile]?: Profile[K] | null };

export interface ClientInfo {
  ip?: string | undefined;
  userAgent?: string | undefined;
}

export interface NewSession {
  id: string;
  userId: string;
  refreshTokenHash: Uint8Array;
  now: Date;
  expiresAt: Date;
  absoluteExpiresAt: Date;
  client: ClientInfo;
}

export interface ActiveSession {
  id: string;
  userId: string;
  expiresAt: Date;
}

export type RotateResult =
  | { kind: "rotated"; session: ActiveSession }
  | { kind: "reused"; sessionId: string; userId: string }
  | { kind: "invalid" };

export interface SessionStore {
  create(session: NewSession): Promise<void>;
  /** The session if it is neither revoked nor expired at `now`. */
  findActive(sessionId: string, now: Date): Promise<ActiveSession | undefined>;
  /**
   * Retires the refresh token with hash `presented` and issues `next` in one
   * transaction. A token retired earlier is reuse: its session is revoked.
   */
  rotate(input: {
    presented: Uint8Array;
    next: Uint8Array;
    now: Date;
    idleTtlMs: number;
    client: ClientInfo;
  }): Promise<RotateResult>;
  /** Revokes an active session; false when it was not active. */
  revoke(sessionId: string, now: Date, reason: string): Promise<boolean>;
}

/**
 * Told of every session the domain ends, after the database says so: caches
 * drop it, and (with Redis) other instances and verifiers hear of it.
 */
export interface RevocationListener {
  sessionsRevoked(sessions: { id: string; userId: string }[]): void;
}

export type AuditEventType = "register" | "login" | "logout" | "refresh" | "password_change" | "password_rehash";

export interface AuditEvent {
  type: AuditEventType;
  outcome: "success" | "failure";
  reason?: string | undefined;
  userId?: string | undefined;
  sessionId?: string | undefined;
  client: ClientInfo;
  requestId?: string | undefined;
  at: Date;
}

export interface AuditLog {
  record(event: AuditEvent): Promise<void>;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
  /** Whether a stored hash was made with other parameters than the configured ones. */
  needsRehash(hash: string): boolean;
}

export interface AccessClaims {
  userId: string;
  sessionId: string;
  tokenId: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface TokenIssuer {
  /** Signs an access token for the session; returns it with its lifetime. */
  issueAccessToken(input: { userId: string; sessionId: string; now: Date }): Promise<{ token: string; expiresAt: Date }>;
  /** Claims of a valid token (signature, alg, iss, aud, typ, exp), or undefined. */
  verifyAccessToken(token: string, now: Date): Promise<AccessClaims | undefined>;
}
