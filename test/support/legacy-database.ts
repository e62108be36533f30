import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { sql } from "drizzle-orm";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { migrationsFolder, openDatabase, type Database, type Db } from "../../src/storage/db.js";
import { schema } from "../../src/storage/schema.js";
import { createPostgresDatabase, type Backend } from "./databases.js";

// A database as an earlier version left it: migrated up to `lastTag` only,
// for rows written in the old layout; upgrade() applies the remaining
// migrations as the new version's start does.

/** The migrations folder with its journal cut after `lastTag`. */
function migrationsUpTo(lastTag: string): string {
  const dir = join(mkdtempSync(join(tmpdir(), "identity-migrations-")), "migrations");
  cpSync(migrationsFolder(), dir, { recursive: true });
  const journalPath = join(dir, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { tag: string }[] };
  const last = journal.entries.findIndex((e) => e.tag === lastTag);
  if (last < 0) throw new Error(`no migration ${lastTag}`);
  journal.entries = journal.entries.slice(0, last + 1);
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

export interface LegacyDatabase {
  /** Only for raw SQL: the drizzle schema describes the current layout. */
  db: Db;
  /** Applies the remaining migrations; the old handle must not be used afterwards. */
  upgrade(): Promise<{ database: Database; url?: string }>;
  destroy(): Promise<void>;
}

export async function openLegacyDatabase(backend: Backend, lastTag: string): Promise<LegacyDatabase> {
  const folder = migrationsUpTo(lastTag);
  if (backend === "pglite") {
    const client = await PGlite.create("memory://");
    const pdb = drizzlePglite(client, { schema });
    await migratePglite(pdb, { migrationsFolder: folder });
    const db = pdb as unknown as Db;
    const database: Database = {
      db,
      kind: "pglite",
      ping: async () => void (await pdb.execute(sql`select 1`)),
      close: () => client.close(),
    };
    return {
      db,
      async upgrade() {
        await migratePglite(pdb, { migrationsFolder: migrationsFolder() });
        return { database };
      },
      destroy: async () => {
        if (!client.closed) await client.close();
      },
    };
  }
  const pg = await createPostgresDatabase();
  const client = postgres(pg.url, { max: 2, onnotice: () => {} });
  await migratePostgres(drizzlePostgres(client, { schema }), { migrationsFolder: folder });
  let upgraded: Database | undefined;
  return {
    db: drizzlePostgres(client, { schema }) as unknown as Db,
    async upgrade() {
      await client.end();
      upgraded = await openDatabase({ kind: "postgres", url: pg.url, poolMax: 4 });
      return { database: upgraded, url: pg.url };
    },
    async destroy() {
      await upgraded?.close();
      await client.end().catch(() => {});
      await pg.drop();
    },
  };
}
