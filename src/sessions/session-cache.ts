import { LRUCache } from "lru-cache";
import type { ActiveSession, RevocationListener, SessionStore } from "./ports.js";

// Every authenticated call asks whether its session is still active. The
// answer "active" is kept for a short time (SESSION_CACHE_TTL, default 1 s)
// so a busy client costs one query per interval instead of one per call.
// A revocation on this instance drops the entry at once; one on another
// instance is seen here within the TTL, or at once when the Redis
// revocation feed delivers it. "Not active" is never cached: the database
// stays the judge of every refusal.

export interface SessionCache extends RevocationListener {
  readonly store: SessionStore;
  stats(): { size: number; hits: number; misses: number };
}

export function createSessionCache(inner: SessionStore, opts: { ttlMs: number; max: number }): SessionCache {
  const cache = opts.ttlMs > 0 ? new LRUCache<string, ActiveSession>({ max: opts.max, ttl: opts.ttlMs }) : undefined;
  // Sessions revoked lately. A read that started before a revocation
  // committed may finish after the entry was dropped; without this it would
  // put "active" back for a whole TTL. Remembered for several TTLs, which is
  // far longer than any such read takes (the database call is bounded).
  const revoked = cache ? new LRUCache<string, true>({ max: opts.max, ttl: Math.max(opts.ttlMs * 4, 10_000) }) : undefined;
  let hits = 0;
  let misses = 0;

  const forget = (sessionId: string) => {
    revoked?.set(sessionId, true);
    cache?.delete(sessionId);
  };

  const store: SessionStore = {
    ...inner,
    async findActive(sessionId, now) {
      const cached = cache?.get(sessionId);
      if (cached && cached.expiresAt > now) {
        hits++;
        return cached;
      }
      misses++;
      const session = await inner.findActive(sessionId, now);
      if (session && !revoked?.has(sessionId)) cache?.set(sessionId, session);
      return session;
    },
    async rotate(input) {
      const result = await inner.rotate(input);
      if (result.kind === "reused") forget(result.sessionId);
      if (result.kind === "rotated") cache?.delete(result.session.id);
      return result;
    },
    async revoke(sessionId, now, reason) {
      forget(sessionId);
      return inner.revoke(sessionId, now, reason);
    },
  };

  return {
    store,
    sessionsRevoked(sessions) {
      for (const s of sessions) forget(s.id);
    },
    stats: () => ({ size: cache?.size ?? 0, hits, misses }),
  };
}
