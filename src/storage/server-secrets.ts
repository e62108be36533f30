import { randomBytes } from "node:crypto";
import { and, eq, isNotNull } from "drizzle-orm";
import type { SecretBox } from "../keys/secret-box.js";
import { bytes, type Db } from "./db.js";
import { serverSecrets } from "./schema.js";
import { openSealed } from "./sealed.js";

/** Random keys every instance shares (`server_secrets`), sealed at rest by the key-encryption keys. */
export interface ServerSecrets {
  /** The secret `name`, created (`length` random bytes) by whichever instance asks first; the others read that one. */
  shared(name: string, length?: number): Promise<Uint8Array>;
  /** The secret `name` if some earlier version created it; never creates one. */
  existing(name: string): Promise<Uint8Array | undefined>;
}

const aadOf = (name: string) => `server_secret:${name}`;

/**
 * Whoever holds the database (and Redis) but not the key-encryption keys
 * cannot read these: the abuse-defence HMAC key, for one, would let them
 * test password guesses against the spray detector's fingerprints.
 * A clear-text row (from before migration 0007) or one sealed under an older
 * key-encryption key is sealed with the current one when read.
 */
export function createServerSecrets(db: Db, box: SecretBox): ServerSecrets {
  const seal = (name: string, value: Uint8Array) => bytes(box.seal(value, aadOf(name)));

  async function read(name: string): Promise<Uint8Array | undefined> {
    const [row] = await db.select().from(serverSecrets).where(eq(serverSecrets.name, name));
    if (!row) return undefined;
    if (row.sealedValue === null) {
      const value = row.value!;
      // Conditional: instances upgrading at once seal it once.
      await db
        .update(serverSecrets)
        .set({ sealedValue: seal(name, value), value: null })
        .where(and(eq(serverSecrets.name, name), isNotNull(serverSecrets.value)));
      return value;
    }
    const value = openSealed(box, row.sealedValue, aadOf(name), `server secret ${name}`);
    if (box.needsReseal(row.sealedValue)) {
      await db
        .update(serverSecrets)
        .set({ sealedValue: seal(name, value) })
        .where(and(eq(serverSecrets.name, name), eq(serverSecrets.sealedValue, bytes(row.sealedValue))));
    }
    return value;
  }

  return {
    async shared(name, length = 32) {
      // A no-op for every instance but the first.
      await db
        .insert(serverSecrets)
        .values({ name, sealedValue: seal(name, randomBytes(length)), createdAt: new Date() })
        .onConflictDoNothing({ target: serverSecrets.name });
      const value = await read(name);
      if (!value) throw new Error(`server secret ${name} missing after insert`);
      return value;
    },
    existing: read,
  };
}
