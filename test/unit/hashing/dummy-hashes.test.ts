import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createArgon2Hasher, parsePhc, phcParamsId } from "../../../src/hashing/argon2.js";
import { loadDummyHashes } from "../../../src/hashing/dummy-hashes.js";

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
