import { and, count, eq, gt, isNotNull, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { MfaStore, TotpRecord } from "../mfa/ports.js";
import { bytes, type Db } from "./db.js";
import { mfaChallenges, mfaTotp, recoveryCodes } from "./schema.js";

// The second-factor port on PostgreSQL / PGlite.
// Rows never leave this file. Every check that guards a secret (a TOTP step,
// a recovery code, a challenge) is decided by one conditional UPDATE, so two
// instances racing with the same code cannot both succeed.

/** Wrong codes a challenge takes before it is dead. */
export const MAX_CHALLENGE_ATTEMPTS = 5;

export function createMfaStore(db: Db): MfaStore {
  const getTotp = db
    .select({
      sealedSecret: mfaTotp.sealedSecret,
      confirmedAt: mfaTotp.confirmedAt,
      lastUsedStep: mfaTotp.lastUsedStep,
      pendingExpiresAt: mfaTotp.pendingExpiresAt,
    })
    .from(mfaTotp)
    .where(eq(mfaTotp.userId, sql.placeholder("userId")))
    .limit(1)
    .prepare("mfa_totp_get");
  // Under READ COMMITTED a second UPDATE of the same row waits for the first
  // and re-checks its WHERE against the new row: of two uses of one step,
  // exactly one returns a row.
  const useStep = db
    .update(mfaTotp)
    .set({ lastUsedStep: sql`${sql.placeholder("step")}::bigint` })
    .where(
      and(
        eq(mfaTotp.userId, sql.placeholder("userId")),
        isNotNull(mfaTotp.confirmedAt),
        or(isNull(mfaTotp.lastUsedStep), lt(mfaTotp.lastUsedStep, sql`${sql.placeholder("step")}::bigint`)),
      ),
    )
    .returning({ userId: mfaTotp.userId })
    .prepare("mfa_totp_use_step");
  const useCode = db
    .update(recoveryCodes)
    .set({ usedAt: sql`${sql.placeholder("now")}::timestamptz` })
    .where(
      and(
        eq(recoveryCodes.userId, sql.placeholder("userId")),
        eq(recoveryCodes.codeHash, sql.placeholder("codeHash")),
        isNull(recoveryCodes.usedAt),
      ),
    )
    .returning({ userId: recoveryCodes.userId })
    .prepare("recovery_codes_use");
  const findChallenge = db
    .select({ userId: mfaChallenges.userId, deviceHash: mfaChallenges.deviceHash, firstFactorAmr: mfaChallenges.firstFactorAmr })
    .from(mfaChallenges)
    .where(
      and(
        eq(mfaChallenges.tokenHash, sql.placeholder("tokenHash")),
        isNull(mfaChallenges.consumedAt),
        gt(mfaChallenges.expiresAt, sql.placeholder("now")),
        lt(mfaChallenges.attempts, MAX_CHALLENGE_ATTEMPTS),
      ),
    )
    .limit(1)
    .prepare("mfa_challenges_find");
  const consumeChallenge = db
    .update(mfaChallenges)
    .set({ consumedAt: sql`${sql.placeholder("now")}::timestamptz` })
    .where(
      and(
        eq(mfaChallenges.tokenHash, sql.placeholder("tokenHash")),
        isNull(mfaChallenges.consumedAt),
        gt(mfaChallenges.expiresAt, sql`${sql.placeholder("now")}::timestamptz`),
        lt(mfaChallenges.attempts, MAX_CHALLENGE_ATTEMPTS),
      ),
    )
    .returning({ userId: mfaChallenges.userId })
    .prepare("mfa_challenges_consume");

  return {
    async getTotp(userId): Promise<TotpRecord | undefined> {
      const [row] = await getTotp.execute({ userId });
      if (!row) return undefined;
      return {
        sealedSecret: row.sealedSecret,
        confirmedAt: row.confirmedAt ?? undefined,
        lastUsedStep: row.lastUsedStep ?? undefined,
        pendingExpiresAt: row.pendingExpiresAt ?? undefined,
      };
    },

    async startTotp({ userId, sealedSecret, now, expiresAt }) {
      const pending = { sealedSecret: bytes(sealedSecret), createdAt: now, pendingExpiresAt: expiresAt, confirmedAt: null, lastUsedStep: null };
      // A confirmed authenticator is never replaced by a new enrolment: the
      // conflict's update is skipped and nothing is returned.
      const rows = await db
        .insert(mfaTotp)
        .values({ userId, ...pending })
        .onConflictDoUpdate({ target: mfaTotp.userId, set: pending, setWhere: isNull(mfaTotp.confirmedAt) })
        .returning({ userId: mfaTotp.userId });
      return rows.length === 1;
    },

    async confirmTotp({ userId, sealedSecret, step, now, codeHashes }) {
      return db.transaction(async (tx) => {
        // The secret must be the one the user was shown: a concurrent
        // restart of the enrolment makes this confirmation void.
        const rows = await tx
          .update(mfaTotp)
          .set({ confirmedAt: now, pendingExpiresAt: null, lastUsedStep: step })
          .where(
            and(
              eq(mfaTotp.userId, userId),
              eq(mfaTotp.sealedSecret, bytes(sealedSecret)),
              isNull(mfaTotp.confirmedAt),
              gt(mfaTotp.pendingExpiresAt, now),
            ),
          )
          .returning({ userId: mfaTotp.userId });
        if (rows.length !== 1) return false;
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
        if (codeHashes.length > 0) {
          await tx.insert(recoveryCodes).values(codeHashes.map((h) => ({ userId, codeHash: bytes(h), createdAt: now })));
        }
        return true;
      });
    },

    async useTotpStep(userId, step) {
      const rows = await useStep.execute({ userId, step });
      return rows.length === 1;
    },

    async resealTotp(userId, expected, next) {
      await db
        .update(mfaTotp)
        .set({ sealedSecret: bytes(next) })
        .where(and(eq(mfaTotp.userId, userId), eq(mfaTotp.sealedSecret, bytes(expected))));
    },

    async disableTotp(userId) {
      return db.transaction(async (tx) => {
        const rows = await tx
          .delete(mfaTotp)
          .where(and(eq(mfaTotp.userId, userId), isNotNull(mfaTotp.confirmedAt)))
          .returning({ userId: mfaTotp.userId });
        if (rows.length !== 1) return false;
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
        return true;
      });
    },

    async useRecoveryCode(userId, codeHash, now) {
      const rows = await useCode.execute({ userId, codeHash: bytes(codeHash), now: now.toISOString() });
      return rows.length === 1;
    },

    async replaceRecoveryCodes(userId, codeHashes, now) {
      await db.transaction(async (tx) => {
        await tx.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId));
        if (codeHashes.length > 0) {
          await tx.insert(recoveryCodes).values(codeHashes.map((h) => ({ userId, codeHash: bytes(h), createdAt: now })));
        }
      });
    },

    async remainingRecoveryCodes(userId) {
      const [row] = await db
        .select({ n: count() })
        .from(recoveryCodes)
        .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)));
      return row?.n ?? 0;
    },

    async createChallenge({ tokenHash, userId, now, expiresAt, deviceHash, firstFactorAmr }) {
      await db.insert(mfaChallenges).values({
        tokenHash: bytes(tokenHash),
        userId,
        deviceHash: deviceHash === undefined ? null : bytes(deviceHash),
        firstFactorAmr: firstFactorAmr && firstFactorAmr.length > 0 ? firstFactorAmr.join(",") : null,
        createdAt: now,
        expiresAt,
      });
    },

    async findChallenge(tokenHash, now) {
      const [row] = await findChallenge.execute({ tokenHash: bytes(tokenHash), now: now.toISOString() });
      if (!row) return undefined;
      const firstFactorAmr = row.firstFactorAmr ? row.firstFactorAmr.split(",") : ["pwd"];
      return row.deviceHash === null ? { userId: row.userId, firstFactorAmr } : { userId: row.userId, deviceHash: row.deviceHash, firstFactorAmr };
    },

    async failChallenge(tokenHash) {
      await db
        .update(mfaChallenges)
        .set({ attempts: sql`${mfaChallenges.attempts} + 1` })
        .where(and(eq(mfaChallenges.tokenHash, bytes(tokenHash)), isNull(mfaChallenges.consumedAt)));
    },

    async consumeChallenge(tokenHash, now) {
      const rows = await consumeChallenge.execute({ tokenHash: bytes(tokenHash), now: now.toISOString() });
      return rows.length === 1;
    },
  };
}

/** Deletes challenges that can no longer be used (expired or consumed by `now`); returns how many. */
export async function pruneExpiredChallenges(db: Db, now: Date): Promise<number> {
  const rows = await db
    .delete(mfaChallenges)
    .where(or(lte(mfaChallenges.expiresAt, now), lte(mfaChallenges.consumedAt, now)))
    .returning({ tokenHash: mfaChallenges.tokenHash });
  return rows.length;
}
