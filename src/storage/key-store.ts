import { and, desc, gt, isNull, or, sql } from "drizzle-orm";
import type { JWK } from "jose";
import type { Db } from "./db.js";
import { signingKeys } from "./schema.js";
import type { KeyStore, StoredKey } from "../keys/ports.js";

// Rotations from any number of instances and operators run one at a time:
// the lock is held until the transaction ends.
const KEY_ROTATION_LOCK = 0x1d_e7_17_2;

type Row = typeof signingKeys.$inferSelect;

function toStoredKey(r: Row): StoredKey {
  return {
    kid: r.kid,
    alg: r.alg,
    publicJwk: r.publicJwk as JWK,
    privateJwk: r.privateJwk as JWK,
    createdAt: r.createdAt,
    activatesAt: r.activatesAt,
    retiresAt: r.retiresAt,
  };
}

export function createKeyStore(db: Db): KeyStore {
  return {
    async listUsable(now) {
      const rows = await db
        .select()
        .from(signingKeys)
        .where(or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, now)))
        .orderBy(desc(signingKeys.activatesAt));
      return rows.map(toStoredKey);
    },
    async insert(key) {
      await db.insert(signingKeys).values(key).onConflictDoNothing();
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
          if (pending) return { rotated: false, pending: toStoredKey(pending) };
        }
        // Only ever brought forward: a key already retiring sooner keeps its date.
        const retired = await tx
          .update(signingKeys)
          .set({ retiresAt: retireOthersAt })
          .where(or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, retireOthersAt)))
          .returning({ kid: signingKeys.kid, retiresAt: signingKeys.retiresAt });
        await tx.insert(signingKeys).values(next);
        return { rotated: true, retired: retired.map((r) => ({ kid: r.kid, retiresAt: r.retiresAt! })) };
      });
    },
  };
}
