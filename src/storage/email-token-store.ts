import { and, count, desc, eq, gt, gte, isNull, lt, ne, sql } from "drizzle-orm";
import type { EmailToken, EmailTokenStore, TokenPurpose } from "../mail/ports.js";
import { bytes, type Db } from "./db.js";
import { emailTokens, passwordCredentials, sessions } from "./schema.js";

// The EmailTokenStore port on PostgreSQL / PGlite: tokens of mails, by
// SHA-256 only. A reset token is also void once the account logged in or
// changed its password after it was issued.

type Row = typeof emailTokens.$inferSelect;

function toToken(row: Row): EmailToken {
  return {
    id: row.id,
    userId: row.userId,
    purpose: row.purpose as TokenPurpose,
    email: row.email,
    bindingHash: row.bindingHash ?? undefined,
    failedCodes: row.failedCodes,
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
  };
}

const live = (now: Date) => and(isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now));

// Reset links die with a later login or password change.
const notSuperseded = sql`not exists (select 1 from ${sessions} where ${sessions.userId} = ${emailTokens.userId} and ${sessions.createdAt} > ${emailTokens.createdAt})
  and not exists (select 1 from ${passwordCredentials} where ${passwordCredentials.userId} = ${emailTokens.userId} and ${passwordCredentials.changedAt} > ${emailTokens.createdAt})`;

export function createEmailTokenStore(db: Db): EmailTokenStore {
  return {
    async issue(t) {
      await db.transaction(async (tx) => {
        // One issue at a time per user and purpose (two dispatchers composing
        // two mails of one user each see the other's token, below). An
        // advisory lock: no other transaction takes it, so no lock cycle.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`email_tokens:${t.userId}:${t.purpose}`}, 0))`);
        const inserted = await tx
          .insert(emailTokens)
          .values({
            id: t.id,
            userId: t.userId,
            purpose: t.purpose,
            tokenHash: bytes(t.tokenHash),
            email: t.email,
            bindingHash: t.bindingHash ? bytes(t.bindingHash) : null,
            createdAt: t.createdAt,
            expiresAt: t.expiresAt,
          })
          .onConflictDoNothing({ target: emailTokens.id })
          .returning({ id: emailTokens.id });
        if (inserted.length === 0) return;
        // Only older ones: a resend of an old mail must not void a newer one.
        await tx
          .update(emailTokens)
          .set({ usedAt: t.createdAt })
          .where(
            and(
              eq(emailTokens.userId, t.userId),
              eq(emailTokens.purpose, t.purpose),
              ne(emailTokens.id, t.id),
              isNull(emailTokens.usedAt),
              lt(emailTokens.createdAt, t.createdAt),
            ),
          );
        // An older mail composed after a newer one (another dispatcher, a
        // batch sent in parallel) is void from the start, as if in order.
        await tx
          .update(emailTokens)
          .set({ usedAt: t.createdAt })
          .where(
            and(
              eq(emailTokens.id, t.id),
              sql`exists (select 1 from ${emailTokens} as newer where newer.user_id = ${t.userId}::uuid and newer.purpose = ${t.purpose} and newer.created_at > ${t.createdAt.toISOString()}::timestamptz)`,
            ),
          );
      });
    },

    async find(tokenHash, purpose, now) {
      const rows = await db
        .select()
        .from(emailTokens)
        .where(and(eq(emailTokens.tokenHash, bytes(tokenHash)), eq(emailTokens.purpose, purpose), live(now), purpose === "reset_password" ? notSuperseded : undefined))
        .limit(1);
      return rows[0] && toToken(rows[0]);
    },

    async latest(userId, purpose, now) {
      const rows = await db
        .select()
        .from(emailTokens)
        .where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, purpose), live(now)))
        .orderBy(desc(emailTokens.createdAt))
        .limit(1);
      return rows[0] && toToken(rows[0]);
    },

    async consume(id, now) {
      const rows = await db
        .update(emailTokens)
        .set({ usedAt: now })
        .where(and(eq(emailTokens.id, id), live(now)))
        .returning({ id: emailTokens.id });
      return rows.length === 1;
    },

    async failCode(id, maxFailures, now) {
      await db
        .update(emailTokens)
        .set({
          failedCodes: sql`${emailTokens.failedCodes} + 1`,
          usedAt: sql`case when ${emailTokens.failedCodes} + 1 >= ${maxFailures} then ${now.toISOString()}::timestamptz else ${emailTokens.usedAt} end`,
        })
        .where(and(eq(emailTokens.id, id), isNull(emailTokens.usedAt)));
    },

    async countIssued(userId, purpose, since, before) {
      const [row] = await db
        .select({ n: count() })
        .from(emailTokens)
        .where(and(eq(emailTokens.userId, userId), eq(emailTokens.purpose, purpose), gte(emailTokens.createdAt, since), lt(emailTokens.createdAt, before)));
      return Number(row?.n ?? 0);
    },
  };
}

/** Deletes tokens that expired before `before` (housekeeping). */
export async function pruneEmailTokens(db: Db, before: Date): Promise<number> {
  const rows = await db.delete(emailTokens).where(lt(emailTokens.expiresAt, before)).returning({ id: emailTokens.id });
  return rows.length;
}
