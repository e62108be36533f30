import argon2 from "argon2";
import { describe, expect, it } from "vitest";
import { createArgon2Hasher, OWASP_ARGON2ID, parsePhc, type Argon2Params } from "../../../src/hashing/argon2.js";

// Cheap parameters: the code paths are the same as with the production cost.
const params: Argon2Params = { memoryKib: 8192, timeCost: 1, parallelism: 1 };
const limits = { concurrency: 2, maxQueue: 32, queueTimeoutMs: 10_000 };
const hasher = createArgon2Hasher(params, limits);

const PHC_8192 = /^\$argon2id\$v=19\$m=8192,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;

describe("createArgon2Hasher", () => {
  it("produces an argon2id v19 PHC string with the configured parameters", async () => {
    const hash = await hasher.hash("correct horse battery staple");
    expect(hash).toMatch(PHC_8192);
    expect(parsePhc(hash)).toEqual({ algorithm: "argon2id", version: 19, params });
  });

  it("verifies the right password and refuses a wrong one", async () => {
    const hash = await hasher.hash("correct horse battery staple");
    await expect(hasher.verify(hash, "correct horse battery staple")).resolves.toBe(true);
    await expect(hasher.verify(hash, "correct horse battery stapl")).resolves.toBe(false);
    await expect(hasher.verify(hash, "Correct horse battery staple")).resolves.toBe(false);
    await expect(hasher.verify(hash, "")).resolves.toBe(false);
  });

  it("hashes non-ASCII passwords byte-exactly (composed and decomposed é differ)", async () => {
    const hash = await hasher.hash("caf\u00e9-au-lait");
    await expect(hasher.verify(hash, "caf\u00e9-au-lait")).resolves.toBe(true);
    // Normalisation is the policy's job (normalizePassword), not the hasher's.
    await expect(hasher.verify(hash, "cafe\u0301-au-lait")).resolves.toBe(false);
  });

  it("salts: two hashes of one password differ, and both verify", async () => {
    const [a, b] = await Promise.all([hasher.hash("same password"), hasher.hash("same password")]);
    expect(a).not.toBe(b);
    const saltOf = (h: string) => h.split("$")[4];
    expect(saltOf(a)).not.toBe(saltOf(b));
    await expect(hasher.verify(a, "same password")).resolves.toBe(true);
    await expect(hasher.verify(b, "same password")).resolves.toBe(true);
  });

  describe("needsRehash", () => {
    it("is false for a hash made with the configured parameters", async () => {
      expect(hasher.needsRehash(await hasher.hash("p@ssphrase-one"))).toBe(false);
    });

    it.each([
      ["a different memory cost", "$argon2id$v=19$m=19456,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
      ["a different time cost", "$argon2id$v=19$m=8192,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
      ["a different parallelism", "$argon2id$v=19$m=8192,t=1,p=2$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
      ["argon2i", "$argon2i$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
      ["argon2d", "$argon2d$v=19$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
      ["argon2 version 1.0 (v=16)", "$argon2id$v=16$m=8192,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
      ["a bcrypt hash", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"],
      ["garbage", "not a hash"],
      ["the empty string", ""],
    ])("is true for %s", (_what, stored) => {
      expect(hasher.needsRehash(stored)).toBe(true);
    });

    it("is true for our hash once the configured cost changes", async () => {
      const hash = await hasher.hash("p@ssphrase-two");
      expect(createArgon2Hasher(OWASP_ARGON2ID, limits).needsRehash(hash)).toBe(true);
      expect(createArgon2Hasher({ ...params, timeCost: 2 }, limits).needsRehash(hash)).toBe(true);
      expect(createArgon2Hasher({ ...params, parallelism: 2 }, limits).needsRehash(hash)).toBe(true);
    });
  });

  it.each([
    ["garbage", "not a hash"],
    ["the empty string", ""],
    ["a truncated PHC string", "$argon2id$v=19$m=8192,t=1,p=1$c29tZXNhbHQ"],
    ["a PHC string with a bad parameter", "$argon2id$v=19$m=abc,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"],
    ["an unsupported algorithm", "$scrypt$ln=16,r=8,p=1$c29tZXNhbHQ$aGFzaA"],
    ["a bcrypt hash", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"],
  ])("verifies a malformed stored hash (%s) as false without throwing", async (_what, stored) => {
    await expect(hasher.verify(stored, "anything")).resolves.toBe(false);
  });

  describe("interoperability with the argon2 npm package", () => {
    const theirOptions = {
      type: argon2.argon2id,
      memoryCost: params.memoryKib,
      timeCost: params.timeCost,
      parallelism: params.parallelism,
      hashLength: 32,
    } as const;

    it("verifies a hash made by argon2", async () => {
      const theirs = await argon2.hash("interop password \u00e9", theirOptions);
      expect(theirs).toMatch(/^\$argon2id\$v=19\$/);
      await expect(hasher.verify(theirs, "interop password \u00e9")).resolves.toBe(true);
      await expect(hasher.verify(theirs, "interop password e")).resolves.toBe(false);
    });

    it("makes hashes argon2 verifies", async () => {
      const ours = await hasher.hash("interop password \u00e9");
      await expect(argon2.verify(ours, "interop password \u00e9")).resolves.toBe(true);
      await expect(argon2.verify(ours, "interop password e")).resolves.toBe(false);
      expect(argon2.needsRehash(ours, { memoryCost: 8192, timeCost: 1, parallelism: 1 })).toBe(false);
    });
  });
});
