import { createHash } from "node:crypto";

// The audit trail's hash chain, defined once: each row's hash is SHA-256 of
// the previous row's hash and the row's canonical text. The database
// trigger (migrations/0005_audit_chain_trigger.sql) renders the same text in
// SQL; VerifyAuditChain recomputes it here, independently, so a replaced SQL
// function cannot vouch for itself.

/** A chained row as the verifier reads it: every field already as text, NULL as null. */
export interface AuditChainRow {
  seq: string;
  id: string;
  /** occurred_at as integer epoch microseconds. */
  occurredAtMicros: string;
  eventType: string;
  outcome: string;
  reason: string | null;
  userId: string | null;
  actorUserId: string | null;
  sessionId: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  /** details::text as the database renders jsonb. */
  details: string | null;
}

const field = (value: string | null): string => (value === null ? "-" : Buffer.from(value, "utf8").toString("hex"));

/** Canonical text v1 of a row, the same as audit_event_canonical() in the migration renders it. */
export function canonicalAuditText(row: AuditChainRow): string {
  return [
    "v1",
    field(row.seq),
    field(row.id),
    field(row.occurredAtMicros),
    field(row.eventType),
    field(row.outcome),
    field(row.reason),
    field(row.userId),
    field(row.actorUserId),
    field(row.sessionId),
    field(row.ip),
    field(row.userAgent),
    field(row.requestId),
    field(row.details),
  ].join("|");
}

/** SHA-256(prevHash ‖ UTF-8 of the canonical text). */
export function auditChainHash(prevHash: Uint8Array, row: AuditChainRow): Uint8Array {
  return createHash("sha256").update(prevHash).update(canonicalAuditText(row), "utf8").digest();
}
