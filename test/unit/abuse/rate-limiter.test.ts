import { describe, expect, it } from "vitest";
import { createMemoryRateLimiter, type LimitCheck, type Rate } from "../../../src/abuse/rate-limiter.js";

function fakeClock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

const tenPerSecond: Rate = { limit: 10, periodMs: 1_000 };

function setup(opts: { maxKeys?: number } = {}) {
  const clock = fakeClock();
  const limiter = createMemoryRateLimiter({ ...opts, now: clock.now });
  const one = (key: string, rate: Rate, cost?: number) => limiter.consume([{ key, rate, ...(cost === undefined ? {} : { cost }) }]);
  /** How many single requests pass in a row right now (stops at the first refusal). */
  async function drain(key: string, rate: Rate, max = 1_000): Promise<number> {
    for (let n = 0; n < max; n++) if (!(await one(key, rate)).allowed) return n;
    return max;
  }
  return { clock, limiter, one, drain };
}

describe("memory rate limiter (GCRA)", () => {
  it("lets exactly the burst through at once, then refuses with the emission interval as retry-after", async () => {
    const { clock, one } = setup();
    for (let i = 0; i < 10; i++) expect(await one("k", tenPerSecond)).toEqual({ allowed: true });
    expect(await one("k", tenPerSecond)).toEqual({ allowed: false, key: "k", retryAfterMs: 100 });
    clock.advance(99);
    expect(await one("k", tenPerSecond)).toEqual({ allowed: false, key: "k", retryAfterMs: 1 });
    clock.advance(1);
    expect(await one("k", tenPerSecond)).toEqual({ allowed: true });
    expect(await one("k", tenPerSecond)).toMatchObject({ allowed: false, retryAfterMs: 100 });
  });

  it("a smaller burst than the limit", async () => {
    const { clock, drain } = setup();
    const rate = { limit: 10, periodMs: 1_000, burst: 3 };
    expect(await drain("k", rate)).toBe(3);
    clock.advance(100);
    expect(await drain("k", rate)).toBe(1);
    clock.advance(1_000);
    expect(await drain("k", rate)).toBe(3);
  });

  it("holds the sustained rate under twice the offered load", async () => {
    const { clock, one } = setup();
    const rate = { limit: 10, periodMs: 1_000, burst: 5 };
    let allowed = 0;
    let last = 0;
    for (let t = 0; t < 10_000; t += 50) {
      if ((await one("k", rate)).allowed) allowed++;
      last = t;
      clock.advance(50);
    }
    // GCRA admits at most burst + elapsed/T over any span, and an
    // overloaded key reaches that bound.
    const interval = rate.periodMs / rate.limit;
    expect(allowed).toBe(Math.floor(last / interval) + rate.burst);
  });

  it("a period that is not a multiple of the limit still admits the whole burst", async () => {
    const { clock, drain } = setup();
    const rate = { limit: 3, periodMs: 1_000 };
    expect(await drain("k", rate)).toBe(3);
    clock.advance(333);
    expect(await drain("k", rate)).toBe(0);
    clock.advance(1);
    expect(await drain("k", rate)).toBe(1);
  });

  it("a cost above one uses that many cells", async () => {
    const { clock, one } = setup();
    expect(await one("k", tenPerSecond, 4)).toEqual({ allowed: true });
    expect(await one("k", tenPerSecond, 4)).toEqual({ allowed: true });
    expect(await one("k", tenPerSecond, 4)).toEqual({ allowed: false, key: "k", retryAfterMs: 200 });
    expect(await one("k", tenPerSecond, 2)).toEqual({ allowed: true });
    expect(await one("k", tenPerSecond, 1)).toEqual({ allowed: false, key: "k", retryAfterMs: 100 });
    clock.advance(400);
    expect(await one("k", tenPerSecond, 4)).toEqual({ allowed: true });
  });

  it("rejects a cost larger than the burst and malformed rates", async () => {
    const { one } = setup();
    await expect(one("k", tenPerSecond, 11)).rejects.toThrow(RangeError);
    await expect(one("k", { limit: 0, periodMs: 1_000 })).rejects.toThrow(RangeError);
    await expect(one("k", { limit: 1, periodMs: -1 })).rejects.toThrow(RangeError);
    await expect(one("k", { limit: 1, periodMs: 1_000, burst: 0.5 })).rejects.toThrow(RangeError);
    await expect(one("k", tenPerSecond, 1.5)).rejects.toThrow(RangeError);
  });

  it("is all-or-nothing: a refused multi-key consume leaves every other key untouched", async () => {
    const { limiter, drain } = setup();
    const wide = { limit: 5, periodMs: 60_000 };
    const narrow = { limit: 2, periodMs: 60_000 };
    expect(await drain("narrow", narrow)).toBe(2);
    for (let i = 0; i < 3; i++) {
      const d = await limiter.consume([
        { key: "wide", rate: wide },
        { key: "narrow", rate: narrow },
      ]);
      expect(d).toMatchObject({ allowed: false, key: "narrow" });
    }
    expect(await drain("wide", wide)).toBe(5);
  });

  it("an allowed multi-key consume takes from every key", async () => {
    const { limiter, drain } = setup();
    const rate = { limit: 3, periodMs: 60_000 };
    expect(await limiter.consume([{ key: "a", rate }, { key: "b", rate, cost: 2 }])).toEqual({ allowed: true });
    expect(await drain("a", rate)).toBe(2);
    expect(await drain("b", rate)).toBe(1);
  });

  it("names the first refusing key and waits for the slowest", async () => {
    const { limiter, drain } = setup();
    const fast = { limit: 1, periodMs: 100 };
    const slow = { limit: 1, periodMs: 10_000 };
    expect(await drain("x", fast)).toBe(1);
    expect(await drain("y", slow)).toBe(1);
    const d = await limiter.consume([
      { key: "free", rate: fast },
      { key: "x", rate: fast },
      { key: "y", rate: slow },
    ]);
    expect(d).toEqual({ allowed: false, key: "x", retryAfterMs: 10_000 });
  });

  it("a key repeated in one consume sees its earlier check", async () => {
    const { limiter, drain } = setup();
    const rate = { limit: 1, periodMs: 60_000 };
    const twice: LimitCheck[] = [
      { key: "k", rate },
      { key: "k", rate },
    ];
    expect(await limiter.consume(twice)).toMatchObject({ allowed: false, key: "k" });
    expect(await drain("k", rate)).toBe(1);
  });

  it("blocks a key under any rate, for the remaining time, until it expires", async () => {
    const { clock, limiter, one, drain } = setup();
    expect(await limiter.blockedFor("k")).toBeUndefined();
    await limiter.block("k", 5_000);
    expect(await limiter.blockedFor("k")).toBe(5_000);
    const d = await limiter.consume([
      { key: "other", rate: tenPerSecond },
      { key: "k", rate: { limit: 1_000, periodMs: 1 } },
    ]);
    expect(d).toEqual({ allowed: false, key: "k", retryAfterMs: 5_000 });
    expect(await drain("other", tenPerSecond)).toBe(10); // the refused consume took nothing from it
    clock.advance(3_000);
    expect(await one("k", tenPerSecond)).toEqual({ allowed: false, key: "k", retryAfterMs: 2_000 });
    expect(await limiter.blockedFor("k")).toBe(2_000);
    clock.advance(2_000);
    expect(await limiter.blockedFor("k")).toBeUndefined();
    expect(await one("k", tenPerSecond)).toEqual({ allowed: true });
  });

  it("a shorter block never shortens a longer one; a longer one extends it", async () => {
    const { clock, limiter } = setup();
    await limiter.block("k", 10_000);
    clock.advance(1_000);
    await limiter.block("k", 1_000);
    expect(await limiter.blockedFor("k")).toBe(9_000);
    await limiter.block("k", 20_000);
    expect(await limiter.blockedFor("k")).toBe(20_000);
    await limiter.block("k", 0);
    expect(await limiter.blockedFor("k")).toBe(20_000);
  });

  it("holds at most maxKeys keys, dropping the least recently used", async () => {
    const { limiter, drain } = setup({ maxKeys: 3 });
    const rate = { limit: 1, periodMs: 60_000 };
    expect(await drain("a", rate)).toBe(1);
    expect(await drain("b", rate)).toBe(1);
    expect(await drain("c", rate)).toBe(1);
    await limiter.block("b", 60_000); // b is now the most recently used
    expect(await drain("d", rate)).toBe(1); // evicts a
    expect(await drain("a", rate)).toBe(1); // forgotten, so allowed again; evicts c
    expect(await drain("b", rate)).toBe(0);
    expect(await limiter.blockedFor("b")).toBe(60_000);
    expect(await drain("d", rate)).toBe(0);
    expect(await drain("c", rate)).toBe(1);
  });

  it("reports memory mode and an empty check list is allowed", async () => {
    const { limiter } = setup();
    expect(limiter.mode()).toBe("memory");
    expect(await limiter.consume([])).toEqual({ allowed: true });
    await limiter.close();
  });
});
