import { createMemoryCounters, createRedisCounters, type WindowCounters } from "../abuse/counters.js";
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from "../abuse/rate-limiter.js";
import type { Config } from "../config/config.js";
import { combineListeners, createRedisRevocationFeed, type RedisRevocationFeed } from "../sessions/redis-revocation-feed.js";
import type { RevocationListener, SessionStore } from "../sessions/ports.js";
import { createSessionCache } from "../sessions/session-cache.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { JwtService } from "../tokens/jwt-service.js";

// What the instances of a fleet share through Redis: revocations and
// signing-key changes (the feed), rate limits and the abuse detectors'
// counters. Without REDIS_URL, or while Redis is down, each falls back to
// per-instance state and says so in the log.

export interface Fleet {
  /** Active sessions, cached briefly; the cache drops a session on every revocation. */
  sessions: SessionStore;
  /** Told of every revocation: the cache, and the other instances through Redis. */
  revocations: RevocationListener;
  feed: RedisRevocationFeed | undefined;
  limiter: RateLimiter;
  counters: WindowCounters;
  close(): Promise<void>;
}

export function joinFleet(
  config: Config,
  deps: { sessions: SessionStore; tokens: Pick<JwtService, "reload">; logger: Logger; clock: Clock },
): Fleet {
  const { logger, clock } = deps;
  const sessionCache = createSessionCache(deps.sessions, { ttlMs: config.session.cacheTtlMs, max: 100_000 });
  const feed = config.redisUrl
    ? createRedisRevocationFeed({
        url: config.redisUrl,
        prefix: config.redisPrefix,
        logger,
        onRevoked: (ids) => sessionCache.sessionsRevoked(ids.map((id) => ({ id, userId: "" }))),
        onKeysChanged: () => {
          deps.tokens.reload().catch((err: unknown) => logger.warn({ err }, "signing key reload failed"));
        },
        // Every token of a session revoked now has expired by then (plus skew).
        until: () => Math.ceil((clock.now().getTime() + config.jwt.accessTokenTtlMs) / 1000) + 5,
      })
    : undefined;
  const modeLogger = (what: string) => (mode: "redis" | "memory", err?: unknown) => {
    if (mode === "memory") logger.warn({ err }, `${what}: Redis unreachable; limits are per instance until it is back`);
    else logger.info(`${what}: Redis is back; limits are shared again`);
  };
  const limiter: RateLimiter = config.redisUrl
    ? createRedisRateLimiter({
        url: config.redisUrl,
        prefix: `${config.redisPrefix}rl:`,
        fallback: createMemoryRateLimiter(),
        commandTimeoutMs: config.redisCommandTimeoutMs,
        onModeChange: modeLogger("rate limiter"),
      })
    : createMemoryRateLimiter();
  const counters: WindowCounters = config.redisUrl
    ? createRedisCounters({
        url: config.redisUrl,
        prefix: `${config.redisPrefix}ctr:`,
        fallback: createMemoryCounters(),
        commandTimeoutMs: config.redisCommandTimeoutMs,
        onModeChange: modeLogger("abuse detectors"),
      })
    : createMemoryCounters();
  return {
    sessions: sessionCache.store,
    revocations: feed ? combineListeners(sessionCache, feed) : sessionCache,
    feed,
    limiter,
    counters,
    close: async () => {
      await Promise.all([feed?.close(), limiter.close(), counters.close()]);
    },
  };
}
