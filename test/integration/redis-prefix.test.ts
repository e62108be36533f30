import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { announceKeysChanged } from "../../src/sessions/redis-revocation-feed.js";
import { createVerifier, type Verifier } from "@platform/identity-verifier";
import { rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { postgresAvailable } from "../support/databases.js";
import { REDIS_TEST_URL, redisAvailable } from "../support/redis.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { expectEventually, sleep } from "../support/timing.js";

// Two deployments on one Redis, told apart only by REDIS_PREFIX. Instances
// A and C share a prefix, B has its own; all three share one database (the
// worst case: B knows the session) and cache "session active" for a minute,
// so only the revocation feed can make an instance refuse a revoked token.

const canRun = postgresAvailable && redisAvailable;
if (!canRun && process.env.CI) throw new Error("CI must run the REDIS_PREFIX suite (PostgreSQL and Redis needed)");

describe.skipIf(!canRun)("REDIS_PREFIX: deployments sharing a Redis do not hear each other", () => {
  const run = `identity:test:${randomUUID()}:`;
  const prefixA = `${run}a:`;
  const prefixB = `${run}b:`;
  let a: TestServer;
  let b: TestServer;
  let c: TestServer;
  let admin: Redis;
  const verifiers: Verifier[] = [];

  async function keysUnder(prefix: string): Promise<string[]> {
    const found: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await admin.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1_000);
      cursor = next;
      found.push(...batch);
    } while (cursor !== "0");
    return found;
  }

  beforeAll(async () => {
    admin = new Redis(REDIS_TEST_URL);
    const env = { REDIS_URL: REDIS_TEST_URL, SESSION_CACHE_TTL: "60s", TRUSTED_PROXIES: "127.0.0.1", REDIS_COMMAND_TIMEOUT: "2s", RATE_LIMITS: "login.ip=1000/1h" };
    a = await startTestServer("postgres", { env: { ...env, REDIS_PREFIX: prefixA } });
    c = await startTestServer("postgres", { env: { ...env, REDIS_PREFIX: prefixA }, shareDatabaseWith: a });
    b = await startTestServer("postgres", { env: { ...env, REDIS_PREFIX: prefixB }, shareDatabaseWith: a });
    await Promise.all([a.app.feed!.ready(5_000), b.app.feed!.ready(5_000), c.app.feed!.ready(5_000)]);
  });
  afterAll(async () => {
    await Promise.all(verifiers.map((v) => v.close()));
    await c?.stop();
    await b?.stop();
    await a?.destroy();
    if (admin) {
      const left = await keysUnder(run);
      if (left.length > 0) await admin.del(...left);
      await admin.quit();
    }
  });

  function verifier(prefix: string): Verifier {
    const v = createVerifier({
      jwksUrl: `${a.baseUrl}/.well-known/jwks.json`,
      issuer: a.config.jwt.issuer,
      audience: a.config.jwt.audience,
      revocation: { redis: REDIS_TEST_URL, prefix },
    });
    verifiers.push(v);
    return v;
  }

  it("a logout on A reaches C and A's verifiers; B and B's verifiers never hear of it", async () => {
    const [ofA, ofB] = [verifier(prefixA), verifier(prefixB)];
    await Promise.all([ofA.ready(), ofB.ready()]);
    const email = uniqueEmail("prefix");
    expect((await rest(a.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } })).status).toBe(201);
    const login = await rest(a.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD } });
    expect(login.status).toBe(201);
    const token = login.body.access_token as string;
    const sessionId = login.body.session_id as string;
    // Every instance has now seen the session active, and caches that for a minute.
    for (const s of [a, b, c]) expect((await rest(s.baseUrl, "GET", "/user/profile", { token })).status).toBe(200);
    await expect(ofA.verify(token)).resolves.toBeDefined();
    await expect(ofB.verify(token)).resolves.toBeDefined();

    expect((await rest(a.baseUrl, "POST", "/logout", { token })).status).toBe(204);
    // Same prefix: C and A's verifier refuse within a second.
    await expectEventually("C to refuse the token", async () => (await rest(c.baseUrl, "GET", "/user/profile", { token })).status === 401, {
      timeoutMs: 1_000,
      intervalMs: 10,
    });
    await expectEventually("A's verifier to see the revocation", () => ofA.verify(token).then(() => false, (e: { code?: string }) => e.code === "TOKEN_REVOKED"), {
      timeoutMs: 1_000,
      intervalMs: 10,
    });
    // Other prefix: well after that, B still serves its cached view and B's verifier knows nothing.
    await sleep(500);
    expect((await rest(b.baseUrl, "GET", "/user/profile", { token })).status).toBe(200);
    await expect(ofB.verify(token)).resolves.toBeDefined();
    expect(ofB.stats().revocation).toMatchObject({ state: "up", messages: 0, revokedSessions: 0 });

    // The denylist key lives under A's prefix only.
    expect(await keysUnder(`${prefixA}revoked:`)).toEqual([`${prefixA}revoked:${sessionId}`]);
    expect(await keysUnder(`${prefixB}revoked:`)).toEqual([]);
    // A verifier of B's deployment started now (its SCAN) does not pick it up either.
    const lateB = verifier(prefixB);
    await lateB.ready();
    await expect(lateB.verify(token)).resolves.toBeDefined();
  });

  it("a key-change announcement reaches the instances of its own prefix only", async () => {
    expect(await announceKeysChanged(REDIS_TEST_URL, prefixA)).toBe(2);
    expect(await announceKeysChanged(REDIS_TEST_URL, prefixB)).toBe(1);
  });

  it("rate-limit and detector keys live under the deployment's prefix", async () => {
    const r = await rest(b.baseUrl, "POST", "/login", { body: { email: uniqueEmail("nobody"), password: "wrong password 1" } });
    expect(r.status).toBe(401);
    const keys = await keysUnder(prefixB);
    expect(keys.some((k) => k.startsWith(`${prefixB}rl:{rl}`))).toBe(true);
    expect(keys.some((k) => k.startsWith(`${prefixB}ctr:{`))).toBe(true);
    expect(keys.every((k) => k.startsWith(`${prefixB}rl:`) || k.startsWith(`${prefixB}ctr:`))).toBe(true);
  });
});
