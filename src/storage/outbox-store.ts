import { and, count, eq, inArray, lt, lte, or, sql } from "drizzle-orm";
import type { MailKind, OutboxEntry, OutboxMessage, OutboxStore } from "../mail/ports.js";
import type { Db } from "./db.js";
import { outbox } from "./schema.js";

// The OutboxStore port on PostgreSQL / PGlite. Stores that change state and
// cause a mail call insertOutbox() inside their own transaction.

type Tx = Pick<Db, "insert">;

/** Writes `entry` with the caller's transaction (or database). */
export async function insertOutbox(tx: Tx, entry: OutboxEntry): Promise<void> {
  await tx.insert(outbox).values({
    id: entry.id,
    kind: entry.kind,
    userId: entry.userId ?? null,
    address: entry.address ?? null,
    params: { ...entry.params },
    nextAttemptAt: entry.createdAt,
    createdAt: entry.createdAt,
  });
}

type Row = typeof outbox.$inferSelect;

function toMessage(row: Row): OutboxMessage {
  return {
    id: row.id,
    kind: row.kind as MailKind,
    userId: row.userId ?? undefined,
    address: row.address ?? undefined,
    params: row.params,
    createdAt: row.createdAt,
    attempts: row.attempts,
  };
}

export function createOutboxStore(db: Db): OutboxStore {
  // Finished rows keep no address: what remains is who, what and when.
  // Only the row's current lease: a takeover bumped `attempts`.
  const leased = (id: string, attempt: number | undefined) =>
    and(eq(outbox.id, id), eq(outbox.status, "sending"), attempt === undefined ? undefined : eq(outbox.attempts, attempt));
  const finish = (id: string, attempt: number | undefined, set: Partial<typeof outbox.$inferInsert>) =>
    db
      .update(outbox)
      .set({ ...set, leaseUntil: null, address: null })
      .where(leased(id, attempt));

  return {
    async enqueue(entry) {
      await insertOutbox(db, entry);
    },

    async claim(now, limit, leaseMs) {
      const due = db
        .select({ id: outbox.id })
        .from(outbox)
        .where(
          and(
            inArray(outbox.status, ["pending", "sending"]),
            lte(outbox.nextAttemptAt, now),
            or(eq(outbox.status, "pending"), lt(outbox.leaseUntil, now)),
          ),
        )
        .orderBy(outbox.nextAttemptAt)
        .limit(limit)
        .for("update", { skipLocked: true });
      const rows = await db
        .update(outbox)
        .set({ status: "sending", leaseUntil: new Date(now.getTime() + leaseMs), attempts: sql`${outbox.attempts} + 1` })
        .where(inArray(outbox.id, due))
        .returning();
      return rows.map(toMessage);
    },

    async markSent(id, now, attempt) {
      await finish(id, attempt, { status: "sent", sentAt: now, lastError: null });
    },

    async markDropped(id, now, reason, attempt) {
      await finish(id, attempt, { status: "dropped", sentAt: now, lastError: reason });
    },

    async retry(id, nextAttemptAt, error, attempt) {
      await db.update(outbox).set({ status: "pending", nextAttemptAt, leaseUntil: null, lastError: error }).where(leased(id, attempt));
    },

    async markDead(id, now, error, attempt) {
      await finish(id, attempt, { status: "dead", sentAt: now, lastError: error });
    },

    async backlog() {
      const rows = await db.select({ status: outbox.status, n: count() }).from(outbox).where(inArray(outbox.status, ["pending", "sending", "dead"])).groupBy(outbox.status);
      let pending = 0;
      let dead = 0;
      for (const r of rows) {
        if (r.status === "dead") dead += Number(r.n);
        else pending += Number(r.n);
      }
      return { pending, dead };
    },

    async prune(before) {
      const rows = await db
        .delete(outbox)
        .where(and(inArray(outbox.status, ["sent", "dropped", "dead"]), lt(outbox.createdAt, before)))
        .returning({ id: outbox.id });
      return rows.length;
    },
  };
}
