import { LRUCache } from "lru-cache";
import { createFailoverRedis, type BackendMode } from "./redis-failover.js";

// Rate limits by GCRA (the generic cell rate algorithm): one number per key,
// the theoretical arrival time (TAT) of the next request at the sustained
// rate. A request of cost c is allowed when max(TAT, now) + c·T lies no
// further ahead of now than T·burst, where T = periodMs / limit.
// Time is kept in whole microseconds (T rounded up), so the arithmetic is
// exact and the memory and Redis implementations agree to the microsecond.

export interface Rate {
  /** Requests sustained per `periodMs`. */
  limit: number;
  periodMs: number;
  /** Requests that may arrive at once; default `limit` (at least 1). */
  burst?: number;
}

export interface LimitCheck {
  key: string;
  rate: Rate;
  /** Default 1; a whole number no larger than the burst. */
  cost?: number;
}

export type LimitDecision =
  | { allowed: true }
  | {
      allowed: false;
      /** Until every refusing key would allow the request (>= 1). */
      retryAfterMs: number;
      /** The first key, in check order, that refused. */
      key: string;
    };

export interface RateLimiter {
  /** All-or-nothing over every check: consumes from every key only when every key allows; otherwise consumes nothing. */
  consume(checks: readonly LimitCheck[]): Promise<LimitDecision>;
  /** Refuses `key` for `durationMs` from now, whatever rate it is checked with. Never shortens a longer block. */
  block(key: string, durationMs: number): Promise<void>;
  /** Remaining block in ms when `key` is blocked by block(), else undefined. */
  blockedFor(key: string): Promise<number | undefined>;
  mode(): BackendMode;
  close(): Promise<void>;
}

/** A check in microseconds: what one request adds to the TAT, and how far ahead of now the TAT may run. */
interface Cell {
  increment: number;
  capacity: number;
}

function cellOf(check: LimitCheck): Cell {
  const { limit, periodMs } = check.rate;
  const burst = check.rate.burst ?? Math.max(1, limit);
  const cost = check.cost ?? 1;
  if (!(Number.isFinite(limit) && limit > 0 && Number.isFinite(periodMs) && periodMs > 0)) {
    throw new RangeError(`rate for ${check.key}: limit and periodMs must be positive`);
  }
  if (!(Number.isFinite(burst) && burst >= 1)) throw new RangeError(`rate for ${check.key}: burst must be at least 1`);
  // A cost above the burst could never pass; refusing it forever would hide the bug.
  if (!(Number.isInteger(cost) && cost >= 0 && cost <= burst)) {
    throw new RangeError(`cost for ${check.key}: a whole number from 0 to the burst`);
  }
  const interval = Math.ceil((periodMs * 1000) / limit);
  return { increment: cost * interval, capacity: Math.floor(interval * burst) };
}

function refusal(key: string, waitUs: number): LimitDecision {
  return { allowed: false, key, retryAfterMs: Math.max(1, Math.ceil(waitUs / 1000)) };
}

function blockMs(durationMs: number): number {
  if (!Number.isFinite(durationMs)) throw new RangeError("block duration must be finite");
  return Math.ceil(durationMs);
}

export interface MemoryRateLimiterOptions {
  /** Keys held (rate state and blocks together); the least recently used go first. Default 100 000. */
  maxKeys?: number;
  /** Milliseconds; default Date.now. */
  now?: () => number;
}

interface MemoryEntry {
  tat: number;
  blockedUntil: number;
}

export function createMemoryRateLimiter(opts: MemoryRateLimiterOptions = {}): RateLimiter {
  const maxKeys = opts.maxKeys ?? 100_000;
  const clock = opts.now ?? Date.now;
  // An LRU, not a Map evicted from its front: deleting a Map's oldest
  // entries leaves holes every later scan walks past, and a flood of new
  // keys (Redis down, many addresses) made each call 5–9× slower.
  const entries = new LRUCache<string, MemoryEntry>({ max: maxKeys });
  const nowUs = () => Math.round(clock() * 1000);

  function touch(key: string): MemoryEntry {
    let entry = entries.get(key);
    if (!entry) {
      entry = { tat: 0, blockedUntil: 0 };
      entries.set(key, entry);
    }
    return entry;
  }

  return {
    async consume(checks) {
      const cells = checks.map(cellOf);
      const now = nowUs();
      const tats = new Map<string, number>(); // this call's new TATs, so a repeated key sees its earlier check
      let refusedKey: string | undefined;
      let waitUs = 0;
      checks.forEach((check, i) => {
        const cell = cells[i]!;
        const entry = entries.peek(check.key);
        let wait = Math.max(0, (entry?.blockedUntil ?? 0) - now);
        const newTat = Math.max(tats.get(check.key) ?? entry?.tat ?? 0, now) + cell.increment;
        wait = Math.max(wait, newTat - now - cell.capacity);
        if (wait > 0) {
          refusedKey ??= check.key;
          waitUs = Math.max(waitUs, wait);
        } else {
          tats.set(check.key, newTat);
        }
      });
      if (refusedKey !== undefined) return refusal(refusedKey, waitUs);
      for (const [key, tat] of tats) touch(key).tat = tat;
      return { allowed: true };
    },
    async block(key, durationMs) {
      const ms = blockMs(durationMs);
      if (ms <= 0) return;
      const entry = touch(key);
      entry.blockedUntil = Math.max(entry.blockedUntil, nowUs() + ms * 1000);
    },
    async blockedFor(key) {
      const left = (entries.peek(key)?.blockedUntil ?? 0) - nowUs();
      return left > 0 ? Math.ceil(left / 1000) : undefined;
    },
    mode: () => "memory",
    async close() {
      entries.clear();
    },
  };
}

// KEYS: TAT and block marker for each check, in check order.
// ARGV: increment and capacity (µs) for each check.
// Returns {0, 0} when allowed (and only then writes), else {index of the
// first refusing check, µs until every refusing check would allow}.
const CONSUME_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local first, wait = 0, 0
for i = 1, #KEYS / 2 do
  local tatKey = KEYS[2 * i - 1]
  local w = redis.call('PTTL', KEYS[2 * i]) * 1000
  local tat = tats[tatKey] or tonumber(redis.call('GET', tatKey)) or now
  if tat < now then tat = now end
  local newTat = tat + tonumber(ARGV[2 * i - 1])
  local over = newTat - now - tonumber(ARGV[2 * i])
  if over > w then w = over end
  if w > 0 then
    if first == 0 then first = i end
    if w > wait then wait = w end
  else
    tats[tatKey] = newTat
  end
end
if first > 0 then return {first, wait} end
for key, tat in pairs(tats) do
  -- the key lives until its TAT is back to now: an idle key vanishes
  local ttl = math.ceil((tat - now) / 1000)
  if ttl > 0 then
    redis.call('SET', key, string.format('%.17g', tat), 'PX', ttl)
  else
    redis.call('DEL', key)
  end
end
return {0, 0}
`;

// KEYS[1]: block marker; ARGV[1]: ms. A longer block already set stays.
const BLOCK_LUA = `
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
`;

export interface RedisRateLimiterOptions {
  url: string;
  /** Default "identity:rl:". */
  prefix?: string;
  /** Budget for one Redis call before the fallback answers; default 100 ms. */
  commandTimeoutMs?: number;
  /** Answers while Redis fails; owned (and closed) by this limiter. */
  fallback: RateLimiter;
  onModeChange?: (mode: BackendMode, err?: unknown) => void;
}

export function createRedisRateLimiter(opts: RedisRateLimiterOptions): RateLimiter {
  // Every key carries the hash tag {rl}, so one script may touch all of a
  // consume's keys on Redis Cluster too: all limiter keys share one slot,
  // which is fine at our volumes.
  const base = `${opts.prefix ?? "identity:rl:"}{rl}`;
  const tatKey = (key: string) => `${base}t:${key}`;
  const blockKey = (key: string) => `${base}b:${key}`;
  const redis = createFailoverRedis(opts);
  const consumeScript = redis.defineScript("identityRateLimitConsume", CONSUME_LUA);
  const blockScript = redis.defineScript("identityRateLimitBlock", BLOCK_LUA);

  return {
    async consume(checks) {
      const cells = checks.map(cellOf);
      if (checks.length === 0) return { allowed: true };
      const keys = checks.flatMap((c) => [tatKey(c.key), blockKey(c.key)]);
      const args = cells.flatMap((c) => [c.increment, c.capacity]);
      return redis.run(
        async () => {
          const [first, waitUs] = (await consumeScript(keys, args)) as [number, number];
          return first === 0 ? { allowed: true } : refusal(checks[first - 1]!.key, waitUs);
        },
        () => opts.fallback.consume(checks),
      );
    },
    async block(key, durationMs) {
      const ms = blockMs(durationMs);
      if (ms <= 0) return;
      // During an outage the block lives in the fallback only, and is lost
      // once Redis answers again: acceptable for a short defensive block.
      await redis.run(
        async () => void (await blockScript([blockKey(key)], [ms])),
        () => opts.fallback.block(key, durationMs),
      );
    },
    async blockedFor(key) {
      return redis.run(
        async (client) => {
          const left = await client.pttl(blockKey(key));
          return left > 0 ? left : undefined;
        },
        () => opts.fallback.blockedFor(key),
      );
    },
    mode: () => redis.mode(),
    async close() {
      await redis.close();
      await opts.fallback.close();
    },
  };
}
