import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { UserStore } from "../../../src/accounts/ports.js";
import type { LoginAttemptStore } from "../../../src/abuse/ports.js";
import { hashMailToken } from "../../../src/mail/mail-secrets.js";
import { mailEntry } from "../../../src/mail/outbox.js";
import type { EmailTokenStore, OutboxEntry, TokenPurpose } from "../../../src/mail/ports.js";
import type { RecoveryStore } from "../../../src/recovery/ports.js";
import type { SessionStore } from "../../../src/sessions/ports.js";
import { DomainError } from "../../../src/shared/errors.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { createEmailTokenStore } from "../../../src/storage/email-token-store.js";
import { createOutboxStore } from "../../../src/storage/outbox-store.js";
import { createRecoveryStore } from "../../../src/storage/recovery-store.js";
import { emailTokens, loginThrottle, outbox, passwordCredentials, sessions as sessionsTable, users as usersTable } from "../../../src/storage/schema.js";
import { createLoginAttemptStore } from "../../../src/storage/throttle-store.js";
import { uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import { testThrottle } from "../../support/fakes.js";
import { aSession, aUser, at, DAY, fakeHash, HOUR, MINUTE, T0, useStores } from "../../support/stores.js";
import { expectRejected } from "../../support/thrown.js";

// What account recovery and address changes change, each in one
// transaction with the token it spends and the mails it causes: on
// PGlite and PostgreSQL.

for (const backend of backends) {
  describe.skipIf(backend.skip)(`recovery store contract: ${backend.name}`, () => {
    let database: Database;
    let users: UserStore;
    let sessions: SessionStore;
    let tokens: EmailTokenStore;
    let attempts: LoginAttemptStore;
    let recovery: RecoveryStore;
    useStores(backend.name, (stores) => {
      ({ database, users, sessions } = stores);
      tokens = createEmailTokenStore(database.db);
      attempts = createLoginAttemptStore(database.db);
      recovery = createRecoveryStore(database.db);
    });

    async function aStoredUser(email = uniqueEmail()): Promise<{ id: string; email: string; passwordHash: string }> {
      const u = aUser({ email, now: at(-DAY) });
      await users.create(u);
      return u;
    }

    /** A stored token of `purpose` about `email`, issued at `createdAt` (valid for a day). */
    async function aToken(userId: string, purpose: TokenPurpose, email: string, createdAt = T0): Promise<string> {
      const id = uuidv7(createdAt);
      await tokens.issue({ id, userId, purpose, email, tokenHash: hashMailToken(randomBytes(32).toString("base64url")), createdAt, expiresAt: new Date(createdAt.getTime() + DAY) });
      return id;
    }

    const changeNotice = (userId: string, now: Date) => {
      const { address: _address, ...entry } = mailEntry("email_change_notice", now, { userId }, { new_email: "ne***@example.com" });
      return entry;
    };

    async function userRow(id: string) {
      const [r] = await database.db.select().from(usersTable).where(eq(usersTable.id, id));
      return r!;
    }
    const tokenUsedAt = async (id: string) => (await database.db.select({ usedAt: emailTokens.usedAt }).from(emailTokens).where(eq(emailTokens.id, id)))[0]!.usedAt;
    const outboxRow = async (id: string) => (await database.db.select().from(outbox).where(eq(outbox.id, id)))[0];
    const credential = async (userId: string) => (await database.db.select().from(passwordCredentials).where(eq(passwordCredentials.userId, userId)))[0]!;
    const throttleRow = async (key: Uint8Array) => (await database.db.select().from(loginThrottle).where(eq(loginThrottle.accountKey, Buffer.from(key))))[0];
    const activeSessionIds = async (userId: string) =>
      (await database.db.select({ id: sessionsTable.id, revokedAt: sessionsTable.revokedAt }).from(sessionsTable).where(eq(sessionsTable.userId, userId)))
        .filter((s) => s.revokedAt === null)
        .map((s) => s.id)
        .sort();

    async function withSessions(userId: string, n: number, now = at(-HOUR)): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const s = aSession(userId, { now, expiresAt: at(DAY), absoluteExpiresAt: at(2 * DAY) });
        await sessions.create(s);
        ids.push(s.id);
      }
      return ids.sort();
    }

    async function taken(promise: Promise<unknown>): Promise<void> {
      const err = await expectRejected(DomainError, promise);
      expect({ kind: err.kind, reason: err.reason }).toEqual({ kind: "already_exists", reason: "EMAIL_ALREADY_REGISTERED" });
    }

    describe("verifyAddress", () => {
      it("verified: spends the token and marks the account's address verified, keeping the first verification time", async () => {
        const user = await aStoredUser();
        const tokenId = await aToken(user.id, "verify_email", user.email);
        await expect(recovery.verifyAddress({ tokenId, userId: user.id, email: user.email, now: at(MINUTE), changeNotice: changeNotice(user.id, at(MINUTE)) })).resolves.toEqual({ kind: "verified", email: user.email });
        expect(await tokenUsedAt(tokenId)).toEqual(at(MINUTE));
        expect(await userRow(user.id)).toMatchObject({ email: user.email, emailVerifiedAt: at(MINUTE), pendingEmail: null });
        // The same token again: stale. Another one later: verified, the first time kept.
        await expect(recovery.verifyAddress({ tokenId, userId: user.id, email: user.email, now: at(2 * MINUTE), changeNotice: changeNotice(user.id, at(2 * MINUTE)) })).resolves.toEqual({ kind: "stale" });
        const again = await aToken(user.id, "verify_email", user.email, at(2 * MINUTE));
        await expect(recovery.verifyAddress({ tokenId: again, userId: user.id, email: user.email, now: at(3 * MINUTE), changeNotice: changeNotice(user.id, at(3 * MINUTE)) })).resolves.toEqual({ kind: "verified", email: user.email });
        expect((await userRow(user.id)).emailVerifiedAt).toEqual(at(MINUTE));
      });

      it("changed: the verified pending address becomes the account's; the former one gets the notice; links to other addresses die", async () => {
        const user = await aStoredUser();
        const next = uniqueEmail();
        await recovery.startEmailChange({ userId: user.id, newEmail: next, now: T0, mails: [] });
        const tokenId = await aToken(user.id, "verify_email", next);
        await expect(recovery.verifyAddress({ tokenId, userId: user.id, email: next, now: at(MINUTE), changeNotice: changeNotice(user.id, at(MINUTE)) })).resolves.toEqual({
          kind: "changed",
          email: next,
          previousEmail: user.email,
        });
        expect(await userRow(user.id)).toMatchObject({ email: next, pendingEmail: null, emailVerifiedAt: at(MINUTE), updatedAt: at(MINUTE) });
        await expect(users.findCredentialByEmail(next)).resolves.toMatchObject({ userId: user.id, emailVerified: true });
        await expect(users.findCredentialByEmail(user.email)).resolves.toBeUndefined();
        expect(await tokenUsedAt(tokenId)).toEqual(at(MINUTE));
      });

      it("changed, whenever it completes: the former address gets an undo notice in the same transaction, and its reset and login links die", async () => {
        const user = await aStoredUser();
        const next = uniqueEmail();
        const oldReset = await aToken(user.id, "reset_password", user.email);
        const oldLogin = await aToken(user.id, "email_login", user.email);
        await recovery.startEmailChange({ userId: user.id, newEmail: next, now: T0, mails: [] });
        const tokenId = await aToken(user.id, "verify_email", next);
        const notice = changeNotice(user.id, at(MINUTE));
        await recovery.verifyAddress({ tokenId, userId: user.id, email: next, now: at(MINUTE), changeNotice: notice });
        expect(await outboxRow(notice.id)).toMatchObject({ kind: "email_change_notice", userId: user.id, address: user.email, status: "pending" });
        expect(await tokenUsedAt(oldReset)).toEqual(at(MINUTE));
        expect(await tokenUsedAt(oldLogin)).toEqual(at(MINUTE));
      });

      it("stale: a spent, expired or foreign token, or one for an address that is neither the account's nor pending", async () => {
        const user = await aStoredUser();
        const first = uniqueEmail();
        await recovery.startEmailChange({ userId: user.id, newEmail: first, now: T0, mails: [] });
        const forFirst = await aToken(user.id, "verify_email", first);
        // The change is replaced by another before the first link is followed.
        const second = uniqueEmail();
        await recovery.startEmailChange({ userId: user.id, newEmail: second, now: at(MINUTE), mails: [] });
        await expect(recovery.verifyAddress({ tokenId: forFirst, userId: user.id, email: first, now: at(2 * MINUTE), changeNotice: changeNotice(user.id, at(2 * MINUTE)) })).resolves.toEqual({ kind: "stale" });
        expect(await userRow(user.id)).toMatchObject({ email: user.email, pendingEmail: second, emailVerifiedAt: null });

        const expired = await aToken(user.id, "verify_email", user.email, at(-2 * DAY));
        await expect(recovery.verifyAddress({ tokenId: expired, userId: user.id, email: user.email, now: T0, changeNotice: changeNotice(user.id, T0) })).resolves.toEqual({ kind: "stale" });
        const unknownUser = await aToken(user.id, "verify_email", user.email, at(3 * MINUTE));
        await expect(recovery.verifyAddress({ tokenId: unknownUser, userId: uuidv7(T0), email: user.email, now: at(4 * MINUTE), changeNotice: changeNotice(user.id, at(4 * MINUTE)) })).resolves.toEqual({ kind: "stale" });
        await expect(recovery.verifyAddress({ tokenId: uuidv7(T0), userId: user.id, email: user.email, now: at(4 * MINUTE), changeNotice: changeNotice(user.id, at(4 * MINUTE)) })).resolves.toEqual({ kind: "stale" });
        expect(await userRow(user.id)).toMatchObject({ email: user.email, pendingEmail: second, emailVerifiedAt: null });
      });

      it("an address another account took meanwhile: EMAIL_ALREADY_REGISTERED, nothing changed, the token still unspent", async () => {
        const user = await aStoredUser();
        const next = uniqueEmail();
        await recovery.startEmailChange({ userId: user.id, newEmail: next, now: T0, mails: [] });
        const tokenId = await aToken(user.id, "verify_email", next);
        const rival = await aStoredUser(next);
        const before = await userRow(user.id);
        await taken(recovery.verifyAddress({ tokenId, userId: user.id, email: next, now: at(MINUTE), changeNotice: changeNotice(user.id, at(MINUTE)) }));
        expect(await userRow(user.id)).toEqual(before);
        expect(before).toMatchObject({ email: user.email, pendingEmail: next, emailVerifiedAt: null });
        expect(await tokenUsedAt(tokenId)).toBeNull();
        await expect(users.findCredentialByEmail(next)).resolves.toMatchObject({ userId: rival.id });
      });
    });

    it("markVerified verifies the address only while it is still the account's; the first time, the password and sessions of whoever registered it end", async () => {
      const user = await aStoredUser();
      const sessionIds = await withSessions(user.id, 2);
      const distrusted = fakeHash("nobody knows");
      const mark = (email: string, now: Date) => recovery.markVerified({ userId: user.id, email, now, distrustedPasswordHash: async () => distrusted });
      await expect(mark(uniqueEmail(), T0)).resolves.toBeUndefined();
      expect((await userRow(user.id)).emailVerifiedAt).toBeNull();
      const done = await mark(user.email, T0);
      expect(done?.revokedSessionIds.sort()).toEqual(sessionIds);
      expect(await credential(user.id)).toMatchObject({ passwordHash: distrusted, changedAt: T0 });
      expect(await activeSessionIds(user.id)).toEqual([]);
      // Already verified: nothing changes any more.
      await withSessions(user.id, 1);
      await expect(mark(user.email, at(MINUTE))).resolves.toBeUndefined();
      expect((await userRow(user.id)).emailVerifiedAt).toEqual(T0);
      expect(await activeSessionIds(user.id)).toHaveLength(1);
    });

    describe("resetPassword", () => {
      async function resetCase() {
        const user = await aStoredUser();
        const other = await aStoredUser();
        const sessionIds = await withSessions(user.id, 2);
        const [ended] = await withSessions(user.id, 1);
        await sessions.revoke(ended!, at(-30 * MINUTE), "logout");
        const otherSessions = await withSessions(other.id, 1);
        const throttleKey = randomBytes(32);
        const otherKey = randomBytes(32);
        for (let i = 0; i < 3; i++) await attempts.claim(throttleKey, at(-MINUTE), testThrottle);
        await attempts.claim(otherKey, at(-MINUTE), testThrottle);
        const tokenId = await aToken(user.id, "reset_password", user.email);
        return { user, other, sessionIds, ended: ended!, otherSessions, throttleKey, otherKey, tokenId };
      }
      const notice = (userId: string, now: Date): OutboxEntry => mailEntry("security_notice", now, { userId }, { event: "password_reset", ip: "203.0.113.5", at: now.toISOString() });

      it("in one go: the token spent, the hash changed, every session revoked, the throttle count cleared, the notice written", async () => {
        const c = await resetCase();
        const hash = fakeHash("reset");
        const mail = notice(c.user.id, at(MINUTE));
        const done = await recovery.resetPassword({ tokenId: c.tokenId, userId: c.user.id, email: c.user.email, passwordHash: hash, throttleKey: c.throttleKey, now: at(MINUTE), mail });
        // Exactly the sessions that were active.
        expect(done?.revokedSessionIds.sort()).toEqual(c.sessionIds);
        expect(await tokenUsedAt(c.tokenId)).toEqual(at(MINUTE));
        expect(await credential(c.user.id)).toMatchObject({ passwordHash: hash, changedAt: at(MINUTE) });
        expect(await activeSessionIds(c.user.id)).toEqual([]);
        const revoked = await database.db.select().from(sessionsTable).where(eq(sessionsTable.userId, c.user.id));
        for (const s of revoked) {
          if (s.id === c.ended) expect(s).toMatchObject({ revokedAt: at(-30 * MINUTE), revokeReason: "logout" });
          else expect(s).toMatchObject({ revokedAt: at(MINUTE), revokeReason: "password_reset" });
        }
        expect(await throttleRow(c.throttleKey)).toBeUndefined();
        expect(await outboxRow(mail.id)).toMatchObject({ kind: "security_notice", userId: c.user.id, status: "pending", params: mail.params, nextAttemptAt: at(MINUTE) });
        // Following the reset mail proved the mailbox.
        expect(await userRow(c.user.id)).toMatchObject({ emailVerifiedAt: at(MINUTE) });
        // Nobody else's state moved.
        expect(await activeSessionIds(c.other.id)).toEqual(c.otherSessions);
        expect(await throttleRow(c.otherKey)).toMatchObject({ failures: 1 });
        expect(await credential(c.other.id)).toMatchObject({ passwordHash: c.other.passwordHash, changedAt: at(-DAY) });
      });

      it("a spent or expired token changes nothing", async () => {
        const c = await resetCase();
        const first = fakeHash("first");
        await recovery.resetPassword({ tokenId: c.tokenId, userId: c.user.id, email: c.user.email, passwordHash: first, throttleKey: c.throttleKey, now: at(MINUTE), mail: notice(c.user.id, at(MINUTE)) });
        // Afterwards: a new login, new failures.
        const later = await withSessions(c.user.id, 1, at(2 * MINUTE));
        await attempts.claim(c.throttleKey, at(2 * MINUTE), testThrottle);
        const replay = notice(c.user.id, at(3 * MINUTE));
        await expect(
          recovery.resetPassword({ tokenId: c.tokenId, userId: c.user.id, email: c.user.email, passwordHash: fakeHash("second"), throttleKey: c.throttleKey, now: at(3 * MINUTE), mail: replay }),
        ).resolves.toBeUndefined();
        expect(await credential(c.user.id)).toMatchObject({ passwordHash: first, changedAt: at(MINUTE) });
        expect(await activeSessionIds(c.user.id)).toEqual(later);
        expect(await throttleRow(c.throttleKey)).toMatchObject({ failures: 1 });
        expect(await outboxRow(replay.id)).toBeUndefined();
        expect(await tokenUsedAt(c.tokenId)).toEqual(at(MINUTE));

        const expired = await aToken(c.user.id, "reset_password", c.user.email, at(-2 * DAY));
        const late = notice(c.user.id, at(4 * MINUTE));
        await expect(
          recovery.resetPassword({ tokenId: expired, userId: c.user.id, email: c.user.email, passwordHash: fakeHash("third"), throttleKey: c.throttleKey, now: at(4 * MINUTE), mail: late }),
        ).resolves.toBeUndefined();
        expect(await credential(c.user.id)).toMatchObject({ passwordHash: first });
        expect(await activeSessionIds(c.user.id)).toEqual(later);
        expect(await outboxRow(late.id)).toBeUndefined();
      });

      it("is all or nothing: when the notice cannot be written, the token, hash, sessions and throttle count stay as they were", async () => {
        const c = await resetCase();
        // A mail id already in the outbox: the last write of the transaction fails.
        const clash = notice(c.user.id, T0);
        await createOutboxStore(database.db).enqueue(clash);
        const before = await credential(c.user.id);
        await expect(
          recovery.resetPassword({ tokenId: c.tokenId, userId: c.user.id, email: c.user.email, passwordHash: fakeHash("lost"), throttleKey: c.throttleKey, now: at(MINUTE), mail: { ...clash, createdAt: at(MINUTE) } }),
        ).rejects.toThrow();
        expect(await tokenUsedAt(c.tokenId)).toBeNull();
        expect(await credential(c.user.id)).toEqual(before);
        expect(await activeSessionIds(c.user.id)).toEqual(c.sessionIds);
        expect(await throttleRow(c.throttleKey)).toMatchObject({ failures: 3 });
        // The token still works afterwards.
        await expect(
          recovery.resetPassword({ tokenId: c.tokenId, userId: c.user.id, email: c.user.email, passwordHash: fakeHash(), throttleKey: c.throttleKey, now: at(2 * MINUTE), mail: notice(c.user.id, at(2 * MINUTE)) }),
        ).resolves.toBeDefined();
      });
    });

    describe("startEmailChange", () => {
      it("records the pending address and writes the mails with it", async () => {
        const user = await aStoredUser();
        const next = uniqueEmail();
        const mails = [mailEntry("verify_email", T0, { userId: user.id, address: next }), mailEntry("email_change_notice", T0, { userId: user.id, address: user.email }, { new_email: "n***@example.com" })];
        await recovery.startEmailChange({ userId: user.id, newEmail: next, now: T0, mails });
        expect(await userRow(user.id)).toMatchObject({ email: user.email, pendingEmail: next, updatedAt: T0 });
        for (const m of mails) expect(await outboxRow(m.id)).toMatchObject({ kind: m.kind, address: m.address, status: "pending" });
      });

      it("refuses an address another account has: EMAIL_ALREADY_REGISTERED, no pending change, no mail", async () => {
        const user = await aStoredUser();
        const rival = await aStoredUser();
        const earlier = uniqueEmail();
        await recovery.startEmailChange({ userId: user.id, newEmail: earlier, now: T0, mails: [] });
        const before = await userRow(user.id);
        const mails = [mailEntry("verify_email", at(MINUTE), { userId: user.id, address: rival.email })];
        await taken(recovery.startEmailChange({ userId: user.id, newEmail: rival.email, now: at(MINUTE), mails }));
        expect(await userRow(user.id)).toEqual(before);
        expect(before.pendingEmail).toBe(earlier);
        expect(await outboxRow(mails[0]!.id)).toBeUndefined();
      });
    });

    describe("revertEmail", () => {
      /** A user whose address was changed from `original` to `current`, with sessions and a revert token for `original`. */
      async function changedUser() {
        const user = await aStoredUser();
        const current = uniqueEmail();
        await recovery.startEmailChange({ userId: user.id, newEmail: current, now: at(-2 * HOUR), mails: [] });
        const verify = await aToken(user.id, "verify_email", current, at(-2 * HOUR));
        await expect(recovery.verifyAddress({ tokenId: verify, userId: user.id, email: current, now: at(-HOUR), changeNotice: changeNotice(user.id, at(-HOUR)) })).resolves.toMatchObject({ kind: "changed" });
        const revert = await aToken(user.id, "revert_email", user.email, at(-2 * HOUR));
        const sessionIds = await withSessions(user.id, 2, at(-30 * MINUTE));
        return { user, original: user.email, current, revert, sessionIds };
      }

      it("restores the former address (verified), drops a pending change and its links, revokes every session", async () => {
        const c = await changedUser();
        // The attacker who changed the address starts yet another change.
        const another = uniqueEmail();
        await recovery.startEmailChange({ userId: c.user.id, newEmail: another, now: at(-10 * MINUTE), mails: [] });
        const pendingLink = await aToken(c.user.id, "verify_email", another, at(-10 * MINUTE));

        const resetMail = mailEntry("password_reset", T0, { address: c.original });
        const done = await recovery.revertEmail({ tokenId: c.revert, userId: c.user.id, email: c.original, now: T0, mail: resetMail, since: at(-HOUR), passwordHash: fakeHash("nobody knows") });
        expect(done?.revokedSessionIds.sort()).toEqual(c.sessionIds);
        // The owner gets a reset link with the undo, in the same transaction.
        expect(await outboxRow(resetMail.id)).toMatchObject({ kind: "password_reset", address: c.original, status: "pending" });
        expect(await userRow(c.user.id)).toMatchObject({ email: c.original, pendingEmail: null, emailVerifiedAt: T0, updatedAt: T0 });
        expect(await activeSessionIds(c.user.id)).toEqual([]);
        const revoked = await database.db.select().from(sessionsTable).where(and(eq(sessionsTable.userId, c.user.id)));
        for (const s of revoked) expect(s).toMatchObject({ revokedAt: T0, revokeReason: "email_change_reverted" });
        expect(await tokenUsedAt(c.revert)).toEqual(T0);
        expect(await tokenUsedAt(pendingLink)).toEqual(T0);
        await expect(recovery.verifyAddress({ tokenId: pendingLink, userId: c.user.id, email: another, now: at(MINUTE), changeNotice: changeNotice(c.user.id, at(MINUTE)) })).resolves.toEqual({ kind: "stale" });
        // Single use.
        await expect(recovery.revertEmail({ tokenId: c.revert, userId: c.user.id, email: c.original, now: at(MINUTE), mail: mailEntry("password_reset", at(MINUTE), { address: c.original }), since: at(-HOUR), passwordHash: fakeHash() })).resolves.toBeUndefined();
      });

      it("the former address stays reserved while its undo link lives: nobody registers it or changes to it", async () => {
        const c = await changedUser();
        await expect(recovery.reserved(c.original, T0)).resolves.toBe(true);
        expect((await expectRejected(DomainError, users.create(aUser({ email: c.original, now: T0 })))).reason).toBe("EMAIL_ALREADY_REGISTERED");
        const other = await aStoredUser();
        expect((await expectRejected(DomainError, recovery.startEmailChange({ userId: other.id, newEmail: c.original, now: T0, mails: [] }))).reason).toBe(
          "EMAIL_ALREADY_REGISTERED",
        );
        // Once the link is spent (or expired), the address is free again.
        await recovery.revertEmail({ tokenId: c.revert, userId: c.user.id, email: c.original, now: T0, mail: mailEntry("password_reset", T0, { address: c.original }), since: at(-HOUR), passwordHash: fakeHash() });
        await expect(recovery.reserved(c.original, T0)).resolves.toBe(false);
        await expect(recovery.reserved(c.current, T0)).resolves.toBe(false);
      });

      it("refuses when another account holds the former address anyway: EMAIL_ALREADY_REGISTERED, nothing changed", async () => {
        const c = await changedUser();
        // Written behind the stores' back (an account from before reservations existed).
        await database.db.insert(usersTable).values({ id: uuidv7(T0), email: c.original, createdAt: T0, updatedAt: T0 });
        const before = await userRow(c.user.id);
        await taken(recovery.revertEmail({ tokenId: c.revert, userId: c.user.id, email: c.original, now: T0, mail: mailEntry("password_reset", T0, { address: c.original }), since: at(-HOUR), passwordHash: fakeHash() }));
        expect(await userRow(c.user.id)).toEqual(before);
        expect(before.email).toBe(c.current);
        expect(await activeSessionIds(c.user.id)).toEqual(c.sessionIds);
        expect(await tokenUsedAt(c.revert)).toBeNull();
      });
    });
  });
}
