import type { ClientInfo } from "../shared/call.js";

// The tamper-evident audit trail: what an event records, and the log that
// appends, lists and verifies the hash chain.

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
  /** The e-mail channel (mail/, recovery/, login/email/). */
  | "email_verify"
  | "email_verification_request"
  | "password_forgot"
  | "password_reset"
  | "email_login_start"
  | "email_change"
  | "email_change_revert"
  | "mail_delivery_failed"
  | "mail_dead_lettered"
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
