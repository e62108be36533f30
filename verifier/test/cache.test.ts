import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createVerifier, type Verifier } from "../src/index.js";
import { AUDIENCE, claimsAt, codeOf, createTestKey, ISSUER, parts, startJwksServer, type JwksServer, type TestKey } from "./support.js";

const T0 = Date.parse("2025-06-15T12:00:00.000Z");

describe("cache of verified tokens", () => {
  let ours: TestKey;
  let jwks: JwksServer;
  let clock: number;
  let verifier: Verifier;

  const token = (ttl = 900) => ours.sign(claimsAt(Math.floor(clock / 1000), { exp: Math.floor(clock / 1000) + ttl }));
  async function make(cacheSize?: number) {
    verifier = createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, now: () => clock, cacheSize });
    await verifier.ready();
  }

  beforeAll(async () => {
    ours = await createTestKey();
    jwks = await startJwksServer([ours.publicJwk]);
  });
  afterAll(() => jwks.close());
  beforeEach(() => {
    clock = T0;
  });
  afterEach(() => verifier.close());

  it("returns the same (frozen) claims on repeat and counts hits and misses", async () => {
    await make();
    const t = await token();
    const first = await verifier.verify(t);
    const second = await verifier.verify(t);
    expect(second.claims).toBe(first.claims);
    expect(second).toEqual(first);
    // Callers get their own Date objects: mutating one cannot poison the cache.
    expect(second.expiresAt).not.toBe(first.expiresAt);
    first.expiresAt.setTime(0);
    expect((await verifier.verify(t)).expiresAt.getTime()).toBe((T0 / 1000 + 900) * 1000);
    expect(() => {
      (first.claims as Record<string, unknown>).sub = "admin";
    }).toThrow(TypeError);
    expect(verifier.stats().cache).toEqual({ size: 1, capacity: 10_000, hits: 2, misses: 1 });
  });

  it("still refuses a cached token once it has expired (beyond the leeway)", async () => {
    await make();
    const t = await token(60);
    await verifier.verify(t);
    clock += 64_000;
    await expect(verifier.verify(t)).resolves.toBeDefined();
    clock += 1_000; // exp + tolerance: expired, exactly as jose decides for a fresh token
    expect(await codeOf(verifier.verify(t))).toBe("TOKEN_EXPIRED");
    expect(verifier.stats().cache).toMatchObject({ size: 0, hits: 2 });
  });

  it("caches only successes: a forged token costs a full verification every time", async () => {
    await make();
    const [h, p] = parts(await token());
    const forged = `${h}.${p}.${"A".repeat(86)}`;
    expect(await codeOf(verifier.verify(forged))).toBe("TOKEN_INVALID");
    expect(await codeOf(verifier.verify(forged))).toBe("TOKEN_INVALID");
    expect(verifier.stats().cache).toMatchObject({ size: 0, hits: 0, misses: 2 });
  });

  it("is bounded to cacheSize entries and evicts the least recently used", async () => {
    await make(3);
    const [a, b, c, d] = await Promise.all([token(), token(), token(), token()]);
    for (const t of [a!, b!, c!]) await verifier.verify(t);
    await verifier.verify(a!); // a is now the most recent; b the least
    await verifier.verify(d!); // evicts b
    expect(verifier.stats().cache).toMatchObject({ size: 3, capacity: 3, hits: 1, misses: 4 });
    await verifier.verify(a!);
    await verifier.verify(c!);
    await verifier.verify(d!);
    expect(verifier.stats().cache).toMatchObject({ hits: 4, misses: 4 });
    await verifier.verify(b!);
    expect(verifier.stats().cache).toMatchObject({ size: 3, hits: 4, misses: 5 });
  });

  it("keeps memory bounded under many distinct tokens", async () => {
    await make(100);
    const tokens = await Promise.all(Array.from({ length: 300 }, () => token()));
    for (const t of tokens) await verifier.verify(t);
    expect(verifier.stats().cache.size).toBe(100);
  });

  it("cacheSize 0 disables the cache", async () => {
    await make(0);
    const t = await token();
    await verifier.verify(t);
    await verifier.verify(t);
    expect(verifier.stats().cache).toMatchObject({ size: 0, hits: 0, misses: 2 });
  });
});
