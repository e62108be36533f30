import { randomBytes } from "node:crypto";
import { isNotNull, sql } from "drizzle-orm";
import { afterEach, describe, expect, it } from "vitest";
import type { Db } from "../../../src/storage/db.js";
import { createKeyStore } from "../../../src/storage/key-store.js";
import { serverSecrets, signingKeys } from "../../../src/storage/schema.js";
import { holdsSealedData } from "../../../src/storage/sealed.js";
import { createServerSecrets } from "../../../src/storage/server-secrets.js";
import { createJwtService } from "../../../src/tokens/jwt-service.js";
import { newSigningKey } from "../../../src/tokens/key-ring.js";
import { backends } from "../../support/databases.js";
import { randomKek, testBox } from "../../support/keys.js";
import { openLegacyDatabase, type LegacyDatabase } from "../../support/legacy-database.js";
import { memoryKeyStore } from "../../support/memory-key-store.js";

// Upgrading in place: a database the previous version wrote (migrated up to
// 0006, private keys and server secrets in clear) takes migration 0007 and
// the new code without a manual step: tokens signed before keep verifying,
// every secret keeps its value, and nothing stays in clear text.

const T0 = new Date();
const U = "0190a1b2-0000-7000-8000-0000000000b1";
const S = "0190a1b2-0000-7000-8000-0000000000c1";
const KEK = randomKek("k1");
const jwtOptions = { issuer: "urn:test:identity", audience: "urn:test:platform", accessTokenTtlMs: 15 * 60_000, refreshIntervalMs: 0 };

for (const backend of backends) {
  describe.skipIf(backend.skip)(`upgrade to sealed keys: ${backend.name}`, () => {
    let legacy: LegacyDatabase | undefined;
    afterEach(async () => {
      await legacy?.destroy();
    });

    /** Rows as the version before 0007 wrote them. */
    async function writeOldLayout(db: Db) {
      const key = await newSigningKey(new Date(T0.getTime() - 60_000));
      await db.execute(sql`insert into signing_keys (kid, alg, public_jwk, private_jwk, created_at, activates_at)
        values (${key.kid}, ${key.alg}, ${JSON.stringify(key.publicJwk)}::jsonb, ${JSON.stringify(key.privateJwk)}::jsonb,
                ${key.createdAt.toISOString()}::timestamptz, ${key.activatesAt.toISOString()}::timestamptz)`);
      const secrets = { abuse_hmac_key: randomBytes(32), recovery_code_key: randomBytes(32), mfa_secret_box_key: randomBytes(32) };
      for (const [name, value] of Object.entries(secrets)) {
        await db.execute(sql`insert into server_secrets (name, value, created_at) values (${name}, ${value}, now())`);
      }
      return { key, secrets };
    }

    it("migration 0007 and the first start seal what 0006 left in clear; old tokens verify and secrets keep their values", async () => {
      legacy = await openLegacyDatabase(backend.name, "0006_mfa_and_risk");
      const { key, secrets } = await writeOldLayout(legacy.db);
      const before = createJwtService({ ...jwtOptions, keys: memoryKeyStore([key]) });
      await before.init();
      const oldToken = (await before.issueAccessToken({ userId: U, sessionId: S, now: T0 })).token;

      const { database } = await legacy.upgrade();
      const { db } = database;
      // The migration needs no key-encryption key: it only makes room.
      await expect(holdsSealedData(db)).resolves.toBe(false);

      const box = testBox(KEK);
      const after = createJwtService({ ...jwtOptions, keys: createKeyStore(db, box) });
      await after.init();
      await expect(after.verifyAccessToken(oldToken, T0)).resolves.toMatchObject({ userId: U, sessionId: S });
      expect(after.jwks().keys.map((k) => k.kid)).toEqual([key.kid]);
      const store = createServerSecrets(db, box);
      expect(Buffer.from(await store.shared("abuse_hmac_key")).equals(secrets.abuse_hmac_key)).toBe(true);
      expect(Buffer.from(await store.shared("recovery_code_key")).equals(secrets.recovery_code_key)).toBe(true);
      expect(Buffer.from((await store.existing("mfa_secret_box_key"))!).equals(secrets.mfa_secret_box_key)).toBe(true);
      after.close();

      expect(await db.select({ kid: signingKeys.kid }).from(signingKeys).where(isNotNull(signingKeys.privateJwk))).toEqual([]);
      expect(await db.select({ name: serverSecrets.name }).from(serverSecrets).where(isNotNull(serverSecrets.value))).toEqual([]);
      await expect(holdsSealedData(db)).resolves.toBe(true);
      // A clear-text value cannot come back next to its sealed one.
      await expect(db.update(signingKeys).set({ privateJwk: key.privateJwk })).rejects.toThrow();
    });
  });
}
