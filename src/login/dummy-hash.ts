import { createHmac } from "node:crypto";

// Which hash a login for an unknown address is verified against.
//
// A wrong password costs what the account's stored hash costs. After an
// operator raises the argon2 cost, accounts keep their old, cheaper hash
// until their next login; if unknown addresses were always verified at the
// new cost, a fast answer would prove the account exists. So there is one
// dummy per parameter set still in use, and each unknown address gets one of
// them:
// - the same one every time (a random pick per attempt would vary where a
//   real account never does, and repeating the attempt would tell them apart);
// - by a keyed hash, so nobody outside can tell which set an address gets;
// - by rendezvous hashing (the highest score wins), so a set appearing or
//   going away moves only the addresses that gain or lose it.
// The pick is uniform over the sets, not weighted by how many accounts use
// each (counting them would mean reading every credential): a given timing
// stays consistent with both "old account" and "no account".

export interface DummyHashes {
  /** The hash a login for this (canonical) address is verified against when no account has it. */
  forAddress(address: string): string;
  /** The dummies by parameter set; the first is the current configuration's. */
  sets(): ReadonlyMap<string, string>;
  /** Replaces the dummies (the current set must stay among them). */
  replace(dummies: ReadonlyMap<string, string>): void;
}

export function createDummyHashes(key: Uint8Array, initial: ReadonlyMap<string, string>): DummyHashes {
  let dummies = new Map(initial);
  if (dummies.size === 0) throw new Error("at least one dummy hash is needed");

  function score(set: string, address: string): Buffer {
    return createHmac("sha256", key).update("dummy-hash").update("\0").update(set).update("\0").update(address).digest();
  }

  return {
    forAddress(address) {
      let best: { hash: string; score: Buffer } | undefined;
      for (const [set, hash] of dummies) {
        const s = score(set, address);
        if (!best || Buffer.compare(s, best.score) > 0) best = { hash, score: s };
      }
      return best!.hash;
    },
    sets: () => dummies,
    replace(next) {
      if (next.size === 0) throw new Error("at least one dummy hash is needed");
      dummies = new Map(next);
    },
  };
}
