import { randomBytes } from "node:crypto";
import { count, eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { Profile, UserStore } from "../../../src/accounts/ports.js";
import { DomainError } from "../../../src/shared/errors.js";
import type { SessionStore } from "../../../src/sessions/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { loginThrottle, passwordCredentials, profiles, users as usersTable } from "../../../src/storage/schema.js";
import { createLoginAttemptStore } from "../../../src/storage/throttle-store.js";
import { uniqueEmail } from "../../support/clients.js";
import { backends } from "../../support/databases.js";
import {
  at,
  aUser,
  fakeHash,
  MINUTE,
  T0,
  userWithSessions as storedUserWithSessions,
  useStores,
} from "../../support/stores.js";
import { expectRejected } from "../../support/thrown.js";

// The user store (accounts, credentials, roles, profiles, and the password
// changes that end sessions), run against every backend: PGlite always,
// PostgreSQL when it answers (and always in CI). Each test builds its own
// rows with unique e-mails and ids, so tests share a database without
// sharing data.

for (const backend of backends) {
  describe.skipIf(backend.skip)(`user store contract: ${backend.name}`, () => {
    let database: Database;
    let users: UserStore;
    let sessions: SessionStore;
    useStores(backend.name, (stores) => ({ database, users, sessions } = stores));

    const userWithSessions = (n: number) => storedUserWithSessions({ users, sessions }, n);


    async function rowCounts(ids: string[]): Promise<{ users: number; profiles: number; credentials: number }> {
      const db = database.db;
      const [u] = await db.select({ n: count() }).from(usersTable).where(inArray(usersTable.id, ids));
      const [p] = await db.select({ n: count() }).from(profiles).where(inArray(profiles.userId, ids));
      const [c] = await db.select({ n: count() }).from(passwordCredentials).where(inArray(passwordCredentials.userId, ids));
      return { users: Number(u!.n), profiles: Number(p!.n), credentials: Number(c!.n) };
    }

    describe("users", () => {
      it("creates user, profile and credential, and gets them back", async () => {
        const profile: Profile = {
          name: "Renée Lee",
          phoneNumber: "+1 555 0100",
          dateOfBirth: "1990-04-01",
          gender: false,
          address: "1 Main St",
        };
        const input = aUser({ profile });
        const created = await users.create(input);
        expect(created).toEqual({ id: input.id, email: input.email, profile, emailVerified: false, createdAt: T0, updatedAt: T0 });
        await expect(users.get(input.id)).resolves.toEqual(created);
        await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({ userId: input.id, passwordHash: input.passwordHash, role: "customer", emailVerified: false });
        expect(await rowCounts([input.id])).toEqual({ users: 1, profiles: 1, credentials: 1 });
      });

      it("returns an empty profile, with no null fields, for a user created without details", async () => {
        const input = aUser();
        await users.create(input);
        const user = await users.get(input.id);
        expect(user?.profile).toEqual({});
        expect(Object.keys(user!.profile)).toEqual([]);
      });

      it("returns undefined for an unknown user", async () => {
        await expect(users.get(uuidv7(T0))).resolves.toBeUndefined();
        await expect(users.findCredentialByUserId(uuidv7(T0))).resolves.toBeUndefined();
      });

      it("clears the address's login-throttle row (a lock included) with the account, and only when the account is created", async () => {
        const attempts = createLoginAttemptStore(database.db);
        const policy = { freeAttempts: 1, baseDelayMs: 0, maxDelayMs: 0, lockoutThreshold: 3, resetAfterMs: 0 };
        const throttleKey = randomBytes(32);
        const otherKey = randomBytes(32);
        for (let i = 0; i < 3; i++) await attempts.claim(throttleKey, T0, policy);
        await attempts.claim(otherKey, T0, policy);
        expect((await attempts.claim(throttleKey, T0, policy)).kind).toBe("locked");
        const rowOf = async (key: Uint8Array) =>
          (await database.db.select().from(loginThrottle).where(eq(loginThrottle.accountKey, Buffer.from(key)))).length;

        const first = aUser();
        await users.create(first);
        // A duplicate rolls back whole: the throttle row stays.
        await expectRejected(DomainError, users.create(aUser({ email: first.email, throttleKey })));
        expect(await rowOf(throttleKey)).toBe(1);
        await users.create(aUser({ throttleKey }));
        expect(await rowOf(throttleKey)).toBe(0);
        expect(await rowOf(otherKey)).toBe(1);
        expect(await attempts.claim(throttleKey, T0, policy)).toEqual({ kind: "claimed", failuresBefore: 0 });
      });

      it("refuses a duplicate e-mail with EMAIL_ALREADY_REGISTERED and writes nothing for it", async () => {
        const first = aUser();
        await users.create(first);
        const second = aUser({ email: first.email });
        const err = await expectRejected(DomainError, users.create(second));
        expect(err.kind).toBe("already_exists");
        expect(err.reason).toBe("EMAIL_ALREADY_REGISTERED");
        expect(await rowCounts([second.id])).toEqual({ users: 0, profiles: 0, credentials: 0 });
        await expect(users.findCredentialByEmail(first.email)).resolves.toEqual({
          userId: first.id,
          passwordHash: first.passwordHash,
          role: "customer",
          emailVerified: false,
        });
      });

      it("lets exactly one of 10 concurrent registrations of one e-mail succeed, with no half-written rows", async () => {
        const email = uniqueEmail();
        const attempts = Array.from({ length: 10 }, () => aUser({ email, profile: { name: "Racer" } }));
        const outcomes = await Promise.allSettled(attempts.map((u) => users.create(u)));

        const winners = outcomes.flatMap((o, i) => (o.status === "fulfilled" ? [attempts[i]!] : []));
        expect(winners).toHaveLength(1);
        for (const o of outcomes) {
          if (o.status === "rejected") {
            expect(o.reason).toBeInstanceOf(DomainError);
            expect((o.reason as DomainError).reason).toBe("EMAIL_ALREADY_REGISTERED");
          }
        }
        const ids = attempts.map((u) => u.id);
        expect(await rowCounts(ids)).toEqual({ users: 1, profiles: 1, credentials: 1 });
        const [byEmail] = await database.db.select({ n: count() }).from(usersTable).where(eq(usersTable.email, email));
        expect(Number(byEmail!.n)).toBe(1);
        expect(await rowCounts([winners[0]!.id])).toEqual({ users: 1, profiles: 1, credentials: 1 });
        await expect(users.findCredentialByEmail(email)).resolves.toMatchObject({ userId: winners[0]!.id });
      });

      it("finds a credential by e-mail, and nothing for an unknown e-mail", async () => {
        const input = aUser();
        await users.create(input);
        await expect(users.findCredentialByEmail(input.email)).resolves.toEqual({
          userId: input.id,
          passwordHash: input.passwordHash,
          role: "customer",
          emailVerified: false,
        });
        await expect(users.findCredentialByEmail(uniqueEmail())).resolves.toBeUndefined();
      });

      describe("roles", () => {
        it("creates customers; setRole changes the role by e-mail and the credentials carry it", async () => {
          const input = aUser();
          await users.create(input);
          await expect(users.setRole(input.email, "admin", at(MINUTE))).resolves.toBe(input.id);
          await expect(users.findCredentialByEmail(input.email)).resolves.toMatchObject({ role: "admin" });
          await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({
            userId: input.id,
            passwordHash: input.passwordHash,
            role: "admin",
            emailVerified: false,
          });
          await expect(users.get(input.id)).resolves.toMatchObject({ updatedAt: at(MINUTE) });
          await expect(users.setRole(input.email, "customer", at(2 * MINUTE))).resolves.toBe(input.id);
          await expect(users.findCredentialByUserId(input.id)).resolves.toMatchObject({ role: "customer" });
        });

        it("returns undefined for an unknown e-mail", async () => {
          await expect(users.setRole(uniqueEmail(), "admin", T0)).resolves.toBeUndefined();
        });

        it("refuses an unknown role in the database itself (check constraint)", async () => {
          const input = aUser();
          await users.create(input);
          await expect(
            database.db.update(usersTable).set({ role: "root" }).where(eq(usersTable.id, input.id)),
          ).rejects.toThrow();
          await expect(users.findCredentialByUserId(input.id)).resolves.toMatchObject({ role: "customer" });
        });
      });

      describe("rehashPassword (compare-and-set)", () => {
        it("replaces the hash when the expected one is still stored", async () => {
          const input = aUser();
          await users.create(input);
          const next = fakeHash("rehashed");
          await expect(users.rehashPassword(input.id, input.passwordHash, next, at(MINUTE))).resolves.toBe(true);
          await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({ userId: input.id, passwordHash: next, role: "customer", emailVerified: false });
        });

        it("changes nothing and returns false when the expected hash is stale", async () => {
          const input = aUser();
          await users.create(input);
          await expect(users.rehashPassword(input.id, fakeHash("stale"), fakeHash("lost"), at(MINUTE))).resolves.toBe(false);
          await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({ userId: input.id, passwordHash: input.passwordHash, role: "customer", emailVerified: false });
        });

        it("returns false for an unknown user", async () => {
          await expect(users.rehashPassword(uuidv7(T0), fakeHash(), fakeHash(), T0)).resolves.toBe(false);
        });

        it("does not touch another user's credential with the same hash", async () => {
          const shared = fakeHash("shared");
          const a = aUser({ passwordHash: shared });
          const b = aUser({ passwordHash: shared });
          await users.create(a);
          await users.create(b);
          await expect(users.rehashPassword(a.id, shared, fakeHash("a-new"), T0)).resolves.toBe(true);
          await expect(users.findCredentialByUserId(b.id)).resolves.toEqual({ userId: b.id, passwordHash: shared, role: "customer", emailVerified: false });
        });
      });

      describe("replacePassword", () => {
        it("replaces the hash and revokes the other sessions, keeping keepSessionId", async () => {
          const { user, sessionIds } = await userWithSessions(3);
          const [keep, other1, other2] = sessionIds as [string, string, string];
          const bystander = await userWithSessions(1);
          const next = fakeHash("changed");

          const result = await users.replacePassword({
            userId: user.id,
            expected: user.passwordHash,
            next,
            now: at(MINUTE),
            revokeSessions: true,
            keepSessionId: keep,
          });
          expect(result.replaced).toBe(true);
          expect(result.revokedSessionIds).toHaveLength(2);
          await expect(users.findCredentialByUserId(user.id)).resolves.toEqual({ userId: user.id, passwordHash: next, role: "customer", emailVerified: false });
          await expect(sessions.findActive(keep, at(2 * MINUTE))).resolves.toMatchObject({ id: keep });
          await expect(sessions.findActive(other1, at(2 * MINUTE))).resolves.toBeUndefined();
          await expect(sessions.findActive(other2, at(2 * MINUTE))).resolves.toBeUndefined();
          // Another user's sessions are none of its business.
          await expect(sessions.findActive(bystander.sessionIds[0]!, at(2 * MINUTE))).resolves.toBeDefined();
          // The revoked sessions stay revoked: revoking again finds nothing active.
          await expect(sessions.revoke(other1, at(3 * MINUTE), "test")).resolves.toBe(false);
        });

        it("does not count sessions that were already revoked", async () => {
          const { user, sessionIds } = await userWithSessions(3);
          const [keep, revoked, active] = sessionIds as [string, string, string];
          await sessions.revoke(revoked, T0, "logout");
          const result = await users.replacePassword({
            userId: user.id,
            expected: user.passwordHash,
            next: fakeHash(),
            now: at(MINUTE),
            revokeSessions: true,
            keepSessionId: keep,
          });
          expect(result.replaced).toBe(true);
          expect(result.revokedSessionIds).toHaveLength(1);
          await expect(sessions.findActive(active, at(MINUTE))).resolves.toBeUndefined();
        });

        it("revokes none with revokeSessions: false", async () => {
          const { user, sessionIds } = await userWithSessions(3);
          const next = fakeHash("changed");
          const result = await users.replacePassword({
            userId: user.id,
            expected: user.passwordHash,
            next,
            now: at(MINUTE),
            revokeSessions: false,
            keepSessionId: sessionIds[0]!,
          });
          expect(result).toEqual({ replaced: true, revokedSessionIds: [] });
          await expect(users.findCredentialByUserId(user.id)).resolves.toMatchObject({ passwordHash: next });
          for (const id of sessionIds) await expect(sessions.findActive(id, at(MINUTE))).resolves.toBeDefined();
        });

        it("replaces nothing and revokes nothing when the expected hash is stale", async () => {
          const { user, sessionIds } = await userWithSessions(3);
          const result = await users.replacePassword({
            userId: user.id,
            expected: fakeHash("stale"),
            next: fakeHash("lost"),
            now: at(MINUTE),
            revokeSessions: true,
            keepSessionId: sessionIds[0]!,
          });
          expect(result).toEqual({ replaced: false, revokedSessionIds: [] });
          await expect(users.findCredentialByUserId(user.id)).resolves.toEqual({ userId: user.id, passwordHash: user.passwordHash, role: "customer", emailVerified: false });
          for (const id of sessionIds) await expect(sessions.findActive(id, at(MINUTE))).resolves.toBeDefined();
        });

        it("marks the user updated", async () => {
          const { user, sessionIds } = await userWithSessions(1);
          await users.replacePassword({
            userId: user.id,
            expected: user.passwordHash,
            next: fakeHash(),
            now: at(MINUTE),
            revokeSessions: false,
            keepSessionId: sessionIds[0]!,
          });
          await expect(users.get(user.id)).resolves.toMatchObject({ createdAt: T0, updatedAt: at(MINUTE) });
        });
      });

      describe("updateProfile", () => {
        const full: Profile = { name: "Alice", phoneNumber: "+1 555 0101", dateOfBirth: "1990-04-01", gender: true, address: "2 Side St" };

        it("keeps fields the patch leaves undefined", async () => {
          const input = aUser({ profile: full });
          await users.create(input);
          const updated = await users.updateProfile(input.id, { name: "Alice B." }, at(MINUTE));
          expect(updated).toMatchObject({ id: input.id, profile: { ...full, name: "Alice B." }, updatedAt: at(MINUTE), createdAt: T0 });
          await expect(users.get(input.id)).resolves.toEqual(updated);
        });

        it("clears fields the patch sets to null", async () => {
          const input = aUser({ profile: full });
          await users.create(input);
          const updated = await users.updateProfile(input.id, { phoneNumber: null, address: null, gender: null, dateOfBirth: null }, at(MINUTE));
          expect(updated?.profile).toEqual({ name: "Alice" });
          const cleared = await users.updateProfile(input.id, { name: null }, at(2 * MINUTE));
          expect(cleared?.profile).toEqual({});
        });

        it("sets fields that were empty, including gender false", async () => {
          const input = aUser();
          await users.create(input);
          const updated = await users.updateProfile(input.id, { gender: false, dateOfBirth: "2000-02-29" }, at(MINUTE));
          expect(updated?.profile).toEqual({ gender: false, dateOfBirth: "2000-02-29" });
        });

        it("with an empty patch changes only updatedAt", async () => {
          const input = aUser({ profile: full });
          await users.create(input);
          const updated = await users.updateProfile(input.id, {}, at(MINUTE));
          expect(updated).toMatchObject({ profile: full, updatedAt: at(MINUTE) });
        });

        it("returns undefined for an unknown user and creates nothing", async () => {
          const ghost = uuidv7(T0);
          await expect(users.updateProfile(ghost, { name: "Ghost" }, T0)).resolves.toBeUndefined();
          expect(await rowCounts([ghost])).toEqual({ users: 0, profiles: 0, credentials: 0 });
        });
      });
    });

  });
}
