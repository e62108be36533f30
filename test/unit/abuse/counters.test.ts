import { describe, expect, it } from "vitest";
import { createMemoryCounters } from "../../../src/abuse/counters.js";

// Window 600 ms → six buckets of 100 ms. The clock starts on a bucket edge.
const W = 600;
const B = 100;

function setup(opts: { maxKeys?: number; maxMembersPerKey?: number } = {}) {
  let t = 1_000_000;
  const counters = createMemoryCounters({ ...opts, now: () => t });
  return {
    counters,
    advance(ms: number) {
      t += ms;
    },
  };
}

describe("memory window counters: distinct members", () => {
  it("counts each member once", async () => {
    const { counters } = setup();
    expect(await counters.addDistinct("ip", "alice", W)).toBe(1);
    expect(await counters.addDistinct("ip", "bob", W)).toBe(2);
    expect(await counters.addDistinct("ip", "alice", W)).toBe(2);
    expect(await counters.addDistinct("other-ip", "alice", W)).toBe(1);
    for (let i = 0; i < 1_000; i++) await counters.addDistinct("spray", `user-${i}`, W);
    expect(await counters.addDistinct("spray", "user-0", W)).toBe(1_000);
  });

  it("keeps members for the whole window and forgets them one bucket after it", async () => {
    const { counters, advance } = setup();
    await counters.addDistinct("ip", "alice", W);
    advance(B - 1);
    await counters.addDistinct("ip", "bob", W); // same bucket as alice, at its end
    advance(W - 1);
    expect(await counters.addDistinct("ip", "carol", W)).toBe(3); // bob is W - 1 old
    advance(B + 1);
    // alice and bob's bucket no longer overlaps the window
    expect(await counters.addDistinct("ip", "dave", W)).toBe(2);
    advance(W + B);
    expect(await counters.addDistinct("ip", "erin", W)).toBe(1);
  });

  it("a sighting renews a member", async () => {
    const { counters, advance } = setup();
    await counters.addDistinct("ip", "alice", W);
    await counters.addDistinct("ip", "bob", W);
    advance(W - B);
    expect(await counters.addDistinct("ip", "alice", W)).toBe(2);
    advance(2 * B);
    expect(await counters.addDistinct("ip", "carol", W)).toBe(2); // alice and carol
  });

  it("windows of different lengths count separately", async () => {
    const { counters } = setup();
    await counters.addDistinct("ip", "alice", W);
    expect(await counters.addDistinct("ip", "bob", 60_000)).toBe(1);
  });

  it("saturates at maxMembersPerKey instead of growing without bound", async () => {
    const { counters } = setup({ maxMembersPerKey: 50 });
    for (let i = 0; i < 49; i++) await counters.addDistinct("ip", `user-${i}`, W);
    expect(await counters.addDistinct("ip", "user-49", W)).toBe(50);
    expect(await counters.addDistinct("ip", "user-50", W)).toBe(50);
  });
});

describe("memory window counters: increments", () => {
  it("counts within the window and weighs the oldest bucket by its overlap", async () => {
    const { counters, advance } = setup();
    for (let i = 1; i <= 6; i++) expect(await counters.increment("ip", W)).toBe(i);
    advance(3 * B);
    expect(await counters.increment("ip", W)).toBe(7);
    advance(3 * B + B / 2);
    // The six first events sit in a bucket half inside the window: 6·½ + 1 + 1.
    expect(await counters.increment("ip", W)).toBe(5);
    advance(B / 2);
    expect(await counters.increment("ip", W)).toBe(3);
    advance(10 * W);
    expect(await counters.increment("ip", W)).toBe(1);
  });

  it("keys and windows are independent", async () => {
    const { counters } = setup();
    await counters.increment("a", W);
    await counters.increment("a", W);
    expect(await counters.increment("b", W)).toBe(1);
    expect(await counters.increment("a", 2 * W)).toBe(1);
  });
});

describe("memory window counters: bounds", () => {
  it("holds at most maxKeys keys, dropping the least recently used", async () => {
    const { counters } = setup({ maxKeys: 2 });
    await counters.increment("a", W);
    await counters.addDistinct("b", "alice", W);
    await counters.increment("a", W); // a is now the most recently used
    await counters.increment("c", W); // evicts b
    expect(await counters.increment("a", W)).toBe(3);
    expect(await counters.addDistinct("b", "bob", W)).toBe(1);
    expect(counters.mode()).toBe("memory");
    await counters.close();
  });

  it("rejects a window that is not positive", async () => {
    const { counters } = setup();
    await expect(counters.increment("a", 0)).rejects.toThrow(RangeError);
    await expect(counters.addDistinct("a", "m", Number.NaN)).rejects.toThrow(RangeError);
  });
});
