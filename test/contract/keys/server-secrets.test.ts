import { randomBytes } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sealedKeyId } from "../../../src/keys/secret-box.js";
import type { Database, Db } from "../../../src/storage/db.js";
import { serverSecrets } from "../../../src/storage/schema.js";
import { holdsSealedData } from "../../../src/storage/sealed.js";
import { createServerSecrets } from "../../../src/storage/server-secrets.js";
import { backends, openSharedTestDatabase } from "../../support/databases.js";
import { randomKek, testBox } from "../../support/keys.js";

// server_secrets (the abuse-defence HMAC key, the recovery-code key, …):
// shared by every instance, sealed under the key-encryption keys, so the
// database (with Redis) alone cannot test password guesses against the
// spray detector's keyed fingerprints.

const K1 = randomKek("k1");
const K2 = randomKek("k2");
const uniqueName = (what: string) => `test_${what}_${randomBytes(4).toString("hex")}`;
const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString("hex") : b);

for (const backend of backends) {
  describe.skipIf(backend.skip)(`server secrets: ${backend.name}`, () => {
    let database: Database;
    let second: Database | undefined;
    let destroy: (() => Promise<void>) | undefined;
    const secrets = (kek: string, db: Db = database.db) => createServerSecrets(db, testBox(kek));
    const rowOf = async (name: string) => (await database.db.select().from(serverSecrets).where(eq(serverSecrets.name, name)))[0]!;
    /** Every instance's db (two pools on PostgreSQL, the one PGlite otherwise). */
    const dbs = (): Db[] => (second ? [database.db, second.db] : [database.db]);

    beforeAll(async () => {
      ({ database, second, destroy } = await openSharedTestDatabase(backend.name, 8));
    });
    afterAll(async () => {
      await destroy?.();
    });

    it("concurrent first callers get the same bytes; later callers too; names are separate", async () => {
      const name = uniqueName("secret");
      const [a, b] = await Promise.all([secrets(K1, dbs()[0]).shared(name), secrets(K1, dbs().at(-1)).shared(name)]);
      expect(a).toHaveLength(32);
      expect(hex(b)).toBe(hex(a));
      expect(hex(await secrets(K1).shared(name))).toBe(hex(a));
      const other = await secrets(K1).shared(`${name}_other`, 16);
      expect(other).toHaveLength(16);
      expect(hex(other)).not.toBe(hex(a!.subarray(0, 16)));
      const many = await Promise.all(Array.from({ length: 12 }, (_, i) => secrets(K1, dbs()[i % dbs().length]).shared(`${name}_many`)));
      for (const m of many) expect(hex(m)).toBe(hex(many[0]));
    });

    it("the row holds the secret only sealed, and a restart (a new store, the same KEK) reads the same bytes", async () => {
      const name = uniqueName("abuse_hmac_key");
      const value = await secrets(K1).shared(name);
      const row = await rowOf(name);
      expect(row.value).toBeNull();
      expect(sealedKeyId(row.sealedValue!)).toBe("k1");
      expect(Buffer.from(row.sealedValue!).includes(Buffer.from(value))).toBe(false);
      expect(hex(await secrets(K1).shared(name))).toBe(hex(value));
      expect(hex(await secrets(K1).existing(name))).toBe(hex(value));
      await expect(holdsSealedData(database.db)).resolves.toBe(true);
    });

    it("other key-encryption keys read nothing: the error names the secret and the key id, never a key, and nothing is replaced", async () => {
      const name = uniqueName("abuse_hmac_key");
      const value = await secrets(K1).shared(name);
      const before = await rowOf(name);
      const err = await secrets(K2)
        .shared(name)
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(err?.message).toContain(`server secret ${name} is sealed with key-encryption key "k1", which is not configured`);
      for (const secret of [K1, K2].map((k) => k.slice(3))) expect(err!.message).not.toContain(secret);
      expect(err!.message).not.toContain(Buffer.from(value).toString("base64"));
      expect(await rowOf(name)).toEqual(before);
    });

    it("a sealed value copied under another name does not open there (bound to the name)", async () => {
      const [a, b] = [uniqueName("a"), uniqueName("b")];
      await secrets(K1).shared(a);
      await secrets(K1).shared(b);
      await database.db.update(serverSecrets).set({ sealedValue: (await rowOf(a)).sealedValue }).where(eq(serverSecrets.name, b));
      await expect(secrets(K1).shared(b)).rejects.toThrow(`server secret ${b} does not open with key-encryption key "k1"`);
    });

    it("a clear-text row (written before sealing) keeps its value and is sealed on its first read, once, by instances reading at once", async () => {
      const name = uniqueName("legacy");
      const legacy = randomBytes(32);
      await database.db.insert(serverSecrets).values({ name, value: legacy, sealedValue: null, createdAt: new Date() });
      const read = await Promise.all(dbs().flatMap((db) => [secrets(K1, db).shared(name), secrets(K1, db).existing(name)]));
      for (const r of read) expect(hex(r)).toBe(hex(legacy));
      const row = await rowOf(name);
      expect(row.value).toBeNull();
      expect(Buffer.from(row.sealedValue!).includes(legacy)).toBe(false);
      expect(hex(await secrets(K1).shared(name))).toBe(hex(legacy));
    });

    it("KEK rotation re-seals on read, after which the old key can go; existing() never creates", async () => {
      const name = uniqueName("rotated");
      const value = await secrets(K1).shared(name);
      expect(hex(await secrets(`${K2},${K1}`).existing(name))).toBe(hex(value));
      expect(sealedKeyId((await rowOf(name)).sealedValue!)).toBe("k2");
      expect(hex(await secrets(K2).existing(name))).toBe(hex(value));
      const absent = uniqueName("absent");
      await expect(secrets(K1).existing(absent)).resolves.toBeUndefined();
      expect(await database.db.select().from(serverSecrets).where(eq(serverSecrets.name, absent))).toEqual([]);
    });
  });
}
