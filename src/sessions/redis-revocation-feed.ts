import { Redis } from "ioredis";
import { decodeRevocation, DEFAULT_REDIS_PREFIX, publishRevocation, revocationFeedNames } from "@platform/identity-verifier/protocol";
import type { RevocationListener } from "./ports.js";
import type { Logger } from "../shared/logger.js";

// The revocation fan-out over Redis (REDIS_URL). After PostgreSQL has
// recorded a revocation, this instance publishes it (denylist key + pub/sub
// message, the protocol of @platform/identity-verifier/protocol); every instance and
// every verifier library hears it within milliseconds. PostgreSQL stays the
// source of truth: with Redis down, revoked stays revoked here (the session
// check reads the database, and the session cache expires within
// SESSION_CACHE_TTL), publications wait in a bounded queue and go out when
// Redis is back, and verifiers learn of them then (their rescan).

/**
 * Signing keys changed in the store (an emergency rotation): every instance
 * of the deployment reloads its keys at once instead of at its next
 * periodic reload. The channel is `<REDIS_PREFIX>keys`.
 */
export function keysChangedChannel(prefix: string = DEFAULT_REDIS_PREFIX): string {
  return `${prefix}keys`;
}

/** Tells every instance of the deployment with this prefix listening on `url` to reload its signing keys now. */
export async function announceKeysChanged(url: string, prefix: string = DEFAULT_REDIS_PREFIX): Promise<number> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on("error", () => {});
  try {
    await client.connect();
    return await client.publish(keysChangedChannel(prefix), "reload");
  } finally {
    client.disconnect();
  }
}

export interface RedisRevocationFeed extends RevocationListener {
  /** Resolves once subscribed (or rejects after the timeout; the feed keeps retrying). */
  ready(timeoutMs: number): Promise<void>;
  state(): "up" | "down";
  close(): Promise<void>;
}

export interface RedisFeedOptions {
  url: string;
  logger: Logger;
  /** Told of revocations published by other instances (and echoes of ours). */
  onRevoked(sessionIds: string[]): void;
  /** Unix seconds until which a revoked session's tokens may still exist. */
  until(): number;
  /** Another process announced changed signing keys. */
  onKeysChanged?(): void;
  /** REDIS_PREFIX: the deployment's channels and keys start with it (default "identity:"). */
  prefix?: string;
  /** Publications kept while Redis is unreachable. */
  maxPending?: number;
}

export function createRedisRevocationFeed(opts: RedisFeedOptions): RedisRevocationFeed {
  const names = revocationFeedNames(opts.prefix);
  const { channel } = names;
  const keysChannel = keysChangedChannel(opts.prefix);
  const maxPending = opts.maxPending ?? 100_000;
  const common = {
    lazyConnect: false,
    maxRetriesPerRequest: 1,
    // Fail fast while disconnected: the caller must not wait on Redis.
    enableOfflineQueue: false,
    retryStrategy: (times: number) => Math.min(times * 200, 2_000),
  };
  const publisher = new Redis(opts.url, common);
  const subscriber = new Redis(opts.url, { ...common, enableOfflineQueue: true });
  const pending = new Map<string, number>(); // sid → until, newest wins
  let subscribed = false;
  let closed = false;
  let flushing = false;
  let onSubscribed: (() => void) | undefined;

  for (const [name, client] of [
    ["publisher", publisher],
    ["subscriber", subscriber],
  ] as const) {
    client.on("error", (err: Error) => opts.logger.debug({ err: err.message, client: name }, "redis error"));
  }

  subscriber.on("ready", () => {
    subscriber.subscribe(channel, keysChannel).then(
      () => {
        subscribed = true;
        opts.logger.info("revocation feed subscribed");
        onSubscribed?.();
      },
      (err: unknown) => opts.logger.warn({ err }, "revocation feed subscribe failed"),
    );
  });
  subscriber.on("close", () => {
    if (subscribed && !closed) opts.logger.warn("revocation feed disconnected; sessions fall back to the database check");
    subscribed = false;
  });
  subscriber.on("message", (ch: string, message: string) => {
    if (ch === keysChannel) {
      opts.onKeysChanged?.();
      return;
    }
    if (ch !== channel) return;
    const revocation = decodeRevocation(message);
    if (revocation) opts.onRevoked([revocation.sid]);
  });
  publisher.on("ready", () => void flush());

  async function flush(): Promise<void> {
    if (flushing || closed) return;
    flushing = true;
    try {
      for (const [sid, until] of pending) {
        await publishRevocation(publisher, sid, until, names);
        pending.delete(sid);
      }
    } catch (err) {
      opts.logger.warn({ err, pending: pending.size }, "revocation publish failed; will retry when Redis is back");
    } finally {
      flushing = false;
    }
  }

  return {
    sessionsRevoked(sessions) {
      const until = opts.until();
      for (const s of sessions) {
        if (pending.size >= maxPending) {
          opts.logger.error({ sessionId: s.id }, "revocation queue full; verifiers will not hear of this revocation");
          continue;
        }
        pending.set(s.id, until);
      }
      void flush();
    },
    ready(timeoutMs) {
      if (subscribed) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("revocation feed not ready")), timeoutMs);
        timer.unref();
        onSubscribed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
    state: () => (subscribed && publisher.status === "ready" ? "up" : "down"),
    async close() {
      closed = true;
      await flush().catch(() => {});
      publisher.disconnect();
      subscriber.disconnect();
    },
  };
}

/** Tells every listener, in order; one failing does not stop the others. */
export function combineListeners(...listeners: RevocationListener[]): RevocationListener {
  return {
    sessionsRevoked(sessions) {
      for (const l of listeners) {
        try {
          l.sessionsRevoked(sessions);
        } catch {
          // listeners are best effort; the database already holds the truth
        }
      }
    },
  };
}
