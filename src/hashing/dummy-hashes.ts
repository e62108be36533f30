import { randomUUID } from "node:crypto";
import { createDummyHashes, type DummyHashes } from "../login/dummy-hash.js";
import { hashWithParams, parsePhc, parsePhcHead, phcParamsId } from "./argon2.js";

// Keeps one dummy hash per argon2 parameter set that stored credentials
// still use (see login/dummy-hash.ts for why and how one is picked).

export interface DummyHashSource {
  dummies: DummyHashes;
  /** Re-reads the parameter sets in use; each set's dummy is made once and kept while the set is in use. */
  refresh(): Promise<void>;
}

export async function loadDummyHashes(opts: {
  /** Key of the keyed pick (shared by every instance, so all pick alike). */
  key: Uint8Array;
  /** A hash made by the configured hasher: the current parameter set's dummy. */
  current: string;
  /** The parameter heads of stored credentials ("argon2id$v=19$m=…,t=…,p=…"). */
  inUse(): Promise<string[]>;
  /** Heads that are not argon2 parameters this service can reproduce (counted, never logged: they may carry a salt). */
  onUnusable?(count: number): void;
}): Promise<DummyHashSource> {
  const parsed = parsePhc(opts.current);
  // An injected hasher (tests) may not write PHC strings: it is still the current set.
  const currentId = parsed ? phcParamsId(parsed) : "current";
  const made = new Map<string, string>();
  const dummies = createDummyHashes(opts.key, new Map([[currentId, opts.current]]));

  async function refresh(): Promise<void> {
    const heads = await opts.inUse();
    const next = new Map([[currentId, opts.current]]);
    let unusable = 0;
    for (const head of heads) {
      const params = parsePhcHead(head);
      const id = params && phcParamsId(params);
      if (!params || !id) {
        unusable++;
        continue;
      }
      if (next.has(id)) continue;
      const hash = made.get(id) ?? (await hashWithParams(params, randomUUID()));
      if (hash === undefined) {
        unusable++;
        continue;
      }
      next.set(id, hash);
    }
    made.clear();
    for (const [id, hash] of next) made.set(id, hash);
    dummies.replace(next);
    if (unusable > 0) opts.onUnusable?.(unusable);
  }

  await refresh();
  return { dummies, refresh };
}
