import { and, desc, eq, gte, inArray, lt, sql, type SQL } from "drizzle-orm";
import type { AuditChainReport, AuditDetails, AuditEvent, AuditEventType, AuditLog, AuditQuery, StoredAuditEvent } from "../audit/ports.js";
import { isUnavailableError, rowsOf, type Db } from "./db.js";
import { auditEvents } from "./schema.js";
import { auditChainHash } from "../audit/chain.js";

// The audit trail: appended with group commit, listed with keyset
// pagination, and verified as a hash chain. The chain itself is built by a
// trigger in the database (migrations/0005_audit_chain_trigger.sql); the
// verifier below re-renders and re-hashes every row on its own, so a
// replaced SQL function cannot vouch for itself.

// Group commit: while one INSERT is in flight, new events queue and go in
// the next multi-row INSERT. A caller still waits until its own row is
// committed, but a burst of logins shares statements and WAL flushes.
const AUDIT_MAX_BATCH = 256;
const VERIFY_BATCH = 1000;
const VERIFY_MAX_BATCH = 10_000;
const GENESIS = new Uint8Array(32);

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null || a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

// PostgreSQL text and jsonb hold neither U+0000 nor lone surrogates (jsonb
// refuses their escapes); one such character would fail the insert, and
// with it every event sharing the statement. They become U+FFFD.
const storable = (s: string): string => s.toWellFormed().replaceAll("\u0000", "\uFFFD");
const optText = (s: string | undefined): string | null => (s === undefined ? null : storable(s));

function detailsJson(details: AuditDetails | undefined): string | null {
  if (details === undefined) return null;
  const clean = Object.entries(details).map(([key, value]) => [
    storable(key),
    typeof value === "string" ? storable(value) : Array.isArray(value) ? value.map(storable) : value,
  ]);
  return JSON.stringify(Object.fromEntries(clean));
}

const DECIMAL_ID = /^(0|[1-9][0-9]{0,18})$/;

export function createAuditLog(db: Db): AuditLog {
  type Row = typeof auditEvents.$inferInsert;
  type Pending = { row: Row; details: string | null; resolve: () => void; reject: (err: unknown) => void };
  let queue: Pending[] = [];
  let draining = false;
  // jsonb goes in as text cast by the server: the ORM would turn an absent
  // value into JSON null, and drivers differ on how they encode JSON.
  const jsonbOf = (text: string | null): SQL => sql`${text}::text::jsonb`;
  // The common case, one event at a time, runs prepared. The chain columns
  // are left out: the trigger sets them.
  const insertOne = db
    .insert(auditEvents)
    .values({
      occurredAt: sql.placeholder("occurredAt"),
      eventType: sql.placeholder("eventType"),
      outcome: sql.placeholder("outcome"),
      reason: sql.placeholder("reason"),
      userId: sql.placeholder("userId"),
      actorUserId: sql.placeholder("actorUserId"),
      sessionId: sql.placeholder("sessionId"),
      ip: sql.placeholder("ip"),
      userAgent: sql.placeholder("userAgent"),
      requestId: sql.placeholder("requestId"),
      details: sql`${sql.placeholder("details")}::text::jsonb`,
    })
    .prepare("audit_insert");

  const insertSingle = (p: Pending) => insertOne.execute({ ...p.row, details: p.details });

  async function drain(): Promise<void> {
    draining = true;
    while (queue.length > 0) {
      const batch = queue.slice(0, AUDIT_MAX_BATCH);
      queue = queue.slice(batch.length);
      try {
        if (batch.length === 1) {
          await insertSingle(batch[0]!);
        } else {
          await db.insert(auditEvents).values(batch.map((p) => ({ ...p.row, details: jsonbOf(p.details) })));
        }
        for (const p of batch) p.resolve();
      } catch (err) {
        if (batch.length === 1 || isUnavailableError(err)) {
          for (const p of batch) p.reject(err);
          continue;
        }
        // One bad event must not fail the others that shared its statement:
        // the batch rolled back whole (chain head included), so retry alone.
        for (const p of batch) {
          try {
            await insertSingle(p);
            p.resolve();
          } catch (e) {
            p.reject(e);
          }
        }
      }
    }
    draining = false;
  }

  async function list(query: AuditQuery, page: { limit: number; beforeId?: string | undefined }): Promise<StoredAuditEvent[]> {
    const limit = Math.floor(page.limit);
    if (!(limit > 0)) return [];
    if (query.types !== undefined && query.types.length === 0) return [];
    if (page.beforeId !== undefined && !DECIMAL_ID.test(page.beforeId)) {
      throw new RangeError(`beforeId must be a decimal id, got ${JSON.stringify(page.beforeId)}`);
    }
    const rows = await db
      .select({
        id: sql<string>`${auditEvents.id}::text`,
        occurredAt: auditEvents.occurredAt,
        eventType: auditEvents.eventType,
        outcome: auditEvents.outcome,
        reason: auditEvents.reason,
        userId: auditEvents.userId,
        actorUserId: auditEvents.actorUserId,
        sessionId: auditEvents.sessionId,
        ip: auditEvents.ip,
        userAgent: auditEvents.userAgent,
        requestId: auditEvents.requestId,
        details: auditEvents.details,
        seq: sql<string | null>`${auditEvents.seq}::text`,
        hash: auditEvents.hash,
      })
      .from(auditEvents)
      .where(
        and(
          query.userId === undefined ? undefined : eq(auditEvents.userId, query.userId),
          query.types === undefined ? undefined : inArray(auditEvents.eventType, [...query.types]),
          query.outcome === undefined ? undefined : eq(auditEvents.outcome, query.outcome),
          query.ip === undefined ? undefined : eq(auditEvents.ip, query.ip),
          query.since === undefined ? undefined : gte(auditEvents.occurredAt, query.since),
          query.until === undefined ? undefined : lt(auditEvents.occurredAt, query.until),
          page.beforeId === undefined ? undefined : sql`${auditEvents.id} < ${page.beforeId}::bigint`,
        ),
      )
      .orderBy(desc(auditEvents.id))
      .limit(limit);
    return rows.map((r) => {
      const event: StoredAuditEvent = {
        id: r.id,
        // No check constraint on the type: a newer release may write types
        // this one does not know, and listing them must still work.
        type: r.eventType as AuditEventType,
        outcome: r.outcome as AuditEvent["outcome"],
        client: {},
        at: r.occurredAt,
      };
      if (r.reason !== null) event.reason = r.reason;
      if (r.userId !== null) event.userId = r.userId;
      if (r.actorUserId !== null) event.actorUserId = r.actorUserId;
      if (r.sessionId !== null) event.sessionId = r.sessionId;
      if (r.ip !== null) event.client.ip = r.ip;
      if (r.userAgent !== null) event.client.userAgent = r.userAgent;
      if (r.requestId !== null) event.requestId = r.requestId;
      if (r.details !== null) event.details = r.details;
      if (r.seq !== null) event.seq = r.seq;
      if (r.hash !== null) event.hash = r.hash;
      return event;
    });
  }

  type VerifyRow = {
    seq: string;
    id: string;
    occurred_us: string;
    event_type: string;
    outcome: string;
    reason: string | null;
    user_id: string | null;
    actor_user_id: string | null;
    session_id: string | null;
    ip: string | null;
    user_agent: string | null;
    request_id: string | null;
    details: string | null;
    prev_hash: Uint8Array | null;
    hash: Uint8Array | null;
  };

  async function verifyChain(opts: { batchSize?: number | undefined } = {}): Promise<AuditChainReport> {
    const batchSize = Math.min(VERIFY_MAX_BATCH, Math.max(1, Math.floor(opts.batchSize ?? VERIFY_BATCH)));
    // The head first: every row up to it is committed (the head moves in the
    // inserting transaction), and rows appended meanwhile wait for next time.
    const head = rowsOf<{ seq: string; hash: Uint8Array }>(
      await db.execute(sql`select seq::text as seq, hash from audit_chain_head where id = 1`),
    )[0];
    // Every row was chained by the migration or the trigger; one without a
    // hash was inserted with the triggers bypassed.
    const outside = rowsOf<{ n: string; first: string | null }>(
      await db.execute(
        sql`select count(*)::text as n, min(id)::text as first from audit_events where seq is null or prev_hash is null or hash is null`,
      ),
    )[0];
    const unchained = Number(outside?.n ?? 0);
    const headSeq = head ? BigInt(head.seq) : 0n;
    let checked = 0;
    const broken = (problem: NonNullable<AuditChainReport["problem"]>, seq?: bigint): AuditChainReport => ({
      ok: false,
      checked,
      unchained,
      headSeq: String(headSeq),
      ...(seq === undefined ? {} : { firstBrokenSeq: String(seq) }),
      problem,
    });
    if (!head) return broken("head_mismatch");

    let expected = 1n;
    let prev: Uint8Array = GENESIS;
    // Keyset pagination on seq (its unique index): constant memory, any length.
    while (expected <= headSeq) {
      const rows = rowsOf<VerifyRow>(
        await db.execute(sql`
          select seq::text as seq, id::text as id,
                 (extract(epoch from occurred_at) * 1000000)::bigint::text as occurred_us,
                 event_type, outcome, reason, user_id::text as user_id, actor_user_id::text as actor_user_id,
                 session_id::text as session_id, ip, user_agent, request_id, details::text as details, prev_hash, hash
          from audit_events
          where seq >= ${String(expected)}::bigint and seq <= ${String(headSeq)}::bigint
          order by audit_events.seq -- the column: a bare "seq" would sort the text alias
          limit ${batchSize}`),
      );
      if (rows.length === 0) break;
      for (const r of rows) {
        const seq = BigInt(r.seq);
        if (seq !== expected) return broken("gap", expected);
        const recomputed = auditChainHash(r.prev_hash ?? GENESIS, {
          seq: r.seq,
          id: r.id,
          occurredAtMicros: r.occurred_us,
          eventType: r.event_type,
          outcome: r.outcome,
          reason: r.reason,
          userId: r.user_id,
          actorUserId: r.actor_user_id,
          sessionId: r.session_id,
          ip: r.ip,
          userAgent: r.user_agent,
          requestId: r.request_id,
          details: r.details,
        });
        if (!sameBytes(recomputed, r.hash)) return broken("hash_mismatch", seq);
        if (!sameBytes(r.prev_hash, prev)) return broken("link_mismatch", seq);
        prev = r.hash!;
        expected = seq + 1n;
        checked++;
      }
    }
    // Rows missing at the end, or a head that is not the last row's hash.
    if (expected - 1n !== headSeq) return broken("head_mismatch", expected);
    if (!sameBytes(prev, head.hash)) return broken("head_mismatch", headSeq);
    if (unchained > 0) return { ...broken("unchained"), firstUnchainedId: outside?.first ?? undefined };
    return { ok: true, checked, unchained, headSeq: String(headSeq), headHash: prev };
  }

  return {
    record(e) {
      const row: Row = {
        occurredAt: e.at,
        eventType: e.type,
        outcome: e.outcome,
        reason: optText(e.reason),
        userId: e.userId ?? null,
        actorUserId: e.actorUserId ?? null,
        sessionId: e.sessionId ?? null,
        ip: optText(e.client.ip),
        userAgent: optText(e.client.userAgent),
        requestId: optText(e.requestId),
      };
      // In details, which the chain covers: no new column, no new canonical form.
      const details = detailsJson(e.clientRequestId === undefined ? e.details : { ...e.details, client_request_id: e.clientRequestId });
      return new Promise<void>((resolve, reject) => {
        queue.push({ row, details, resolve, reject });
        if (!draining) void drain();
      });
    },
    list,
    verifyChain,
  };
}
