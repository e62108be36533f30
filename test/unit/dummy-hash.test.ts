import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createDummyHashes } from "../../src/login/dummy-hash.js";
import { createArgon2Hasher, parsePhc, phcParamsId } from "../../src/hashing/argon2.js";
import { loadDummyHashes } from "../../src/hashing/dummy-hashes.js";

const addresses = Array.from({ length: 600 }, (_, i) => `user${i}@example.com`);
const sets = (...names: string[]) => new Map(names.map((n) => [n, `hash-of-${n}`]));

describe("the dummy hash an unknown address is verified against", () => {
  it("is the same for an address every time, and on every instance sharing the key", () => {
    const key = randomBytes(32);
    const a = createDummyHashes(key, sets("t=1", "t=2", "t=3"));
    const b = createDummyHashes(Buffer.from(key), sets("t=3", "t=1", "t=2")); // another instance, another order
    for (const address of addresses.slice(0, 50)) {
      expect(a.forAddress(address)).toBe(a.forAddress(address));
      expect(b.forAddress(address)).toBe(a.forAddress(address));
    }
  });

  it("spreads addresses over every set in use, about evenly", () => {
    const d = createDummyHashes(randomBytes(32), sets("t=1", "t=2", "t=3"));
    const counts = new Map<string, number>();
    for (const address of addresses) counts.set(d.forAddress(address), (counts.get(d.forAddress(address)) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual(["hash-of-t=1", "hash-of-t=2", "hash-of-t=3"]);
    // 200 expected each; 120 is more than 6 standard deviations away.
    for (const n of counts.values()) expect(n).toBeGreaterThan(120);
  });

  it("depends on the secret key: without it an outsider cannot tell which set an address gets", () => {
    const one = createDummyHashes(randomBytes(32), sets("t=1", "t=2"));
    const other = createDummyHashes(randomBytes(32), sets("t=1", "t=2"));
    const differing = addresses.filter((a) => one.forAddress(a) !== other.forAddress(a)).length;
    // Independent keys agree on about half the addresses.
    expect(differing).toBeGreaterThan(200);
    expect(differing).toBeLessThan(400);
  });

  it("a new set takes addresses only for itself, and its removal gives exactly those back", () => {
    const d = createDummyHashes(randomBytes(32), sets("t=1", "t=2"));
    const before = new Map(addresses.map((a) => [a, d.forAddress(a)]));
    d.replace(sets("t=1", "t=2", "t=3"));
    const moved = addresses.filter((a) => d.forAddress(a) !== before.get(a));
    expect(moved.length).toBeGreaterThan(100);
    for (const a of moved) expect(d.forAddress(a)).toBe("hash-of-t=3");
    d.replace(sets("t=1", "t=2"));
    for (const a of addresses) expect(d.forAddress(a)).toBe(before.get(a));
  });

  it("with one set in use, every address gets it; an empty set of dummies is refused", () => {
    const d = createDummyHashes(randomBytes(32), sets("t=2"));
    for (const a of addresses.slice(0, 20)) expect(d.forAddress(a)).toBe("hash-of-t=2");
    expect(() => d.replace(new Map())).toThrow();
    expect(() => createDummyHashes(randomBytes(32), new Map())).toThrow();
  });
});

describe("loadDummyHashes: one dummy per argon2 parameter set in use", () => {
  const current = createArgon2Hasher({ memoryKib: 8192, timeCost: 2, parallelism: 1 }, { concurrency: 2, maxQueue: 16, queueTimeoutMs: 5_000 });

  it("makes a dummy with each set's own parameters, once, and drops sets no longer in use", async () => {
    let heads = ["argon2id$v=19$m=8192,t=1,p=1", "argon2id$v=19$m=8192,t=2,p=1"];
    const source = await loadDummyHashes({ key: randomBytes(32), current: await current.hash("x"), inUse: async () => heads });
    const ids = () => [...source.dummies.sets().keys()];
    // The current set first; the t=2 head is the current one, not a second dummy.
    expect(ids()).toEqual(["argon2id$v=19$m=8192,t=2,p=1", "argon2id$v=19$m=8192,t=1,p=1"]);
    const old = source.dummies.sets().get("argon2id$v=19$m=8192,t=1,p=1")!;
    expect(parsePhc(old)).toEqual({ algorithm: "argon2id", version: 19, params: { memoryKib: 8192, timeCost: 1, parallelism: 1 } });

    // The argon2 package's m,p,t order names the same set; argon2i is a set of its own.
    heads = ["argon2i$v=19$m=8192,t=3,p=1", "argon2id$v=19$m=8192,p=1,t=1"];
    await source.refresh();
    expect(ids()).toEqual(["argon2id$v=19$m=8192,t=2,p=1", "argon2i$v=19$m=8192,t=3,p=1", "argon2id$v=19$m=8192,t=1,p=1"]);
    expect(source.dummies.sets().get("argon2id$v=19$m=8192,t=1,p=1")).toBe(old); // made once
    expect(parsePhc(source.dummies.sets().get("argon2i$v=19$m=8192,t=3,p=1")!)?.algorithm).toBe("argon2i");

    heads = [];
    await source.refresh();
    expect(ids()).toEqual(["argon2id$v=19$m=8192,t=2,p=1"]);
  });

  it("skips heads it cannot imitate, counting them", async () => {
    const counted: number[] = [];
    const source = await loadDummyHashes({
      key: randomBytes(32),
      current: await current.hash("x"),
      inUse: async () => ["2b$12$saltandhash", "argon2id$v=19$m=8192,t=1000,p=1", "argon2id$v=7$m=8192,t=1,p=1", "scrypt$ln=15"],
      onUnusable: (n) => counted.push(n),
    });
    expect([...source.dummies.sets().keys()]).toEqual(["argon2id$v=19$m=8192,t=2,p=1"]);
    expect(counted).toEqual([4]);
  });

  it("a failing lookup leaves the dummies in place", async () => {
    let fail = false;
    const source = await loadDummyHashes({
      key: randomBytes(32),
      current: await current.hash("x"),
      inUse: async () => {
        if (fail) throw new Error("database down");
        return ["argon2id$v=19$m=8192,t=1,p=1"];
      },
    });
    fail = true;
    await expect(source.refresh()).rejects.toThrow("database down");
    expect(source.dummies.sets().size).toBe(2);
    expect(phcParamsId(parsePhc(source.dummies.forAddress("a@example.com"))!)).toMatch(/^argon2id\$v=19\$m=8192,t=[12],p=1$/);
  });
});
