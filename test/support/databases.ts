import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { openDatabase, type Database } from "../../src/storage/db.js";

// Test databases. PGlite (in memory) always runs. PostgreSQL runs when the
// server at PG_TEST_URL answers; in CI (CI=true) it must answer, so a
// missing server fails the run instead of quietly skipping half the suite.

export const PG_TEST_URL = process.env.PG_TEST_URL ?? "postgres://postgres@127.0.0.1:5432/test";

async function probePostgres(): Promise<boolean> {
  const sql = postgres(PG_TEST_URL, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

export const postgresAvailable: boolean = await probePostgres();
if (!postgresAvailable && process.env.CI) {
  throw new Error(`CI=true but PostgreSQL at ${PG_TEST_URL} is unreachable: the PostgreSQL suites must run in CI`);
}

export type Backend = "pglite" | "postgres";
/** Every backend, with whether it can run here (for describe.skipIf). */
export const backends: { name: Backend; skip: boolean }[] = [
  { name: "pglite", skip: false },
  { name: "postgres", skip: !postgresAvailable },
];

/** A fresh, empty PostgreSQL database; drop() removes it. */
export async function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `identity_test_${randomBytes(6).toString("hex")}`;
  const admin = postgres(PG_TEST_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(PG_TEST_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const a = postgres(PG_TEST_URL, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

/** A migrated database of the given backend, and how to throw it away. */
export async function openTestDatabase(backend: Backend): Promise<{ database: Database; destroy(): Promise<void> }> {
  if (backend === "pglite") {
    const database = await openDatabase({ kind: "pglite", dataDir: "memory://" });
    return { database, destroy: () => database.close() };
  }
  const pg = await createPostgresDatabase();
  const database = await openDatabase({ kind: "postgres", url: pg.url, poolMax: 5 });
  return {
    database,
    async destroy() {
      await database.close();
      await pg.drop();
    },
  };
}

/**
 * A migrated database of `backend` as several instances use it: on
 * PostgreSQL `second` is another pool on the same database (what a second
 * instance holds); PGlite lives in one process and has no second.
 */
export async function openSharedTestDatabase(
  backend: Backend,
  poolMax: number,
): Promise<{ database: Database; second: Database | undefined; destroy(): Promise<void> }> {
  if (backend === "pglite") {
    const database = await openDatabase({ kind: "pglite", dataDir: "memory://" });
    return { database, second: undefined, destroy: () => database.close() };
  }
  const pg = await createPostgresDatabase();
  const database = await openDatabase({ kind: "postgres", url: pg.url, poolMax });
  const second = await openDatabase({ kind: "postgres", url: pg.url, poolMax }, { migrate: false });
  return {
    database,
    second,
    async destroy() {
      await second.close();
      await database.close();
      await pg.drop();
    },
  };
}
