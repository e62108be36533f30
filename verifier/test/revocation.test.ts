import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createVerifier,
  decodeRevocation,
  publishRevocation,
  REVOCATION_KEY_GRACE_SEC,
  revocationFeedNames,
  revocationKey,
  type RevocationOptions,
  type Verifier,
} from "../src/index.js";
import { redisAvailable, REDIS_TEST_URL, uniqueFeed as newFeed } from "./redis.js";
import { AUDIENCE, claimsAt, codeOf, createTestKey, ISSUER, startJwksServer, startTcpProxy, waitFor, type JwksServer, type TestKey } from "./support.js";

const nowSec = () => Math.floor(Date.now() / 1000);

describe.skipIf(!redisAvailable)("revocation feed (real Redis)", () => {
  let key: TestKey;
  let jwks: JwksServer;
  let admin: Redis;
  const open: Verifier[] = [];

  beforeAll(async () => {
    key = await createTestKey();
    jwks = await startJwksServer([key.publicJwk]);
    admin = new Redis(REDIS_TEST_URL);
  });
  // Every feed a test used, so its denylist keys can be removed at the end.
  const prefixes: string[] = [];
  const uniqueFeed = () => {
    const feed = newFeed();
    prefixes.push(feed.keyPrefix);
    return feed;
  };
  afterAll(async () => {
    for (const prefix of prefixes) {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
    }
    await admin.quit();
    await jwks.close();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((v) => v.close()));
  });

  function make(revocation: Partial<RevocationOptions> & ({ channel: string; keyPrefix: string } | { prefix: string }), extra: { now?: () => number; readyTimeoutMs?: number } = {}): Verifier {
    const v = createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, ...extra, revocation: { redis: REDIS_TEST_URL, ...revocation } });
    open.push(v);
    return v;
  }
  const session = async () => {
    const sid = randomUUID();
    return { sid, token: await key.sign(claimsAt(nowSec(), { sid })) };
  };
  const until = () => nowSec() + 900;
  const isRevoked = (v: Verifier, token: string) => async () => (await codeOf(v.verify(token))) === "TOKEN_REVOKED";

  describe("publishRevocation (the service side)", () => {
    it("sets the denylist key (value until, expiring a grace period after it) and publishes, in one transaction", async () => {
      const feed = uniqueFeed();
      const listener = new Redis(REDIS_TEST_URL);
      try {
        const received: string[] = [];
        await listener.subscribe(feed.channel);
        listener.on("message", (_channel: string, message: string) => received.push(message));
        const sid = randomUUID();
        const at = until();
        await expect(publishRevocation(admin, sid, at, feed)).resolves.toBe(1);
        const key = revocationKey(sid, feed.keyPrefix);
        expect(await admin.get(key)).toBe(String(at));
        expect(await admin.expiretime(key)).toBe(at + REVOCATION_KEY_GRACE_SEC);
        await waitFor(() => received.length === 1);
        expect(decodeRevocation(received[0]!)).toEqual({ sid, until: at });
        await admin.del(key);
      } finally {
        await listener.quit();
      }
    });

    it("refuses invalid input before touching Redis", async () => {
      await expect(publishRevocation(admin, "bad sid", until())).rejects.toThrow(TypeError);
      await expect(publishRevocation(admin, randomUUID(), 1.5)).rejects.toThrow(TypeError);
    });
  });

  it("a revocation from publishRevocation is refused within 1 s, cached tokens included, with no network call per request", async () => {
    const feed = uniqueFeed();
    const v = make(feed);
    await v.ready();
    expect(v.stats().revocation).toMatchObject({ state: "up", revokedSessions: 0, syncs: 1 });
    const bystander = await session();
    const delays: number[] = [];
    for (let i = 0; i < 20; i++) {
      const s = await session();
      await expect(v.verify(s.token)).resolves.toMatchObject({ sessionId: s.sid }); // now cached
      const hitsBefore = v.stats().cache.hits;
      const published = performance.now();
      await publishRevocation(admin, s.sid, until(), feed);
      await waitFor(isRevoked(v, s.token), 1_000, 1);
      delays.push(performance.now() - published);
      expect(v.stats().cache.hits).toBeGreaterThan(hitsBefore); // refused on the cached path
    }
    await expect(v.verify(bystander.token)).resolves.toBeDefined();
    expect(v.stats().revocation).toMatchObject({ state: "up", revokedSessions: 20, messages: 20, malformed: 0 });
    delays.sort((a, b) => a - b);
    expect(delays.at(-1)).toBeLessThan(1_000);
    process.stdout.write(`revocation delay over 20: p50 ${delays[10]!.toFixed(1)} ms, max ${delays.at(-1)!.toFixed(1)} ms\n`);
  });

  it("a verifier started after the revocation learns it from the denylist (SCAN)", async () => {
    const feed = uniqueFeed();
    const revoked = await Promise.all([session(), session(), session()]);
    for (const s of revoked) await publishRevocation(admin, s.sid, until(), feed);
    const fine = await session();
    const v = make(feed);
    await v.ready();
    for (const s of revoked) expect(await codeOf(v.verify(s.token))).toBe("TOKEN_REVOKED");
    await expect(v.verify(fine.token)).resolves.toBeDefined();
    expect(v.stats().revocation).toMatchObject({ revokedSessions: 3, messages: 0, syncs: 1 });
  });

  it("the prefix option names the deployment's feed: another prefix on the same Redis hears nothing of it", async () => {
    const ours = `identity:test:${randomUUID()}:`;
    const theirs = `identity:test:${randomUUID()}:`;
    prefixes.push(revocationFeedNames(ours).keyPrefix, revocationFeedNames(theirs).keyPrefix);
    const early = await session();
    await publishRevocation(admin, early.sid, until(), revocationFeedNames(ours));
    const mine = make({ prefix: ours });
    const other = make({ prefix: theirs });
    await Promise.all([mine.ready(), other.ready()]);
    const late = await session();
    await expect(other.verify(late.token)).resolves.toBeDefined();
    await publishRevocation(admin, late.sid, until(), revocationFeedNames(ours));
    // The denylist (SCAN at connect) and the channel both belong to the prefix.
    expect(await codeOf(mine.verify(early.token))).toBe("TOKEN_REVOKED");
    await waitFor(isRevoked(mine, late.token), 1_000);
    await new Promise((r) => setTimeout(r, 200));
    await expect(other.verify(early.token)).resolves.toBeDefined();
    await expect(other.verify(late.token)).resolves.toBeDefined();
    expect(other.stats().revocation).toMatchObject({ state: "up", revokedSessions: 0, messages: 0 });
  });

  it("refuses a prefix with spaces or braces", () => {
    for (const prefix of ["", "a b:", "{identity}:", "x".repeat(65)]) {
      expect(() => createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, revocation: { redis: REDIS_TEST_URL, prefix } })).toThrow(TypeError);
    }
  });

  it("ignores malformed feed messages and denylist entries", async () => {
    const feed = uniqueFeed();
    const target = await session();
    // A denylist entry with a value that is not unix seconds, for a real session.
    await admin.set(revocationKey(target.sid, feed.keyPrefix), "soon", "EX", 60);
    const v = make(feed);
    await v.ready();
    const garbage = [
      "",
      "not json",
      "[]",
      "null",
      JSON.stringify({ sid: target.sid }),
      JSON.stringify({ sid: target.sid, until: "tomorrow" }),
      JSON.stringify({ sid: target.sid, until: -1 }),
      JSON.stringify({ sid: 42, until: until() }),
      JSON.stringify({ sid: "two words", until: until() }),
      JSON.stringify({ sid: target.sid, until: until(), pad: "x".repeat(1_000) }),
    ];
    for (const message of garbage) await admin.publish(feed.channel, message);
    const control = await session();
    await publishRevocation(admin, control.sid, until(), feed);
    await waitFor(isRevoked(v, control.token), 1_000);
    await expect(v.verify(target.token)).resolves.toBeDefined();
    expect(v.stats().revocation).toMatchObject({ state: "up", revokedSessions: 1, messages: 1, malformed: garbage.length + 1 });
  });

  it("ignores revocations whose until (plus the clock tolerance) has passed, and forgets entries after it", async () => {
    const feed = uniqueFeed();
    let offsetMs = 0;
    const v = make(feed, { now: () => Date.now() + offsetMs });
    await v.ready();
    await publishRevocation(admin, randomUUID(), nowSec() - 10, feed);
    // until is the latest exp of the session's tokens (the publisher's contract).
    const sid = randomUUID();
    const s = { sid, token: await key.sign(claimsAt(nowSec(), { sid, exp: nowSec() + 60 })) };
    await publishRevocation(admin, s.sid, nowSec() + 60, feed);
    await waitFor(isRevoked(v, s.token), 1_000);
    expect(v.stats().revocation).toMatchObject({ messages: 2, revokedSessions: 1 });
    offsetMs = 4_000; // within until + 5 s: kept
    expect(await codeOf(v.verify(s.token))).toBe("TOKEN_REVOKED");
    offsetMs = 60_000 + 7_000; // past until + 5 s: the token is expired anyway, and the entry goes
    expect(await codeOf(v.verify(s.token))).toBe("TOKEN_EXPIRED");
    expect(v.stats().revocation?.revokedSessions).toBe(1);
    const fresh = await key.sign(claimsAt(Math.floor((Date.now() + offsetMs) / 1000), { sid }));
    expect(await codeOf(v.verify(fresh))).toBe("OK"); // the lookup dropped the stale entry
    expect(v.stats().revocation?.revokedSessions).toBe(0);
  });

  describe("when the feed is down", () => {
    it('"serve" keeps the last known set, "refuse" fails closed; revocations made meanwhile arrive at reconnect via SCAN', async () => {
      const proxy = await startTcpProxy(REDIS_TEST_URL);
      try {
        const feed = uniqueFeed();
        const serve = make({ ...feed, redis: proxy.url, onFeedDown: "serve" });
        const refuse = make({ ...feed, redis: proxy.url, onFeedDown: "refuse" });
        await Promise.all([serve.ready(), refuse.ready()]);
        const before = await session();
        const during = await session();
        await publishRevocation(admin, before.sid, until(), feed);
        await waitFor(isRevoked(serve, before.token), 1_000);
        await waitFor(isRevoked(refuse, before.token), 1_000);

        proxy.cut();
        await waitFor(() => serve.stats().revocation?.state !== "up" && refuse.stats().revocation?.state !== "up", 2_000);
        expect(serve.stats().revocation?.downSince).toEqual(expect.any(Number));
        await publishRevocation(admin, during.sid, until(), feed); // nobody hears this one
        // serve: the known revocation still holds; the unknown one is the documented gap.
        expect(await codeOf(serve.verify(before.token))).toBe("TOKEN_REVOKED");
        await expect(serve.verify(during.token)).resolves.toBeDefined();
        // refuse: a known revocation is still reported as such; everything else is unavailable.
        expect(await codeOf(refuse.verify(before.token))).toBe("TOKEN_REVOKED");
        const err = await refuse.verify(during.token).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: "REVOCATION_UNAVAILABLE", retryable: true });
        expect(await codeOf(refuse.verify((await session()).token))).toBe("REVOCATION_UNAVAILABLE");

        proxy.restore();
        const healed = await waitFor(async () => (await Promise.all([isRevoked(serve, during.token)(), isRevoked(refuse, during.token)()])).every(Boolean), 5_000);
        process.stdout.write(`feed back and caught up ${healed.toFixed(0)} ms after Redis became reachable\n`);
        expect(serve.stats().revocation).toMatchObject({ state: "up", downSince: null, messages: 1, revokedSessions: 2 });
        expect(serve.stats().revocation!.syncs).toBeGreaterThanOrEqual(2);
        await expect(refuse.verify((await session()).token)).resolves.toBeDefined();
      } finally {
        await proxy.close();
      }
    });

    it("a silent (half-open) connection is detected by the heartbeat and replaced", async () => {
      const proxy = await startTcpProxy(REDIS_TEST_URL);
      try {
        const feed = uniqueFeed();
        const v = make({ ...feed, redis: proxy.url, onFeedDown: "refuse", heartbeatMs: 200 });
        await v.ready();
        proxy.blackhole();
        const detected = await waitFor(() => v.stats().revocation?.state !== "up", 2_000);
        expect(detected).toBeLessThan(1_000);
        expect(await codeOf(v.verify((await session()).token))).toBe("REVOCATION_UNAVAILABLE");
        proxy.restore();
        await waitFor(() => v.stats().revocation?.state === "up", 5_000);
        await expect(v.verify((await session()).token)).resolves.toBeDefined();
      } finally {
        await proxy.close();
      }
    });

    it("a link that accepts connections and then stays silent does not leave the feed stuck once it heals", async () => {
      const proxy = await startTcpProxy(REDIS_TEST_URL);
      try {
        const feed = uniqueFeed();
        const v = make({ ...feed, redis: proxy.url, onFeedDown: "refuse", heartbeatMs: 200 });
        await v.ready();
        proxy.blackhole();
        await waitFor(() => v.stats().revocation?.state !== "up", 2_000);
        // Reconnects made now complete TCP and then hear nothing back.
        await new Promise((r) => setTimeout(r, 1_500));
        const s = await session();
        await publishRevocation(admin, s.sid, until(), feed);
        proxy.restore();
        await waitFor(() => v.stats().revocation?.state === "up", 5_000);
        expect(await codeOf(v.verify(s.token))).toBe("TOKEN_REVOKED");
      } finally {
        await proxy.close();
      }
    });

    it("with Redis unreachable from the start, ready() rejects with REVOCATION_UNAVAILABLE; serve still verifies", async () => {
      const proxy = await startTcpProxy(REDIS_TEST_URL);
      proxy.cut();
      try {
        const feed = uniqueFeed();
        const serve = make({ ...feed, redis: proxy.url }, { readyTimeoutMs: 300 });
        const refuse = make({ ...feed, redis: proxy.url, onFeedDown: "refuse" }, { readyTimeoutMs: 300 });
        await expect(serve.ready()).rejects.toMatchObject({ code: "REVOCATION_UNAVAILABLE" });
        await expect(refuse.ready()).rejects.toMatchObject({ code: "REVOCATION_UNAVAILABLE" });
        const s = await session();
        await expect(serve.verify(s.token)).resolves.toBeDefined();
        expect(await codeOf(refuse.verify(s.token))).toBe("REVOCATION_UNAVAILABLE");
        expect(serve.stats().revocation?.state).toBe("connecting");
        await publishRevocation(admin, s.sid, until(), feed);
        proxy.restore();
        await waitFor(() => serve.stats().revocation?.state === "up", 5_000); // reconnect backoff is at most 1 s
        expect(await codeOf(serve.verify(s.token))).toBe("TOKEN_REVOKED");
      } finally {
        await proxy.close();
      }
    });
  });

  describe("close()", () => {
    it("closes both of its connections and leaves a Redis passed in untouched", async () => {
      const name = `verifier-test-${randomUUID().slice(0, 8)}`;
      const template = new Redis(REDIS_TEST_URL, { lazyConnect: true, connectionName: name });
      const v = make({ ...uniqueFeed(), redis: template });
      await v.ready();
      const ours = async () => String(await admin.client("LIST")).split("\n").filter((line) => line.includes(`name=${name} `));
      const connections = await ours();
      expect(connections).toHaveLength(2);
      expect(connections.some((c) => / flags=P /.test(c))).toBe(true); // the subscriber
      await v.close();
      await v.close(); // idempotent
      await waitFor(async () => (await ours()).length === 0, 2_000);
      expect(template.status).toBe("wait"); // never connected by us
      expect(v.stats().revocation?.state).toBe("closed");
      await expect(v.verify("a.b.c")).rejects.toThrow("verifier is closed");
    });

    it("lets the process exit on its own", async () => {
      const fixture = fileURLToPath(new URL("./fixtures/exit-after-close.ts", import.meta.url));
      const hooks = new URL("../scripts/ts-resolve.mjs", import.meta.url).href;
      const started = performance.now();
      const { stdout } = await promisify(execFile)(process.execPath, ["--import", hooks, fixture], {
        timeout: 15_000,
        env: { ...process.env, REDIS_TEST_URL },
      });
      expect(stdout).toContain("closed");
      expect(performance.now() - started).toBeLessThan(15_000);
    });
  });
});
