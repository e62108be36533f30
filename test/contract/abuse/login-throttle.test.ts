import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ThrottlePolicy } from "../../../src/abuse/policies.js";
import type { AttemptClaim, LoginAttemptStore } from "../../../src/abuse/ports.js";
import type { Database, Db } from "../../../src/storage/db.js";
import { createLoginAttemptStore, pruneLoginThrottle } from "../../../src/storage/throttle-store.js";
import { createMemoryAttemptStore } from "../../support/fakes.js";
import { backends, openSharedTestDatabase } from "../../support/databases.js";

// The per-account attempt counter of PostgreSQL/PGlite against the memory
// fake the unit tests use: the same answers for the same history (so the
// unit tests prove something about production), and the one-statement
// claim holding under concurrency (exactly the free attempts, then waits).

const T0 = Date.parse("2026-03-01T10:00:00.000Z");
const SECOND = 1_000;
const MINUTE = 60_000;

const policy: ThrottlePolicy = { freeAttempts: 3, baseDelayMs: 1_000, maxDelayMs: 4_000, lockoutThreshold: 10, resetAfterMs: 10 * MINUTE };

type Op =
  | { op: "claim"; at: number; policy?: ThrottlePolicy }
  | { op: "clear" }
  | { op: "unlock" };
type Outcome = AttemptClaim | { clearedFailures: number; wasLocked: boolean } | "cleared";

async function run(store: LoginAttemptStore, key: Uint8Array, ops: readonly Op[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const o of ops) {
    if (o.op === "claim") out.push(await store.claim(key, new Date(T0 + o.at), o.policy ?? policy));
    else if (o.op === "clear") out.push((await store.clear(key), "cleared"));
    else out.push(await store.unlock(key));
  }
  return out;
}

const claim = (at: number, p?: ThrottlePolicy): Op => ({ op: "claim", at, ...(p ? { policy: p } : {}) });
const claimed = (failuresBefore: number): AttemptClaim => ({ kind: "claimed", failuresBefore });
const throttled = (failures: number, retryAfterMs: number): AttemptClaim => ({ kind: "throttled", failures, retryAfterMs });
const locked = (failures: number): AttemptClaim => ({ kind: "locked", failures });

// Scenarios with the answers spelled out: both stores must give exactly these.
const scenarios: { name: string; steps: [Op, Outcome][] }[] = [
  {
    name: "free attempts, then doubling waits (to the cap), measured from the previous counted attempt",
    steps: [
      [claim(0), claimed(0)],
      [claim(0), claimed(1)],
      [claim(0), claimed(2)],
      [claim(0), throttled(3, 1_000)],
      [claim(999), throttled(3, 1)],
      [claim(1_000), claimed(3)],
      [claim(2_000), throttled(4, 1_000)],
      [claim(3_000), claimed(4)],
      [claim(6_999), throttled(5, 1)],
      [claim(7_000), claimed(5)],
      // 4 s is the cap: 8 s would be next without it.
      [claim(10_999), throttled(6, 1)],
      [claim(11_000), claimed(6)],
      [claim(15_000), claimed(7)],
    ],
  },
  {
    name: "lockout at the threshold: locked whatever the wait, until an unlock",
    steps: [
      ...Array.from({ length: 10 }, (_, i): [Op, Outcome] => [claim(i * 4 * SECOND), claimed(i)]),
      [claim(60 * SECOND), locked(10)],
      // Longer than the quiet reset: a lock is never forgotten.
      [claim(60 * MINUTE), locked(10)],
      [{ op: "unlock" }, { clearedFailures: 10, wasLocked: true }],
      [claim(60 * MINUTE), claimed(0)],
      [{ op: "unlock" }, { clearedFailures: 1, wasLocked: false }],
      [{ op: "unlock" }, { clearedFailures: 0, wasLocked: false }],
    ],
  },
  {
    name: "clear (a success) starts the count again; clearing an unknown key is harmless",
    steps: [
      [{ op: "clear" }, "cleared"],
      [claim(0), claimed(0)],
      [claim(0), claimed(1)],
      [claim(0), claimed(2)],
      [claim(0), throttled(3, 1_000)],
      [{ op: "clear" }, "cleared"],
      [claim(0), claimed(0)],
      [claim(0), claimed(1)],
    ],
  },
  {
    name: "failures are forgotten resetAfterMs after the last one, not before",
    steps: [
      [claim(0), claimed(0)],
      [claim(0), claimed(1)],
      [claim(0), claimed(2)],
      [claim(0), throttled(3, 1_000)],
      [claim(10 * MINUTE - 1), claimed(3)],
      [claim(20 * MINUTE - 1), claimed(0)],
      [claim(20 * MINUTE - 1), claimed(1)],
    ],
  },
  {
    name: "resetAfterMs 0 never forgets",
    steps: [
      [claim(0, { ...policy, resetAfterMs: 0 }), claimed(0)],
      [claim(0, { ...policy, resetAfterMs: 0 }), claimed(1)],
      [claim(0, { ...policy, resetAfterMs: 0 }), claimed(2)],
      [claim(365 * 24 * 60 * MINUTE, { ...policy, resetAfterMs: 0 }), claimed(3)],
      [claim(365 * 24 * 60 * MINUTE, { ...policy, resetAfterMs: 0 }), throttled(4, 2_000)],
    ],
  },
  {
    name: "no wait at all with a zero base delay, still locked at the threshold",
    steps: [
      ...Array.from({ length: 10 }, (_, i): [Op, Outcome] => [claim(0, { ...policy, baseDelayMs: 0 }), claimed(i)]),
      [claim(0, { ...policy, baseDelayMs: 0 }), locked(10)],
    ],
  },
];

/** A reproducible pseudo-random history (mulberry32). */
function randomHistory(seed: number, length: number): Op[] {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
  const ops: Op[] = [];
  let at = 0;
  for (let i = 0; i < length; i++) {
    const r = next();
    if (r < 0.03) ops.push({ op: "clear" });
    else if (r < 0.05) ops.push({ op: "unlock" });
    else {
      // Mostly small steps around the waits, sometimes past the quiet reset.
      const step = next() < 0.05 ? 10 * MINUTE + Math.floor(next() * 1_000) - 500 : Math.floor(next() * 5_000);
      at += step;
      ops.push(claim(at));
    }
  }
  return ops;
}

describe.each(backends)("login attempt store ($name)", ({ name, skip }) => {
  describe.skipIf(skip)("SQL claims against the memory fake, concurrency", () => {
    let database: Database;
    let second: Database | undefined;
    let destroy: (() => Promise<void>) | undefined;
    let sql: LoginAttemptStore;

    beforeAll(async () => {
      ({ database, second, destroy } = await openSharedTestDatabase(name, 8));
      sql = createLoginAttemptStore(database.db);
    });
    afterAll(async () => {
      await destroy?.();
    });

    /** Every instance's db (two pools on PostgreSQL, the one PGlite otherwise). */
    const dbs = (): Db[] => (second ? [database.db, second.db] : [database.db]);

    for (const scenario of scenarios) {
      it(`${scenario.name}: the stated answers, from SQL and from the memory fake alike`, async () => {
        const ops = scenario.steps.map(([op]) => op);
        const expected = scenario.steps.map(([, outcome]) => outcome);
        const key = randomBytes(32);
        await expect(run(sql, key, ops)).resolves.toEqual(expected);
        await expect(run(createMemoryAttemptStore(), key, ops)).resolves.toEqual(expected);
      });
    }

    it("random histories of claims, clears and unlocks: SQL answers exactly as the memory fake", async () => {
      const kinds = new Set<string>();
      for (const seed of [1, 2, 3, 42]) {
        const ops = randomHistory(seed, 120);
        const key = randomBytes(32);
        const [fromSql, fromMemory] = [await run(sql, key, ops), await run(createMemoryAttemptStore(), key, ops)];
        expect({ seed, outcomes: fromSql }).toEqual({ seed, outcomes: fromMemory });
        for (const o of fromSql) kinds.add(typeof o === "object" && "kind" in o ? o.kind : "other");
      }
      // The histories reach every kind of answer.
      expect(kinds).toEqual(new Set(["claimed", "throttled", "locked", "other"]));
    });

    it("keys are independent", async () => {
      const [a, b] = [randomBytes(32), randomBytes(32)];
      for (let i = 0; i < 3; i++) await sql.claim(a, new Date(T0), policy);
      await expect(sql.claim(a, new Date(T0), policy)).resolves.toMatchObject({ kind: "throttled" });
      await expect(sql.claim(b, new Date(T0), policy)).resolves.toEqual(claimed(0));
      await sql.clear(b);
      await expect(sql.claim(a, new Date(T0), policy)).resolves.toMatchObject({ kind: "throttled" });
    });

    it("30 concurrent claims on a fresh key (two instances on PostgreSQL): exactly the free attempts are claimed", async () => {
      const p: ThrottlePolicy = { ...policy, freeAttempts: 5, lockoutThreshold: 100 };
      const key = randomBytes(32);
      const stores = dbs().map(createLoginAttemptStore);
      const now = new Date(T0);
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => stores[i % stores.length]!.claim(key, now, p)));
      const won = results.filter((r): r is Extract<AttemptClaim, { kind: "claimed" }> => r.kind === "claimed");
      expect(won.map((r) => r.failuresBefore).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4]);
      expect(results.filter((r) => r.kind === "throttled")).toHaveLength(25);
      for (const r of results) if (r.kind === "throttled") expect(r).toEqual(throttled(5, 1_000));
      // One wait later, again exactly one of many gets through.
      const later = new Date(T0 + 1_000);
      const again = await Promise.all(Array.from({ length: 10 }, (_, i) => stores[i % stores.length]!.claim(key, later, p)));
      expect(again.filter((r) => r.kind === "claimed")).toEqual([claimed(5)]);
    });

    it("concurrent claims at the lockout threshold lock exactly once", async () => {
      const p: ThrottlePolicy = { ...policy, baseDelayMs: 0, lockoutThreshold: 10 };
      const key = randomBytes(32);
      const stores = dbs().map(createLoginAttemptStore);
      const results = await Promise.all(Array.from({ length: 25 }, (_, i) => stores[i % stores.length]!.claim(key, new Date(T0), p)));
      expect(results.filter((r) => r.kind === "claimed")).toHaveLength(10);
      expect(results.filter((r) => r.kind === "locked")).toEqual(Array.from({ length: 15 }, () => locked(10)));
      await expect(sql.unlock(key)).resolves.toEqual({ clearedFailures: 10, wasLocked: true });
    });

    it("pruning deletes forgotten counts but keeps recent ones and every lock", async () => {
      const sql = createLoginAttemptStore(database.db);
      const [old, recent, lockedKey] = [randomBytes(32), randomBytes(32), randomBytes(32)];
      await sql.claim(old, new Date(T0), policy);
      for (let i = 0; i < policy.lockoutThreshold; i++) await sql.claim(lockedKey, new Date(T0 + i * policy.maxDelayMs), policy);
      await sql.claim(recent, new Date(T0 + 15 * MINUTE), policy);
      const now = new Date(T0 + 20 * MINUTE);
      await expect(pruneLoginThrottle(database.db, now, policy)).resolves.toBeGreaterThanOrEqual(1);
      // The forgotten one starts from scratch, the recent one still counts, the lock holds.
      await expect(sql.claim(old, now, policy)).resolves.toEqual(claimed(0));
      await expect(sql.claim(recent, now, policy)).resolves.toEqual(claimed(1));
      await expect(sql.claim(lockedKey, now, policy)).resolves.toEqual(locked(policy.lockoutThreshold));
      await expect(pruneLoginThrottle(database.db, now, { ...policy, resetAfterMs: 0 })).resolves.toBe(0);
    });
  });
});
