import { LRUCache } from "lru-cache";
import { createFailoverRedis, type BackendMode } from "./redis-failover.js";

// Sliding-window counters for password-spray and credential-stuffing
// detection. A window of W ms is cut into buckets of ceil(W/6) ms; both
// implementations answer from the same buckets:
// - addDistinct counts the members seen in every bucket that overlaps the
//   last W ms, so a member counts for W and at most one bucket longer
//   (erring towards detection, never forgetting early);
// - increment sums the buckets inside the window and the overlapping
//   fraction of the oldest one (exact for evenly spread events).
// Redis keeps one HyperLogLog per bucket (exact in practice for small
// counts, within about 1% for large ones); memory keeps exact sets.

export interface WindowCounters {
  /** Records `member` under `key`; returns how many distinct members were recorded under `key` within the last `windowMs`. */
  addDistinct(key: string, member: string, windowMs: number): Promise<number>;
  /** Adds 1 under `key`; returns the count within the last `windowMs`. */
  increment(key: string, windowMs: number): Promise<number>;
  mode(): BackendMode;
  close(): Promise<void>;
}

const BUCKETS_PER_WINDOW = 6;

/** The window and bucket in whole ms. */
function windowOf(windowMs: number): { w: number; b: number } {
  if (!(Number.isFinite(windowMs) && windowMs > 0)) throw new RangeError("windowMs must be positive");
  const w = Math.ceil(windowMs);
  return { w, b: Math.ceil(w / BUCKETS_PER_WINDOW) };
}

export interface MemoryCountersOptions {
  /** (key, window) pairs held; the least recently used go first. Default 100 000. */
  maxKeys?: number;
  /** Members held per key; past it the oldest are dropped, so the count saturates there. Default 10 000. */
  maxMembersPerKey?: number;
  /** Milliseconds; default Date.now. */
  now?: () => number;
}

export function createMemoryCounters(opts: MemoryCountersOptions = {}): WindowCounters {
  const maxKeys = opts.maxKeys ?? 100_000;
  const maxMembers = opts.maxMembersPerKey ?? 10_000;
  const clock = opts.now ?? Date.now;
  // "d:" entries map member → newest bucket it was seen in; re-inserting on
  // every sighting keeps them ordered by bucket, so expired members are
  // pruned from the front. "n:" entries map bucket → count. The keys live
  // in an LRU (a Map evicted from its front slows down as it fills).
  const entries = new LRUCache<string, Map<unknown, number>>({ max: maxKeys });

  function touch<K>(key: string): Map<K, number> {
    let value = entries.get(key);
    if (!value) {
      value = new Map<unknown, number>();
      entries.set(key, value);
    }
    return value as Map<K, number>;
  }

  function position(windowMs: number): { now: number; w: number; b: number; current: number; oldest: number } {
    const { w, b } = windowOf(windowMs);
    const now = Math.floor(clock());
    return { now, w, b, current: Math.floor(now / b), oldest: Math.floor((now - w) / b) };
  }

  return {
    async addDistinct(key, member, windowMs) {
      const { w, current, oldest } = position(windowMs);
      const members = touch<string>(`d:${w}:${key}`);
      for (const [m, bucket] of members) {
        if (bucket >= oldest) break;
        members.delete(m);
      }
      members.delete(member);
      members.set(member, current);
      if (members.size > maxMembers) members.delete(members.keys().next().value!);
      return members.size;
    },
    async increment(key, windowMs) {
      const { now, w, b, current, oldest } = position(windowMs);
      const buckets = touch<number>(`n:${w}:${key}`);
      buckets.set(current, (buckets.get(current) ?? 0) + 1);
      let total = 0;
      for (const [bucket, n] of buckets) {
        if (bucket < oldest) buckets.delete(bucket);
        else if (bucket === oldest) total += (n * ((oldest + 1) * b - (now - w))) / b;
        else total += n;
      }
      return Math.floor(total + 0.5);
    },
    mode: () => "memory",
    async close() {
      entries.clear();
    },
  };
}

// Both scripts take KEYS[1] = the base name of one (key, window) and derive
// the bucket keys from it (base:bucket). The hash tag around the base keeps
// them in one slot, so this works on Redis Cluster although only the base is
// declared. ARGV: window and bucket in ms (then the member). Each bucket key
// expires once no window can overlap it any more.
const BUCKETS_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w, b = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = math.floor(now / b)
local oldest = math.floor((now - w) / b)
local currentKey = KEYS[1] .. ':' .. current
local ttl = (current + 1) * b + w - now
`;

const DISTINCT_LUA = `${BUCKETS_LUA}
redis.call('PFADD', currentKey, ARGV[3])
redis.call('PEXPIRE', currentKey, ttl)
local keys = {}
for bucket = oldest, current do keys[#keys + 1] = KEYS[1] .. ':' .. bucket end
return redis.call('PFCOUNT', unpack(keys))
`;

const INCREMENT_LUA = `${BUCKETS_LUA}
redis.call('INCR', currentKey)
redis.call('PEXPIRE', currentKey, ttl)
local total = 0
for bucket = oldest, current do
  local n = tonumber(redis.call('GET', KEYS[1] .. ':' .. bucket)) or 0
  if bucket == oldest then n = n * ((oldest + 1) * b - (now - w)) / b end
  total = total + n
end
return math.floor(total + 0.5)
`;

export interface RedisCountersOptions {
  url: string;
  /** Default "identity:ctr:". */
  prefix?: string;
  /** Budget for one Redis call before the fallback answers; default 100 ms. */
  commandTimeoutMs?: number;
  /** Answers while Redis fails; owned (and closed) by these counters. */
  fallback: WindowCounters;
  onModeChange?: (mode: BackendMode, err?: unknown) => void;
}

export function createRedisCounters(opts: RedisCountersOptions): WindowCounters {
  const prefix = opts.prefix ?? "identity:ctr:";
  const redis = createFailoverRedis(opts);
  const distinctScript = redis.defineScript("identityCountersDistinct", DISTINCT_LUA);
  const incrementScript = redis.defineScript("identityCountersIncrement", INCREMENT_LUA);

  return {
    async addDistinct(key, member, windowMs) {
      const { w, b } = windowOf(windowMs);
      return redis.run(
        async () => Number(await distinctScript([`${prefix}{d:${w}:${key}}`], [w, b, member])),
        () => opts.fallback.addDistinct(key, member, windowMs),
      );
    },
    async increment(key, windowMs) {
      const { w, b } = windowOf(windowMs);
      return redis.run(
        async () => Number(await incrementScript([`${prefix}{n:${w}:${key}}`], [w, b])),
        () => opts.fallback.increment(key, windowMs),
      );
    },
    mode: () => redis.mode(),
    async close() {
      await redis.close();
      await opts.fallback.close();
    },
  };
}
