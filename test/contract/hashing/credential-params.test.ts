import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_PARAM_SETS, paramHeadsQuery, passwordHashParamHeads } from "../../../src/storage/credential-params.js";
import type { Db } from "../../../src/storage/db.js";
import { backends, openTestDatabase } from "../../support/databases.js";

// The parameter sets of stored password hashes, found by a loose index scan
// over the expression index of migration 0007, on PGlite and PostgreSQL.

function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[];
}

const SALT_AND_HASH = "c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

/** `n` accounts whose password hashes have this parameter head (and distinct salts). */
async function insertCredentials(db: Db, head: string, n: number): Promise<void> {
  await db.execute(sql`
    with u as (
      insert into users (id, email, created_at, updated_at)
      select gen_random_uuid(), 'bulk-' || gen_random_uuid() || '@example.com', now(), now() from generate_series(1, ${n}::int)
      returning id
    )
    insert into password_credentials (user_id, password_hash, changed_at)
    select id, '$' || ${head}::text || '$' || md5(id::text) || ${SALT_AND_HASH}::text, now() from u`);
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`password hash parameter sets (${backend.name})`, () => {
    let t: Awaited<ReturnType<typeof openTestDatabase>>;
    let db: Db;

    beforeAll(async () => {
      t = await openTestDatabase(backend.name);
      db = t.database.db;
    });
    afterAll(async () => {
      await t?.destroy();
    });

    it("none without credentials", async () => {
      expect(await passwordHashParamHeads(db)).toEqual([]);
    });

    it("each distinct head once, in order, however many rows share it", async () => {
      await insertCredentials(db, "argon2id$v=19$m=19456,t=2,p=1", 3_000);
      await insertCredentials(db, "argon2id$v=19$m=19456,t=3,p=1", 5);
      await insertCredentials(db, "argon2id$v=19$m=65536,p=4,t=3", 2); // the argon2 package's order
      await insertCredentials(db, "argon2i$v=19$m=4096,t=3,p=1", 1);
      expect(await passwordHashParamHeads(db)).toEqual([
        "argon2i$v=19$m=4096,t=3,p=1",
        "argon2id$v=19$m=19456,t=2,p=1",
        "argon2id$v=19$m=19456,t=3,p=1",
        "argon2id$v=19$m=65536,p=4,t=3",
      ]);
    });

    it("ignores what is not an argon2 parameter head: foreign and unversioned hashes carry their salt there", async () => {
      await insertCredentials(db, "2b$10", 50); // bcrypt
      await insertCredentials(db, "argon2i$m=4096,t=3,p=1", 50); // argon2 before versions were written
      await insertCredentials(db, "scrypt$ln=15,r=8,p=1", 5);
      expect(await passwordHashParamHeads(db)).toEqual([
        "argon2i$v=19$m=4096,t=3,p=1",
        "argon2id$v=19$m=19456,t=2,p=1",
        "argon2id$v=19$m=19456,t=3,p=1",
        "argon2id$v=19$m=65536,p=4,t=3",
      ]);
    });

    it("stops at the limit", async () => {
      for (let t = 10; t < 10 + MAX_PARAM_SETS; t++) await insertCredentials(db, `argon2id$v=19$m=8192,t=${t},p=1`, 1);
      expect(await passwordHashParamHeads(db)).toHaveLength(MAX_PARAM_SETS);
      expect(await passwordHashParamHeads(db, 3)).toEqual(["argon2i$v=19$m=4096,t=3,p=1", "argon2id$v=19$m=19456,t=2,p=1", "argon2id$v=19$m=19456,t=3,p=1"]);
    });

    it("reads the expression index, never the whole table", async () => {
      await db.execute(sql`analyze password_credentials`);
      const plan = rowsOf<Record<string, string>>(await db.execute(sql`explain ${paramHeadsQuery(MAX_PARAM_SETS)}`))
        .map((r) => Object.values(r)[0])
        .join("\n");
      expect(plan).toContain("password_credentials_phc_params_idx");
      expect(plan).not.toMatch(/Seq Scan on password_credentials/);
      expect(plan).not.toMatch(/\bSort\b/);
    });
  });
}
