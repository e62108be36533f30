import type { KeyRotation, KeyStore, StoredKey } from "../../src/keys/ports.js";

// The KeyStore contract (storage/key-store.ts) in memory, for unit tests:
// usable = not retired at `now`, newest activation first; copies in and out,
// like a database; rotations run one at a time, like under the advisory lock.

export interface MemoryKeyStore extends KeyStore {
  readonly rows: StoredKey[];
  inserts: number;
  lists: number;
}

/** KeyStore.rotate over an array of rows. */
export function rotateRows(rows: StoredKey[], input: Parameters<KeyStore["rotate"]>[0]): KeyRotation {
  const { next, retireOthersAt, now, force } = input;
  if (!force) {
    const pending = rows
      .filter((k) => k.activatesAt > now && (k.retiresAt === null || k.retiresAt > now))
      .sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())[0];
    if (pending) return { rotated: false, pending: structuredClone(pending) };
  }
  const retired: { kid: string; retiresAt: Date }[] = [];
  for (const k of rows) {
    if (k.retiresAt === null || k.retiresAt > retireOthersAt) {
      k.retiresAt = new Date(retireOthersAt);
      retired.push({ kid: k.kid, retiresAt: new Date(retireOthersAt) });
    }
  }
  rows.push(structuredClone(next));
  return { rotated: true, retired };
}

export function memoryKeyStore(initial: StoredKey[] = []): MemoryKeyStore {
  const rows = initial.map((k) => structuredClone(k));
  let lock: Promise<unknown> = Promise.resolve();
  return {
    rows,
    inserts: 0,
    lists: 0,
    async listUsable(now) {
      this.lists++;
      return rows
        .filter((k) => k.retiresAt === null || k.retiresAt > now)
        .sort((a, b) => b.activatesAt.getTime() - a.activatesAt.getTime())
        .map((k) => structuredClone(k));
    },
    async insert(key) {
      this.inserts++;
      if (!rows.some((k) => k.kid === key.kid)) rows.push(structuredClone(key));
    },
    rotate(input) {
      const result = lock.then(async () => {
        // Yield once so concurrent rotations really interleave without the lock.
        await new Promise((resolve) => setImmediate(resolve));
        return rotateRows(rows, input);
      });
      lock = result.catch(() => {});
      return result;
    },
  };
}
