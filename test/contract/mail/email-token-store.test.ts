import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UserStore } from "../../../src/accounts/ports.js";
import { hashMailToken } from "../../../src/mail/mail-secrets.js";
import type { EmailToken, EmailTokenStore, NewEmailToken, TokenPurpose } from "../../../src/mail/ports.js";
import type { SessionStore } from "../../../src/sessions/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { createEmailTokenStore, pruneEmailTokens } from "../../../src/storage/email-token-store.js";
import { emailTokens } from "../../../src/storage/schema.js";
import { createSessionStore } from "../../../src/storage/session-store.js";
import { createUserStore } from "../../../src/storage/user-store.js";
import { backends, openSharedTestDatabase } from "../../support/databases.js";
import { aSession, aUser, at, DAY, fakeHash, HOUR, MINUTE, T0 } from "../../support/stores.js";
import { uniqueEmail } from "../../support/clients.js";

// The tokens mails carry, by SHA-256 (issue, find, latest, consume,
// failCode, countIssued), on PGlite and PostgreSQL; on PostgreSQL the
// concurrent uses come from two pools, as two instances would make them.

interface Issued extends NewEmailToken {
  token: string;
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`e-mail token store contract: ${backend.name}`, () => {
    let database: Database;
    let second: Database | undefined;
    let destroy: (() => Promise<void>) | undefined;
    let store: EmailTokenStore;
    let users: UserStore;
    let sessions: SessionStore;

    beforeAll(async () => {
      ({ database, second, destroy } = await openSharedTestDatabase(backend.name, 8));
      store = createEmailTokenStore(database.db);
      users = createUserStore(database.db);
      sessions = createSessionStore(database.db);
    });
    afterAll(async () => {
      await destroy?.();
    });

    /** A user registered a day before T0 (so its password "changed" then). */
    async function aStoredUser(): Promise<{ id: string; email: string; passwordHash: string }> {
      const u = aUser({ now: at(-DAY) });
      await users.create(u);
      return u;
    }

    function aToken(userId: string, purpose: TokenPurpose, overrides: Partial<NewEmailToken> = {}): Issued {
      const token = randomBytes(32).toString("base64url");
      const createdAt = overrides.createdAt ?? T0;
      return {
        id: uuidv7(createdAt),
        userId,
        purpose,
        tokenHash: hashMailToken(token),
        email: "owner@example.com",
        createdAt,
        expiresAt: new Date(createdAt.getTime() + HOUR),
        ...overrides,
        token,
      };
    }

    async function issued(t: Issued): Promise<Issued> {
      const { token: _token, ...stored } = t;
      await store.issue(stored);
      return t;
    }

    const view = (t: Issued, failedCodes = 0): EmailToken => ({
      id: t.id,
      userId: t.userId,
      purpose: t.purpose,
      email: t.email,
      // Stored bytes come back as a plain Uint8Array (hashMailToken gives a Buffer).
      bindingHash: t.bindingHash && new Uint8Array(t.bindingHash),
      failedCodes,
      createdAt: t.createdAt,
      expiresAt: t.expiresAt,
    });
    const find = (t: Issued, now = T0, purpose = t.purpose) => store.find(t.tokenHash, purpose, now);
    const live = (t: Issued, now = T0) => find(t, now).then((f) => f !== undefined);
    const usedAt = async (id: string) => (await database.db.select({ usedAt: emailTokens.usedAt }).from(emailTokens).where(eq(emailTokens.id, id)))[0]?.usedAt;

    it("reserveCodeAttempt: at most `max` tries, even in parallel; none on a spent or expired token", async () => {
      const user = await aStoredUser();
      const t = await issued(aToken(user.id, "email_login", { email: user.email }));
      const tries = await Promise.all(Array.from({ length: 8 }, () => store.reserveCodeAttempt(t.id, 5, at(MINUTE))));
      expect(tries.filter((n) => n !== undefined).sort()).toEqual([1, 2, 3, 4, 5]);
      await expect(store.reserveCodeAttempt(t.id, 5, at(MINUTE))).resolves.toBeUndefined();
      const spent = await issued(aToken(user.id, "reset_password", { email: user.email }));
      await expect(store.consume(spent.id, at(MINUTE))).resolves.toBe(true);
      await expect(store.reserveCodeAttempt(spent.id, 5, at(MINUTE))).resolves.toBeUndefined();
      const expired = await issued(aToken(user.id, "verify_email", { email: user.email }));
      await expect(store.reserveCodeAttempt(expired.id, 5, at(2 * HOUR))).resolves.toBeUndefined();
    });

    describe("issue", () => {
      it("caps what one address receives, whichever accounts ask (maxToAddress), serialised per address", async () => {
        const target = uniqueEmail("target");
        const cap = { max: 5, windowMs: HOUR, maxToAddress: 3 };
        const accounts = await Promise.all(Array.from({ length: 5 }, () => aStoredUser()));
        const { token: _t, ...first } = aToken(accounts[0]!.id, "verify_email", { email: target, createdAt: at(-10 * MINUTE) });
        await expect(store.issue(first, cap)).resolves.toBe("issued");
        // Four more accounts name the same mailbox at once: two get through.
        const outcomes = await Promise.all(
          accounts.slice(1).map((a, i) => {
            const { token: _x, ...t } = aToken(a.id, "verify_email", { email: target, createdAt: at(-(9 - i) * MINUTE) });
            return store.issue(t, cap);
          }),
        );
        expect(outcomes.filter((o) => o === "issued")).toHaveLength(2);
        expect(outcomes.filter((o) => o === "capped")).toHaveLength(2);
        // A resend of an issued one is not capped.
        await expect(store.issue(first, cap)).resolves.toBe("issued");
        // Another address is not affected; an hour later the first one receives again.
        const { token: _y, ...other } = aToken(accounts[1]!.id, "verify_email", { email: uniqueEmail("other"), createdAt: at(-MINUTE) });
        await expect(store.issue(other, cap)).resolves.not.toBe("capped");
        const { token: _z, ...later } = aToken(accounts[2]!.id, "verify_email", { email: target, createdAt: at(HOUR) });
        await expect(store.issue(later, cap)).resolves.toBe("issued");
      });

      it("stores a token that find returns by its hash, binding included", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "email_login", { email: user.email, bindingHash: hashMailToken("attempt-1") }));
        await expect(find(t)).resolves.toEqual(view(t));
        // Only the SHA-256 is stored.
        const [row] = await database.db.select().from(emailTokens).where(eq(emailTokens.id, t.id));
        expect(Buffer.from(row!.tokenHash).equals(Buffer.from(hashMailToken(t.token)))).toBe(true);
        expect(JSON.stringify(row)).not.toContain(t.token);
      });

      it("is idempotent per id: a resend changes nothing, and does not void a newer token", async () => {
        const user = await aStoredUser();
        const first = await issued(aToken(user.id, "verify_email", { createdAt: at(-10 * MINUTE) }));
        // The same mail sent again (same id: its dispatcher died mid-send), even with other values.
        await store.issue({ ...first, email: "other@example.com", expiresAt: at(DAY), createdAt: at(-MINUTE) });
        await expect(find(first)).resolves.toEqual(view(first));
        const newer = await issued(aToken(user.id, "verify_email", { createdAt: at(-5 * MINUTE) }));
        await expect(live(first)).resolves.toBe(false);
        // And again after a newer mail: the first stays void, the newer stays live.
        await store.issue({ ...first, createdAt: at(-MINUTE) });
        await expect(live(first)).resolves.toBe(false);
        await expect(find(newer)).resolves.toEqual(view(newer));
        const rows = await database.db.select().from(emailTokens).where(eq(emailTokens.userId, user.id));
        expect(rows).toHaveLength(2);
      });

      it("voids only the older unused tokens of the same user and purpose", async () => {
        const user = await aStoredUser();
        const other = await aStoredUser();
        const spent = await issued(aToken(user.id, "reset_password", { createdAt: at(-30 * MINUTE) }));
        await expect(store.consume(spent.id, at(-25 * MINUTE))).resolves.toBe(true);
        const older1 = await issued(aToken(user.id, "reset_password", { createdAt: at(-20 * MINUTE) }));
        const older2 = await issued(aToken(user.id, "reset_password", { createdAt: at(-10 * MINUTE) }));
        const otherPurpose = await issued(aToken(user.id, "email_login", { createdAt: at(-10 * MINUTE) }));
        const otherUser = await issued(aToken(other.id, "reset_password", { createdAt: at(-10 * MINUTE) }));

        const newest = await issued(aToken(user.id, "reset_password", { createdAt: at(-MINUTE) }));
        await expect(live(older1)).resolves.toBe(false);
        await expect(live(older2)).resolves.toBe(false);
        await expect(live(newest)).resolves.toBe(true);
        await expect(live(otherPurpose)).resolves.toBe(true);
        await expect(live(otherUser)).resolves.toBe(true);
        // A used token keeps the time it was used.
        expect(await usedAt(spent.id)).toEqual(at(-25 * MINUTE));
        expect(await usedAt(older2.id)).toEqual(at(-MINUTE));

        // A mail written earlier but composed later (its first attempt failed)
        // voids nothing newer than itself and is void from the start: the
        // newer mail carries the live link (the composer drops the older).
        const late = aToken(user.id, "reset_password", { createdAt: at(-3 * MINUTE) });
        const { token: _token, ...stored } = late;
        await expect(store.issue(stored)).resolves.toBe("superseded");
        await expect(live(newest)).resolves.toBe(true);
        await expect(live(late)).resolves.toBe(false);
        await expect(store.latest(user.id, "reset_password", T0)).resolves.toEqual(view(newest));
        // A resend of either answers as the first issue did, and changes nothing.
        await expect(store.issue(stored)).resolves.toBe("superseded");
        const { token: _t2, ...newestStored } = newest;
        await expect(store.issue(newestStored)).resolves.toBe("issued");
        await expect(live(newest)).resolves.toBe(true);
      });
    });

    describe("find and latest", () => {
      it("find respects purpose, expiry and use", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "verify_email", { createdAt: T0, expiresAt: at(HOUR) }));
        await expect(find(t, T0, "email_login")).resolves.toBeUndefined();
        await expect(find(t, T0, "reset_password")).resolves.toBeUndefined();
        await expect(find(t, at(HOUR - 1))).resolves.toEqual(view(t));
        await expect(find(t, at(HOUR))).resolves.toBeUndefined();
        await expect(store.find(hashMailToken(randomBytes(32).toString("base64url")), "verify_email", T0)).resolves.toBeUndefined();
        await expect(store.consume(t.id, at(MINUTE))).resolves.toBe(true);
        await expect(find(t, at(2 * MINUTE))).resolves.toBeUndefined();
      });

      it("latest is the newest live token of the user and purpose", async () => {
        const user = await aStoredUser();
        await expect(store.latest(user.id, "email_login", T0)).resolves.toBeUndefined();
        const a = await issued(aToken(user.id, "email_login", { createdAt: at(-2 * MINUTE), expiresAt: at(10 * MINUTE) }));
        await issued(aToken(user.id, "verify_email", { createdAt: at(-MINUTE) }));
        await expect(store.latest(user.id, "email_login", T0)).resolves.toEqual(view(a));
        await expect(store.latest(user.id, "email_login", at(10 * MINUTE))).resolves.toBeUndefined();
        await store.consume(a.id, T0);
        await expect(store.latest(user.id, "email_login", T0)).resolves.toBeUndefined();
      });

      it("a reset token is void once the account logs in (a new session) after it was issued", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "reset_password", { createdAt: T0 }));
        // Sessions from before the mail, or from the same instant, leave it alone.
        await sessions.create(aSession(user.id, { now: at(-MINUTE) }));
        await sessions.create(aSession(user.id, { now: T0 }));
        await expect(find(t, at(MINUTE))).resolves.toEqual(view(t));
        await sessions.create(aSession(user.id, { now: at(MINUTE) }));
        await expect(find(t, at(2 * MINUTE))).resolves.toBeUndefined();
        // Another user's login does not matter; nor does a login for a verification token.
        const other = await aStoredUser();
        const theirs = await issued(aToken(other.id, "reset_password", { createdAt: T0 }));
        const verify = await issued(aToken(user.id, "verify_email", { createdAt: T0 }));
        await expect(find(theirs, at(2 * MINUTE))).resolves.toEqual(view(theirs));
        await expect(find(verify, at(2 * MINUTE))).resolves.toEqual(view(verify));
      });

      it("a reset token is void once the password changes after it was issued, but not after a re-hash", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "reset_password", { createdAt: T0 }));
        const rehashed = fakeHash("rehash");
        await expect(users.rehashPassword(user.id, user.passwordHash, rehashed, at(MINUTE))).resolves.toBe(true);
        await expect(find(t, at(MINUTE))).resolves.toEqual(view(t));
        const changed = await users.replacePassword({ userId: user.id, expected: rehashed, next: fakeHash(), now: at(2 * MINUTE), revokeSessions: false, keepSessionId: uuidv7(T0) });
        expect(changed.replaced).toBe(true);
        await expect(find(t, at(3 * MINUTE))).resolves.toBeUndefined();
      });
    });

    describe("consume and failCode", () => {
      it("consume is single use, also under concurrency (two instances on PostgreSQL)", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "email_login"));
        const stores = [store, ...(second ? [createEmailTokenStore(second.db)] : [])];
        const results = await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % stores.length]!.consume(t.id, at(MINUTE))));
        expect(results.filter(Boolean)).toHaveLength(1);
        await expect(find(t, at(MINUTE))).resolves.toBeUndefined();
        await expect(store.consume(t.id, at(2 * MINUTE))).resolves.toBe(false);
      });

      it("consume refuses an expired or unknown token", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "email_login", { expiresAt: at(MINUTE) }));
        await expect(store.consume(t.id, at(MINUTE))).resolves.toBe(false);
        await expect(usedAt(t.id)).resolves.toBeNull();
        await expect(store.consume(uuidv7(T0), T0)).resolves.toBe(false);
      });

      it("failCode counts wrong codes and voids the token at the maximum", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "email_login"));
        await store.failCode(t.id, 3, at(1_000));
        await store.failCode(t.id, 3, at(2_000));
        await expect(find(t, at(3_000))).resolves.toEqual(view(t, 2));
        await store.failCode(t.id, 3, at(3_000));
        await expect(find(t, at(4_000))).resolves.toBeUndefined();
        expect(await usedAt(t.id)).toEqual(at(3_000));
        // Once void, further failures change nothing.
        await store.failCode(t.id, 3, at(5_000));
        const [row] = await database.db.select().from(emailTokens).where(eq(emailTokens.id, t.id));
        expect({ failedCodes: row!.failedCodes, usedAt: row!.usedAt }).toEqual({ failedCodes: 3, usedAt: at(3_000) });
        await expect(store.consume(t.id, at(6_000))).resolves.toBe(false);
      });

      it("concurrent wrong codes are each counted", async () => {
        const user = await aStoredUser();
        const t = await issued(aToken(user.id, "email_login"));
        const stores = [store, ...(second ? [createEmailTokenStore(second.db)] : [])];
        await Promise.all(Array.from({ length: 4 }, (_, i) => stores[i % stores.length]!.failCode(t.id, 5, at(1_000))));
        await expect(find(t, at(2_000))).resolves.toEqual(view(t, 4));
      });
    });

    it("countIssued counts the user's tokens of a purpose created in [since, before), used ones included", async () => {
      const user = await aStoredUser();
      const other = await aStoredUser();
      for (const m of [-61, -60, -30, -1, 0]) await issued(aToken(user.id, "verify_email", { createdAt: at(m * MINUTE) }));
      await issued(aToken(user.id, "reset_password", { createdAt: at(-30 * MINUTE) }));
      await issued(aToken(other.id, "verify_email", { createdAt: at(-30 * MINUTE) }));
      // -61 is before the window, 0 is its (exclusive) end; -60, -30 and -1 count, voided or not.
      await expect(store.countIssued(user.id, "verify_email", at(-HOUR), T0)).resolves.toBe(3);
      await expect(store.countIssued(user.id, "verify_email", at(-HOUR), at(1))).resolves.toBe(4);
      await expect(store.countIssued(user.id, "reset_password", at(-HOUR), T0)).resolves.toBe(1);
      await expect(store.countIssued(user.id, "email_login", at(-HOUR), T0)).resolves.toBe(0);
    });

    it("pruneEmailTokens deletes tokens that expired before the cut-off", async () => {
      const user = await aStoredUser();
      const gone = await issued(aToken(user.id, "verify_email", { createdAt: at(-3 * DAY), expiresAt: at(-2 * DAY) }));
      const kept = await issued(aToken(user.id, "reset_password", { createdAt: at(-2 * DAY), expiresAt: at(-DAY) }));
      await expect(pruneEmailTokens(database.db, at(-DAY))).resolves.toBeGreaterThanOrEqual(1);
      await expect(usedAt(gone.id)).resolves.toBeUndefined();
      const [row] = await database.db.select({ id: emailTokens.id }).from(emailTokens).where(eq(emailTokens.id, kept.id));
      expect(row).toEqual({ id: kept.id });
    });
  });
}
