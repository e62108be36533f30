import { and, eq, gt, inArray, isNull, ne, or, sql, type SQL } from "drizzle-orm";
import { accountNotFound, emailAlreadyRegistered } from "../accounts/account.js";
import type { RecoveryStore } from "../recovery/ports.js";
import { bytes, pgErrorCode, type Db } from "./db.js";
import { resetStillValid } from "./email-token-store.js";
import { insertOutbox } from "./outbox-store.js";
import { emailTokens, loginThrottle, mfaTotp, passwordCredentials, recoveryCodes, sessions, users } from "./schema.js";

// The RecoveryStore port on PostgreSQL / PGlite: each operation spends its
// token and applies its change in one transaction, so a crash leaves either
// both or neither.

const UNIQUE_VIOLATION = "23505";

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];


async function spend(tx: Tx, tokenId: string, now: Date, condition?: SQL): Promise<boolean> {
  const rows = await tx
    .update(emailTokens)
    .set({ usedAt: now })
    .where(and(eq(emailTokens.id, tokenId), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now), condition))
    .returning({ id: emailTokens.id });
  return rows.length === 1;
}

async function revokeAll(tx: Tx, userId: string, now: Date, reason: string): Promise<string[]> {
  const rows = await tx
    .update(sessions)
    .set({ revokedAt: now, revokeReason: reason })
    .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.map((r) => r.id);
}

async function rethrowTaken<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (pgErrorCode(err) === UNIQUE_VIOLATION) throw emailAlreadyRegistered(err);
    throw err;
  }
}

/** A live undo link names the address: it stays its former account's until the link expires or is used. */
export async function isReserved(tx: Pick<Db, "select">, email: string, now: Date): Promise<boolean> {
  const [row] = await tx
    .select({ id: emailTokens.id })
    .from(emailTokens)
    .where(and(eq(emailTokens.email, email), eq(emailTokens.purpose, "revert_email"), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now)))
    .limit(1);
  return row !== undefined;
}

export function createRecoveryStore(db: Db): RecoveryStore {
  return {
    verifyAddress({ tokenId, userId, email, now, changeNotice }) {
      return rethrowTaken(() =>
        db.transaction(async (tx) => {
          const [user] = await tx.select({ email: users.email, pending: users.pendingEmail }).from(users).where(eq(users.id, userId)).for("update");
          if (!user || !(await spend(tx, tokenId, now))) return { kind: "stale" } as const;
          if (user.email === email) {
            await tx
              .update(users)
              .set({ emailVerifiedAt: sql`coalesce(${users.emailVerifiedAt}, ${now.toISOString()}::timestamptz)` })
              .where(eq(users.id, userId));
            return { kind: "verified", email } as const;
          }
          if (user.pending !== email) return { kind: "stale" } as const;
          await tx.update(users).set({ email, pendingEmail: null, emailVerifiedAt: now, updatedAt: now }).where(eq(users.id, userId));
          // Reset and login links mailed to any other address die with the change.
          await tx
            .update(emailTokens)
            .set({ usedAt: now })
            .where(
              and(
                eq(emailTokens.userId, userId),
                isNull(emailTokens.usedAt),
                inArray(emailTokens.purpose, ["reset_password", "email_login"]),
                ne(emailTokens.email, email),
              ),
            );
          // However long the change waited for its verification, the former
          // address hears of it now, with an undo link of its own.
          await insertOutbox(tx, { ...changeNotice, address: user.email });
          return { kind: "changed", email, previousEmail: user.email } as const;
        }),
      );
    },

    async markVerified({ userId, email, now, distrustedPasswordHash }) {
      const [unverified] = await db
        .select({ id: users.id })
        .from(users)
        .where(and(eq(users.id, userId), eq(users.email, email), isNull(users.emailVerifiedAt)));
      if (!unverified) return undefined;
      // Hashed outside the transaction (argon2 is slow, and needed only here).
      const passwordHash = await distrustedPasswordHash();
      return db.transaction(async (tx) => {
        const flipped = await tx
          .update(users)
          .set({ emailVerifiedAt: now, updatedAt: now })
          .where(and(eq(users.id, userId), eq(users.email, email), isNull(users.emailVerifiedAt)))
          .returning({ id: users.id });
        if (flipped.length === 0) return undefined;
        await tx.update(passwordCredentials).set({ passwordHash, changedAt: now }).where(eq(passwordCredentials.userId, userId));
        return { revokedSessionIds: await revokeAll(tx, userId, now, "address_verified_elsewhere") };
      });
    },

    reserved: (email, now) => isReserved(db, email, now),

    resetPassword({ tokenId, userId, email, passwordHash, throttleKey, now, mail }) {
      return db.transaction(async (tx) => {
        // Checked again as it is spent: a login or password change since the link was found also voids it.
        if (!(await spend(tx, tokenId, now, resetStillValid))) return undefined;
        await tx.update(passwordCredentials).set({ passwordHash, changedAt: now }).where(eq(passwordCredentials.userId, userId));
        await tx.update(users).set({ updatedAt: now }).where(eq(users.id, userId));
        // Following the mail proved the mailbox.
        await tx
          .update(users)
          .set({ emailVerifiedAt: now })
          .where(and(eq(users.id, userId), eq(users.email, email), isNull(users.emailVerifiedAt)));
        const revokedSessionIds = await revokeAll(tx, userId, now, "password_reset");
        await tx.delete(loginThrottle).where(eq(loginThrottle.accountKey, bytes(throttleKey)));
        await insertOutbox(tx, mail);
        return { revokedSessionIds };
      });
    },

    async startEmailChange({ userId, newEmail, now, mails }) {
      await db.transaction(async (tx) => {
        // Checked here and again (by the unique index) when it is verified.
        const [taken] = await tx.select({ id: users.id }).from(users).where(eq(users.email, newEmail)).limit(1);
        if (taken || (await isReserved(tx, newEmail, now))) throw emailAlreadyRegistered();
        const updated = await tx.update(users).set({ pendingEmail: newEmail, updatedAt: now }).where(eq(users.id, userId)).returning({ id: users.id });
        if (updated.length === 0) throw accountNotFound();
        for (const mail of mails) await insertOutbox(tx, mail);
      });
    },

    revertEmail({ tokenId, userId, email, now, mail, since, passwordHash }) {
      return rethrowTaken(() =>
        db.transaction(async (tx) => {
          if (!(await spend(tx, tokenId, now))) return undefined;
          await tx.update(users).set({ email, pendingEmail: null, emailVerifiedAt: now, updatedAt: now }).where(eq(users.id, userId));
          // Every link mailed before the undo dies with it: verifications of
          // the change being undone, and reset and login links that may have
          // gone to the replaced address. So do the undo links of later
          // changes (they would give the account back to whoever made them);
          // those of earlier changes, which went to earlier owners, stay.
          const [spent] = await tx.select({ createdAt: emailTokens.createdAt }).from(emailTokens).where(eq(emailTokens.id, tokenId));
          await tx
            .update(emailTokens)
            .set({ usedAt: now })
            .where(
              and(
                eq(emailTokens.userId, userId),
                isNull(emailTokens.usedAt),
                or(ne(emailTokens.purpose, "revert_email"), gt(emailTokens.createdAt, spent!.createdAt)),
              ),
            );
          // Whoever changed the address may know the password and may have
          // enrolled a second factor since: neither survives the undo.
          await tx.update(passwordCredentials).set({ passwordHash, changedAt: now }).where(eq(passwordCredentials.userId, userId));
          await tx.delete(mfaTotp).where(and(eq(mfaTotp.userId, userId), gt(mfaTotp.createdAt, since)));
          await tx.delete(recoveryCodes).where(and(eq(recoveryCodes.userId, userId), gt(recoveryCodes.createdAt, since)));
          await insertOutbox(tx, mail);
          return { revokedSessionIds: await revokeAll(tx, userId, now, "email_change_reverted") };
        }),
      );
    },
  };
}
