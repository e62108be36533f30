import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { sql, type SQL } from "drizzle-orm";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grantServiceRole, grantServiceRoleCommand } from "../../../src/cli/grant-service-role.js";
import type { AuditEvent, AuditLog, StoredAuditEvent } from "../../../src/audit/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import { auditChainHash, canonicalAuditText } from "../../../src/audit/chain.js";
import { createAuditLog } from "../../../src/storage/audit-store.js";
import { migrationsFolder, openDatabase, pgErrorCode, type Database, type Db } from "../../../src/storage/db.js";
import { schema } from "../../../src/storage/schema.js";
import { createUserStore } from "../../../src/storage/user-store.js";
import { backends, createPostgresDatabase, PG_TEST_URL, postgresAvailable, type Backend } from "../../support/databases.js";

// The audit trail as a hash chain, on every backend: what the trigger
// builds, the TypeScript verifier accepts; what a superuser edits behind the
// triggers' back, it catches; and (PostgreSQL) the service's own role cannot
// edit at all.

const T0 = new Date("2025-06-15T12:00:00.000Z");
const MINUTE = 60_000;
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);

/** Rows of db.execute, whichever driver answered (postgres.js: an array; PGlite: { rows }). */
function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[];
}

async function scalar<T>(db: Pick<Db, "execute">, query: SQL): Promise<T> {
  const row = rowsOf<Record<string, T>>(await db.execute(query))[0]!;
  return Object.values(row)[0]!;
}

const rowCount = (db: Db) => scalar<string>(db, sql`select count(*)::text from audit_events`).then(Number);

/** A migrated, empty database and, for concurrency, a second connection (pool) to the same one. */
interface TestDb {
  db: Db;
  /** Another Database on the same data: a separate pool on PostgreSQL, the same instance on PGlite (one connection). */
  second(): Promise<Db>;
  destroy(): Promise<void>;
}

async function freshDatabase(backend: Backend): Promise<TestDb> {
  if (backend === "pglite") {
    const database = await openDatabase({ kind: "pglite", dataDir: "memory://" });
    return { db: database.db, second: async () => database.db, destroy: () => database.close() };
  }
  const pg = await createPostgresDatabase();
  const database = await openDatabase({ kind: "postgres", url: pg.url, poolMax: 4 });
  const others: Database[] = [];
  return {
    db: database.db,
    async second() {
      const other = await openDatabase({ kind: "postgres", url: pg.url, poolMax: 4 }, { migrate: false });
      others.push(other);
      return other.db;
    },
    async destroy() {
      for (const o of others) await o.close();
      await database.close();
      await pg.drop();
    },
  };
}

/**
 * Runs `edit` as the superuser with the append-only guard (and, if asked,
 * the chain trigger) switched off, as a tamperer with owner rights would.
 * Inside one transaction, so the triggers are back on afterwards whatever happens.
 */
async function tamper(db: Db, edit: (tx: Pick<Db, "execute">) => Promise<unknown>, opts: { chain?: boolean } = {}): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.execute(sql`alter table audit_events disable trigger audit_events_no_update_delete`);
    if (opts.chain === false) await tx.execute(sql`alter table audit_events disable trigger audit_events_zz_chain`);
    await edit(tx);
    await tx.execute(sql`alter table audit_events enable trigger audit_events_no_update_delete`);
    if (opts.chain === false) await tx.execute(sql`alter table audit_events enable trigger audit_events_zz_chain`);
  });
}

function anEvent(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return { type: "login", outcome: "success", userId: uuidv7(T0), client: { ip: "203.0.113.7", userAgent: "chain-test/1.0" }, at: T0, ...overrides };
}

async function recordMany(audit: AuditLog, n: number, overrides: (i: number) => Partial<AuditEvent> = () => ({})): Promise<void> {
  for (let i = 0; i < n; i++) await audit.record(anEvent({ at: at(i * MINUTE), requestId: `req-${i}`, ...overrides(i) }));
}

// Events of every awkward shape the canonical text must survive.
const awkward: AuditEvent[] = [
  anEvent(),
  { type: "register", outcome: "success", client: {}, at: T0 },
  anEvent({
    type: "spray_detected",
    outcome: "failure",
    reason: 'quote " backslash \\ pipe | dash - newline \n tab \t',
    details: {
      distinctAccounts: 42,
      ratio: 0.1,
      negative: -7.25,
      big: 12345678901234,
      blocked: true,
      quiet: false,
      signals: ["new_device", "tor_exit", "ünïcödé 🚀", 'say "hi"\n'],
      "key with spaces | and \"quotes\"": "value\r\nwith CRLF",
      "ключ": "значение",
      emptyList: [],
      empty: "",
    },
  }),
  anEvent({ client: { ip: "2001:db8::1", userAgent: "ctrl \u0001\u0007\u001b[31mred\u001b[0m \u007f \u0085 \u2028 \t\r\n end" } }),
  anEvent({ type: "account_unlock", actorUserId: uuidv7(T0), reason: "admin", details: { note: "RTL \u202e txet \u202c and combining e\u0301" } }),
  anEvent({ type: "risk_decision", details: {}, sessionId: uuidv7(T0), requestId: "req-🚀" }),
  anEvent({ type: "audit_verify", client: { ip: "", userAgent: "" }, reason: "" }),
  // PostgreSQL holds no U+0000 and no lone surrogate: stored as U+FFFD, still chained.
  anEvent({ client: { userAgent: "nul \u0000 byte" }, details: { lone: "surrogate \ud800 here", "nul\u0000key": ["a\u0000b"] } }),
  anEvent({ at: new Date("1969-07-20T20:17:40.123Z") }),
  // The client's X-Request-Id travels in details, beside our own request id.
  anEvent({ type: "logout", requestId: "ours-1", clientRequestId: "client-1" }),
  anEvent({ type: "refresh", requestId: "ours-2", clientRequestId: "client-2", details: { attempt: 3 } }),
];

for (const backend of backends) {
  describe.skipIf(backend.skip)(`audit chain: ${backend.name}`, () => {
    describe("chaining and verification", () => {
      let t: TestDb;
      let audit: AuditLog;

      beforeAll(async () => {
        t = await freshDatabase(backend.name);
        audit = createAuditLog(t.db);
      });
      afterAll(async () => {
        await t?.destroy();
      });

      it("starts from an empty head that verifies", async () => {
        await expect(audit.verifyChain()).resolves.toEqual({ ok: true, checked: 0, unchained: 0, headSeq: "0", headHash: expect.any(Uint8Array) });
      });

      it("chains records of every shape, and the verifier agrees row by row with the database", async () => {
        for (const e of awkward) await audit.record(e);
        // Concurrent records share multi-row INSERTs (group commit).
        await Promise.all(awkward.map((e) => audit.record(e)));
        const n = await rowCount(t.db);
        expect(n).toBe(2 * awkward.length);
        for (const batchSize of [1, 3, 1000]) {
          await expect(audit.verifyChain({ batchSize })).resolves.toEqual({ ok: true, checked: n, unchained: 0, headSeq: String(n), headHash: expect.any(Uint8Array) });
          // The head hash is the stored one (what operators export to anchor the chain).
          const stored = await t.db.execute(sql`select hash from audit_chain_head where id = 1`);
          const head = (Array.isArray(stored) ? stored : (stored as { rows: { hash: Uint8Array }[] }).rows)[0] as { hash: Uint8Array };
          expect(Buffer.from((await audit.verifyChain({ batchSize })).headHash!).equals(Buffer.from(head.hash))).toBe(true);
        }
        // The SQL rendering and the TypeScript one are the same text.
        const rows = rowsOf<Record<string, string | null> & { canonical: string }>(
          await t.db.execute(sql`
            select seq::text as seq, id::text as id, (extract(epoch from occurred_at) * 1000000)::bigint::text as occurred_us,
                   event_type, outcome, reason, user_id::text as user_id, actor_user_id::text as actor_user_id,
                   session_id::text as session_id, ip, user_agent, request_id, details::text as details,
                   audit_event_canonical(a) as canonical
            from audit_events a order by a.seq`),
        );
        expect(rows).toHaveLength(n);
        for (const r of rows) {
          expect(
            canonicalAuditText({
              seq: r.seq!,
              id: r.id!,
              occurredAtMicros: r.occurred_us!,
              eventType: r.event_type!,
              outcome: r.outcome!,
              reason: r.reason ?? null,
              userId: r.user_id ?? null,
              actorUserId: r.actor_user_id ?? null,
              sessionId: r.session_id ?? null,
              ip: r.ip ?? null,
              userAgent: r.user_agent ?? null,
              requestId: r.request_id ?? null,
              details: r.details ?? null,
            }),
          ).toBe(r.canonical);
        }
      });

      it("stores what was recorded: details round-trip, NUL and lone surrogates become U+FFFD", async () => {
        const listed = await audit.list({}, { limit: 1000 });
        const spray = listed.find((e) => e.type === "spray_detected")!;
        expect(spray.details).toEqual(awkward[2]!.details);
        expect(spray.reason).toBe(awkward[2]!.reason);
        const ctrl = listed.find((e) => e.client.ip === "2001:db8::1")!;
        expect(ctrl.client.userAgent).toBe(awkward[3]!.client.userAgent);
        const unlock = listed.find((e) => e.type === "account_unlock")!;
        expect(unlock.actorUserId).toBe(awkward[4]!.actorUserId);
        const nul = listed.find((e) => e.client.userAgent?.startsWith("nul "))!;
        expect(nul.client.userAgent).toBe("nul \uFFFD byte");
        expect(nul.details).toEqual({ lone: "surrogate \uFFFD here", "nul\uFFFDkey": ["a\uFFFDb"] });
        const bare = listed.find((e) => e.type === "register")!;
        expect(bare).not.toHaveProperty("details");
        expect(bare).not.toHaveProperty("reason");
        expect(bare.client).toEqual({});
        expect(listed.find((e) => e.type === "audit_verify")!.client).toEqual({ ip: "", userAgent: "" });
        expect(listed.find((e) => e.at.getTime() < 0)!.at).toEqual(new Date("1969-07-20T20:17:40.123Z"));
        expect(listed.find((e) => e.type === "logout")).toMatchObject({ requestId: "ours-1", details: { client_request_id: "client-1" } });
        expect(listed.find((e) => e.type === "refresh")).toMatchObject({ requestId: "ours-2", details: { attempt: 3, client_request_id: "client-2" } });
      });

      it("chains rows whatever the INSERT says: microsecond times, forged chain columns", async () => {
        const before = await rowCount(t.db);
        // Written by hand, not by the store: the trigger still decides seq and hashes.
        await t.db.execute(sql`
          insert into audit_events (occurred_at, event_type, outcome, details, seq, prev_hash, hash)
          values ('2025-06-15 12:00:00.123456+00', 'login', 'success', '{"b": [1, 2], "a": {"nested": null}}',
                  999, decode(repeat('ab', 32), 'hex'), decode(repeat('cd', 32), 'hex'))`);
        const row = rowsOf<{ seq: string; prev: string }>(
          await t.db.execute(sql`select seq::text as seq, encode(prev_hash, 'hex') as prev from audit_events order by id desc limit 1`),
        )[0]!;
        expect(row.seq).toBe(String(before + 1));
        expect(row.prev).not.toBe("ab".repeat(32));
        await expect(audit.verifyChain({ batchSize: 2 })).resolves.toEqual({
          ok: true,
          checked: before + 1,
          unchained: 0,
          headSeq: String(before + 1),
          headHash: expect.any(Uint8Array),
        });
      });

      it("appends from two store instances on two connections as one gap-free chain", async () => {
        const other = createAuditLog(await t.second());
        const before = await rowCount(t.db);
        const n = 120;
        await Promise.all([
          ...Array.from({ length: n }, (_, i) => audit.record(anEvent({ requestId: `a-${i}`, details: { i } }))),
          ...Array.from({ length: n }, (_, i) => other.record(anEvent({ requestId: `b-${i}`, details: { i } }))),
        ]);
        const total = await rowCount(t.db);
        expect(total).toBe(before + 2 * n);
        const seqs = rowsOf<{ seq: string }>(await t.db.execute(sql`select seq::text as seq from audit_events order by audit_events.seq`)).map((r) => Number(r.seq));
        expect(seqs).toEqual(Array.from({ length: total }, (_, i) => i + 1));
        for (const log of [audit, other]) {
          await expect(log.verifyChain({ batchSize: 50 })).resolves.toEqual({ ok: true, checked: total, unchained: 0, headSeq: String(total), headHash: expect.any(Uint8Array) });
        }
      });

      it("fails only the bad event of a group-committed batch; the others are chained", async () => {
        const before = await rowCount(t.db);
        // The first record drains alone; the next four share one INSERT.
        const results = await Promise.allSettled([
          audit.record(anEvent({ requestId: "batch-0" })),
          audit.record(anEvent({ requestId: "batch-1" })),
          audit.record(anEvent({ requestId: "batch-2", userId: "not-a-uuid" })),
          audit.record(anEvent({ requestId: "batch-3" })),
          audit.record(anEvent({ requestId: "batch-4" })),
        ]);
        expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
        expect(pgErrorCode((results[2] as PromiseRejectedResult).reason)).toBe("22P02");
        const total = await rowCount(t.db);
        expect(total).toBe(before + 4);
        await expect(audit.verifyChain()).resolves.toEqual({ ok: true, checked: total, unchained: 0, headSeq: String(total), headHash: expect.any(Uint8Array) });
      });

      it("is still append-only", async () => {
        await expect(t.db.execute(sql`update audit_events set reason = 'x' where seq = 1`)).rejects.toThrow();
        await expect(t.db.execute(sql`delete from audit_events where seq = 1`)).rejects.toThrow();
        await expect(t.db.execute(sql`truncate audit_events`)).rejects.toThrow();
      });
    });

    describe("tampering", () => {
      let t: TestDb;
      let audit: AuditLog;
      const N = 10;

      beforeAll(async () => {
        t = await freshDatabase(backend.name);
      });
      afterAll(async () => {
        await t?.destroy();
      });

      // Each case starts from its own intact chain of N rows: the chain
      // spans the whole database, so cases cannot share one.
      async function intactChain(): Promise<void> {
        await t.db.execute(sql`alter table audit_events disable trigger audit_events_no_truncate`);
        await t.db.execute(sql`truncate audit_events restart identity`);
        await t.db.execute(sql`alter table audit_events enable trigger audit_events_no_truncate`);
        await t.db.execute(sql`update audit_chain_head set seq = 0, hash = decode(repeat('00', 32), 'hex')`);
        audit = createAuditLog(t.db);
        await recordMany(audit, N, (i) => ({ details: { attempt: i }, client: { ip: `198.51.100.${i}` } }));
        await expect(audit.verifyChain()).resolves.toMatchObject({ ok: true, checked: N });
      }

      it("an edited field breaks that row's hash", async () => {
        await intactChain();
        await tamper(t.db, (tx) => tx.execute(sql`update audit_events set reason = 'NOTHING_TO_SEE' where seq = 5`));
        await expect(audit.verifyChain({ batchSize: 3 })).resolves.toEqual({
          ok: false,
          checked: 4,
          unchained: 0,
          headSeq: String(N),
          firstBrokenSeq: "5",
          problem: "hash_mismatch",
        });
      });

      it("an edited client request id breaks that row's hash (details are chained)", async () => {
        await intactChain();
        await audit.record(anEvent({ requestId: "ours", clientRequestId: "theirs" }));
        await expect(audit.verifyChain()).resolves.toMatchObject({ ok: true, checked: N + 1 });
        await tamper(t.db, (tx) =>
          tx.execute(sql`update audit_events set details = jsonb_set(details, '{client_request_id}', '"forged"') where seq = ${N + 1}`),
        );
        await expect(audit.verifyChain()).resolves.toMatchObject({ ok: false, firstBrokenSeq: String(N + 1), problem: "hash_mismatch" });
      });

      it("an edited field with its hash recomputed breaks the next row's link", async () => {
        await intactChain();
        await tamper(t.db, async (tx) => {
          await tx.execute(sql`update audit_events set ip = '192.0.2.1' where seq = 5`);
          // The tamperer uses the database's own function: the row is self-consistent.
          await tx.execute(sql`update audit_events a set hash = sha256(a.prev_hash || convert_to(audit_event_canonical(a), 'UTF8')) where seq = 5`);
        });
        await expect(audit.verifyChain({ batchSize: 3 })).resolves.toMatchObject({ ok: false, checked: 5, firstBrokenSeq: "6", problem: "link_mismatch" });
      });

      it("the same edit, re-hashed in TypeScript, is the same self-consistent row", async () => {
        await intactChain();
        const r = rowsOf<{ prev: Uint8Array; hash: Uint8Array; id: string; us: string; details: string }>(
          await t.db.execute(
            sql`select prev_hash as prev, hash, id::text as id, (extract(epoch from occurred_at) * 1000000)::bigint::text as us, details::text as details
                from audit_events where seq = 5`,
          ),
        )[0]!;
        const row = {
          seq: "5",
          id: r.id,
          occurredAtMicros: r.us,
          eventType: "login",
          outcome: "success",
          reason: null,
          userId: null as string | null,
          actorUserId: null,
          sessionId: null,
          ip: "198.51.100.4",
          userAgent: null,
          requestId: "req-4",
          details: r.details,
        };
        row.userId = (await audit.list({ ip: "198.51.100.4" }, { limit: 1 }))[0]!.userId!;
        expect(Buffer.from(auditChainHash(r.prev, row)).equals(Buffer.from(r.hash))).toBe(true);
      });

      it("a deleted row leaves a gap", async () => {
        await intactChain();
        await tamper(t.db, (tx) => tx.execute(sql`delete from audit_events where seq = 5`));
        await expect(audit.verifyChain({ batchSize: 3 })).resolves.toMatchObject({ ok: false, checked: 4, firstBrokenSeq: "5", problem: "gap" });
      });

      it("a deleted row with the later seqs renumbered breaks a link", async () => {
        await intactChain();
        await tamper(t.db, async (tx) => {
          await tx.execute(sql`delete from audit_events where seq = 5`);
          // Two steps, so no intermediate state collides on the unique seq.
          await tx.execute(sql`update audit_events set seq = seq + 1000 where seq > 5`);
          await tx.execute(sql`update audit_events set seq = seq - 1001 where seq > 1000`);
        });
        await expect(audit.verifyChain()).resolves.toMatchObject({ ok: false, firstBrokenSeq: "5", problem: "hash_mismatch" });
      });

      it("a cut tail no longer meets the head", async () => {
        await intactChain();
        await tamper(t.db, (tx) => tx.execute(sql`delete from audit_events where seq >= ${N - 1}`));
        await expect(audit.verifyChain()).resolves.toMatchObject({
          ok: false,
          checked: N - 2,
          headSeq: String(N),
          firstBrokenSeq: String(N - 1),
          problem: "head_mismatch",
        });
      });

      it("a head moved elsewhere no longer meets the last row", async () => {
        await intactChain();
        await t.db.execute(sql`update audit_chain_head set hash = decode(repeat('ee', 32), 'hex')`);
        await expect(audit.verifyChain()).resolves.toMatchObject({ ok: false, checked: N, firstBrokenSeq: String(N), problem: "head_mismatch" });
      });

      it("a row slipped in with the chain trigger off is reported as unchained", async () => {
        await intactChain();
        await tamper(
          t.db,
          (tx) => tx.execute(sql`insert into audit_events (occurred_at, event_type, outcome) values (now(), 'login', 'success')`),
          { chain: false },
        );
        const id = await scalar<string>(t.db, sql`select max(id)::text from audit_events`);
        await expect(audit.verifyChain()).resolves.toEqual({
          ok: false,
          checked: N,
          unchained: 1,
          headSeq: String(N),
          firstUnchainedId: id,
          problem: "unchained",
        });
      });

      it("leaves the guards on after each edit", async () => {
        await intactChain();
        await tamper(t.db, (tx) => tx.execute(sql`update audit_events set reason = 'x' where seq = 2`));
        await expect(t.db.execute(sql`update audit_events set reason = 'y' where seq = 3`)).rejects.toThrow();
        await expect(t.db.execute(sql`delete from audit_events where seq = 3`)).rejects.toThrow();
        await audit.record(anEvent());
        expect(await scalar<string>(t.db, sql`select max(seq)::text from audit_events`)).toBe(String(N + 1));
      });
    });

    describe("list", () => {
      let t: TestDb;
      let audit: AuditLog;
      let sources = 0;

      beforeAll(async () => {
        t = await freshDatabase(backend.name);
        audit = createAuditLog(t.db);
        // Noise from other users and sources that no filter below may return.
        await recordMany(audit, 5, (i) => ({ type: i % 2 ? "login" : "logout", outcome: i % 3 ? "success" : "failure", client: { ip: "192.0.2.200" } }));
      });
      afterAll(async () => {
        await t?.destroy();
      });

      /** Events of one user, recorded one by one (ids ascending in this order), and what list returns for them. */
      async function seed(): Promise<{ userId: string; ip: string; stored: StoredAuditEvent[] }> {
        const userId = uuidv7(T0);
        const ip = `198.51.100.${++sources}`;
        const plan: Partial<AuditEvent>[] = [
          { type: "register", outcome: "success" },
          { type: "login", outcome: "failure", reason: "INVALID_CREDENTIALS" },
          { type: "login", outcome: "failure", reason: "INVALID_CREDENTIALS", client: { ip: "192.0.2.9" } },
          { type: "account_locked", outcome: "success", details: { failures: 5 } },
          { type: "account_unlock", outcome: "success", actorUserId: uuidv7(T0) },
          { type: "login", outcome: "success" },
          { type: "mfa_enrol", outcome: "success" },
          { type: "logout", outcome: "success" },
        ];
        for (const [i, p] of plan.entries()) {
          await audit.record({ type: "login", outcome: "success", userId, client: { ip, userAgent: "list-test" }, at: at(i * MINUTE), ...p });
        }
        const stored = await audit.list({ userId }, { limit: 100 });
        return { userId, ip, stored };
      }

      it("returns a user's events newest first, with ids, chain positions and hashes", async () => {
        const { userId, stored } = await seed();
        expect(stored.map((e) => e.type)).toEqual(["logout", "mfa_enrol", "login", "account_unlock", "account_locked", "login", "login", "register"]);
        const ids = stored.map((e) => BigInt(e.id));
        expect([...ids].sort((a, b) => (a < b ? 1 : -1))).toEqual(ids);
        for (const e of stored) {
          expect(e.userId).toBe(userId);
          expect(e.seq).toMatch(/^[1-9][0-9]*$/);
          expect(e.hash).toBeInstanceOf(Uint8Array);
          expect(e.hash).toHaveLength(32);
        }
        expect(stored[4]).toMatchObject({ type: "account_locked", details: { failures: 5 }, at: at(3 * MINUTE), client: { userAgent: "list-test" } });
        expect(stored[3]!.actorUserId).toMatch(/^[0-9a-f-]{36}$/);
        expect(stored[6]).toMatchObject({ reason: "INVALID_CREDENTIALS", outcome: "failure" });
        // The hash is the one the chain holds.
        const hashHex = await scalar<string>(t.db, sql`select encode(hash, 'hex') from audit_events where id = ${stored[0]!.id}::bigint`);
        expect(Buffer.from(stored[0]!.hash!).toString("hex")).toBe(hashHex);
      });

      it("filters by type, outcome, ip and time window", async () => {
        const { userId, ip, stored } = await seed();
        const types = (events: StoredAuditEvent[]) => events.map((e) => `${e.type}@${e.at.getTime() - T0.getTime()}`);
        const expected = (pick: (e: StoredAuditEvent) => boolean) => types(stored.filter(pick));

        expect(types(await audit.list({ userId, types: ["login"] }, { limit: 100 }))).toEqual(expected((e) => e.type === "login"));
        expect(types(await audit.list({ userId, types: ["account_locked", "account_unlock"] }, { limit: 100 }))).toEqual(
          expected((e) => e.type.startsWith("account_")),
        );
        expect(types(await audit.list({ userId, outcome: "failure" }, { limit: 100 }))).toEqual(expected((e) => e.outcome === "failure"));
        expect(types(await audit.list({ ip }, { limit: 100 }))).toEqual(expected((e) => e.client.ip === ip));
        expect(types(await audit.list({ ip: "192.0.2.9", userId }, { limit: 100 }))).toEqual(expected((e) => e.client.ip === "192.0.2.9"));
        // since inclusive, until exclusive.
        expect(types(await audit.list({ userId, since: at(2 * MINUTE), until: at(5 * MINUTE) }, { limit: 100 }))).toEqual([
          `account_unlock@${4 * MINUTE}`,
          `account_locked@${3 * MINUTE}`,
          `login@${2 * MINUTE}`,
        ]);
        expect(types(await audit.list({ userId, types: ["login"], outcome: "success", since: at(MINUTE) }, { limit: 100 }))).toEqual([
          `login@${5 * MINUTE}`,
        ]);
        await expect(audit.list({ userId, types: [] }, { limit: 100 })).resolves.toEqual([]);
        await expect(audit.list({ userId: uuidv7(T0) }, { limit: 100 })).resolves.toEqual([]);
        await expect(audit.list({ userId }, { limit: 0 })).resolves.toEqual([]);
      });

      it("pages with beforeId, newest first, without overlap or loss", async () => {
        const { userId, stored } = await seed();
        const pages: StoredAuditEvent[][] = [];
        let beforeId: string | undefined;
        for (;;) {
          const page = await audit.list({ userId }, { limit: 3, beforeId });
          if (page.length === 0) break;
          pages.push(page);
          beforeId = page.at(-1)!.id;
        }
        expect(pages.map((p) => p.length)).toEqual([3, 3, 2]);
        expect(pages.flat()).toEqual(stored);
        // Filters and the cursor combine.
        const failures = await audit.list({ userId, outcome: "failure" }, { limit: 1, beforeId: stored[1]!.id });
        expect(failures.map((e) => e.id)).toEqual([stored[5]!.id]);
        await expect(audit.list({}, { limit: 10, beforeId: "1; drop table audit_events" })).rejects.toThrow(RangeError);
      });

      it("lists everything unfiltered, newest first", async () => {
        const all = await audit.list({}, { limit: 1000 });
        expect(all).toHaveLength(await rowCount(t.db));
        expect(all.map((e) => Number(e.id))).toEqual([...all.map((e) => Number(e.id))].sort((a, b) => b - a));
      });
    });

    describe("migrating a trail that already has rows", () => {
      let dir: string;
      let close: (() => Promise<void>) | undefined;

      beforeAll(async () => {
        // The migrations as they were before the chain (0000–0003).
        dir = await mkdtemp(join(tmpdir(), "audit-chain-migrations-"));
        const source = migrationsFolder();
        const journal = JSON.parse(await readFile(join(source, "meta", "_journal.json"), "utf8")) as { entries: { tag: string }[] };
        journal.entries = journal.entries.slice(0, journal.entries.findIndex((e) => e.tag.startsWith("0004_")));
        expect(journal.entries.map((e) => e.tag.slice(0, 4))).toEqual(["0000", "0001", "0002", "0003"]);
        await mkdir(join(dir, "meta"));
        await writeFile(join(dir, "meta", "_journal.json"), JSON.stringify(journal));
        for (const e of journal.entries) await copyFile(join(source, `${e.tag}.sql`), join(dir, `${e.tag}.sql`));
      });
      afterAll(async () => {
        await close?.();
        await rm(dir, { recursive: true, force: true });
      });

      /** A database migrated to 0003, and how to apply the rest. */
      async function oldDatabase(): Promise<{ db: Db; migrateRest(): Promise<void> }> {
        if (backend.name === "pglite") {
          const client = await PGlite.create("memory://");
          const pdb = drizzlePglite(client, { schema });
          await migratePglite(pdb, { migrationsFolder: dir });
          close = () => client.close();
          return { db: pdb as unknown as Db, migrateRest: () => migratePglite(pdb, { migrationsFolder: migrationsFolder() }) };
        }
        const pg = await createPostgresDatabase();
        const client = postgres(pg.url, { max: 1, onnotice: () => {} });
        const pdb = drizzlePostgres(client, { schema });
        await migratePostgres(pdb, { migrationsFolder: dir });
        close = async () => {
          await client.end({ timeout: 5 });
          await pg.drop();
        };
        return { db: pdb as unknown as Db, migrateRest: () => migratePostgres(pdb, { migrationsFolder: migrationsFolder() }) };
      }

      it("chains the existing rows in id order, then goes on from them", async () => {
        const { db, migrateRest } = await oldDatabase();
        await db.execute(sql`
          insert into audit_events (occurred_at, event_type, outcome, reason, user_id, ip, user_agent, request_id) values
            ('2024-01-01 00:00:00.000001+00', 'register', 'success', null, '0190a000-0000-7000-8000-000000000001', '203.0.113.1', 'old|agent', 'r1'),
            ('2024-01-01 00:00:01+00', 'login', 'failure', 'INVALID_CREDENTIALS', null, null, e'tab\\there', null),
            ('2024-01-01 00:00:02.5+00', 'logout', 'success', 'ünïcödé', '0190a000-0000-7000-8000-000000000001', '2001:db8::2', null, 'r3')`);
        await migrateRest();
        const audit = createAuditLog(db);
        await expect(audit.verifyChain()).resolves.toEqual({ ok: true, checked: 3, unchained: 0, headSeq: "3", headHash: expect.any(Uint8Array) });
        const seqs = rowsOf<{ seq: string }>(await db.execute(sql`select seq::text as seq from audit_events order by id`)).map((r) => r.seq);
        expect(seqs).toEqual(["1", "2", "3"]);
        // The first row links to the genesis (32 zero bytes), by the same formula.
        const first = rowsOf<{ prev: string; hash: string }>(
          await db.execute(sql`select encode(prev_hash, 'hex') as prev, encode(hash, 'hex') as hash from audit_events where seq = 1`),
        )[0]!;
        expect(first.prev).toBe("00".repeat(32));
        const expected = createHash("sha256")
          .update(Buffer.alloc(32))
          .update(
            [
              "v1",
              "31", // seq "1"
              "31", // id "1"
              Buffer.from("1704067200000001").toString("hex"),
              Buffer.from("register").toString("hex"),
              Buffer.from("success").toString("hex"),
              "-",
              Buffer.from("0190a000-0000-7000-8000-000000000001").toString("hex"),
              "-",
              "-",
              Buffer.from("203.0.113.1").toString("hex"),
              Buffer.from("old|agent").toString("hex"),
              Buffer.from("r1").toString("hex"),
              "-",
            ].join("|"),
          )
          .digest("hex");
        expect(first.hash).toBe(expected);
        // Still append-only after the backfill.
        await expect(db.execute(sql`delete from audit_events`)).rejects.toThrow();
        await audit.record(anEvent());
        await expect(audit.verifyChain()).resolves.toEqual({ ok: true, checked: 4, unchained: 0, headSeq: "4", headHash: expect.any(Uint8Array) });
      });
    });
  });
}

describe("canonical text", () => {
  it("is v1, then hex of UTF-8 or '-' per field, joined by '|'", () => {
    expect(
      canonicalAuditText({
        seq: "12",
        id: "40",
        occurredAtMicros: "-1",
        eventType: "login",
        outcome: "success",
        reason: null,
        userId: null,
        actorUserId: null,
        sessionId: null,
        ip: "",
        userAgent: "é|",
        requestId: null,
        details: '{"a": 1}',
      }),
    ).toBe("v1|3132|3430|2d31|6c6f67696e|73756363657373|-|-|-|-||c3a97c|-|7b2261223a20317d");
  });
});

/** The SQLSTATE and message of the database's error (driver wrappers unwrapped). */
async function pgFailure(promise: Promise<unknown>): Promise<{ code: string | undefined; message: string }> {
  try {
    await promise;
  } catch (err) {
    let e: unknown = err;
    while ((e as { cause?: unknown }).cause && !/^[0-9A-Z]{5}$/.test(String((e as { code?: unknown }).code))) e = (e as { cause: unknown }).cause;
    return { code: pgErrorCode(err), message: String((e as { message?: unknown }).message) };
  }
  expect.fail("expected the statement to fail");
}

describe.skipIf(!postgresAvailable)("audit grants: postgres", () => {
  const role = `audit_svc_${randomBytes(5).toString("hex")}`;
  let pg: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let owner: Database;
  let service: Database | undefined;
  let admin: postgres.Sql;

  beforeAll(async () => {
    admin = postgres(PG_TEST_URL, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create role ${role} login`);
    pg = await createPostgresDatabase();
    owner = await openDatabase({ kind: "postgres", url: pg.url, poolMax: 2 });
  });

  afterAll(async () => {
    await service?.close();
    if (owner) {
      await owner.db.execute(sql.raw(`drop owned by ${role}`));
      await owner.close();
    }
    await pg?.drop();
    await admin?.unsafe(`drop role if exists ${role}`);
    await admin?.end();
  });

  function serviceUrl(): string {
    const url = new URL(pg.url);
    url.username = role;
    url.password = "";
    return url.toString();
  }

  it("refuses bad names, unknown roles and the owner itself, granting nothing", async () => {
    for (const bad of ["", "Service", "1svc", "svc-role", 'svc"; drop table users; --', "a".repeat(64)]) {
      await expect(grantServiceRole(owner.db, bad)).resolves.toMatchObject({ ok: false });
    }
    await expect(grantServiceRole(owner.db, `nobody_${randomBytes(4).toString("hex")}`)).resolves.toMatchObject({
      ok: false,
      message: expect.stringContaining("does not exist"),
    });
    const me = await scalar<string>(owner.db, sql`select current_user::text`);
    await expect(grantServiceRole(owner.db, me)).resolves.toMatchObject({ ok: false });
    expect(await scalar<boolean>(owner.db, sql`select has_table_privilege(${role}::name, 'public.users', 'SELECT')`)).toBe(false);
  });

  it("grants, idempotently, exactly the service's privileges", async () => {
    const first = await grantServiceRole(owner.db, role);
    expect(first.ok).toBe(true);
    const second = await grantServiceRole(owner.db, role);
    expect(second).toEqual(first);
    if (!first.ok) return;
    expect(first.actions).toContain("SELECT, INSERT on audit_events");
    expect(first.actions).toContain("SELECT on audit_chain_head");
    expect(first.actions).toContain("SELECT, INSERT, UPDATE, DELETE on users");
    const can = (table: string, privilege: string) => scalar<boolean>(owner.db, sql`select has_table_privilege(${role}::name, ${table}, ${privilege})`);
    expect(await can("public.audit_events", "INSERT")).toBe(true);
    for (const p of ["UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]) expect(await can("public.audit_events", p)).toBe(false);
    for (const p of ["INSERT", "UPDATE", "DELETE", "TRUNCATE"]) expect(await can("public.audit_chain_head", p)).toBe(false);
    expect(await can("drizzle.__drizzle_migrations", "SELECT")).toBe(false);
  });

  it("lets the role append to the chain but not change it", async () => {
    await grantServiceRole(owner.db, role);
    // Migrations are the owner's job: the service starts without them.
    service = await openDatabase({ kind: "postgres", url: serviceUrl(), poolMax: 2 }, { migrate: false });
    const db = service.db;
    expect(await scalar<string>(db, sql`select current_user::text`)).toBe(role);

    const audit = createAuditLog(db);
    await audit.record(anEvent({ details: { by: "service role" } }));
    await Promise.all([audit.record(anEvent()), audit.record(anEvent())]);
    await expect(audit.verifyChain()).resolves.toMatchObject({ ok: true, checked: 3, headSeq: "3" });
    await expect(audit.list({}, { limit: 10 })).resolves.toHaveLength(3);
    // The rest of the schema is the service's to use.
    const users = createUserStore(db);
    const id = uuidv7(T0);
    await users.create({ id, email: `${role}@example.com`, passwordHash: "$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA", profile: {}, now: T0 });
    await expect(users.updateProfile(id, { name: "Ada" }, at(MINUTE))).resolves.toMatchObject({ profile: { name: "Ada" } });

    // Refused by the grants, before the append-only trigger (which also
    // says 42501) gets a say: hence the message is checked too.
    for (const [statement, table] of [
      [sql`update audit_events set reason = 'x'`, "audit_events"],
      [sql`delete from audit_events`, "audit_events"],
      [sql`truncate audit_events`, "audit_events"],
      [sql`update audit_chain_head set seq = 0`, "audit_chain_head"],
      [sql`insert into audit_chain_head (id, seq, hash) values (2, 0, decode(repeat('00', 32), 'hex'))`, "audit_chain_head"],
    ] as const) {
      const failure = await pgFailure(db.execute(statement));
      expect(failure.code).toBe("42501");
      expect(failure.message).toMatch(new RegExp(`permission denied for table ${table}`));
    }
    const ddl = await pgFailure(db.execute(sql`alter table audit_events disable trigger audit_events_no_update_delete`));
    expect(ddl.code).toBe("42501");
    const migrations = await pgFailure(db.execute(sql`select * from drizzle.__drizzle_migrations`));
    expect(migrations.code).toBe("42501");
    expect(migrations.message).toMatch(/permission denied/);
    await expect(audit.verifyChain()).resolves.toMatchObject({ ok: true, checked: 3 });
  });

  it("refuses, and takes nothing back, when the role could change the trail through PUBLIC", async () => {
    await owner.db.execute(sql`grant update on audit_events to public`);
    try {
      await expect(grantServiceRole(owner.db, role)).resolves.toMatchObject({
        ok: false,
        message: expect.stringContaining("public.audit_events: UPDATE"),
      });
    } finally {
      await owner.db.execute(sql`revoke update on audit_events from public`);
    }
    // The earlier grants stand: the refusal rolled back only its own changes.
    expect(await scalar<boolean>(owner.db, sql`select has_table_privilege(${role}::name, 'public.audit_events', 'INSERT')`)).toBe(true);
  });

  it("runs as a command: usage, no roles on PGlite, and the grants printed", async () => {
    await expect(grantServiceRoleCommand([])).resolves.toMatchObject({ exitCode: 2 });
    await expect(grantServiceRoleCommand([role, "extra"])).resolves.toMatchObject({ exitCode: 2 });
    await expect(grantServiceRoleCommand([role], { LOG_LEVEL: "silent" })).resolves.toMatchObject({ exitCode: 2 });
    const done = await grantServiceRoleCommand([role], { DATABASE_URL: pg.url, LOG_LEVEL: "silent" });
    expect(done.exitCode).toBe(0);
    expect(done.message).toContain("SELECT, INSERT on audit_events");
    await expect(grantServiceRoleCommand(["Not-A-Role"], { DATABASE_URL: pg.url, LOG_LEVEL: "silent" })).resolves.toMatchObject({
      exitCode: 2,
    });
  });
});
