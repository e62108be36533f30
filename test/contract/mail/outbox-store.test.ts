import { eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { OutboxEntry, OutboxMessage, OutboxStore } from "../../../src/mail/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { createOutboxStore } from "../../../src/storage/outbox-store.js";
import { outbox } from "../../../src/storage/schema.js";
import { createUserStore } from "../../../src/storage/user-store.js";
import { uniqueEmail } from "../../support/clients.js";
import { backends, openSharedTestDatabase } from "../../support/databases.js";
import { memoryDispatchOutbox, type OutboxRow } from "../../support/mail-fakes.js";
import { aUser, at, DAY, HOUR, MINUTE, T0 } from "../../support/stores.js";

// The mail outbox (leases, attempts, the transitions out of 'sending',
// backlog and pruning) on PGlite and PostgreSQL, and the memory fake the
// dispatcher's unit tests use, held to the same contract. On PostgreSQL
// the concurrent claims come from two pools, as two instances would make them.

const SECOND = 1_000;

type Peeked = Omit<OutboxRow, "kind" | "params" | "userId" | "createdAt" | "id">;

interface Subject {
  store: OutboxStore;
  /** One store per instance: two pools on PostgreSQL. */
  stores: OutboxStore[];
  peek(id: string): Promise<Peeked | undefined>;
  clear(): Promise<void>;
  /** The id of a stored account (outbox.user_id references users). */
  aUserId(): Promise<string>;
  destroy(): Promise<void>;
}

function sqlSubject(database: Database, second: Database | undefined, destroy: () => Promise<void>): Subject {
  const users = createUserStore(database.db);
  const store = createOutboxStore(database.db);
  return {
    store,
    stores: second ? [store, createOutboxStore(second.db)] : [store],
    async peek(id) {
      const [r] = await database.db.select().from(outbox).where(eq(outbox.id, id));
      if (!r) return undefined;
      return {
        status: r.status as Peeked["status"],
        attempts: r.attempts,
        address: r.address ?? undefined,
        nextAttemptAt: r.nextAttemptAt,
        leaseUntil: r.leaseUntil ?? undefined,
        lastError: r.lastError ?? undefined,
        sentAt: r.sentAt ?? undefined,
      };
    },
    async clear() {
      await database.db.delete(outbox);
    },
    async aUserId() {
      const u = aUser();
      await users.create(u);
      return u.id;
    },
    destroy,
  };
}

function memorySubject(): Subject {
  const store = memoryDispatchOutbox();
  return {
    store,
    stores: [store],
    async peek(id) {
      const r = store.rows.get(id);
      if (!r) return undefined;
      const { status, attempts, address, nextAttemptAt, leaseUntil, lastError, sentAt } = r;
      return { status, attempts, address, nextAttemptAt, leaseUntil, lastError, sentAt };
    },
    async clear() {
      store.rows.clear();
    },
    async aUserId() {
      return uuidv7(T0);
    },
    async destroy() {},
  };
}

const subjects: { name: string; skip: boolean; open(): Promise<Subject> }[] = [
  ...backends.map((b) => ({
    name: b.name,
    skip: b.skip,
    async open() {
      const { database, second, destroy } = await openSharedTestDatabase(b.name, 6);
      return sqlSubject(database, second, destroy);
    },
  })),
  { name: "memory fake", skip: false, open: async () => memorySubject() },
];

/** A mail created at `createdAt` (so due then), to an explicit address. */
function anEntry(createdAt: Date, overrides: Partial<OutboxEntry> = {}): OutboxEntry {
  return { id: uuidv7(createdAt), kind: "password_reset", address: uniqueEmail(), params: { ip: "203.0.113.9", at: createdAt.toISOString() }, createdAt, ...overrides };
}

const asMessage = (e: OutboxEntry, attempts: number): OutboxMessage => ({ ...e, userId: e.userId, attempts });
const ids = (messages: readonly { id: string }[]) => messages.map((m) => m.id);
/** A claim's rows in id (= creation) order: which rows a claim takes is the contract, not the order it lists them in. */
const byId = <T extends { id: string }>(messages: readonly T[]): T[] => [...messages].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));

for (const subject of subjects) {
  describe.skipIf(subject.skip)(`outbox store contract: ${subject.name}`, () => {
    let s: Subject;
    let store: OutboxStore;
    beforeAll(async () => {
      s = await subject.open();
      store = s.store;
    });
    afterAll(async () => {
      await s?.destroy();
    });
    // claim() takes whatever is due in the whole table: every test starts empty.
    beforeEach(async () => {
      await s.clear();
    });

    async function enqueued(...entries: OutboxEntry[]): Promise<OutboxEntry[]> {
      for (const e of entries) await store.enqueue(e);
      return entries;
    }

    async function leased(createdAt = at(-MINUTE), leaseMs = MINUTE): Promise<OutboxEntry> {
      const [e] = await enqueued(anEntry(createdAt));
      expect(ids(await store.claim(T0, 10, leaseMs))).toEqual([e!.id]);
      return e!;
    }

    describe("claim", () => {
      it("leases the due rows only, each as its mail with the attempt counted", async () => {
        const userId = await s.aUserId();
        const [a, b, c, future] = await enqueued(
          anEntry(at(-2 * MINUTE)),
          anEntry(at(-MINUTE), { kind: "verify_email", userId }),
          anEntry(T0, { kind: "security_notice", userId, address: undefined, params: { event: "password_changed" } }),
          anEntry(at(SECOND)),
        );
        const claimed = byId(await store.claim(T0, 10, MINUTE));
        expect(claimed).toEqual([asMessage(a!, 1), asMessage(b!, 1), asMessage(c!, 1)]);
        await expect(s.peek(a!.id)).resolves.toMatchObject({ status: "sending", attempts: 1, leaseUntil: at(MINUTE), address: a!.address });
        await expect(s.peek(future!.id)).resolves.toMatchObject({ status: "pending", attempts: 0, leaseUntil: undefined });
        // Leased rows are not handed out again while the lease runs; the future one is due at its time.
        await expect(store.claim(T0, 10, MINUTE)).resolves.toEqual([]);
        await expect(store.claim(at(SECOND), 10, MINUTE)).resolves.toEqual([asMessage(future!, 1)]);
      });

      it("takes at most `limit` rows, the longest due first, leaving the rest for the next claim", async () => {
        const entries = await enqueued(...[5, 4, 3, 2, 1].map((m) => anEntry(at(-m * MINUTE))));
        const first = await store.claim(T0, 2, MINUTE);
        const second = await store.claim(T0, 2, MINUTE);
        const third = await store.claim(T0, 2, MINUTE);
        expect([first, second, third].map((c) => ids(byId(c)))).toEqual([ids(entries.slice(0, 2)), ids(entries.slice(2, 4)), ids(entries.slice(4))]);
        await expect(store.claim(T0, 2, MINUTE)).resolves.toEqual([]);
      });

      it("re-leases a row whose lease expired (its dispatcher died mid-send), counting another attempt", async () => {
        const e = await leased(at(-MINUTE), MINUTE);
        // Not while the lease runs, nor at the instant it ends.
        await expect(store.claim(at(30 * SECOND), 10, MINUTE)).resolves.toEqual([]);
        await expect(store.claim(at(MINUTE), 10, MINUTE)).resolves.toEqual([]);
        const again = await store.claim(at(MINUTE + 1), 10, 2 * MINUTE);
        expect(again).toEqual([asMessage(e, 2)]);
        await expect(s.peek(e.id)).resolves.toMatchObject({ status: "sending", attempts: 2, leaseUntil: at(3 * MINUTE + 1) });
        // The new lease holds in turn.
        await expect(store.claim(at(2 * MINUTE), 10, MINUTE)).resolves.toEqual([]);
      });

      it("never hands the same row to two concurrent claims (from two instances on PostgreSQL)", async () => {
        for (let round = 0; round < 5; round++) {
          const entries = await enqueued(...Array.from({ length: 12 }, (_, i) => anEntry(at(-(i + 1) * SECOND))));
          const claims = await Promise.all(Array.from({ length: 6 }, (_, i) => s.stores[i % s.stores.length]!.claim(T0, 3, MINUTE)));
          const concurrent = claims.flatMap(ids);
          expect(new Set(concurrent).size, `round ${round}: a row was claimed twice: ${JSON.stringify(claims.map(ids))}`).toBe(concurrent.length);
          // What the concurrent claims left (rows they skipped while locked elsewhere) is still there, once.
          const rest = ids(await store.claim(T0, 100, MINUTE));
          const all = [...concurrent, ...rest];
          expect(all.sort()).toEqual(ids(entries).sort());
          for (const m of claims.flat()) expect(m.attempts).toBe(1);
          await expect(store.backlog()).resolves.toEqual({ pending: 12, dead: 0 });
          await s.clear();
        }
      });
    });

    describe("transitions out of 'sending'", () => {
      it("only the current lease's: a dispatcher whose lease expired and was taken over changes nothing", async () => {
        const e = await leased();
        // The lease (one minute) expires; another dispatcher takes the row: attempt 2.
        await expect(store.claim(at(MINUTE + SECOND), 10, MINUTE)).resolves.toEqual([asMessage(e, 2)]);
        // The first dispatcher's late reports, with its attempt (1).
        await store.retry(e.id, at(HOUR), "late", 1);
        await store.markDead(e.id, at(HOUR), "late", 1);
        await store.markDropped(e.id, at(HOUR), "late", 1);
        await store.markSent(e.id, at(HOUR), 1);
        await expect(s.peek(e.id)).resolves.toMatchObject({ status: "sending", attempts: 2, address: e.address });
        // The current holder's outcome counts.
        await store.markSent(e.id, at(MINUTE + 2 * SECOND), 2);
        await expect(s.peek(e.id)).resolves.toMatchObject({ status: "sent", attempts: 2, sentAt: at(MINUTE + 2 * SECOND) });
      });

      it("retry: back to pending with the error, due again at nextAttemptAt, the next attempt counted", async () => {
        const e = await leased();
        await store.retry(e.id, at(30 * SECOND), "451 try again later");
        await expect(s.peek(e.id)).resolves.toMatchObject({
          status: "pending",
          attempts: 1,
          nextAttemptAt: at(30 * SECOND),
          leaseUntil: undefined,
          lastError: "451 try again later",
          address: e.address,
        });
        await expect(store.claim(at(30 * SECOND - 1), 10, MINUTE)).resolves.toEqual([]);
        await expect(store.claim(at(30 * SECOND), 10, MINUTE)).resolves.toEqual([asMessage(e, 2)]);
      });

      it("markSent: sent, the address forgotten, the error cleared, never claimed again", async () => {
        const e = await leased();
        await store.retry(e.id, T0, "connection refused");
        expect(ids(await store.claim(T0, 10, MINUTE))).toEqual([e.id]);
        await store.markSent(e.id, at(5 * SECOND));
        await expect(s.peek(e.id)).resolves.toMatchObject({
          status: "sent",
          attempts: 2,
          sentAt: at(5 * SECOND),
          address: undefined,
          leaseUntil: undefined,
          lastError: undefined,
        });
        await expect(store.claim(at(DAY), 10, MINUTE)).resolves.toEqual([]);
        await expect(store.backlog()).resolves.toEqual({ pending: 0, dead: 0 });
      });

      it("markDropped: dropped with its reason, the address forgotten", async () => {
        const e = await leased();
        await store.markDropped(e.id, at(SECOND), "no account");
        await expect(s.peek(e.id)).resolves.toMatchObject({ status: "dropped", sentAt: at(SECOND), lastError: "no account", address: undefined, leaseUntil: undefined });
        await expect(store.claim(at(DAY), 10, MINUTE)).resolves.toEqual([]);
      });

      it("markDead: a dead letter with the last error, the address forgotten, counted in the backlog", async () => {
        const e = await leased();
        await store.markDead(e.id, at(SECOND), "451 try again later");
        await expect(s.peek(e.id)).resolves.toMatchObject({ status: "dead", sentAt: at(SECOND), lastError: "451 try again later", address: undefined, leaseUntil: undefined });
        await expect(store.claim(at(DAY), 10, MINUTE)).resolves.toEqual([]);
        await expect(store.backlog()).resolves.toEqual({ pending: 0, dead: 1 });
      });

      it("none applies to a row that is not leased: a pending one, or one another dispatcher finished", async () => {
        const [pending] = await enqueued(anEntry(at(-MINUTE)));
        const before = await s.peek(pending!.id);
        await store.markSent(pending!.id, T0);
        await store.markDead(pending!.id, T0, "x");
        await store.markDropped(pending!.id, T0, "x");
        await store.retry(pending!.id, at(HOUR), "x");
        await expect(s.peek(pending!.id)).resolves.toEqual(before);
        expect(before).toMatchObject({ status: "pending", attempts: 0 });

        // A dispatcher whose lease expired reports late, after the row was sent by another: the row stays sent.
        const [finished] = await store.claim(T0, 10, MINUTE);
        await store.markSent(finished!.id, at(SECOND));
        const sent = await s.peek(finished!.id);
        await store.retry(finished!.id, at(2 * SECOND), "socket timeout");
        await store.markDead(finished!.id, at(2 * SECOND), "socket timeout");
        await store.markDropped(finished!.id, at(2 * SECOND), "no account");
        await expect(s.peek(finished!.id)).resolves.toEqual(sent);
        expect(sent).toMatchObject({ status: "sent" });
        await expect(store.claim(at(DAY), 10, MINUTE)).resolves.toEqual([]);
      });
    });

    it("backlog counts pending and leased rows, and dead letters, but not sent or dropped ones", async () => {
      await expect(store.backlog()).resolves.toEqual({ pending: 0, dead: 0 });
      const [toSend, toDrop, dead1, dead2] = await enqueued(...[7, 6, 5, 4].map((m) => anEntry(at(-m * MINUTE))));
      await store.claim(T0, 4, MINUTE);
      await store.markSent(toSend!.id, T0);
      await store.markDropped(toDrop!.id, T0, "capped");
      await store.markDead(dead1!.id, T0, "e");
      await store.markDead(dead2!.id, T0, "e");
      await enqueued(anEntry(at(-3 * MINUTE)), anEntry(at(-2 * MINUTE)), anEntry(at(HOUR)));
      await store.claim(T0, 1, MINUTE);
      // Two pending (one not yet due), one leased.
      await expect(store.backlog()).resolves.toEqual({ pending: 3, dead: 2 });
    });

    it("prune deletes finished rows created before the cut-off, and never a pending or leased one", async () => {
      const old = await enqueued(...[10, 9, 8, 7, 6].map((d) => anEntry(at(-d * DAY))));
      const recent = await enqueued(anEntry(at(-HOUR)));
      await store.claim(T0, 5, MINUTE);
      const [sent, dropped, dead, leasedOld, pendingOld] = old;
      await store.markSent(sent!.id, T0);
      await store.markDropped(dropped!.id, T0, "no account");
      await store.markDead(dead!.id, T0, "e");
      await store.retry(pendingOld!.id, at(HOUR), "e");
      expect(ids(await store.claim(T0, 5, MINUTE))).toEqual([recent[0]!.id]);
      await store.markSent(recent[0]!.id, T0);

      await expect(store.prune(at(-DAY))).resolves.toBe(3);
      for (const e of [sent, dropped, dead]) await expect(s.peek(e!.id)).resolves.toBeUndefined();
      await expect(s.peek(leasedOld!.id)).resolves.toMatchObject({ status: "sending" });
      await expect(s.peek(pendingOld!.id)).resolves.toMatchObject({ status: "pending" });
      await expect(s.peek(recent[0]!.id)).resolves.toMatchObject({ status: "sent" });
      await expect(store.prune(at(-DAY))).resolves.toBe(0);
      // The cut-off is exclusive: a row created at it stays.
      await expect(store.prune(at(-HOUR))).resolves.toBe(0);
      await expect(store.prune(at(-HOUR + 1))).resolves.toBe(1);
    });
  });
}
