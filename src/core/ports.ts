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

/** Privilege level: selects the lifetimes of the user's tokens and sessions. */
export type Role = "customer" | "admin";
export const roles: readonly Role[] = ["customer", "admin"];

export function isRole(value: unknown): value is Role {
  return (roles as readonly unknown[]).includes(value);
}

/** How long a role's access tokens and sessions live. */
export interface SessionLifetime {
  accessTokenTtlMs: number;
  /** A session unused (not refreshed) for this long ends. */
  idleTtlMs: number;
  /** A session ends this long after its login, refreshed or not. */
  absoluteTtlMs: number;
}

export type RoleLifetimes = Readonly<Record<Role, SessionLifetime>>;

export interface PasswordCredential {
  userId: string;
  passwordHash: string;
  role: Role;
}

export interface NewUser {
  id: string;
  email: string;
  passwordHash: string;
  profile: Profile;
  now: Date;
  /**
   * The address's login-throttle key: its failure count (a lock included) is
   * deleted with the account's creation, so failures run up before anyone
   * owned the address do not lock its owner out.
   */
  throttleKey?: Uint8Array | undefined;
}

export interface UserStore {
  /** Creates user, profile and credential atomically (and clears `throttleKey`). Throws EMAIL_ALREADY_REGISTERED on a duplicate. */
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
  /** Sets the role of the account with this (normalised) e-mail; its id, or undefined when there is none. */
  setRole(email: string, role: Role, now: Date): Promise<string | undefined>;
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
  | { kind: "rotated"; session: ActiveSession & { role: Role; authTime?: Date | undefined; amr?: readonly string[] | undefined } }
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

export type AuditEventType =
  | "register"
  | "login"
  | "logout"
  | "refresh"
  | "password_change"
  | "password_rehash"
  /** A session ended by its user or by the session cap; `reason` says which. */
  | "session_revoke"
  /** An operator changed the user's role (`reason` is the new one). */
  | "role_change"
  | "account_locked"
  /** `actorUserId` is the admin who unlocked it. */
  | "account_unlock"
  | "login_throttled"
  | "spray_detected"
  | "source_blocked"
  | "failure_surge"
  | "captcha"
  | "mfa_enrol"
  | "mfa_confirm"
  | "mfa_disable"
  | "mfa_challenge"
  | "recovery_code_use"
  | "recovery_codes_regenerate"
  | "risk_decision"
  /** A check of the audit chain itself (see AuditLog.verifyChain). */
  | "audit_verify";

/** Evidence of an event: counts, signals, ids. Never a secret: the trail is read by people. */
export type AuditDetails = Readonly<Record<string, string | number | boolean | readonly string[]>>;

export interface AuditEvent {
  type: AuditEventType;
  outcome: "success" | "failure";
  reason?: string | undefined;
  /** The subject: whose account the event is about. */
  userId?: string | undefined;
  /** Who did it, when not the subject (e.g. an admin unlocking an account). */
  actorUserId?: string | undefined;
  sessionId?: string | undefined;
  client: ClientInfo;
  /** Our id of the request. */
  requestId?: string | undefined;
  /** The X-Request-Id the client sent, as sent: stored as details.client_request_id. */
  clientRequestId?: string | undefined;
  details?: AuditDetails | undefined;
  at: Date;
}

export interface AuditQuery {
  userId?: string | undefined;
  types?: readonly AuditEventType[] | undefined;
  outcome?: "success" | "failure" | undefined;
  ip?: string | undefined;
  /** Inclusive. */
  since?: Date | undefined;
  /** Exclusive. */
  until?: Date | undefined;
}

export interface StoredAuditEvent extends AuditEvent {
  /** bigint as decimal text; newer events have greater ids. */
  id: string;
  /** Position in the hash chain (decimal text). */
  seq?: string | undefined;
  /** SHA-256 chain hash of the row (32 bytes). */
  hash?: Uint8Array | undefined;
}

export interface AuditChainReport {
  /** Every chained row re-hashed, linked, without gaps, up to the head; and no row outside the chain. */
  ok: boolean;
  /** Chained rows checked. */
  checked: number;
  /** Rows without a hash: only ever inserted with the chain's trigger bypassed. */
  unchained: number;
  /** The chain head's seq when the check began (rows appended since are left for the next check). */
  headSeq: string;
  /** The head's hash when the chain verified: export it (with headSeq) somewhere the database cannot write. */
  headHash?: Uint8Array | undefined;
  /** The first seq at which the chain breaks (for a gap: the first missing one). */
  firstBrokenSeq?: string | undefined;
  /** With "unchained": the smallest id of a row without a hash. */
  firstUnchainedId?: string | undefined;
  problem?: "hash_mismatch" | "link_mismatch" | "gap" | "head_mismatch" | "unchained" | undefined;
}

export interface AuditLog {
  /** Resolves once the event is committed (and chained). */
  record(event: AuditEvent): Promise<void>;
  /** Newest first; at most `limit`; only rows with id < beforeId when given. */
  list(query: AuditQuery, page: { limit: number; beforeId?: string | undefined }): Promise<StoredAuditEvent[]>;
  /**
   * Re-computes every chained row's hash in seq order, batch by batch,
   * independently of the database's own functions, and checks the links,
   * that seq has no gaps and that the head is the last row.
   */
  verifyChain(opts?: { batchSize?: number | undefined }): Promise<AuditChainReport>;
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
  /** The `role` claim; absent in tokens issued before roles existed. */
  role?: Role | undefined;
  /** `auth_time`: when the user last proved who they are on this session. */
  authTime?: Date | undefined;
  /** `amr` (RFC 8176): how, e.g. ["pwd"] or ["pwd", "otp", "mfa"]. */
  amr?: readonly string[] | undefined;
  /** `acr`: "aal1" (one factor) or "aal2" (two), after NIST SP 800-63B. */
  acr?: string | undefined;
}

export interface TokenIssuer {
  /** Signs an access token for the session; returns it with its lifetime (`ttlMs`, else the configured one). */
  issueAccessToken(input: {
    userId: string;
    sessionId: string;
    now: Date;
    role?: Role | undefined;
    ttlMs?: number | undefined;
    authTime?: Date | undefined;
    amr?: readonly string[] | undefined;
  }): Promise<{ token: string; expiresAt: Date }>;
  /** Claims of a valid token (signature, alg, iss, aud, typ, exp), or undefined. */
  verifyAccessToken(token: string, now: Date): Promise<AccessClaims | undefined>;
}
