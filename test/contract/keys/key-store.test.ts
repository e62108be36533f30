import { and, eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { KeyStore, StoredKey } from "../../../src/keys/ports.js";
import type { Database } from "../../../src/storage/db.js";
import { signingKeys } from "../../../src/storage/schema.js";
import { newSigningKey } from "../../../src/tokens/key-ring.js";
import { backends } from "../../support/databases.js";
import { at, DAY, HOUR, T0, useStores } from "../../support/stores.js";

// The signing-key store, run against every backend (sealing at rest and
// its upgrades: signing-keys-at-rest.test.ts, keys-upgrade.test.ts).

for (const backend of backends) {
  describe.skipIf(backend.skip)(`key store contract: ${backend.name}`, () => {
    let database: Database;
    let keys: KeyStore;
    useStores(backend.name, (stores) => ({ database, keys } = stores));

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
}
