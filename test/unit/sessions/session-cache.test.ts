import { describe, expect, it } from "vitest";
import type { ActiveSession, SessionStore } from "../../../src/sessions/ports.js";
import { createSessionCache } from "../../../src/sessions/session-cache.js";

function fakeStore(active: Map<string, ActiveSession>): SessionStore & { reads: number } {
  const store = {
    reads: 0,
    create: async () => ({ evictedSessionIds: [] }),
    listActive: async () => [],
    reauthenticate: async () => false,
    revokeOfUser: async () => false,
    revokeOthersOfUser: async () => [],
    async findActive(id: string) {
      store.reads++;
      return active.get(id);
    },
    rotate: async () => ({ kind: "invalid" }) as const,
    async revoke(id: string) {
      return active.delete(id);
    },
  };
  return store;
}

const now = new Date("2026-01-01T00:00:00Z");
const session = { id: "s1", userId: "u1", expiresAt: new Date("2026-02-01T00:00:00Z") };

describe("session cache", () => {
  it("answers repeated checks from memory within the TTL", async () => {
    const inner = fakeStore(new Map([["s1", session]]));
    const cache = createSessionCache(inner, { ttlMs: 60_000, max: 10 });
    expect(await cache.store.findActive("s1", now)).toEqual(session);
    expect(await cache.store.findActive("s1", now)).toEqual(session);
    expect(inner.reads).toBe(1);
  });

  it("never caches a refusal", async () => {
    const active = new Map<string, ActiveSession>();
    const inner = fakeStore(active);
    const cache = createSessionCache(inner, { ttlMs: 60_000, max: 10 });
    expect(await cache.store.findActive("s1", now)).toBeUndefined();
    active.set("s1", session);
    expect(await cache.store.findActive("s1", now)).toEqual(session);
  });

  it("forgets a session revoked here or announced as revoked", async () => {
    const active = new Map([["s1", session], ["s2", { ...session, id: "s2" }]]);
    const inner = fakeStore(active);
    const cache = createSessionCache(inner, { ttlMs: 60_000, max: 10 });
    await cache.store.findActive("s1", now);
    await cache.store.findActive("s2", now);
    await cache.store.revoke("s1", now, "logout");
    expect(await cache.store.findActive("s1", now)).toBeUndefined();
    active.delete("s2"); // revoked by another instance or in bulk
    cache.sessionsRevoked([{ id: "s2", userId: "u1" }]);
    expect(await cache.store.findActive("s2", now)).toBeUndefined();
  });

  it("does not serve a cached session past its own expiry", async () => {
    const inner = fakeStore(new Map([["s1", session]]));
    const cache = createSessionCache(inner, { ttlMs: 60_000, max: 10 });
    await cache.store.findActive("s1", now);
    const later = new Date(session.expiresAt.getTime() + 1);
    await cache.store.findActive("s1", later);
    expect(inner.reads).toBe(2);
  });

  it("with a TTL of 0 always asks the store", async () => {
    const inner = fakeStore(new Map([["s1", session]]));
    const cache = createSessionCache(inner, { ttlMs: 0, max: 10 });
    await cache.store.findActive("s1", now);
    await cache.store.findActive("s1", now);
    expect(inner.reads).toBe(2);
  });

  it("a read that raced a revocation does not put the session back in the cache", async () => {
    const active = new Map([["s1", session]]);
    let release: (() => void) | undefined;
    const inner = fakeStore(active);
    const slow: SessionStore = {
      ...inner,
      async findActive(id, at) {
        const result = await inner.findActive(id, at); // read before the revocation commits
        await new Promise<void>((r) => (release = r));
        return result;
      },
    };
    const cache = createSessionCache(slow, { ttlMs: 60_000, max: 10 });
    const racing = cache.store.findActive("s1", now);
    await new Promise((r) => setImmediate(r));
    active.delete("s1");
    cache.sessionsRevoked([{ id: "s1", userId: "u1" }]);
    release!();
    expect(await racing).toEqual(session); // the stale answer of that one read
    // ...but it was not cached: the next check asks the store again.
    release = undefined;
    const next = cache.store.findActive("s1", now);
    await new Promise((r) => setImmediate(r));
    (release as (() => void) | undefined)?.();
    expect(await next).toBeUndefined();
  });
});
