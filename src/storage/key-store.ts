import { and, desc, eq, gt, isNotNull, isNull, or, sql } from "drizzle-orm";
import type { JWK } from "jose";
import type { KeyStore, StoredKey } from "../keys/ports.js";
import type { SecretBox } from "../keys/secret-box.js";
import { bytes, type Db } from "./db.js";
import { signingKeys } from "./schema.js";
import { openSealed } from "./sealed.js";

// Rotations from any number of instances and operators run one at a time:
// the lock is held until the transaction ends.
const KEY_ROTATION_LOCK = 0x1d_e7_17_2;

type Row = typeof signingKeys.$inferSelect;

const aadOf = (kid: string) => `signing_key:${kid}`;

/**
 * Signing keys in `signing_keys`, private JWKs sealed by `box` (the
 * key-encryption keys): a copy of the database alone cannot sign a token.
 * A row in clear text (written before migration 0007) or sealed under an
 * older key-encryption key is sealed with the current one when read.
 */
export function createKeyStore(db: Db, box: SecretBox): KeyStore {
  const seal = (kid: string, privateJwk: JWK) => bytes(box.seal(Buffer.from(JSON.stringify(privateJwk), "utf8"), aadOf(kid)));

  const toRow = (key: StoredKey) => ({
    kid: key.kid,
    alg: key.alg,
    publicJwk: key.publicJwk,
    privateJwk: null,
    sealedPrivateJwk: seal(key.kid, key.privateJwk),
    createdAt: key.createdAt,
    activatesAt: key.activatesAt,
    retiresAt: key.retiresAt,
  });

  function privateJwkOf(row: Row): JWK {
    if (row.sealedPrivateJwk === null) return row.privateJwk as JWK;
    const opened = openSealed(box, row.sealedPrivateJwk, aadOf(row.kid), `signing key ${row.kid}`);
    return JSON.parse(Buffer.from(opened).toString("utf8")) as JWK;
  }

  const toStoredKey = (row: Row, privateJwk: JWK): StoredKey => ({
    kid: row.kid,
    alg: row.alg,
    publicJwk: row.publicJwk as JWK,
    privateJwk,
    createdAt: row.createdAt,
    activatesAt: row.activatesAt,
    retiresAt: row.retiresAt,
  });

  // Each UPDATE applies only to the row as read: instances racing through
  // the same upgrade or KEK rotation write once, the others match nothing.
  async function sealAtRest(row: Row, privateJwk: JWK): Promise<void> {
    if (row.sealedPrivateJwk === null) {
      await db
        .update(signingKeys)
        .set({ sealedPrivateJwk: seal(row.kid, privateJwk), privateJwk: null })
        .where(and(eq(signingKeys.kid, row.kid), isNotNull(signingKeys.privateJwk)));
    } else if (box.needsReseal(row.sealedPrivateJwk)) {
      await db
        .update(signingKeys)
        .set({ sealedPrivateJwk: seal(row.kid, privateJwk) })
        .where(and(eq(signingKeys.kid, row.kid), eq(signingKeys.sealedPrivateJwk, bytes(row.sealedPrivateJwk))));
    }
  }

  return {
    async listUsable(now) {
      const usable = or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, now));
      // Retired keys are never opened again, but one still in clear text is sealed too.
      const rows = await db
        .select()
        .from(signingKeys)
        .where(or(usable, isNotNull(signingKeys.privateJwk)))
        .orderBy(desc(signingKeys.activatesAt));
      const keys: StoredKey[] = [];
      for (const row of rows) {
        const isUsable = row.retiresAt === null || row.retiresAt > now;
        if (!isUsable) {
          if (row.privateJwk !== null) await sealAtRest(row, row.privateJwk as JWK);
          continue;
        }
        const privateJwk = privateJwkOf(row);
        await sealAtRest(row, privateJwk);
        keys.push(toStoredKey(row, privateJwk));
      }
      return keys;
    },
    async insert(key) {
      await db.insert(signingKeys).values(toRow(key)).onConflictDoNothing();
    },
    async rotate({ next, retireOthersAt, now, force }) {
      return db.transaction(async (tx) => {
        await tx.execute(sql`select pg_advisory_xact_lock(${KEY_ROTATION_LOCK}::bigint)`);
        if (!force) {
          const [pending] = await tx
            .select()
            .from(signingKeys)
            .where(
              and(
                gt(signingKeys.activatesAt, now),
                or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, now)),
              ),
            )
            .orderBy(desc(signingKeys.activatesAt))
            .limit(1);
          if (pending) return { rotated: false, pending: toStoredKey(pending, privateJwkOf(pending)) };
        }
        // Only ever brought forward: a key already retiring sooner keeps its date.
        const retired = await tx
          .update(signingKeys)
          .set({ retiresAt: retireOthersAt })
          .where(or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, retireOthersAt)))
          .returning({ kid: signingKeys.kid, retiresAt: signingKeys.retiresAt });
        await tx.insert(signingKeys).values(toRow(next));
        return { rotated: true, retired: retired.map((r) => ({ kid: r.kid, retiresAt: r.retiresAt! })) };
      });
    },
  };
}
