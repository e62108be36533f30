import { randomBytes } from "node:crypto";
import { and, count, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DomainError } from "../../src/shared/errors.js";
import { hashRefreshToken } from "../../src/sessions/refresh-token.js";
import type { AuditLog } from "../../src/audit/ports.js";
import type { NewSession, RoleLifetimes, SessionStore } from "../../src/sessions/ports.js";
import type { NewUser, Profile, UserStore } from "../../src/accounts/ports.js";
import { uuidv7 } from "../../src/shared/uuid.js";
import type { Database } from "../../src/storage/db.js";
import { createKeyStore } from "../../src/storage/key-store.js";
import {
  auditEvents,
  loginThrottle,
  passwordCredentials,
  profiles,
  sessions as sessionsTable,
  signingKeys,
  users as usersTable,
} from "../../src/storage/schema.js";
import { createAuditLog } from "../../src/storage/audit-store.js";
import { createSessionStore } from "../../src/storage/session-store.js";
import { createUserStore } from "../../src/storage/user-store.js";
import type { KeyStore, StoredKey } from "../../src/keys/ports.js";
import { newSigningKey } from "../../src/tokens/key-ring.js";
import { createLoginAttemptStore } from "../../src/storage/throttle-store.js";
import { backends, openTestDatabase } from "../support/databases.js";
import { testBox } from "../support/keys.js";

// One storage suite, run against every backend: PGlite always, PostgreSQL
// when it answers (and always in CI). Each test builds its own rows with
// unique e-mails and ids, so tests share a database without sharing data.

const T0 = new Date("2025-06-15T12:00:00.000Z");
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);

function uniqueEmail(): string {
  return `user-${randomBytes(6).toString("hex")}@example.com`;
}

// The store never parses hashes; a distinct PHC-looking string per call is enough.
function fakeHash(label = randomBytes(4).toString("hex")): string {
  return `$argon2id$v=19$m=8192,t=1,p=1$${randomBytes(16).toString("base64").replace(/=+$/, "")}$${label}`;
}

function aUser(overrides: Partial<NewUser> = {}): NewUser {
  return { id: uuidv7(T0), email: uniqueEmail(), passwordHash: fakeHash(), profile: {}, now: T0, ...overrides };
}

function aRefreshToken(): { token: string; hash: Uint8Array } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: hashRefreshToken(token) };
}

function aSession(userId: string, overrides: Partial<NewSession> = {}): NewSession {
  return {
    id: uuidv7(T0),
    userId,
    refreshTokenHash: aRefreshToken().hash,
    now: T0,
    expiresAt: at(HOUR),
    absoluteExpiresAt: at(DAY),
    client: { ip: "203.0.113.7", userAgent: "contract-test/1.0" },
    authTime: T0,
    amr: ["pwd"],
    maxActiveSessions: 100,
    ...overrides,
  };
}

/** Lifetimes as the rotate port takes them; only the idle ones matter unless a test says otherwise. */
function lifetimes(idleTtlMs = HOUR, admin: Partial<RoleLifetimes["admin"]> = {}): RoleLifetimes {
  return {
    customer: { accessTokenTtlMs: 15 * MINUTE, idleTtlMs, absoluteTtlMs: 365 * DAY },
    admin: { accessTokenTtlMs: 5 * MINUTE, idleTtlMs: 30 * MINUTE, absoluteTtlMs: 12 * HOUR, ...admin },
  };
}

async function domainErrorOf(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    return err as DomainError;
  }
  expect.fail("expected a DomainError");
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`storage contract: ${backend.name}`, () => {
    let database: Database;
    let destroy: (() => Promise<void>) | undefined;
    let users: UserStore;
    let sessions: SessionStore;
    let audit: AuditLog;
    let keys: KeyStore;

    beforeAll(async () => {
      const opened = await openTestDatabase(backend.name);
      database = opened.database;
      destroy = opened.destroy;
      users = createUserStore(database.db);
      sessions = createSessionStore(database.db);
      audit = createAuditLog(database.db);
      keys = createKeyStore(database.db, testBox());
    });

    afterAll(async () => {
      await destroy?.();
    });

    /** A stored user with a session per entry of `sessionOverrides`. */
    async function userWithSessions(n: number): Promise<{ user: NewUser; sessionIds: string[] }> {
      const user = aUser();
      await users.create(user);
      const sessionIds: string[] = [];
      for (let i = 0; i < n; i++) {
        const s = aSession(user.id);
        await sessions.create(s);
        sessionIds.push(s.id);
      }
      return { user, sessionIds };
    }

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
        expect(created).toEqual({ id: input.id, email: input.email, profile, createdAt: T0, updatedAt: T0 });
        await expect(users.get(input.id)).resolves.toEqual(created);
        await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({ userId: input.id, passwordHash: input.passwordHash, role: "customer" });
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
        await domainErrorOf(users.create(aUser({ email: first.email, throttleKey })));
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
        const err = await domainErrorOf(users.create(second));
        expect(err.kind).toBe("already_exists");
        expect(err.reason).toBe("EMAIL_ALREADY_REGISTERED");
        expect(await rowCounts([second.id])).toEqual({ users: 0, profiles: 0, credentials: 0 });
        await expect(users.findCredentialByEmail(first.email)).resolves.toEqual({
          userId: first.id,
          passwordHash: first.passwordHash,
          role: "customer",
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
          await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({ userId: input.id, passwordHash: next, role: "customer" });
        });

        it("changes nothing and returns false when the expected hash is stale", async () => {
          const input = aUser();
          await users.create(input);
          await expect(users.rehashPassword(input.id, fakeHash("stale"), fakeHash("lost"), at(MINUTE))).resolves.toBe(false);
          await expect(users.findCredentialByUserId(input.id)).resolves.toEqual({ userId: input.id, passwordHash: input.passwordHash, role: "customer" });
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
          await expect(users.findCredentialByUserId(b.id)).resolves.toEqual({ userId: b.id, passwordHash: shared, role: "customer" });
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
          await expect(users.findCredentialByUserId(user.id)).resolves.toEqual({ userId: user.id, passwordHash: next, role: "customer" });
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
          await expect(users.findCredentialByUserId(user.id)).resolves.toEqual({ userId: user.id, passwordHash: user.passwordHash, role: "customer" });
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

    describe("sessions", () => {
      it("creates a session that findActive returns until it expires", async () => {
        const { user } = await userWithSessions(0);
        const s = aSession(user.id, { expiresAt: at(HOUR) });
        await sessions.create(s);
        await expect(sessions.findActive(s.id, T0)).resolves.toEqual({ id: s.id, userId: user.id, expiresAt: at(HOUR) });
        await expect(sessions.findActive(s.id, at(HOUR - 1))).resolves.toBeDefined();
        await expect(sessions.findActive(s.id, at(HOUR))).resolves.toBeUndefined();
        await expect(sessions.findActive(s.id, at(2 * HOUR))).resolves.toBeUndefined();
      });

      it("findActive returns undefined for a revoked or unknown session", async () => {
        const { sessionIds } = await userWithSessions(1);
        const id = sessionIds[0]!;
        await expect(sessions.revoke(id, T0, "logout")).resolves.toBe(true);
        await expect(sessions.findActive(id, T0)).resolves.toBeUndefined();
        await expect(sessions.findActive(uuidv7(T0), T0)).resolves.toBeUndefined();
      });

      it("revokes an active session once: the second revoke returns false", async () => {
        const { sessionIds } = await userWithSessions(1);
        await expect(sessions.revoke(sessionIds[0]!, T0, "logout")).resolves.toBe(true);
        await expect(sessions.revoke(sessionIds[0]!, at(MINUTE), "logout")).resolves.toBe(false);
        await expect(sessions.revoke(uuidv7(T0), T0, "logout")).resolves.toBe(false);
      });

      describe("rotate", () => {
        async function sessionWithToken(overrides: Partial<NewSession> = {}) {
          const { user } = await userWithSessions(0);
          const first = aRefreshToken();
          const s = aSession(user.id, { refreshTokenHash: first.hash, ...overrides });
          await sessions.create(s);
          return { userId: user.id, sessionId: s.id, first };
        }

        const rotate = (presented: Uint8Array, next: Uint8Array, now: Date, idleTtlMs = HOUR, reuseGraceMs = 0) =>
          sessions.rotate({
            presented,
            next,
            now,
            lifetimes: lifetimes(idleTtlMs),
            reuseGraceMs,
            client: { ip: "198.51.100.1", userAgent: "rotated/2.0" },
          });

        it("retires the presented token and issues the next, sliding the idle expiry", async () => {
          const { userId, sessionId, first } = await sessionWithToken();
          const second = aRefreshToken();
          const result = await rotate(first.hash, second.hash, at(10 * MINUTE));
          expect(result).toEqual({ kind: "rotated", session: { id: sessionId, userId, expiresAt: at(70 * MINUTE), role: "customer", authTime: T0, amr: ["pwd"] } });
          await expect(sessions.findActive(sessionId, at(65 * MINUTE))).resolves.toMatchObject({ expiresAt: at(70 * MINUTE) });
          // The new token rotates in turn.
          const third = aRefreshToken();
          await expect(rotate(second.hash, third.hash, at(20 * MINUTE))).resolves.toMatchObject({ kind: "rotated" });
        });

        it("treats the superseded token presented again as reuse and revokes the session", async () => {
          const { userId, sessionId, first } = await sessionWithToken();
          const second = aRefreshToken();
          await expect(rotate(first.hash, second.hash, at(MINUTE))).resolves.toMatchObject({ kind: "rotated" });
          await expect(rotate(first.hash, aRefreshToken().hash, at(2 * MINUTE))).resolves.toEqual({ kind: "reused", sessionId, userId });
          await expect(sessions.findActive(sessionId, at(2 * MINUTE))).resolves.toBeUndefined();
          // The legitimate holder's newer token dies with the session.
          await expect(rotate(second.hash, aRefreshToken().hash, at(3 * MINUTE))).resolves.toEqual({ kind: "invalid" });
        });

        it("returns invalid for an unknown token", async () => {
          await expect(rotate(aRefreshToken().hash, aRefreshToken().hash, T0)).resolves.toEqual({ kind: "invalid" });
        });

        it("returns invalid for an expired session, and does not revive it", async () => {
          const { sessionId, first } = await sessionWithToken({ expiresAt: at(HOUR) });
          const next = aRefreshToken();
          await expect(rotate(first.hash, next.hash, at(HOUR))).resolves.toEqual({ kind: "invalid" });
          await expect(rotate(first.hash, next.hash, at(2 * HOUR))).resolves.toEqual({ kind: "invalid" });
          await expect(sessions.findActive(sessionId, at(HOUR - 1))).resolves.toMatchObject({ expiresAt: at(HOUR) });
          // The next token was never stored.
          await expect(rotate(next.hash, aRefreshToken().hash, at(30 * MINUTE))).resolves.toEqual({ kind: "invalid" });
        });

        it("returns invalid for a revoked session", async () => {
          const { sessionId, first } = await sessionWithToken();
          await sessions.revoke(sessionId, T0, "logout");
          await expect(rotate(first.hash, aRefreshToken().hash, at(MINUTE))).resolves.toEqual({ kind: "invalid" });
        });

        it("caps the idle expiry at the absolute expiry", async () => {
          const { sessionId, first } = await sessionWithToken({ expiresAt: at(HOUR), absoluteExpiresAt: at(2 * HOUR) });
          const second = aRefreshToken();
          const result = await rotate(first.hash, second.hash, at(50 * MINUTE), 30 * DAY);
          expect(result).toMatchObject({ kind: "rotated", session: { expiresAt: at(2 * HOUR) } });
          await expect(sessions.findActive(sessionId, at(2 * HOUR - 1))).resolves.toBeDefined();
          await expect(sessions.findActive(sessionId, at(2 * HOUR))).resolves.toBeUndefined();
          await expect(rotate(second.hash, aRefreshToken().hash, at(2 * HOUR))).resolves.toEqual({ kind: "invalid" });
        });

        it("rotates one token exactly once under 10 concurrent presentations", async () => {
          const { sessionId, first } = await sessionWithToken();
          const nexts = Array.from({ length: 10 }, () => aRefreshToken());
          const results = await Promise.all(nexts.map((n) => rotate(first.hash, n.hash, at(MINUTE))));
          const kinds = results.map((r) => r.kind);
          expect(kinds.filter((k) => k === "rotated")).toHaveLength(1);
          expect(kinds.filter((k) => k === "reused" || k === "invalid")).toHaveLength(9);
          if (kinds.includes("reused")) {
            // Reuse ends the session (RFC 9700 §4.14.2).
            await expect(sessions.findActive(sessionId, at(2 * MINUTE))).resolves.toBeUndefined();
          }
          // At most one of the candidate next tokens was ever stored and usable.
          const later = await Promise.all(nexts.map((n) => rotate(n.hash, aRefreshToken().hash, at(3 * MINUTE))));
          expect(later.filter((r) => r.kind === "rotated").length).toBeLessThanOrEqual(1);
        });

        describe("reuse grace window", () => {
          const GRACE = 5_000;

          it("answers superseded, keeping the session, for a token retired less than the grace ago whose successor is unused", async () => {
            const { userId, sessionId, first } = await sessionWithToken();
            const second = aRefreshToken();
            await expect(rotate(first.hash, second.hash, at(MINUTE), HOUR, GRACE)).resolves.toMatchObject({ kind: "rotated" });
            const late = aRefreshToken();
            await expect(rotate(first.hash, late.hash, at(MINUTE + GRACE - 1), HOUR, GRACE)).resolves.toEqual({
              kind: "superseded",
              sessionId,
              userId,
            });
            await expect(sessions.findActive(sessionId, at(2 * MINUTE))).resolves.toBeDefined();
            // Nothing was issued for it, and the successor still works.
            await expect(rotate(late.hash, aRefreshToken().hash, at(2 * MINUTE), HOUR, GRACE)).resolves.toEqual({ kind: "invalid" });
            await expect(rotate(second.hash, aRefreshToken().hash, at(2 * MINUTE), HOUR, GRACE)).resolves.toMatchObject({
              kind: "rotated",
            });
          });

          it("is reuse at the end of the grace window: the session is revoked", async () => {
            const { userId, sessionId, first } = await sessionWithToken();
            await rotate(first.hash, aRefreshToken().hash, at(MINUTE), HOUR, GRACE);
            await expect(rotate(first.hash, aRefreshToken().hash, at(MINUTE + GRACE), HOUR, GRACE)).resolves.toEqual({
              kind: "reused",
              sessionId,
              userId,
            });
            await expect(sessions.findActive(sessionId, at(2 * MINUTE))).resolves.toBeUndefined();
          });

          it("is reuse within the window once the successor has itself been used", async () => {
            const { sessionId, first } = await sessionWithToken();
            const second = aRefreshToken();
            await rotate(first.hash, second.hash, at(MINUTE), HOUR, GRACE);
            await rotate(second.hash, aRefreshToken().hash, at(MINUTE + 1), HOUR, GRACE);
            await expect(rotate(first.hash, aRefreshToken().hash, at(MINUTE + 2), HOUR, GRACE)).resolves.toMatchObject({ kind: "reused" });
            await expect(sessions.findActive(sessionId, at(2 * MINUTE))).resolves.toBeUndefined();
          });

          it("10 concurrent presentations: one rotated, nine superseded, the session lives", async () => {
            const { sessionId, first } = await sessionWithToken();
            const results = await Promise.all(
              Array.from({ length: 10 }, () => rotate(first.hash, aRefreshToken().hash, at(MINUTE), HOUR, GRACE)),
            );
            const kinds = results.map((r) => r.kind).sort();
            expect(kinds).toEqual(["rotated", ...Array<string>(9).fill("superseded")]);
            await expect(sessions.findActive(sessionId, at(2 * MINUTE))).resolves.toBeDefined();
          });
        });

        describe("lifetimes by role", () => {
          it("slides the idle expiry by the user's current role and caps it at the role's absolute lifetime from the login", async () => {
            const { userId, sessionId, first } = await sessionWithToken({ expiresAt: at(DAY), absoluteExpiresAt: at(90 * DAY) });
            const user = await users.get(userId);
            await expect(users.setRole(user!.email, "admin", T0)).resolves.toBe(userId);
            const second = aRefreshToken();
            const r = await sessions.rotate({
              presented: first.hash,
              next: second.hash,
              now: at(HOUR),
              lifetimes: lifetimes(),
              reuseGraceMs: 0,
              client: {},
            });
            expect(r).toEqual({ kind: "rotated", session: { id: sessionId, userId, role: "admin", expiresAt: at(90 * MINUTE), authTime: T0, amr: ["pwd"] } });
            // 12 h after the login the admin session is over, whatever its stored absolute expiry said.
            const third = aRefreshToken();
            const late = await sessions.rotate({
              presented: second.hash,
              next: third.hash,
              now: at(80 * MINUTE),
              lifetimes: lifetimes(HOUR, { idleTtlMs: 24 * HOUR }),
              reuseGraceMs: 0,
              client: {},
            });
            expect(late).toMatchObject({ kind: "rotated", session: { expiresAt: at(12 * HOUR) } });
            await expect(
              sessions.rotate({ presented: third.hash, next: aRefreshToken().hash, now: at(12 * HOUR), lifetimes: lifetimes(), reuseGraceMs: 0, client: {} }),
            ).resolves.toEqual({ kind: "invalid" });
          });

          it("ends a session older than its new role's absolute lifetime at the next refresh", async () => {
            const { userId, sessionId, first } = await sessionWithToken({ expiresAt: at(30 * DAY), absoluteExpiresAt: at(90 * DAY) });
            await users.setRole((await users.get(userId))!.email, "admin", T0);
            await expect(
              sessions.rotate({ presented: first.hash, next: aRefreshToken().hash, now: at(13 * HOUR), lifetimes: lifetimes(), reuseGraceMs: 0, client: {} }),
            ).resolves.toEqual({ kind: "invalid" });
            await expect(sessions.findActive(sessionId, at(13 * HOUR))).resolves.toBeUndefined();
          });
        });
      });

      describe("session cap at create", () => {
        it("revokes the least recently used active sessions beyond the cap, in the same transaction", async () => {
          const { user } = await userWithSessions(0);
          const ids: string[] = [];
          for (let i = 0; i < 3; i++) {
            const s = aSession(user.id, { id: uuidv7(at(i * MINUTE)), now: at(i * MINUTE), maxActiveSessions: 3 });
            await expect(sessions.create(s)).resolves.toEqual({ evictedSessionIds: [] });
            ids.push(s.id);
          }
          // Refreshing the oldest makes the second one the least recently used.
          const tokens = aRefreshToken();
          const first = aSession(user.id, { id: uuidv7(at(10 * MINUTE)), now: at(10 * MINUTE), refreshTokenHash: tokens.hash, maxActiveSessions: 3 });
          await expect(sessions.create(first)).resolves.toEqual({ evictedSessionIds: [ids[0]] });
          await sessions.rotate({
            presented: tokens.hash,
            next: aRefreshToken().hash,
            now: at(11 * MINUTE),
            lifetimes: lifetimes(),
            reuseGraceMs: 0,
            client: {},
          });
          const fourth = aSession(user.id, { id: uuidv7(at(12 * MINUTE)), now: at(12 * MINUTE), maxActiveSessions: 3 });
          await expect(sessions.create(fourth)).resolves.toEqual({ evictedSessionIds: [ids[1]] });
          const active = await sessions.listActive(user.id, at(13 * MINUTE), { limit: 10 });
          expect(active.map((s) => s.id)).toEqual([fourth.id, first.id, ids[2]]);
          const [row] = await database.db.select().from(sessionsTable).where(eq(sessionsTable.id, ids[1]!));
          expect(row).toMatchObject({ revokedAt: at(12 * MINUTE), revokeReason: "session_limit" });
        });

        it("does not count expired or revoked sessions, nor other users' sessions", async () => {
          const { user } = await userWithSessions(0);
          const other = await userWithSessions(3);
          const expired = aSession(user.id, { expiresAt: at(MINUTE) });
          const revoked = aSession(user.id);
          await sessions.create(expired);
          await sessions.create(revoked);
          await sessions.revoke(revoked.id, T0, "logout");
          const kept = aSession(user.id);
          await sessions.create(kept);
          const next = aSession(user.id, { id: uuidv7(at(HOUR)), now: at(2 * MINUTE), maxActiveSessions: 2 });
          await expect(sessions.create(next)).resolves.toEqual({ evictedSessionIds: [] });
          expect(await sessions.listActive(other.user.id, at(2 * MINUTE), { limit: 10 })).toHaveLength(3);
        });

        it("holds under 8 concurrent creates for one user: never more active sessions than the cap", async () => {
          const { user } = await userWithSessions(0);
          const results = await Promise.all(
            Array.from({ length: 8 }, (_, i) => sessions.create(aSession(user.id, { id: uuidv7(at(i)), now: at(i), maxActiveSessions: 3 }))),
          );
          expect(results.flatMap((r) => r.evictedSessionIds)).toHaveLength(5);
          expect(await sessions.listActive(user.id, at(MINUTE), { limit: 10 })).toHaveLength(3);
        });
      });

      describe("listActive", () => {
        it("lists the user's active sessions newest first with their client details, and pages by id", async () => {
          const { user } = await userWithSessions(0);
          const ids: string[] = [];
          for (let i = 0; i < 5; i++) {
            const s = aSession(user.id, { id: uuidv7(at(i * MINUTE)), now: at(i * MINUTE), client: { ip: `203.0.113.${i}` } });
            await sessions.create(s);
            ids.push(s.id);
          }
          await sessions.revoke(ids[3]!, at(5 * MINUTE), "logout");
          const all = await sessions.listActive(user.id, at(6 * MINUTE), { limit: 10 });
          expect(all.map((s) => s.id)).toEqual([ids[4], ids[2], ids[1], ids[0]]);
          expect(all[0]).toEqual({
            id: ids[4],
            createdAt: at(4 * MINUTE),
            lastUsedAt: at(4 * MINUTE),
            expiresAt: at(HOUR),
            ip: "203.0.113.4",
          });
          const page1 = await sessions.listActive(user.id, at(6 * MINUTE), { limit: 2 });
          expect(page1.map((s) => s.id)).toEqual([ids[4], ids[2]]);
          const page2 = await sessions.listActive(user.id, at(6 * MINUTE), { limit: 2, before: ids[2] });
          expect(page2.map((s) => s.id)).toEqual([ids[1], ids[0]]);
          // Expired ones are gone too.
          expect(await sessions.listActive(user.id, at(HOUR), { limit: 10 })).toEqual([]);
        });
      });

      describe("revokeOfUser and revokeOthersOfUser", () => {
        it("revokes only the user's own active session", async () => {
          const a = await userWithSessions(2);
          const b = await userWithSessions(1);
          const input = (userId: string, sessionId: string) => ({ userId, sessionId, now: at(MINUTE), reason: "user_revoke" });
          await expect(sessions.revokeOfUser(input(a.user.id, b.sessionIds[0]!))).resolves.toBe(false);
          await expect(sessions.findActive(b.sessionIds[0]!, at(MINUTE))).resolves.toBeDefined();
          await expect(sessions.revokeOfUser(input(a.user.id, uuidv7(T0)))).resolves.toBe(false);
          await expect(sessions.revokeOfUser(input(a.user.id, a.sessionIds[0]!))).resolves.toBe(true);
          await expect(sessions.revokeOfUser(input(a.user.id, a.sessionIds[0]!))).resolves.toBe(false);
          await expect(sessions.findActive(a.sessionIds[0]!, at(MINUTE))).resolves.toBeUndefined();
          await expect(sessions.findActive(a.sessionIds[1]!, at(MINUTE))).resolves.toBeDefined();
          const [row] = await database.db.select().from(sessionsTable).where(eq(sessionsTable.id, a.sessionIds[0]!));
          expect(row).toMatchObject({ revokedAt: at(MINUTE), revokeReason: "user_revoke" });
        });

        it("refuses an expired session", async () => {
          const { user } = await userWithSessions(0);
          const s = aSession(user.id, { expiresAt: at(MINUTE) });
          await sessions.create(s);
          await expect(sessions.revokeOfUser({ userId: user.id, sessionId: s.id, now: at(MINUTE), reason: "user_revoke" })).resolves.toBe(false);
        });

        it("revokes all the user's other active sessions and returns their ids", async () => {
          const a = await userWithSessions(4);
          const b = await userWithSessions(1);
          await sessions.revoke(a.sessionIds[3]!, T0, "logout");
          const revoked = await sessions.revokeOthersOfUser({ userId: a.user.id, keepSessionId: a.sessionIds[0]!, now: at(MINUTE), reason: "user_revoke_others" });
          expect(revoked.sort()).toEqual([a.sessionIds[1], a.sessionIds[2]].sort());
          await expect(sessions.findActive(a.sessionIds[0]!, at(MINUTE))).resolves.toBeDefined();
          await expect(sessions.findActive(b.sessionIds[0]!, at(MINUTE))).resolves.toBeDefined();
          await expect(
            sessions.revokeOthersOfUser({ userId: a.user.id, keepSessionId: a.sessionIds[0]!, now: at(MINUTE), reason: "user_revoke_others" }),
          ).resolves.toEqual([]);
        });
      });
    });

    describe("audit log", () => {
      async function recorded(requestId: string) {
        return database.db.select().from(auditEvents).where(eq(auditEvents.requestId, requestId));
      }

      it("inserts one row per event with every field", async () => {
        const requestId = `req-${randomBytes(6).toString("hex")}`;
        const userId = uuidv7(T0);
        const sessionId = uuidv7(T0);
        await audit.record({
          type: "login",
          outcome: "failure",
          reason: "INVALID_CREDENTIALS",
          userId,
          sessionId,
          client: { ip: "203.0.113.7", userAgent: "audit-test" },
          requestId,
          at: T0,
        });
        const rows = await recorded(requestId);
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({
          occurredAt: T0,
          eventType: "login",
          outcome: "failure",
          reason: "INVALID_CREDENTIALS",
          userId,
          sessionId,
          ip: "203.0.113.7",
          userAgent: "audit-test",
          requestId,
        });
      });

      it("stores absent optional fields as null, for a user that does not exist (no foreign key)", async () => {
        const requestId = `req-${randomBytes(6).toString("hex")}`;
        await audit.record({ type: "register", outcome: "success", client: {}, requestId, at: T0 });
        await audit.record({ type: "register", outcome: "success", userId: uuidv7(T0), client: {}, requestId, at: T0 });
        const rows = await recorded(requestId);
        expect(rows).toHaveLength(2);
        expect(rows[0]).toMatchObject({ reason: null, ip: null, userAgent: null });
      });

      it("refuses UPDATE, DELETE and TRUNCATE: the trail is append-only", async () => {
        const requestId = `req-${randomBytes(6).toString("hex")}`;
        await audit.record({ type: "logout", outcome: "success", client: {}, requestId, at: T0 });
        const db = database.db;
        await expect(db.update(auditEvents).set({ outcome: "failure" }).where(eq(auditEvents.requestId, requestId))).rejects.toThrow();
        await expect(db.delete(auditEvents).where(eq(auditEvents.requestId, requestId))).rejects.toThrow();
        await expect(db.execute(sql`truncate table audit_events`)).rejects.toThrow();
        const rows = await recorded(requestId);
        expect(rows).toHaveLength(1);
        expect(rows[0]!.outcome).toBe("success");
      });
    });

    describe("key store", () => {
      async function key(activatesAt: Date, retiresAt: Date | null = null): Promise<StoredKey> {
        const k = await newSigningKey(activatesAt);
        return { ...k, retiresAt };
      }

      it("lists usable keys newest first, excluding retired ones, with their JWKs intact", async () => {
        const oldest = await key(at(-3 * DAY));
        const retired = await key(at(-2 * DAY), at(-DAY));
        const retiringNow = await key(at(-36 * HOUR), T0);
        const retiringLater = await key(at(-DAY), at(DAY));
        const newest = await key(at(-HOUR));
        const future = await key(at(HOUR));
        for (const k of [retiringLater, oldest, future, retired, newest, retiringNow]) await keys.insert(k);

        const mine = new Set([oldest, retired, retiringNow, retiringLater, newest, future].map((k) => k.kid));
        const listed = (await keys.listUsable(T0)).filter((k) => mine.has(k.kid));
        expect(listed.map((k) => k.kid)).toEqual([future.kid, newest.kid, retiringLater.kid, oldest.kid]);
        expect(listed[0]).toEqual(future);
        expect(listed[2]).toEqual(retiringLater);
        for (const k of listed) {
          expect(k.publicJwk).not.toHaveProperty("d");
          expect(k.privateJwk).toHaveProperty("d");
        }
        // Once `retiringLater` retires it drops out too.
        const afterwards = (await keys.listUsable(at(2 * DAY))).filter((k) => mine.has(k.kid));
        expect(afterwards.map((k) => k.kid)).toEqual([future.kid, newest.kid, oldest.kid]);
      });

      it("ignores a second insert of an existing kid", async () => {
        const original = await key(at(-HOUR));
        await keys.insert(original);
        await expect(keys.insert({ ...original, activatesAt: at(HOUR), alg: "RS256" })).resolves.toBeUndefined();
        const listed = (await keys.listUsable(T0)).filter((k) => k.kid === original.kid);
        expect(listed).toEqual([original]);
      });

      it("stores the public JWK as a JSON object, not as a JSON string, and the private one only sealed", async () => {
        const k = await key(at(-HOUR));
        await keys.insert(k);
        const rows = await database.db
          .select({
            publicType: sql<string>`jsonb_typeof(${signingKeys.publicJwk})`,
            privateType: sql<string | null>`jsonb_typeof(${signingKeys.privateJwk})`,
            kty: sql<string>`${signingKeys.publicJwk} ->> 'kty'`,
            sealed: sql<boolean>`${signingKeys.sealedPrivateJwk} is not null`,
          })
          .from(signingKeys)
          .where(and(eq(signingKeys.kid, k.kid)));
        expect(rows).toEqual([{ publicType: "object", privateType: null, kty: "OKP", sealed: true }]);
      });
    });
  });
}
