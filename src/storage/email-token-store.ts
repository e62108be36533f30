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
/** A reset token's condition beyond use and expiry: no login and no password change since it was issued. */
export const resetStillValid = sql`not exists (select 1 from ${sessions} where ${sessions.userId} = ${emailTokens.userId} and ${sessions.createdAt} > ${emailTokens.createdAt})
  and not exists (select 1 from ${passwordCredentials} where ${passwordCredentials.userId} = ${emailTokens.userId} and ${passwordCredentials.changedAt} > ${emailTokens.createdAt})`;

export function createEmailTokenStore(db: Db): EmailTokenStore {
  return {
    async issue(t, cap) {
      return db.transaction(async (tx) => {
        // One issue at a time per user and purpose: the cap's count and the
        // insert are one step, and two dispatchers composing two mails of one
        // user each see the other's token (below). An advisory lock, which no
        // other transaction takes: no lock cycle with a redemption.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`email_tokens:${t.userId}:${t.purpose}`}, 0))`);
        // What the user's tokens of this purpose say, in one read: a resend of
        // this mail, how many were issued within the cap's window (later ones
        // count too: mails are not composed in the order they were written),
        // and whether a newer one exists.
        const since = new Date(t.createdAt.getTime() - (cap?.windowMs ?? 0));
        if (cap?.maxToAddress !== undefined) {
          // Always after the user's lock: no two transactions wait on each other in a cycle.
          await tx.execute(sql`select pg_advisory_xact_lock(hashtextextended(${`email_tokens:to:${t.email}:${t.purpose}`}, 0))`);
          const [toAddress] = await tx
            .select({ n: count() })
            .from(emailTokens)
            .where(and(eq(emailTokens.email, t.email), eq(emailTokens.purpose, t.purpose), gte(emailTokens.createdAt, new Date(t.createdAt.getTime() - cap.windowMs)), ne(emailTokens.id, t.id)));
          if (Number(toAddress?.n ?? 0) >= cap.maxToAddress) {
            const [resent] = await tx.select({ id: emailTokens.id }).from(emailTokens).where(eq(emailTokens.id, t.id));
            if (!resent) return "capped";
          }
        }
        const [seen] = await tx
          .select({
            resend: sql<boolean>`coalesce(bool_or(${emailTokens.id} = ${t.id}::uuid), false)`,
            resendLive: sql<boolean>`coalesce(bool_or(${emailTokens.id} = ${t.id}::uuid and ${emailTokens.usedAt} is null), false)`,
            recent: sql<number>`count(*) filter (where ${emailTokens.createdAt} >= ${since.toISOString()}::timestamptz)`,
            newer: sql<boolean>`coalesce(bool_or(${emailTokens.createdAt} > ${t.createdAt.toISOString()}::timestamptz), false)`,
            olderLive: sql<boolean>`coalesce(bool_or(${emailTokens.createdAt} < ${t.createdAt.toISOString()}::timestamptz and ${emailTokens.usedAt} is null), false)`,
          })
          .from(emailTokens)
          .where(and(eq(emailTokens.userId, t.userId), eq(emailTokens.purpose, t.purpose)));
        if (seen?.resend) return seen.resendLive ? "issued" : "superseded";
        if (cap && Number(seen?.recent ?? 0) >= cap.max) return "capped";
        // Undo links are not replaced by newer ones: each goes to the address
        // it restores, and a second change must not void the first owner's.
        // Any other mail composed after a newer one (another dispatcher, a
        // batch sent in parallel) is void from the start, as if in order.
        const superseded = t.purpose !== "revert_email" && seen?.newer === true;
        await tx.insert(emailTokens).values({
          id: t.id,
          userId: t.userId,
          purpose: t.purpose,
          tokenHash: bytes(t.tokenHash),
          email: t.email,
          bindingHash: t.bindingHash ? bytes(t.bindingHash) : null,
          createdAt: t.createdAt,
          expiresAt: t.expiresAt,
          usedAt: superseded ? t.createdAt : null,
        });
        if (superseded) return "superseded";
        if (t.purpose === "revert_email" || !seen?.olderLive) return "issued";
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
        return "issued";
      });
    },

    async find(tokenHash, purpose, now) {
      const rows = await db
        .select()
        .from(emailTokens)
        .where(and(eq(emailTokens.tokenHash, bytes(tokenHash)), eq(emailTokens.purpose, purpose), live(now), purpose === "reset_password" ? resetStillValid : undefined))
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

    async reserveCodeAttempt(id, max, now) {
      const rows = await db
        .update(emailTokens)
        .set({ failedCodes: sql`${emailTokens.failedCodes} + 1` })
        .where(and(eq(emailTokens.id, id), live(now), lt(emailTokens.failedCodes, max)))
        .returning({ tries: emailTokens.failedCodes });
      return rows[0]?.tries;
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
