import { Redis, type RedisOptions } from "ioredis";
import { VerificationError } from "./errors.js";
import { decodeRevocation, decodeRevocationUntil, isValidSessionId } from "./protocol.js";

// The verifier's side of the revocation feed (see protocol.ts): an in-memory
// map sid → until, fed by a pub/sub subscription and rebuilt by a SCAN of the
// denylist keys on every (re)connect. Lookups never touch the network.
//
// Two connections of our own: a subscriber (a subscribed connection can run
// nothing but (UN)SUBSCRIBE/PING/QUIT) and a command connection for the SCAN.
// A Redis instance passed in is only a template for them and is never closed
// or put into subscriber mode by us.

export type FeedState = "connecting" | "syncing" | "up" | "down" | "closed";

export interface RevocationFeedOptions {
  redis: Redis | string;
  channel: string;
  keyPrefix: string;
  /** Epoch ms. */
  now: () => number;
  /** Seconds an entry outlives its `until` (the verifier's clock tolerance). */
  retainSec: number;
  /** Subscriber liveness probe interval; a PING unanswered for this long drops the connection. */
  heartbeatMs: number;
}

export interface RevocationFeedStats {
  state: FeedState;
  revokedSessions: number;
  messages: number;
  /** Feed messages and denylist entries ignored as malformed. */
  malformed: number;
  /** Completed SCAN rebuilds (one per connect). */
  syncs: number;
  /** Epoch ms of the last completed rebuild, or null. */
  lastSyncAt: number | null;
  /** Epoch ms since which the feed has not been up, or null while up. */
  downSince: number | null;
  errors: number;
}

export interface RevocationFeed {
  isRevoked(sid: string, nowSec: number): boolean;
  readonly state: FeedState;
  /** Resolves once subscribed and rebuilt; rejects with REVOCATION_UNAVAILABLE after timeoutMs. */
  ready(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
  stats(): RevocationFeedStats;
}

const CONNECTION_NAME = "identity-verifier";
const PRUNE_INTERVAL_MS = 30_000;
const SCAN_COUNT = 1_000;
const MAX_SCAN_RETRY_MS = 1_000;
const QUIT_TIMEOUT_MS = 1_000;
const CONNECT_TIMEOUT_MS = 5_000;
const MIN_COMMAND_TIMEOUT_MS = 1_000;

function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("redis command timed out")), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Reconnect quickly: while the feed is down, revocations are only learnt at
// the next connect, so the delay counts toward the staleness bound.
const retryStrategy = (times: number) => Math.min(100 * times, 1_000);

function connection(template: Redis | string, overrides: RedisOptions): Redis {
  const options: RedisOptions = {
    lazyConnect: true,
    connectionName: (typeof template === "string" ? undefined : template.options.connectionName) ?? CONNECTION_NAME,
    // The feed uses absolute key names; a template's ioredis keyPrefix would
    // double-prefix them.
    keyPrefix: "",
    retryStrategy,
    connectTimeout: CONNECT_TIMEOUT_MS,
    ...overrides,
  };
  return typeof template === "string" ? new Redis(template, options) : template.duplicate(options);
}

const escapeGlob = (s: string) => s.replace(/[*?[\]\\]/g, "\\$&");

export function createRevocationFeed(opts: RevocationFeedOptions): RevocationFeed {
  const revoked = new Map<string, number>();
  const sub = connection(opts.redis, {
    autoResubscribe: false, // we subscribe on every ready, then rebuild
    autoResendUnfulfilledCommands: false,
    enableOfflineQueue: false,
  });
  const cmd = connection(opts.redis, { maxRetriesPerRequest: 1 });
  // Every command the feed sends gets an answer within this, or the
  // connection is presumed dead and replaced.
  const commandTimeoutMs = Math.max(opts.heartbeatMs, MIN_COMMAND_TIMEOUT_MS);

  let state: FeedState = "connecting";
  let generation = 0;
  let closed = false;
  let downSince: number | null = opts.now();
  let lastSyncAt: number | null = null;
  let syncs = 0;
  let messages = 0;
  let malformed = 0;
  let errors = 0;
  let pinging = false;
  const waiters = new Set<{ resolve(): void; reject(err: unknown): void }>();

  const nowSec = () => Math.floor(opts.now() / 1000);

  function apply(sid: string, until: number): void {
    if (until + opts.retainSec < nowSec()) return;
    const prev = revoked.get(sid);
    if (prev === undefined || until > prev) revoked.set(sid, until);
  }

  function prune(): void {
    const cutoff = nowSec() - opts.retainSec;
    for (const [sid, until] of revoked) if (until < cutoff) revoked.delete(sid);
  }

  function markDown(): void {
    if (closed || state === "connecting") return;
    if (state === "up") downSince = opts.now();
    state = "down";
  }

  function markUp(): void {
    state = "up";
    downSince = null;
    lastSyncAt = opts.now();
    syncs++;
    for (const w of waiters) w.resolve();
    waiters.clear();
  }

  async function rebuild(): Promise<void> {
    const pattern = `${escapeGlob(opts.keyPrefix)}*`;
    let cursor = "0";
    do {
      const [next, keys] = await within(cmd.scan(cursor, "MATCH", pattern, "COUNT", SCAN_COUNT), commandTimeoutMs);
      cursor = next;
      if (keys.length === 0) continue;
      const values = await within(cmd.mget(...keys), commandTimeoutMs);
      keys.forEach((key, i) => {
        const value = values[i];
        if (value === null || value === undefined) return; // expired since the SCAN
        const sid = key.slice(opts.keyPrefix.length);
        const until = decodeRevocationUntil(value);
        if (until === undefined || !isValidSessionId(sid)) malformed++;
        else apply(sid, until);
      });
    } while (cursor !== "0");
  }

  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

  async function sync(gen: number): Promise<void> {
    const current = () => !closed && gen === generation;
    state = state === "connecting" ? "connecting" : "syncing";
    try {
      // Subscribe before scanning: anything published from here on arrives
      // as a message, anything earlier is in the scan.
      await within(sub.subscribe(opts.channel), commandTimeoutMs);
    } catch {
      errors++;
      if (current()) sub.disconnect(true);
      return;
    }
    for (let attempt = 0; current(); attempt++) {
      try {
        await rebuild();
        break;
      } catch {
        errors++;
        // Possibly a half-open connection: start a fresh one for the retry.
        cmd.disconnect(true);
        await sleep(Math.min(100 * 2 ** attempt, MAX_SCAN_RETRY_MS));
      }
    }
    if (current() && sub.status === "ready") markUp();
  }

  async function heartbeat(): Promise<void> {
    if (pinging) return;
    pinging = true;
    const gen = generation;
    try {
      await within(sub.ping(), opts.heartbeatMs);
    } catch {
      // A half-open TCP connection looks alive forever without this.
      errors++;
      if (!closed && gen === generation) {
        markDown();
        sub.disconnect(true);
      }
    } finally {
      pinging = false;
    }
  }

  sub.on("ready", () => {
    generation++;
    void sync(generation);
  });
  sub.on("close", markDown);
  sub.on("message", (channel: string, message: string) => {
    if (channel !== opts.channel) return;
    const revocation = decodeRevocation(message);
    if (!revocation) {
      malformed++;
      return;
    }
    messages++;
    apply(revocation.sid, revocation.until);
  });
  sub.on("error", () => errors++);
  cmd.on("error", () => errors++);

  // ioredis bounds the TCP connect but not the handshake after it: a link
  // that accepts and then goes silent would leave a connection waiting for
  // its ready check forever.
  let handshakeSince: number | undefined;
  function watchdog(): void {
    if (closed) return;
    if (sub.status === "ready") {
      handshakeSince = undefined;
      void heartbeat();
    } else if (sub.status === "connect") {
      handshakeSince ??= performance.now();
      if (performance.now() - handshakeSince > commandTimeoutMs) {
        handshakeSince = undefined;
        errors++;
        sub.disconnect(true);
      }
    } else {
      handshakeSince = undefined;
    }
  }

  const pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS).unref();
  const heartbeatTimer = setInterval(watchdog, opts.heartbeatMs).unref();
  sub.connect().catch(() => {}); // retried by ioredis; progress shows in state
  cmd.connect().catch(() => {});

  async function quit(conn: Redis): Promise<void> {
    if (conn.status === "end") return;
    if (conn.status === "ready") {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        conn.quit().catch(() => {}),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, QUIT_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    conn.disconnect();
  }

  return {
    isRevoked(sid, now) {
      const until = revoked.get(sid);
      if (until === undefined) return false;
      if (until + opts.retainSec < now) {
        revoked.delete(sid);
        return false;
      }
      return true;
    },
    get state() {
      return state;
    },
    ready(timeoutMs) {
      if (state === "up") return Promise.resolve();
      if (closed) return Promise.reject(new VerificationError("REVOCATION_UNAVAILABLE"));
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          resolve() {
            clearTimeout(timer);
            resolve();
          },
          reject(err: unknown) {
            clearTimeout(timer);
            reject(err);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new VerificationError("REVOCATION_UNAVAILABLE"));
        }, timeoutMs).unref();
        waiters.add(waiter);
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      state = "closed";
      clearInterval(pruneTimer);
      clearInterval(heartbeatTimer);
      for (const w of waiters) w.reject(new VerificationError("REVOCATION_UNAVAILABLE"));
      waiters.clear();
      sub.removeAllListeners("message");
      await Promise.all([quit(sub), quit(cmd)]);
    },
    stats() {
      return {
        state,
        revokedSessions: revoked.size,
        messages,
        malformed,
        syncs,
        lastSyncAt,
        downSince,
        errors,
      };
    },
  };
}
