import { randomUUID } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createMemoryCounters, createRedisCounters, type WindowCounters } from "../../../src/abuse/counters.js";
import { createMemoryRateLimiter, createRedisRateLimiter, type Rate, type RateLimiter } from "../../../src/abuse/rate-limiter.js";
import { REDIS_TEST_URL, redisAvailable, redisServerBinary, startPrivateRedis } from "../../support/redis.js";
import { expectEventually, expectNear, expectWithin, sleep, timed } from "../../support/timing.js";

// The Redis rate limiter and counters against a real Redis (REDIS_TEST_URL;
// a missing Redis fails the run when CI=true), and their failover to memory
// against private redis-servers that the tests stop and start.

if (!redisServerBinary && process.env.CI) throw new Error("CI must run the abuse failover suite: redis-server is needed");

/** How often the tests below poll a condition (expectEventually's default): the granularity of a deadline they watch. */
const POLL_MS = 20;

type ModeChange = [mode: "redis" | "memory", err: unknown];

/** Counts whole RESP commands in what a client sent. */
function countCommands(buf: Buffer): number {
  let at = 0;
  let commands = 0;
  const line = () => {
    const end = buf.indexOf("\r\n", at);
    const text = buf.toString("latin1", at, end);
    at = end + 2;
    return text;
  };
  while (at < buf.length) {
    const head = line();
    if (!head.startsWith("*")) throw new Error(`unexpected RESP: ${head}`);
    for (let n = Number(head.slice(1)); n > 0; n--) {
      const length = Number(line().slice(1));
      at += length + 2;
    }
    commands++;
  }
  return commands;
}

/**
 * A TCP proxy in front of Redis that counts the commands sent through it and
 * can hold Redis's replies back (a hung server on a live connection).
 */
async function startProxy(target: string) {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let sent = Buffer.alloc(0);
  let frozen = false;
  const held: (() => void)[] = [];
  const server = createServer((client) => {
    const upstream = connect({ host: hostname, port: Number(port || 6379) });
    sockets.add(client).add(upstream);
    client.on("data", (d: Buffer) => {
      sent = Buffer.concat([sent, d]);
      upstream.write(d);
    });
    upstream.on("data", (d: Buffer) => (frozen ? held.push(() => client.write(d)) : client.write(d)));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) s.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${address.port}`,
    commandsSent: () => countCommands(sent),
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const deliver of held.splice(0)) deliver();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const runId = randomUUID();
const prefixOf = (name: string) => `identity:test:${runId}:${name}:`;

describe.skipIf(!redisAvailable)("redis rate limiter and counters (contract)", () => {
  let admin: Redis;
  const open: { mode(): string; close(): Promise<void> }[] = [];
  const changes: ModeChange[] = [];
  const onModeChange = (mode: "redis" | "memory", err?: unknown) => changes.push([mode, err]);

  // A generous command timeout: these tests are about semantics, and must
  // not fall back to memory on a busy machine (afterEach checks they did not).
  function limiter(prefix = prefixOf("rl")): RateLimiter {
    const l = createRedisRateLimiter({ url: REDIS_TEST_URL, prefix, commandTimeoutMs: 2_000, fallback: createMemoryRateLimiter({}), onModeChange });
    open.push(l);
    return l;
  }
  function counters(prefix = prefixOf("ctr")): WindowCounters {
    const c = createRedisCounters({ url: REDIS_TEST_URL, prefix, commandTimeoutMs: 2_000, fallback: createMemoryCounters({}), onModeChange });
    open.push(c);
    return c;
  }
  async function drain(l: RateLimiter, key: string, rate: Rate, max = 100): Promise<number> {
    for (let n = 0; n < max; n++) if (!(await l.consume([{ key, rate }])).allowed) return n;
    return max;
  }
  async function keysUnder(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1_000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== "0");
    return keys;
  }

  beforeAll(() => {
    admin = new Redis(REDIS_TEST_URL);
  });
  afterEach(async () => {
    for (const x of open) expect(x.mode()).toBe("redis");
    expect(changes).toEqual([]);
    await Promise.all(open.splice(0).map((x) => x.close()));
  });
  afterAll(async () => {
    const keys = await keysUnder(`identity:test:${runId}:`);
    if (keys.length > 0) await admin.del(...keys);
    admin.disconnect();
  });

  it("lets exactly the burst through at once, refuses the next for about one emission interval", async () => {
    const l = limiter();
    const slow = { limit: 10, periodMs: 60_000 };
    const burst = await Promise.all(Array.from({ length: 10 }, () => l.consume([{ key: "slow", rate: slow }])));
    expect(burst.every((d) => d.allowed)).toBe(true);
    const refused = await l.consume([{ key: "slow", rate: slow }]);
    expect(refused).toMatchObject({ allowed: false, key: "slow" });
    const retry = (refused as { retryAfterMs: number }).retryAfterMs;
    expect(retry).toBeGreaterThan(5_000);
    expect(retry).toBeLessThanOrEqual(6_000);

    // After waiting the retry-after, exactly one more passes.
    const fast = { limit: 10, periodMs: 2_000 };
    const first = await Promise.all(Array.from({ length: 10 }, () => l.consume([{ key: "fast", rate: fast }])));
    expect(first.every((d) => d.allowed)).toBe(true);
    const eleventh = await l.consume([{ key: "fast", rate: fast }]);
    expect(eleventh.allowed).toBe(false);
    await sleep((eleventh as { retryAfterMs: number }).retryAfterMs);
    expect(await l.consume([{ key: "fast", rate: fast }])).toEqual({ allowed: true });
    expect((await l.consume([{ key: "fast", rate: fast }])).allowed).toBe(false);
  });

  it("a cost above one uses that many cells", async () => {
    const l = limiter();
    const rate = { limit: 10, periodMs: 60_000 };
    expect(await l.consume([{ key: "k", rate, cost: 4 }])).toEqual({ allowed: true });
    expect(await l.consume([{ key: "k", rate, cost: 4 }])).toEqual({ allowed: true });
    const refused = await l.consume([{ key: "k", rate, cost: 4 }]);
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(11_000);
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(12_000);
    expect(await l.consume([{ key: "k", rate, cost: 2 }])).toEqual({ allowed: true });
    expect((await l.consume([{ key: "k", rate }])).allowed).toBe(false);
    await expect(l.consume([{ key: "k", rate, cost: 11 }])).rejects.toThrow(RangeError);
  });

  it("is all-or-nothing in the script: a refused multi-key consume writes nothing", async () => {
    const l = limiter();
    const wide = { limit: 5, periodMs: 60_000 };
    const narrow = { limit: 2, periodMs: 60_000 };
    expect(await drain(l, "narrow", narrow)).toBe(2);
    for (let i = 0; i < 3; i++) {
      expect(await l.consume([{ key: "wide", rate: wide }, { key: "narrow", rate: narrow }])).toMatchObject({ allowed: false, key: "narrow" });
    }
    expect(await admin.exists(`${prefixOf("rl")}{rl}t:wide`)).toBe(0);
    expect(await drain(l, "wide", wide)).toBe(5);
    // A key repeated in one consume sees its earlier check.
    const one = { limit: 1, periodMs: 60_000 };
    expect((await l.consume([{ key: "twice", rate: one }, { key: "twice", rate: one }])).allowed).toBe(false);
    expect(await drain(l, "twice", one)).toBe(1);
  });

  it("blocks a key under any rate, never shortens a block, and lets it expire", async () => {
    const l = limiter();
    const rate = { limit: 100, periodMs: 1_000 };
    expect(await l.blockedFor("abuser")).toBeUndefined();
    await l.block("abuser", 5_000);
    const left = (await l.blockedFor("abuser"))!;
    expect(left).toBeGreaterThan(4_000);
    expect(left).toBeLessThanOrEqual(5_000);
    const d = await l.consume([{ key: "bystander", rate }, { key: "abuser", rate }]);
    expect(d).toMatchObject({ allowed: false, key: "abuser" });
    expect((d as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(4_000);
    expect((d as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(5_000);
    await l.block("abuser", 1_000);
    expect(await l.blockedFor("abuser")).toBeGreaterThan(4_000);

    const blockedAt = performance.now();
    await l.block("brief", 150);
    expect((await l.consume([{ key: "brief", rate }])).allowed).toBe(false);
    // Redis expires the marker exactly (PX, read on access); the poll adds its interval.
    await expectEventually("the 150 ms block to end", async () => (await l.blockedFor("brief")) === undefined, { timeoutMs: 2_000 });
    expectNear(performance.now() - blockedAt, 150, { granularityMs: POLL_MS, what: "block ended" });
    expect(await l.consume([{ key: "brief", rate }])).toEqual({ allowed: true });
  });

  it("two instances on one Redis share the budget", async () => {
    const a = limiter();
    const b = limiter();
    const rate = { limit: 4, periodMs: 60_000 };
    expect(await drain(a, "shared", rate, 2)).toBe(2);
    expect(await drain(b, "shared", rate)).toBe(2);
    expect((await a.consume([{ key: "shared", rate }])).allowed).toBe(false);
    await a.block("blocked", 10_000);
    expect(await b.blockedFor("blocked")).toBeGreaterThan(9_000);

    const c1 = counters();
    const c2 = counters();
    await c1.addDistinct("ip", "alice", 60_000);
    expect(await c2.addDistinct("ip", "bob", 60_000)).toBe(2);
    await c1.increment("ip", 60_000);
    expect(await c2.increment("ip", 60_000)).toBe(2);
  });

  it("every key expires: no immortal keys, idle limiter keys vanish, limiter keys share one hash slot", async () => {
    const prefix = prefixOf("ttl");
    const l = limiter(prefix);
    const c = counters(prefix);
    await l.consume([{ key: "slow", rate: { limit: 10, periodMs: 60_000 } }]);
    await l.block("b", 5_000);
    await c.addDistinct("ip", "alice", 60_000);
    await c.increment("ip", 60_000);

    const slowTtl = await admin.pttl(`${prefix}{rl}t:slow`);
    expect(slowTtl).toBeGreaterThan(5_000);
    expect(slowTtl).toBeLessThanOrEqual(6_000);
    const keys = await keysUnder(prefix);
    expect(keys).toHaveLength(4); // TAT, block marker, one bucket of each counter
    for (const key of keys) {
      const ttl = await admin.pttl(key);
      expect(ttl, key).toBeGreaterThan(0);
      expect(ttl, key).toBeLessThanOrEqual(70_000); // a window and one bucket at most
    }
    expect(keys.filter((k) => k.startsWith(`${prefix}{rl}`))).toHaveLength(2);

    // Back at the sustained rate one emission interval (100 ms) later, the key is gone.
    const consumedAt = performance.now();
    await l.consume([{ key: "fast", rate: { limit: 10, periodMs: 1_000 } }]);
    await expectEventually("the idle limiter key to vanish", async () => (await admin.exists(`${prefix}{rl}t:fast`)) === 0, { timeoutMs: 2_000 });
    expectNear(performance.now() - consumedAt, 100, { granularityMs: POLL_MS, what: "idle key expired" });
  });

  it("one consume, block or count is one command to Redis", async () => {
    const proxy = await startProxy(REDIS_TEST_URL);
    try {
      const l = createRedisRateLimiter({ url: proxy.url, prefix: prefixOf("rt"), commandTimeoutMs: 2_000, fallback: createMemoryRateLimiter({}), onModeChange });
      const c = createRedisCounters({ url: proxy.url, prefix: prefixOf("rt"), commandTimeoutMs: 2_000, fallback: createMemoryCounters({}), onModeChange });
      open.push(l, c);
      const rate = { limit: 5, periodMs: 60_000 };
      // Connection set-up (handshake, ready check) is not counted.
      await l.consume([{ key: "warm", rate }]);
      await c.increment("warm", 60_000);
      const steps: [string, () => Promise<unknown>][] = [
        ["consume of three keys", () => l.consume([{ key: "a", rate }, { key: "b", rate }, { key: "c", rate, cost: 2 }])],
        ["refused consume", () => l.consume([{ key: "c", rate, cost: 5 }])],
        ["block", () => l.block("a", 1_000)],
        ["blockedFor", () => l.blockedFor("a")],
        ["addDistinct", () => c.addDistinct("ip", "alice", 60_000)],
        ["increment", () => c.increment("ip", 60_000)],
      ];
      for (const [name, step] of steps) {
        const before = proxy.commandsSent();
        await step();
        expect(proxy.commandsSent() - before, name).toBe(1);
      }
      expect(l.mode()).toBe("redis");
    } finally {
      await Promise.all(open.splice(0).map((x) => x.close()));
      await proxy.close();
    }
  });

  it("counts distinct members exactly when few, within 2% when many", async () => {
    const c = counters();
    for (let i = 1; i <= 150; i++) {
      const n = await c.addDistinct("few", `user-${i}@example.com`, 60_000);
      if (i < 100) expect(n).toBe(i);
      else expect(Math.abs(n - i)).toBeLessThanOrEqual(Math.ceil(i * 0.02));
    }
    expect(await c.addDistinct("few", "user-1@example.com", 60_000)).toBeGreaterThanOrEqual(148);

    const many = 5_000;
    for (let i = 0; i < many; i += 250) {
      await Promise.all(Array.from({ length: 250 }, (_, j) => c.addDistinct("many", `user-${i + j}@example.com`, 60_000)));
    }
    const n = await c.addDistinct("many", "user-0@example.com", 60_000);
    expect(Math.abs(n - many) / many).toBeLessThan(0.02);
  });

  it("forgets members and events once the window (and one bucket) has passed", async () => {
    const c = counters();
    const w = 600;
    expect(await c.addDistinct("ip", "alice", w)).toBe(1);
    expect(await c.addDistinct("ip", "bob", w)).toBe(2);
    expect(await c.addDistinct("ip", "alice", w)).toBe(2);
    for (let i = 1; i <= 5; i++) expect(await c.increment("ip", w)).toBe(i);
    await sleep(w + 2 * (w / 6));
    expect(await c.addDistinct("ip", "carol", w)).toBe(1);
    expect(await c.increment("ip", w)).toBe(1);
  });
});

describe.skipIf(!redisServerBinary)("redis rate limiter and counters fail over to memory", () => {
  const rate = { limit: 3, periodMs: 60_000 };

  it("the limiter answers from memory while Redis is down, enforcing limits, and returns to Redis", async () => {
    const redis = await startPrivateRedis();
    const changes: ModeChange[] = [];
    const l = createRedisRateLimiter({
      url: redis.url,
      prefix: "identity:failover:",
      commandTimeoutMs: 500,
      fallback: createMemoryRateLimiter({}),
      onModeChange: (mode, err) => changes.push([mode, err]),
    });
    try {
      expect(await l.consume([{ key: "k", rate }])).toEqual({ allowed: true });
      expect(l.mode()).toBe("redis");

      await redis.stop();
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await timed(() => l.consume([{ key: "k", rate }])));
      // Each within the command timeout: the dead connection is noticed, or the call times out.
      for (const a of answers) expectWithin(a.ms, 500);
      // The fallback is a fresh per-instance limiter: the whole burst, then refusals.
      expect(answers.map((a) => a.value.allowed)).toEqual([true, true, true, false]);
      expect(l.mode()).toBe("memory");
      expect(changes.map(([mode]) => mode)).toEqual(["memory"]);
      expect(changes[0]![1]).toBeDefined();
      await l.block("abuser", 60_000);
      expect(await l.blockedFor("abuser")).toBeGreaterThan(59_000);

      await redis.start();
      await expectEventually("the limiter back on Redis", () => l.mode() === "redis", { timeoutMs: 5_000 });
      expect(changes.map(([mode]) => mode)).toEqual(["memory", "redis"]);
      // Answered by the restarted (empty) Redis, not by the exhausted fallback.
      expect(await l.consume([{ key: "k", rate }])).toEqual({ allowed: true });
      expect(await l.blockedFor("abuser")).toBeUndefined(); // outage blocks are lost, as documented
      expect(changes).toHaveLength(2);
    } finally {
      await l.close();
      await redis.stop();
    }
  });

  it("the counters answer from memory while Redis is down and return to Redis", async () => {
    const redis = await startPrivateRedis();
    const changes: ModeChange[] = [];
    const c = createRedisCounters({
      url: redis.url,
      prefix: "identity:failover:",
      commandTimeoutMs: 500,
      fallback: createMemoryCounters({}),
      onModeChange: (mode, err) => changes.push([mode, err]),
    });
    try {
      expect(await c.addDistinct("ip", "alice", 60_000)).toBe(1);
      expect(await c.addDistinct("ip", "bob", 60_000)).toBe(2);
      expect(c.mode()).toBe("redis");

      await redis.stop();
      const first = await timed(() => c.addDistinct("ip", "carol", 60_000));
      expectWithin(first.ms, 500);
      expect(first.value).toBe(1); // counted by the fallback from here on
      expect(await c.addDistinct("ip", "dave", 60_000)).toBe(2);
      expect(await c.increment("ip", 60_000)).toBe(1);
      expect(c.mode()).toBe("memory");

      await redis.start();
      await expectEventually("the counters back on Redis", () => c.mode() === "redis", { timeoutMs: 5_000 });
      expect(await c.addDistinct("ip", "erin", 60_000)).toBe(1); // the restarted Redis is empty
      expect(changes.map(([mode]) => mode)).toEqual(["memory", "redis"]);
    } finally {
      await c.close();
      await redis.stop();
    }
  });

  it("a Redis that is down at start is answered by memory at once, reported once", async () => {
    const redis = await startPrivateRedis();
    await redis.stop(); // a port where nothing listens
    const changes: ModeChange[] = [];
    const l = createRedisRateLimiter({ url: redis.url, fallback: createMemoryRateLimiter({}), onModeChange: (mode, err) => changes.push([mode, err]) });
    try {
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await timed(() => l.consume([{ key: "k", rate }])));
      // The first waits for the connection at most the default command timeout (100 ms); then memory answers.
      for (const a of answers) expectWithin(a.ms, 100);
      expect(answers.map((a) => a.value.allowed)).toEqual([true, true, true, false]);
      expect(l.mode()).toBe("memory");
      await sleep(300); // reconnect attempts keep failing, silently
      expect(changes.map(([mode]) => mode)).toEqual(["memory"]);
    } finally {
      await l.close();
    }
  });

  it("a Redis that stops answering on a live connection times out to memory, and is tried again", async () => {
    const redis = await startPrivateRedis();
    const proxy = await startProxy(redis.url);
    const changes: ModeChange[] = [];
    const l = createRedisRateLimiter({
      url: proxy.url,
      commandTimeoutMs: 100,
      fallback: createMemoryRateLimiter({}),
      onModeChange: (mode, err) => changes.push([mode, err]),
    });
    try {
      await expectEventually(
        "the limiter on Redis through the proxy",
        async () => (await l.consume([{ key: "warm", rate: { limit: 1_000, periodMs: 1_000 } }])).allowed && l.mode() === "redis",
        { timeoutMs: 5_000 },
      );
      expect(changes).toEqual([]);

      proxy.freeze();
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await timed(() => l.consume([{ key: "k", rate }])));
      // The first is answered when its command times out (100 ms); the rest by memory at once.
      expectNear(answers[0]!.ms, 100, { what: "the timed-out call's answer" });
      for (const a of answers.slice(1)) expectWithin(a.ms, 0, "a memory answer");
      expect(answers.map((a) => a.value.allowed)).toEqual([true, true, true, false]);
      expect(l.mode()).toBe("memory");
      expect(changes.map(([mode]) => mode)).toEqual(["memory"]);

      proxy.thaw();
      await expectEventually(
        "the limiter back on Redis after the thaw",
        async () => {
          await l.consume([{ key: "probe", rate: { limit: 1_000, periodMs: 1_000 } }]);
          return l.mode() === "redis";
        },
        { timeoutMs: 5_000 },
      );
      expect(changes.map(([mode]) => mode)).toEqual(["memory", "redis"]);
      // Answered by Redis (where the request that timed out did land), not by the exhausted fallback.
      expect(await l.consume([{ key: "k", rate }])).toEqual({ allowed: true });
    } finally {
      await l.close();
      await proxy.close();
      await redis.stop();
    }
  });
});
