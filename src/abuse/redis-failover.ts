import { Redis } from "ioredis";

// The client plumbing shared by the Redis rate limiter and counters: a
// connection that fails fast, and a run() that answers from the in-process
// fallback whenever Redis cannot. Abuse defences must never stall a login on
// Redis, and must never wave everything through because Redis is gone.

export type BackendMode = "redis" | "memory";

export interface FailoverRedisOptions {
  url: string;
  /** Budget for one Redis call before the fallback answers; default 100 ms. */
  commandTimeoutMs?: number;
  /** Called once per transition (the app logs it). */
  onModeChange?: (mode: BackendMode, err?: unknown) => void;
}

/** A Lua script sent as EVALSHA (EVAL the first time on a connection): one round trip. */
export type LuaScript = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

export interface FailoverRedis {
  defineScript(name: string, lua: string): LuaScript;
  /** Answers with `viaRedis`, or with `viaFallback` while Redis is failing or when the call fails. */
  run<T>(viaRedis: (client: Redis) => Promise<T>, viaFallback: () => Promise<T>): Promise<T>;
  mode(): BackendMode;
  close(): Promise<void>;
}

// After a failed call on a connection that still looks ready (a timeout, an
// OOM reply), one call per interval tries Redis again.
const PROBE_INTERVAL_MS = 1_000;
const MAX_RECONNECT_DELAY_MS = 1_000;

export function createFailoverRedis(opts: FailoverRedisOptions): FailoverRedis {
  const commandTimeoutMs = opts.commandTimeoutMs ?? 100;
  const client = new Redis(opts.url, {
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(1_000, commandTimeoutMs),
    retryStrategy: (times: number) => Math.min(50 * 2 ** times, MAX_RECONNECT_DELAY_MS),
  });
  let current: BackendMode = "redis";
  let closed = false;
  let lastError: unknown;
  let lastFailureAt = 0;
  // Bumped on every failure: a success that started before it says nothing
  // about Redis now, so it must not flip the mode back.
  let failures = 0;
  const readyWaiters = new Set<() => void>();

  function transition(mode: BackendMode, err?: unknown): void {
    if (closed || mode === current) return;
    current = mode;
    try {
      opts.onModeChange?.(mode, err);
    } catch {
      // a logging hook must not break the caller
    }
  }

  function markDown(err: unknown): void {
    failures++;
    lastFailureAt = Date.now();
    transition("memory", err);
  }

  client.on("error", (err: unknown) => {
    lastError = err;
  });
  client.on("close", () => markDown(lastError ?? new Error("redis connection closed")));
  client.on("ready", () => {
    lastError = undefined;
    transition("redis");
    for (const wake of readyWaiters) wake();
  });

  // Only the first connection is waited for (bounded by the command
  // timeout); a lost connection has already switched us to memory.
  function waitReady(): Promise<boolean> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        readyWaiters.delete(wake);
        resolve(client.status === "ready");
      };
      const timer = setTimeout(wake, commandTimeoutMs);
      readyWaiters.add(wake);
    });
  }

  async function usable(): Promise<boolean> {
    if (closed) return false;
    if (client.status === "ready") {
      return current === "redis" || Date.now() - lastFailureAt >= PROBE_INTERVAL_MS;
    }
    if (current === "redis" && (client.status === "connecting" || client.status === "connect")) {
      if (await waitReady()) return true;
      markDown(lastError ?? new Error("redis not ready within the command timeout"));
    }
    return false;
  }

  return {
    defineScript(name, lua) {
      client.defineCommand(name, { lua });
      const command = (client as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>)[name]!;
      return (keys, args) => command.call(client, keys.length, ...keys, ...args);
    },
    async run(viaRedis, viaFallback) {
      if (!(await usable())) return viaFallback();
      const startedAfter = failures;
      let result;
      try {
        result = await viaRedis(client);
      } catch (err) {
        if (!closed) markDown(err);
        return viaFallback();
      }
      if (startedAfter === failures) transition("redis");
      return result;
    },
    mode: () => current,
    async close() {
      if (closed) return;
      closed = true;
      for (const wake of readyWaiters) wake();
      client.disconnect();
    },
  };
}
