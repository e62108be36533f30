import { and, eq, isNull, lt, sql } from "drizzle-orm";
import { throttleDelayMs, type ThrottlePolicy } from "../abuse/policies.js";
import { type AttemptClaim, type LoginAttemptStore } from "../abuse/ports.js";
import { rowsOf, type Db } from "./db.js";
import { loginThrottle } from "./schema.js";

/**
 * The per-account attempt counter. One statement claims an attempt: it
 * counts it only when the account is neither waiting nor locked, so any
 * number of concurrent attempts on any number of instances get exactly the
 * free attempts and then one per wait.
 */
export function createLoginAttemptStore(db: Db): LoginAttemptStore {
  return {
    async claim(accountKey, now, policy: ThrottlePolicy): Promise<AttemptClaim> {
      const key = Buffer.from(accountKey);
      // Raw SQL parameters: the ISO text, which both drivers send as is.
      const at = now.toISOString();
      const forgotten =
        policy.resetAfterMs > 0
          ? sql`(t.failures < ${policy.lockoutThreshold}::int and t.last_failure_at <= ${at}::timestamptz - ${policy.resetAfterMs}::float8 * interval '1 millisecond')`
          : sql`false`;
      const result = await db.execute(sql`
        insert into login_throttle as t (account_key, failures, last_failure_at)
        values (${key}, 1, ${at}::timestamptz)
        on conflict (account_key) do update set
          failures = case when ${forgotten} then 1 else t.failures + 1 end,
          last_failure_at = ${at}::timestamptz,
          locked_at = case when not ${forgotten} and t.failures + 1 >= ${policy.lockoutThreshold}::int then ${at}::timestamptz else t.locked_at end
        where t.failures < ${policy.lockoutThreshold}::int
          and (
            t.failures < ${policy.freeAttempts}::int
            or t.last_failure_at + least(
                 ${policy.baseDelayMs}::float8 * power(2::float8, least(t.failures - ${policy.freeAttempts}::int, 40)),
                 ${policy.maxDelayMs}::float8
               ) * interval '1 millisecond' <= ${at}::timestamptz
            or ${forgotten}
          )
        returning failures`);
      const claimed = rowsOf<{ failures: number }>(result)[0];
      if (claimed) return { kind: "claimed", failuresBefore: Number(claimed.failures) - 1 };
      const [row] = await db
        .select({ failures: loginThrottle.failures, lastFailureAt: loginThrottle.lastFailureAt })
        .from(loginThrottle)
        .where(eq(loginThrottle.accountKey, key));
      // Cleared between the two statements (a success elsewhere): try again.
      if (!row) return this.claim(accountKey, now, policy);
      if (row.failures >= policy.lockoutThreshold) return { kind: "locked", failures: row.failures };
      const retryAfterMs = Math.max(1, row.lastFailureAt.getTime() + throttleDelayMs(row.failures, policy) - now.getTime());
      return { kind: "throttled", failures: row.failures, retryAfterMs };
    },

    async clear(accountKey) {
      await db.delete(loginThrottle).where(eq(loginThrottle.accountKey, Buffer.from(accountKey)));
    },

    async unlock(accountKey) {
      const rows = await db
        .delete(loginThrottle)
        .where(eq(loginThrottle.accountKey, Buffer.from(accountKey)))
        .returning({ failures: loginThrottle.failures, lockedAt: loginThrottle.lockedAt });
      const row = rows[0];
      return { clearedFailures: row?.failures ?? 0, wasLocked: row?.lockedAt != null };
    },
  };
}

/**
 * Deletes counts that no longer matter: forgotten (older than the reset
 * period) and not locked. Keeps the table to recent attempts only.
 */
export async function pruneLoginThrottle(db: Db, now: Date, policy: ThrottlePolicy): Promise<number> {
  if (policy.resetAfterMs <= 0) return 0;
  const rows = await db
    .delete(loginThrottle)
    .where(and(isNull(loginThrottle.lockedAt), lt(loginThrottle.lastFailureAt, new Date(now.getTime() - policy.resetAfterMs))))
    .returning({ key: loginThrottle.accountKey });
  return rows.length;
}
