import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createDummyHashes } from "../../../src/login/dummy-hash.js";

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
