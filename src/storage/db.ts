import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { schema, type Schema } from "./schema.js";

/** The one database type the stores are written against, whatever the driver. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export interface Database {
  db: Db;
  kind: "postgres" | "pglite";
  /** Resolves when the database answers a trivial query. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export type DatabaseTarget =
  | { kind: "postgres"; url: string; poolMax: number }
  | { kind: "pglite"; dataDir: string };

export function migrationsFolder(): string {
  // Works from src/ (tests) and dist/src/ (built) alike.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "migrations");
    if (existsSync(join(candidate, "meta", "_journal.json"))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error("migrations/ folder not found");
    dir = parent;
  }
}

// Any number of instances may start at once: one applies the migrations at a
// time under an advisory lock held on a dedicated connection.
const MIGRATION_LOCK = 0x1d_e7_17_1;

export async function openDatabase(target: DatabaseTarget, opts: { migrate?: boolean } = {}): Promise<Database> {
  const runMigrations = opts.migrate ?? true;
  if (target.kind === "postgres") {
    if (runMigrations) {
      const lockClient = postgres(target.url, { max: 1, onnotice: () => {} });
      try {
        await lockClient`select pg_advisory_lock(${MIGRATION_LOCK})`;
        await migratePostgres(drizzlePostgres(lockClient, { schema }), { migrationsFolder: migrationsFolder() });
        await lockClient`select pg_advisory_unlock(${MIGRATION_LOCK})`;
      } finally {
        await lockClient.end({ timeout: 5 });
      }
    }
    const client = postgres(target.url, {
      max: target.poolMax,
      onnotice: () => {},
      // Fail fast when the server is gone rather than queue forever.
      connect_timeout: 5,
      idle_timeout: 60,
    });
    const db = drizzlePostgres(client, { schema }) as unknown as Db;
    return {
      db,
      kind: "postgres",
      ping: async () => {
        await client`select 1`;
      },
      close: () => client.end({ timeout: 5 }),
    };
  }

  const dataDir = target.dataDir.startsWith("memory://") ? target.dataDir : resolve(target.dataDir);
  // PGlite creates only the last path segment itself.
  if (!dataDir.startsWith("memory://")) mkdirSync(dirname(dataDir), { recursive: true });
  const client = await PGlite.create(dataDir);
  const pdb = drizzlePglite(client, { schema });
  if (runMigrations) await migratePglite(pdb, { migrationsFolder: migrationsFolder() });
  return {
    db: pdb as unknown as Db,
    kind: "pglite",
    ping: async () => {
      await pdb.execute(sql`select 1`);
    },
    close: () => client.close(),
  };
}

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
  "08000",
  "08003",
  "08006",
  "08001",
  "08004",
]);

/** Whether an error means the database is unreachable (retryable), not that a query was wrong. */
export function isUnavailableError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) return true;
  }
  return false;
}

/** The PostgreSQL SQLSTATE of a (possibly wrapped) driver error. */
export function pgErrorCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/** Rows of db.execute, whichever driver answered (postgres.js: an array; PGlite: { rows }). */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[];
}

/** A Buffer view of bytes (drizzle's bytea parameters want Buffers): no copy. */
export const bytes = (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength);
