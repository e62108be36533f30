import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { UserStore } from "../../../src/accounts/ports.js";
import type { NewSession, SessionStore } from "../../../src/sessions/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { sessions as sessionsTable } from "../../../src/storage/schema.js";
import { backends } from "../../support/databases.js";
import {
  aRefreshToken,
  aSession,
  at,
  DAY,
  HOUR,
  lifetimes,
  MINUTE,
  T0,
  userWithSessions as storedUserWithSessions,
  useStores,
} from "../../support/stores.js";

// The session store (creation, rotation and its reuse grace, the cap,
// listing, revocation), run against every backend like the user store.

for (const backend of backends) {
  describe.skipIf(backend.skip)(`session store contract: ${backend.name}`, () => {
    let database: Database;
    let users: UserStore;
    let sessions: SessionStore;
    useStores(backend.name, (stores) => ({ database, users, sessions } = stores));

    const userWithSessions = (n: number) => storedUserWithSessions({ users, sessions }, n);

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
          expect(result).toEqual({ kind: "rotated", session: { id: sessionId, userId, expiresAt: at(70 * MINUTE), role: "customer", emailVerified: false, authTime: T0, amr: ["pwd"] } });
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
            expect(r).toEqual({ kind: "rotated", session: { id: sessionId, userId, role: "admin", emailVerified: false, expiresAt: at(90 * MINUTE), authTime: T0, amr: ["pwd"] } });
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
  });
}
