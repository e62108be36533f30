import { desc, gt, isNull, or } from "drizzle-orm";
import type { JWK } from "jose";
import type { Db } from "./db.js";
import { signingKeys } from "./schema.js";
import type { KeyStore } from "../tokens/jwt.js";

export function createKeyStore(db: Db): KeyStore {
  return {
    async listUsable(now) {
      const rows = await db
        .select()
        .from(signingKeys)
        .where(or(isNull(signingKeys.retiresAt), gt(signingKeys.retiresAt, now)))
        .orderBy(desc(signingKeys.activatesAt));
      return rows.map((r) => ({
        kid: r.kid,
        alg: r.alg,
        publicJwk: r.publicJwk as JWK,
        privateJwk: r.privateJwk as JWK,
        createdAt: r.createdAt,
        activatesAt: r.activatesAt,
        retiresAt: r.retiresAt,
      }));
    },
    async insert(key) {
      await db.insert(signingKeys).values(key).onConflictDoNothing();
    },
  };
}
