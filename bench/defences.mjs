// Cost of the abuse defences and the risk engine (issues 4 and 5).
//
//   npm run bench:defences                     (builds, then runs this file)
//   BENCH_DURATION_S=30 npm run bench:defences (longer phases)
//
// Four parts, all against the BUILT code (dist/):
//   1. Rate limiter per request: createRedisRateLimiter and the memory
//      limiter consuming a login-shaped check list (source block at cost 0,
//      ip, account, ip_account, global), sequential and 16 callers; the
//      spray/stuffing detectors of one failed login (3 addDistinct + 1
//      increment, concurrently, as core/login-defence.ts `detect` does).
//   2. Brute-force claim + clear on PostgreSQL (createLoginAttemptStore), the
//      two statements every successful login adds; sequential and 8 callers.
//   3. Risk engine per login: createRiskAssessor with the PostgreSQL login
//      history (a few thousand seeded users) and geoip-lite on public IPs;
//      assess() and remember(), sequential and 8 callers; the pure engine.
//   4. The built service (dist/src/main.js) twice, each on a fresh database:
//      (a) defences on (REDIS_URL, rate limits on with login limits raised so
//      the bench's own load is not refused), (b) RATE_LIMITS=off and no
//      REDIS_URL. Both run side by side and are measured alternately (A B,
//      B A, …) so that the machine's noise falls on both alike. Successful
//      logins and failed logins (unknown e-mails, a new source address each),
//      with raw argon2id verifications on the same cores before each round.
//
// Environment: BENCH_DURATION_S (8: seconds per service phase, split over
// BENCH_ROUNDS=4 rounds; in-process phases last half of it), BENCH_USERS
// (200), BENCH_CONCURRENCY (16 logins in flight), BENCH_RISK_USERS (3000),
// BENCH_MICRO_CALLS (200,000 per in-process phase), BENCH_PG_URL,
// BENCH_REDIS_URL (redis://127.0.0.1:6379), BENCH_REDIS_DB (15),
// BENCH_QUIET_WAIT_S (0: a budget for waiting until the machine is idle
// before measured phases), ARGON2_* (the service's defaults).
//
// Only 127.0.0.1 is used. Every loop is bounded by a call budget and a
// deadline. Redis: everything runs in the logical database BENCH_REDIS_DB
// (default 15), which must be empty at the start (the service's own key
// names cannot be prefixed); in-process parts use the prefix bench:<runid>:.
// At the end (also on failure and Ctrl-C) the databases are dropped and only
// the keys this run wrote are deleted (bench:<runid>:* and the service's
// identity:rl:*, identity:ctr:*, identity:revoked:* in that database).
import { execFileSync } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import postgres from "postgres";
import { Redis } from "ioredis";
import * as nodeRsArgon2 from "@node-rs/argon2";
import {
  assertLoopback,
  envInt,
  fmt,
  grpcJsClient,
  haltLoads,
  runLoad,
  machineBusyMs,
  machineInfo,
  percentile,
  procCpuMs,
  selfCpuMs,
  sleep,
  sumCpuMs,
  table,
  exitCleanly,
  spawnService,
  stopService,
} from "./lib.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = (p) => pathToFileURL(join(root, "dist", p)).href;
const mainJs = join(root, "dist", "src", "main.js");
const cores = availableParallelism();

// ---------------------------------------------------------------------------
// Options (env)

function readOptions() {
  const o = {
    pgUrl: process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/test",
    redisUrl: process.env.BENCH_REDIS_URL || "redis://127.0.0.1:6379",
    redisDb: envInt("BENCH_REDIS_DB", 15, { min: 1, max: 1_000 }),
    durationS: envInt("BENCH_DURATION_S", 8, { min: 1, max: 600 }),
    microCalls: envInt("BENCH_MICRO_CALLS", 200_000, { min: 100, max: 10_000_000 }),
    riskUsers: envInt("BENCH_RISK_USERS", 3_000, { min: 10, max: 200_000 }),
    users: envInt("BENCH_USERS", 200, { min: 1, max: 100_000 }),
    loginConcurrency: envInt("BENCH_CONCURRENCY", 16, { min: 1, max: 1_000 }),
    quietWaitS: envInt("BENCH_QUIET_WAIT_S", 0, { min: 0, max: 3_600 }),
    parts: new Set((process.env.BENCH_PARTS || "1,2,3,4").split(",").map((x) => Number(x.trim()))),
    calibrate: process.env.BENCH_CALIBRATE === "1",
  };
  if ([...o.parts].some((x) => ![1, 2, 3, 4].includes(x))) throw new Error("BENCH_PARTS: a list of 1, 2, 3, 4");
  assertLoopback(o.pgUrl, "BENCH_PG_URL");
  assertLoopback(o.redisUrl, "BENCH_REDIS_URL");
  const u = new URL(o.redisUrl);
  if (u.pathname !== "" && u.pathname !== "/") throw new Error("BENCH_REDIS_URL must not name a database; use BENCH_REDIS_DB");
  u.pathname = `/${o.redisDb}`;
  o.redisDbUrl = u.href;
  o.redisPort = Number(u.port || 6379);
  // The service's defaults (src/config/), as bench/run.mjs uses them.
  o.argon = {
    memoryKib: envInt("ARGON2_MEMORY_KIB", 19_456, { min: 8_192, max: 4_194_304 }),
    timeCost: envInt("ARGON2_TIME_COST", 2, { min: 1, max: 100 }),
    parallelism: envInt("ARGON2_PARALLELISM", 1, { min: 1, max: 64 }),
  };
  return o;
}

let opts;
try {
  opts = readOptions();
} catch (err) {
  process.stderr.write(`[defences] ${err.message}\n`);
  process.exit(2);
}
const durationMs = opts.durationS * 1000;
// In-process phases are short: they reach thousands of calls in seconds.
const microMs = Math.max(1_000, durationMs / 2);
const warmMs = Math.min(1_000, Math.max(300, microMs / 8));
const WATCHDOG_MS = Math.max(10 * 60_000, durationMs * 40) + opts.quietWaitS * 1000;

const PASSWORD = "correct horse battery staple 42";
const log = (...a) => process.stderr.write(`[defences] ${a.join(" ")}\n`);

// ---------------------------------------------------------------------------
// Lifecycle

const runId = randomBytes(5).toString("hex");
const benchPrefix = `bench:${runId}:`;
const databases = new Set(); // created and not yet dropped
let admin;
let redisAdmin; // for the empty-check, key counts and cleanup
let serviceKeysOurs = false; // the service database was empty when we started
const children = new Set(); // service processes not yet exited
let stopping = false;
let halted = false;
const closers = []; // async
const serviceLog = { lines: 0, tail: [], redisDown: 0 };

async function deleteKeys(pattern) {
  let n = 0;
  let cursor = "0";
  // Bounded: at most 100,000 SCAN pages.
  for (let page = 0; page < 100_000; page++) {
    const [next, keys] = await redisAdmin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    if (keys.length) n += await redisAdmin.unlink(...keys);
    cursor = next;
    if (cursor === "0") break;
  }
  return n;
}

async function countKeys(pattern) {
  let n = 0;
  let cursor = "0";
  for (let page = 0; page < 100_000; page++) {
    const [next, keys] = await redisAdmin.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    n += keys.length;
    cursor = next;
    if (cursor === "0") break;
  }
  return n;
}

let cleaning;
function cleanup() {
  cleaning ??= (async () => {
    stopping = true;
    halted = true;
    haltLoads();
    await Promise.all([...children].map((c) => stopService(c).catch(() => {})));
    for (const close of closers.splice(0).reverse()) {
      try {
        await Promise.race([close(), sleep(5_000)]);
      } catch {
        // best effort
      }
    }
    if (redisAdmin) {
      try {
        let n = await deleteKeys(`${benchPrefix}*`);
        if (serviceKeysOurs) {
          for (const p of ["identity:rl:*", "identity:ctr:*", "identity:revoked:*"]) n += await deleteKeys(p);
        }
        log(`deleted ${n} Redis keys of this run (database ${opts.redisDb})`);
      } catch (err) {
        log(`could not delete the Redis keys: ${err.message} (keys ${benchPrefix}* in database ${opts.redisDb})`);
      }
      redisAdmin.disconnect();
    }
    if (admin) {
      for (const name of [...databases]) {
        try {
          await admin.unsafe(`drop database if exists "${name}" with (force)`);
          databases.delete(name);
          log(`dropped database ${name}`);
        } catch (err) {
          log(`could not drop database ${name}: ${err.message} (drop it by hand)`);
        }
      }
      await admin.end({ timeout: 5 }).catch(() => {});
    }
  })();
  return cleaning;
}

const fail = exitCleanly({ log, cleanup, isStopping: () => stopping, serviceLog, watchdogMs: WATCHDOG_MS });

async function createDatabase(tag) {
  const name = `bench_${runId}_${tag}`;
  await admin.unsafe(`create database "${name}"`);
  databases.add(name);
  const u = new URL(opts.pgUrl);
  u.pathname = `/${name}`;
  log(`created database ${name}`);
  return { name, url: u.href };
}

async function dropDatabase(name) {
  await admin.unsafe(`drop database if exists "${name}" with (force)`);
  databases.delete(name);
  log(`dropped database ${name}`);
}

// ---------------------------------------------------------------------------
// Measurement


/** The redis-server listening on our port, found by its process title ("redis-server 127.0.0.1:6379"). */
function findRedisPid() {
  try {
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() !== "redis-server") continue;
        const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ");
        if (new RegExp(`:${opts.redisPort}\\b`).test(cmd)) return Number(entry);
      } catch {
        // gone or unreadable
      }
    }
  } catch {
    // no /proc
  }
  return undefined;
}
let redisPid;

/** Commands Redis has processed (server-wide: other clients of this Redis count too). */
async function redisCommands() {
  try {
    return Number(/total_commands_processed:(\d+)/.exec(await redisAdmin.info("stats"))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** CPU of this process, Redis, PostgreSQL and the service (when given) around `fn`; the rest of the machine as "other". */
async function withCpu(fn, { pgPids, serverPid } = {}) {
  const pg0 = pgPids ? sumCpuMs(await pgPids()) : undefined;
  const r0 = redisPid ? procCpuMs(redisPid) : undefined;
  const s0 = serverPid ? procCpuMs(serverPid) : undefined;
  const c0 = selfCpuMs();
  const m0 = machineBusyMs();
  const t0 = performance.now();
  const result = await fn();
  const wallMs = performance.now() - t0;
  const c1 = selfCpuMs();
  const m1 = machineBusyMs();
  const r1 = redisPid ? procCpuMs(redisPid) : undefined;
  const s1 = serverPid ? procCpuMs(serverPid) : undefined;
  let pgMs = NaN;
  if (pg0) {
    const pg1 = sumCpuMs(await pgPids());
    pgMs = 0;
    for (const [pid, ms] of pg1.each) pgMs += ms - (pg0.each.get(pid) ?? 0);
  }
  const redisMs = r0 !== undefined && r1 !== undefined ? r1 - r0 : NaN;
  const serverMs = s0 !== undefined && s1 !== undefined ? s1 - s0 : NaN;
  const selfMs = c1 - c0;
  const machineMs = m0 !== undefined && m1 !== undefined ? m1 - m0 : NaN;
  const ours = selfMs + (Number.isFinite(redisMs) ? redisMs : 0) + (Number.isFinite(pgMs) ? pgMs : 0) + (Number.isFinite(serverMs) ? serverMs : 0);
  return { result, wallMs, selfMs, redisMs, pgMs, serverMs, otherCores: Number.isFinite(machineMs) ? Math.max(0, machineMs - ours) / wallMs : NaN };
}

const us = (ms) => (Number.isFinite(ms) ? (ms * 1000 < 10 ? (ms * 1000).toFixed(1) : (ms * 1000).toFixed(0)) : "n/a");
const perOpUs = (ms, n) => (n > 0 && Number.isFinite(ms) ? us(ms / n) : "n/a");

// The Redis-backed limiter and counters answer from their in-memory fallback
// when a call exceeds the 100 ms command timeout: such answers are counted
// per phase, so that no Redis row silently measures memory.
const redisHealth = { switches: 0, memoryAnswers: 0 };
const onModeChange = (mode) => {
  if (mode === "memory") redisHealth.switches++;
  log(`Redis client switched to ${mode}`);
};

const microRows = []; // parts 1–3
async function microPhase({ what, backend, concurrency, call, pgPids, maxCalls = opts.microCalls, ms = microMs, warm = true }) {
  if (halted) return undefined;
  await awaitQuiet(what);
  if (warm) await runLoad({ concurrency, durationMs: warmMs, maxCalls: Math.max(200, Math.min(5_000, maxCalls / 10)), call });
  const h0 = { ...redisHealth };
  const m = await withCpu(() => runLoad({ concurrency, durationMs: ms, maxCalls, call }), { pgPids });
  const r = m.result;
  const fallback = { switches: redisHealth.switches - h0.switches, memoryAnswers: redisHealth.memoryAnswers - h0.memoryAnswers };
  microRows.push({ what, backend, concurrency, r, m, fallback });
  log(
    `${what} [${backend}] c=${concurrency}: ${fmt.n(r.perSecond, 0)}/s p50 ${us(r.p50)} µs p99 ${us(r.p99)} µs max ${us(r.max)} µs` +
      ` n=${r.ok} non-OK ${fmt.errors(r.errors)} other load ${fmt.n(m.otherCores, 2)}` +
      (fallback.switches || fallback.memoryAnswers ? ` FALLBACK: ${fallback.switches} switches, ${fallback.memoryAnswers} answers from memory` : ""),
  );
  return r;
}

function microTable(filter) {
  return table(
    ["What", "Backend", "Callers", "N (OK)", "ops/s", "p50 µs", "p99 µs", "max µs", "non-OK", "bench CPU µs/op", "Redis CPU µs/op", "PostgreSQL CPU µs/op", "other load (cores)"],
    microRows.filter(filter).map(({ what, backend, concurrency, r, m, fallback }) => [
      what,
      backend,
      String(concurrency),
      String(r.ok),
      fmt.n(r.perSecond, 0),
      us(r.p50),
      us(r.p99),
      us(r.max),
      fmt.errors(r.errors) +
        (fallback.switches || fallback.memoryAnswers ? `; ${fallback.memoryAnswers} answered by the memory fallback (${fallback.switches} Redis timeouts)` : ""),
      perOpUs(m.selfMs, r.ok),
      backend.includes("Redis") ? perOpUs(m.redisMs, r.ok) : "–",
      backend.includes("PostgreSQL") ? perOpUs(m.pgMs, r.ok) : "–",
      fmt.n(m.otherCores, 2),
    ]),
    "llrrrrrrlrrrr",
  );
}

/** A synchronous function called `n` times at most, for at most `ms`; ops/s. */
function syncRate(fn, n, ms) {
  for (let i = 0; i < Math.min(n, 10_000); i++) fn(i); // warm-up
  const t0 = performance.now();
  let i = 0;
  while (i < n && !halted) {
    fn(i++);
    if ((i & 1023) === 0 && performance.now() - t0 > ms) break;
  }
  const elapsed = performance.now() - t0;
  return { n: i, perSecond: (i * 1000) / elapsed, usPerOp: (elapsed * 1000) / i };
}

// ---------------------------------------------------------------------------
// Traffic shapes

const rnd = (n) => Math.floor(Math.random() * n);
const pick = (arr) => arr[rnd(arr.length)];
/** A random IPv4 address outside 0/8, 10/8, 127/8, 224/3 (the locator refuses the other special ranges itself). */
function randomIpv4() {
  let a;
  do a = 1 + rnd(223);
  while (a === 10 || a === 127);
  return `${a}.${rnd(256)}.${rnd(256)}.${1 + rnd(254)}`;
}
/** Distinct addresses for the service phases (GEOIP=false there: only distinctness matters). */
const seqIp = (first, n) => `${first}.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
const account22 = () => randomBytes(16).toString("base64url").slice(0, 22);

// ---------------------------------------------------------------------------
// Part 1: rate limiter and detectors

async function partLimiter(mods, results, redisLimiter) {
  const { createMemoryRateLimiter } = mods.rateLimiter;
  const { createRedisCounters, createMemoryCounters } = mods.counters;
  const { defaultLimits } = mods.rateLimit;
  const { sourceBlockKey } = mods.loginDefence;

  const redisCounters = createRedisCounters({ url: opts.redisDbUrl, prefix: `${benchPrefix}ctr:`, fallback: createMemoryCounters(), onModeChange });
  closers.push(() => redisCounters.close());
  // Memory: "fresh" stays below the default 100,000 keys; "full" is filled
  // to it first, as a long-running instance without Redis soon is (entries
  // only leave by LRU eviction), so each new key evicts one.
  const memFresh = createMemoryRateLimiter();
  const memFull = createMemoryRateLimiter();
  const ctrFresh = createMemoryCounters();
  const ctrFull = createMemoryCounters();
  for (const m of [memFresh, memFull, ctrFresh, ctrFull]) closers.push(() => m.close());
  const MAX_KEYS = 100_000; // the default maxKeys of both
  for (let i = 0; i < MAX_KEYS; i++) {
    await memFull.block(`fill:${i}`, 1);
    await ctrFull.increment(`fill:${i}`, 60_000);
  }
  // Calls of a "fresh" phase: each adds at most 4 (limiter) or 3 (counters) keys.
  const FRESH_CALLS = 20_000;

  const POOL = 50_000;
  const ips = Array.from({ length: POOL }, randomIpv4);
  const accounts = Array.from({ length: POOL }, account22);
  const L = defaultLimits.login;
  // The default login.global (3,000/s) would refuse the bench's own rate, and
  // a refused consume skips its writes: raised so every call takes the write path.
  const GLOBAL = { limit: 1_000_000, periodMs: 1_000, burst: 1_000_000 };
  const SOURCE = { limit: 1, periodMs: 1_000 }; // as rpc/rate-limit.ts `blockRate`
  const checksOf = (ip, account) => [
    { key: sourceBlockKey(ip), rate: SOURCE, cost: 0 },
    { key: `login:ip:${ip}`, rate: L.ip },
    { key: `login:acct:${account}`, rate: L.account },
    { key: `login:ipacct:${ip}:${account}`, rate: L.ip_account },
    { key: "login:global", rate: GLOBAL },
  ];
  const consumeWith = (limiter) => async () => {
    const d = await limiter.consume(checksOf(pick(ips), pick(accounts)));
    if (limiter === redisLimiter && limiter.mode() !== "redis") redisHealth.memoryAnswers++;
    return d.allowed ? "OK" : `REFUSED(${d.key.split(":").slice(0, 2).join(":")})`;
  };

  // Detectors of one failed login, exactly as core/login-defence.ts `detect`.
  const hashKey = randomBytes(32);
  const mac = (label, value) => createHmac("sha256", hashKey).update(label).update("\0").update(value).digest();
  const WINDOW = 15 * 60_000; // SPRAY_WINDOW default
  const detectWith = (counters) => async () => {
    const ip = pick(ips);
    const account = pick(accounts);
    const passwordKey = mac("password", `guess ${rnd(1_000_000)}`).toString("base64url").slice(0, 22);
    await Promise.all([
      counters.addDistinct(`src-acct:${ip}`, account, WINDOW),
      counters.addDistinct(`src-pw:${ip}`, passwordKey, WINDOW),
      counters.addDistinct(`pw-acct:${passwordKey}`, account, WINDOW),
      counters.increment("fleet:failures", 60_000),
    ]);
    if (counters === redisCounters && counters.mode() !== "redis") redisHealth.memoryAnswers++;
    return "OK";
  };

  // Connect before measuring (the first call waits at most 100 ms for it).
  for (let i = 0; i < 50; i++) {
    await redisLimiter.blockedFor("warm");
    await redisCounters.increment("warm", 1_000);
    if (redisLimiter.mode() === "redis" && redisCounters.mode() === "redis") break;
    await sleep(100);
  }
  if (redisLimiter.mode() !== "redis" || redisCounters.mode() !== "redis") throw new Error("Redis did not answer within 5 s");
  const h0 = { ...redisHealth };

  const DET = "Detectors of a failed login (3 addDistinct + 1 increment, concurrent)";
  const RL = "Rate limiter consume, 5 login checks";
  const phases = [
    [RL, "Redis (EVALSHA)", 1, consumeWith(redisLimiter)],
    [RL, "Redis (EVALSHA)", 16, consumeWith(redisLimiter)],
    [RL, "memory, fresh (< 100,000 keys)", 1, consumeWith(memFresh), FRESH_CALLS],
    [RL, "memory, full (100,000 keys, LRU evicting)", 1, consumeWith(memFull)],
    [RL, "memory, full (100,000 keys, LRU evicting)", 16, consumeWith(memFull)],
    [DET, "Redis (4 EVALSHA)", 1, detectWith(redisCounters)],
    [DET, "Redis (4 EVALSHA)", 16, detectWith(redisCounters)],
    [DET, "memory, fresh (< 100,000 keys)", 1, detectWith(ctrFresh), FRESH_CALLS],
    [DET, "memory, full (100,000 keys, LRU evicting)", 1, detectWith(ctrFull)],
    [DET, "memory, full (100,000 keys, LRU evicting)", 16, detectWith(ctrFull)],
  ];
  for (const [what, backend, concurrency, call, maxCalls] of phases) await microPhase({ what, backend, concurrency, call, maxCalls });
  results.limiterFallbacks = { modeChanges: redisHealth.switches - h0.switches, memoryAnswers: redisHealth.memoryAnswers - h0.memoryAnswers };
  results.limiterKeys = await countKeys(`${benchPrefix}rl:*`);
  results.counterKeys = await countKeys(`${benchPrefix}ctr:*`);
  log(`Redis timeouts during part 1: ${results.limiterFallbacks.modeChanges}; calls answered from memory: ${results.limiterFallbacks.memoryAnswers}`);
}

// ---------------------------------------------------------------------------
// Part 2: brute-force claim + clear

async function partClaims(mods, db, pgPids, asyncDb) {
  const { createLoginAttemptStore } = mods.throttleStore;
  // BRUTE_FORCE_* defaults (src/config/).
  const policy = { freeAttempts: 5, baseDelayMs: 1_000, maxDelayMs: 15 * 60_000, lockoutThreshold: 100, resetAfterMs: 24 * 3_600_000 };
  const keys = Array.from({ length: 20_000 }, () => createHmac("sha256", "bench").update(randomUUID()).digest());
  const split = { claim: [], clear: [] };
  let store;
  const call = async () => {
    const key = pick(keys);
    const t0 = performance.now();
    const c = await store.claim(key, new Date(), policy);
    const t1 = performance.now();
    await store.clear(key);
    split.claim.push(t1 - t0);
    split.clear.push(performance.now() - t1);
    return c.kind === "claimed" ? "OK" : c.kind.toUpperCase();
  };
  const out = [];
  const variants = [
    ["Brute-force claim + clear (2 statements)", "PostgreSQL", db],
    // Not the product: how much of the cost is waiting for the WAL flush of each commit.
    ["— what-if: the same with synchronous_commit=off", "PostgreSQL", asyncDb],
  ];
  for (const [what, backend, handle] of variants) {
    store = createLoginAttemptStore(handle);
    for (const concurrency of [1, 8]) {
      // The split arrays include the warm-up: cleared once it is done.
      await runLoad({ concurrency, durationMs: warmMs, maxCalls: 2_000, call });
      split.claim = [];
      split.clear = [];
      await microPhase({ what, backend, concurrency, call, pgPids, warm: false });
      const st = (a) => {
        a.sort((x, y) => x - y);
        return { p50: percentile(a, 0.5), p99: percentile(a, 0.99), max: a[a.length - 1] };
      };
      out.push({ what: what.startsWith("—") ? "synchronous_commit=off" : "as shipped", concurrency, claim: st(split.claim), clear: st(split.clear) });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Part 3: risk engine

async function partRisk(mods, db, pgPids, redisLimiter, results) {
  const { createRiskAssessor } = mods.risk;
  const { createLoginHistoryStore } = mods.loginHistory;
  const { createUserStore } = mods.stores;
  const { createGeoIpLocator, networkPrefix } = mods.geo;
  const { assessRisk, defaultRiskThresholds } = mods.engine;
  const { sourceBlockKey } = mods.loginDefence;

  // GeoIP: the first locate() loads the data; timed apart.
  const geo = createGeoIpLocator();
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const g0 = performance.now();
  const probe = geo.locate("8.8.8.8");
  results.geoLoadMs = performance.now() - g0;
  results.geoRssMb = (process.memoryUsage().rss - rss0) / 1_048_576;
  log(`geoip-lite loaded in ${fmt.ms(results.geoLoadMs)} ms, RSS +${fmt.n(results.geoRssMb, 0)} MiB (8.8.8.8 → ${probe?.country})`);

  // Public addresses the locator places somewhere.
  const candidates = Array.from({ length: 30_000 }, randomIpv4);
  const located = candidates.filter((ip) => geo.locate(ip) !== undefined);
  results.geoLocatedShare = located.length / candidates.length;
  const ipPool = located.slice(0, 20_000);

  const history = createLoginHistoryStore(db);
  const hashKey = randomBytes(32);
  const makeAssessor = (sourceFlagged) =>
    createRiskAssessor({ history, geo, thresholds: defaultRiskThresholds, hashKey, sourceFlagged });
  // As app.ts wires it: defence.sourceFlagged → limiter.blockedFor (a Redis PTTL).
  const assessor = makeAssessor(async (ip) => {
    const left = await redisLimiter.blockedFor(sourceBlockKey(ip));
    if (redisLimiter.mode() !== "redis") redisHealth.memoryAnswers++;
    return left !== undefined;
  });
  const assessorNoRedis = makeAssessor(async () => false);

  // Seed: users with a few devices and networks each.
  const userStore = createUserStore(db);
  const phc = () =>
    `$argon2id$v=19$m=19456,t=2,p=1$${randomBytes(16).toString("base64").replace(/=+$/, "")}$${randomBytes(32).toString("base64").replace(/=+$/, "")}`;
  const DEVICES = 3;
  const seeded = Array.from({ length: opts.riskUsers }, (_, i) => ({
    id: randomUUID(),
    email: `risk.${runId}.${i}@example.com`,
    devices: Array.from({ length: DEVICES }, () => randomUUID()),
    ips: Array.from({ length: DEVICES }, () => pick(ipPool)),
  }));
  const now0 = Date.now();
  const t0 = performance.now();
  const created = await runLoad({
    concurrency: 8,
    durationMs: 300_000,
    maxCalls: seeded.length,
    call: async (i) => {
      const u = seeded[i];
      await userStore.create({ id: u.id, email: u.email, passwordHash: phc(), profile: { name: "Risk Bench" }, now: new Date(now0 - 30 * 86_400_000) });
      for (let k = 0; k < DEVICES; k++) {
        await history.record({
          userId: u.id,
          deviceHash: assessor.deviceHash(u.devices[k]),
          network: networkPrefix(u.ips[k]),
          point: geo.locate(u.ips[k]),
          at: new Date(now0 - (DEVICES - k) * 86_400_000),
          mfa: k === 0,
        });
      }
      return "OK";
    },
  });
  if (created.ok !== seeded.length) throw new Error(`seeding failed: ${created.ok} of ${seeded.length} users (${fmt.errors(created.errors)})`);
  results.seedMs = performance.now() - t0;
  results.seedRecords = seeded.length * DEVICES;
  log(`seeded ${seeded.length} users and ${results.seedRecords} history records in ${fmt.n(results.seedMs / 1000, 1)} s`);

  // A login: 70 % from a known device, 70 % from a known network (else a
  // random public address: a new network, often a new country or a jump).
  const decisions = new Map();
  const inputOf = () => {
    const u = pick(seeded);
    return {
      userId: u.id,
      deviceId: Math.random() < 0.7 ? pick(u.devices) : randomUUID(),
      ip: Math.random() < 0.7 ? pick(u.ips) : pick(ipPool),
      failuresBefore: Math.random() < 0.9 ? 0 : 1 + rnd(3),
      now: new Date(),
    };
  };
  const assessCall = (a) => async () => {
    const ctx = await a.assess(inputOf());
    const d = ctx.assessment.decision;
    decisions.set(d, (decisions.get(d) ?? 0) + 1);
    return "OK";
  };
  const rememberCall = async () => {
    const u = pick(seeded);
    await assessor.remember({
      userId: u.id,
      deviceHash: assessor.deviceHash(Math.random() < 0.7 ? pick(u.devices) : randomUUID()),
      ip: Math.random() < 0.7 ? pick(u.ips) : pick(ipPool),
      at: new Date(),
      mfa: false,
    });
    return "OK";
  };
  const backend = "PostgreSQL + Redis + geoip-lite";
  await microPhase({ what: "Risk assess() (history lookup ‖ source flag, geo, score)", backend, concurrency: 1, call: assessCall(assessor), pgPids });
  await microPhase({ what: "Risk assess() (history lookup ‖ source flag, geo, score)", backend, concurrency: 8, call: assessCall(assessor), pgPids });
  results.riskDecisions = new Map(decisions);
  await microPhase({ what: "Risk remember() (1 statement, 3 upserts)", backend: "PostgreSQL + geoip-lite", concurrency: 1, call: rememberCall, pgPids });
  await microPhase({ what: "Risk remember() (1 statement, 3 upserts)", backend: "PostgreSQL + geoip-lite", concurrency: 8, call: rememberCall, pgPids });
  // Where assess() spends its time.
  const half = Math.max(1_000, microMs / 2);
  await microPhase({
    what: "— assess() with the source flag answered in memory",
    backend: "PostgreSQL + geoip-lite",
    concurrency: 1,
    call: assessCall(assessorNoRedis),
    pgPids,
    ms: half,
  });
  await microPhase({
    what: "— history lookup alone (prepared statement)",
    backend: "PostgreSQL",
    concurrency: 1,
    call: async () => {
      const i = inputOf();
      await history.lookup(i.userId, assessor.deviceHash(i.deviceId), networkPrefix(i.ip));
      return "OK";
    },
    pgPids,
    ms: half,
  });
  await microPhase({
    what: "— source flag alone (limiter.blockedFor: PTTL)",
    backend: "Redis",
    concurrency: 1,
    call: async () => {
      const left = await redisLimiter.blockedFor(sourceBlockKey(pick(ipPool)));
      if (redisLimiter.mode() !== "redis") redisHealth.memoryAnswers++;
      return left === undefined ? "OK" : "BLOCKED";
    },
    ms: half,
  });

  // Pure parts, synchronous.
  const signals = Array.from({ length: 1024 }, () => {
    const travel = Math.random() < 0.1 ? { distanceKm: 5000, hours: 1, speedKmh: 5000 } : undefined;
    return {
      newDevice: Math.random() < 0.3,
      newNetwork: Math.random() < 0.3,
      newCountry: Math.random() < 0.1,
      impossibleTravel: travel,
      recentFailures: Math.random() < 0.9 ? 0 : rnd(4),
      flaggedSource: Math.random() < 0.01,
      firstLogin: Math.random() < 0.02,
    };
  });
  let sink = 0;
  results.pure = {
    assessRisk: syncRate((i) => (sink += assessRisk(signals[i & 1023], defaultRiskThresholds).score), 20_000_000, half),
    locate: syncRate((i) => (sink += geo.locate(ipPool[i % ipPool.length])?.lat ?? 0), 2_000_000, half),
    networkPrefix: syncRate((i) => (sink += networkPrefix(ipPool[i % ipPool.length]).length), 2_000_000, half),
  };
  if (sink === 42) log("(sink)");
  for (const [k, v] of Object.entries(results.pure)) log(`${k}: ${fmt.n(v.perSecond, 0)}/s (${v.usPerOp.toFixed(2)} µs each, n=${v.n})`);
}

// ---------------------------------------------------------------------------
// Part 4: the built service, defences on and off


function startService(databaseUrl, extraEnv) {
  return spawnService({
    mainJs,
    cwd: root,
    env: { DATABASE_URL: databaseUrl, ...extraEnv },
    serviceLog,
    onLine: (line) => {
      if (/Redis unreachable/.test(line)) serviceLog.redisDown++;
    },
    onSpawn: (c) => {
      children.add(c);
      c.once("exit", () => children.delete(c));
    },
    onExit: (code, signal, c) => {
      if (!stopping && !c.expectedExit) fail(new Error(`the service exited unexpectedly (code ${code}, signal ${signal})`));
    },
  });
}

function rawArgon2Hasher() {
  const o = { algorithm: 2, memoryCost: opts.argon.memoryKib, timeCost: opts.argon.timeCost, parallelism: opts.argon.parallelism, outputLen: 32 };
  return { hash: (p) => nodeRsArgon2.hash(p, o), verify: (h, p) => nodeRsArgon2.verify(h, p) };
}

async function rawArgon2(label, ms) {
  await awaitQuiet(`raw argon2 (${label})`);
  const a = rawArgon2Hasher();
  const h = await a.hash(PASSWORD);
  const call = async () => ((await a.verify(h, PASSWORD)) ? "OK" : "MISMATCH");
  await runLoad({ concurrency: cores, durationMs: 10_000, maxCalls: 2 * cores, call });
  const m = await withCpu(() => runLoad({ concurrency: cores, durationMs: ms, maxCalls: 1_000_000, call }));
  log(`raw argon2id verify (${label}): ${fmt.n(m.result.perSecond, 1)}/s, other load ${fmt.n(m.otherCores, 2)}`);
  return m;
}

/** Calls per command name from INFO commandstats (server-wide). */
async function redisCommandStats() {
  const out = new Map();
  try {
    for (const m of (await redisAdmin.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  } catch {
    // leave empty
  }
  return out;
}
const statsDelta = (a, b) => new Map([...b].map(([k, v]) => [k, v - (a.get(k) ?? 0)]).filter(([k, v]) => v > 0 && k !== "info"));

/**
 * Optional (BENCH_QUIET_WAIT_S, a budget for the whole run): before a
 * measured phase, wait until the machine has been nearly idle for a second.
 */
let quietBudgetMs = 0;
async function awaitQuiet(label) {
  if (quietBudgetMs <= 0) return;
  const t0 = performance.now();
  while (quietBudgetMs > 0 && !halted) {
    const m0 = machineBusyMs();
    const w0 = performance.now();
    await sleep(1_000);
    const busy = (machineBusyMs() - m0) / 1_000;
    quietBudgetMs -= performance.now() - w0;
    if (!(busy > 0.25)) break;
  }
  const waited = performance.now() - t0;
  if (waited > 1_500) log(`waited ${fmt.n(waited / 1000, 1)} s for a quiet machine before ${label}`);
}

const serviceRows = [];

/** Sums rounds of one measured phase into one result. */
function mergeRounds(rounds) {
  const lat = rounds.flatMap((m) => m.result.latencies).sort((a, b) => a - b);
  const sum = (f) => rounds.reduce((acc, m) => acc + f(m), 0);
  const errors = new Map();
  for (const m of rounds) for (const [k, v] of m.result.errors) errors.set(k, (errors.get(k) ?? 0) + v);
  const wallMs = sum((m) => m.wallMs);
  return {
    result: {
      ok: lat.length,
      errors,
      elapsedMs: sum((m) => m.result.elapsedMs),
      perSecond: (lat.length * 1000) / sum((m) => m.result.elapsedMs),
      p50: percentile(lat, 0.5),
      p99: percentile(lat, 0.99),
      max: lat.length ? lat[lat.length - 1] : NaN,
    },
    wallMs,
    selfMs: sum((m) => m.selfMs),
    redisMs: sum((m) => m.redisMs),
    pgMs: sum((m) => m.pgMs),
    serverMs: sum((m) => m.serverMs),
    otherCores: sum((m) => m.otherCores * m.wallMs) / wallMs,
    redisCommands: sum((m) => m.redisCommands),
    redisDown: sum((m) => m.redisDown),
    perRound: rounds.map((m) => m.result.perSecond),
    commandStats: rounds.reduce((acc, m) => {
      for (const [k, v] of m.commandStats) acc.set(k, (acc.get(k) ?? 0) + v);
      return acc;
    }, new Map()),
  };
}

/**
 * Part 4. Both services run side by side (each idle while the other is
 * measured), and their phases alternate A B, B A, … so that the machine's
 * noise falls on both alike.
 */
async function partService(IdentityService, results) {
  const raised = ["login.ip", "login.account", "login.ip_account", "login.global"].map((k) => `${k}=1000000/1s:1000000`).join(",");
  results.raisedLimits = raised;
  const off = { tag: "off", name: "(b) limits off, no Redis", redis: false, env: { RATE_LIMITS: "off", TRUSTED_PROXIES: "127.0.0.1", GEOIP: "false" } };
  const configs = [
    opts.calibrate
      ? // The noise floor: (a) is a second, identical copy of (b).
        { ...off, tag: "off2", name: "(a) = a second copy of (b)", env: { ...off.env } }
      : {
          tag: "on",
          name: "(a) defences on",
          redis: true,
          env: { REDIS_URL: opts.redisDbUrl, RATE_LIMITS: raised, TRUSTED_PROXIES: "127.0.0.1", GEOIP: "false" },
        },
    off,
  ];
  for (const cfg of configs) {
    cfg.database = await createDatabase(cfg.tag);
    cfg.svc = await startService(cfg.database.url, cfg.env);
    const name = cfg.database.name;
    cfg.pgPids = async () => (await admin`select pid from pg_stat_activity where datname = ${name} or datname is null`).map((r) => r.pid);
    cfg.grpc = grpcJsClient(IdentityService, `127.0.0.1:${cfg.svc.port}`);
    closers.push(() => cfg.grpc.close());
    log(`${cfg.name}: service ready (pid ${cfg.svc.pid}, redis ${cfg.svc.ready.redis})`);
    // Register: one source address per account (register.ip stays at its default).
    const emails = Array.from({ length: opts.users }, (_, i) => `bench.${runId}.${cfg.tag}.${i}@example.com`);
    const registered = new Array(opts.users).fill(false);
    const reg = await runLoad({
      concurrency: 4,
      durationMs: Math.max(120_000, opts.users * 200),
      maxCalls: opts.users,
      call: async (i) => {
        const r = await cfg.grpc.call(
          "register",
          {
            account: { email: emails[i], password: PASSWORD },
            infoUser: { name: "Bench User", phoneNumber: "1234567890", dateOfBirth: "1990-04-01", gender: true, address: "Ha Noi" },
          },
          { "x-forwarded-for": seqIp(21, i) },
        );
        if (r.code === "OK") registered[i] = true;
        return r.code;
      },
    });
    cfg.users = emails.filter((_, i) => registered[i]);
    if (cfg.users.length === 0) throw new Error(`${cfg.name}: no user could be registered (${fmt.errors(reg.errors)})`);
    log(`${cfg.name}: registered ${cfg.users.length} users`);
    // Successful logins, round-robin over the accounts (one attempt in
    // flight per account), each account from its own address.
    cfg.login = async (i) => {
      const u = i % cfg.users.length;
      return (await cfg.grpc.call("login", { email: cfg.users[u], password: PASSWORD }, { "x-forwarded-for": seqIp(22, u) })).code;
    };
    // Failed logins: an unknown e-mail, a new wrong password and a new source address each.
    let n = 0;
    cfg.failLogin = async () => {
      const k = n++;
      const r = await cfg.grpc.call(
        "login",
        { email: `nobody.${runId}.${cfg.tag}.${k}@example.com`, password: `wrong ${randomBytes(6).toString("hex")} password` },
        { "x-forwarded-for": seqIp(20, k) },
      );
      return r.code === "UNAUTHENTICATED" ? "OK" : r.code;
    };
  }

  const rounds = envInt("BENCH_ROUNDS", 4, { min: 1, max: 20 });
  const roundMs = Math.max(1_000, durationMs / rounds);
  const measuredPhase = async (cfg, kind) => {
    const call = kind === "login" ? cfg.login : cfg.failLogin;
    cfg.warm ??= {};
    if (!cfg.warm[kind]) {
      await runLoad({ concurrency: opts.loginConcurrency, durationMs: Math.min(2_000, Math.max(500, durationMs / 4)), maxCalls: 100_000, call });
      cfg.warm[kind] = true;
    }
    await awaitQuiet(`${cfg.name} ${kind}`);
    const k0 = await redisCommands();
    const s0 = await redisCommandStats();
    const d0 = serviceLog.redisDown;
    const m = await withCpu(() => loopKeep({ concurrency: opts.loginConcurrency, durationMs: roundMs, maxCalls: 1_000_000, call }), {
      pgPids: cfg.pgPids,
      serverPid: cfg.svc.pid,
    });
    m.redisCommands = (await redisCommands()) - k0 - 2; // minus our own INFO calls
    m.commandStats = statsDelta(s0, await redisCommandStats());
    m.redisDown = serviceLog.redisDown - d0;
    log(
      `${cfg.name} ${kind}: ${fmt.n(m.result.perSecond, 1)}/s p99 ${fmt.ms(m.result.p99)} ms non-OK ${fmt.errors(m.result.errors)}` +
        ` server ${fmt.ms(m.serverMs / m.result.ok)} ms/op other load ${fmt.n(m.otherCores, 2)}`,
    );
    return m;
  };
  results.raw = { login: [], failed: [] };
  for (const kind of ["login", "failed"]) {
    const per = new Map(configs.map((c) => [c, []]));
    for (let r = 0; r < rounds; r++) {
      // Raw argon2id in every round, both services idle: the same noise as the logins beside it.
      results.raw[kind].push(await rawArgon2(`${kind} round ${r + 1}`, Math.max(1_000, roundMs / 2)));
      const order = r % 2 === 0 ? configs : [...configs].reverse();
      for (const cfg of order) per.get(cfg).push(await measuredPhase(cfg, kind));
    }
    for (const cfg of configs) {
      const merged = mergeRounds(per.get(cfg));
      cfg[kind] = merged;
      serviceRows.push({
        cfg,
        what: kind === "login" ? "Login (correct password)" : "Login (wrong password, unknown e-mail, new source IP)",
        m: merged,
      });
    }
  }
  if (configs[0].redis) configs[0].ctrKeysAfterFailures = await countKeys("identity:ctr:*");
  for (const cfg of configs) {
    cfg.grpc.close();
    await stopService(cfg.svc.child);
    await dropDatabase(cfg.database.name);
  }
  results.runs = configs;
  results.rounds = rounds;
}

/** runLoad(), keeping the sorted latencies for merging rounds. */
async function loopKeep(args) {
  const lat = [];
  const r = await runLoad({
    ...args,
    call: async (i) => {
      const s = performance.now();
      const code = await args.call(i);
      if (code === "OK") lat.push(performance.now() - s);
      return code;
    },
  });
  r.latencies = lat;
  return r;
}

// ---------------------------------------------------------------------------
// The run

async function main() {
  if (!existsSync(mainJs)) throw new Error("dist/ is missing: run `npm run build` (npm run bench:defences does)");
  const mods = {
    rateLimiter: await import(dist("src/abuse/rate-limiter.js")),
    counters: await import(dist("src/abuse/counters.js")),
    rateLimit: await import(dist("src/abuse/rate-limits.js")),
    loginDefence: await import(dist("src/abuse/login-defence.js")),
    throttleStore: await import(dist("src/storage/throttle-store.js")),
    db: await import(dist("src/storage/db.js")),
    risk: await import(dist("src/risk/assessor.js")),
    loginHistory: await import(dist("src/storage/login-history-store.js")),
    stores: await import(dist("src/storage/user-store.js")),
    geo: await import(dist("src/risk/geo.js")),
    engine: await import(dist("src/risk/engine.js")),
  };
  const { IdentityService } = await import(dist("gen/identity/v1/identity_service_pb.js"));
  const machine = machineInfo();
  const startedAt = new Date();
  const results = { runs: [] };

  admin = postgres(opts.pgUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  const [{ version: pgVersion }] = await admin`select version()`;
  redisAdmin = new Redis(opts.redisDbUrl, { maxRetriesPerRequest: 1, connectTimeout: 5_000, retryStrategy: (t) => (t > 5 ? null : 200) });
  redisAdmin.on("error", () => {});
  const redisVersion = /redis_version:(\S+)/.exec(await redisAdmin.info("server"))?.[1] ?? "?";
  const size0 = await redisAdmin.dbsize();
  if (size0 !== 0) {
    throw new Error(`Redis database ${opts.redisDb} holds ${size0} keys: the service's key names cannot be prefixed, so this benchmark needs an empty one (set BENCH_REDIS_DB)`);
  }
  serviceKeysOurs = true;
  quietBudgetMs = opts.quietWaitS * 1000;
  redisPid = findRedisPid();
  log(`run ${runId}: PostgreSQL ${pgVersion.split(" ")[1]}, Redis ${redisVersion} (database ${opts.redisDb}, pid ${redisPid ?? "unknown"})`);

  const { parts } = opts;
  let redisLimiter;
  if (parts.has(1) || parts.has(3)) {
    redisLimiter = mods.rateLimiter.createRedisRateLimiter({
      url: opts.redisDbUrl,
      prefix: `${benchPrefix}rl:`,
      fallback: mods.rateLimiter.createMemoryRateLimiter(),
      onModeChange,
    });
    closers.push(() => redisLimiter.close());
  }
  if (parts.has(1)) {
    log("part 1: rate limiter and detectors");
    await partLimiter(mods, results, redisLimiter);
  }
  if (parts.has(2) || parts.has(3)) {
    // Parts 2 and 3 share one throwaway database.
    const micro = await createDatabase("micro");
    const pgPids = async () => (await admin`select pid from pg_stat_activity where datname = ${micro.name} or datname is null`).map((r) => r.pid);
    const database = await mods.db.openDatabase({ kind: "postgres", url: micro.url, poolMax: 10 });
    const closeDatabase = () => database.close();
    closers.push(closeDatabase);
    if (parts.has(2)) {
      log("part 2: brute-force claim + clear");
      const asyncUrl = new URL(micro.url);
      asyncUrl.searchParams.set("synchronous_commit", "off");
      const asyncDatabase = await mods.db.openDatabase({ kind: "postgres", url: asyncUrl.href, poolMax: 10 }, { migrate: false });
      const closeAsync = () => asyncDatabase.close();
      closers.push(closeAsync);
      results.claims = await partClaims(mods, database.db, pgPids, asyncDatabase.db);
      closers.splice(closers.indexOf(closeAsync), 1);
      await asyncDatabase.close();
    }
    if (parts.has(3)) {
      log("part 3: risk engine");
      await partRisk(mods, database.db, pgPids, redisLimiter, results);
    }
    closers.splice(closers.indexOf(closeDatabase), 1);
    await database.close();
    await dropDatabase(micro.name);
  }
  if (parts.has(4)) {
    log(`part 4: the service with defences on and off${opts.calibrate ? " (calibration: two identical copies of (b))" : ""}`);
    await partService(IdentityService, results);
  }

  // ---------------------------------------------------------------------------
  // Report
  const endLoad = machineInfo().loadavg;
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8", timeout: 5_000 }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "gen", "package.json"], { cwd: root, encoding: "utf8", timeout: 5_000 }).trim();
    if (dirty) commit += " (with uncommitted changes in src/gen/package.json)";
  } catch {
    // not a git checkout
  }
  const envShown = Object.entries(process.env)
    .filter(([k]) => /^BENCH_|^ARGON2_/.test(k))
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  const md = [];
  md.push(`# Abuse defence and risk engine benchmark`);
  md.push("");
  md.push(`Command: \`${envShown ? `${envShown} ` : ""}npm run bench:defences\` — ${startedAt.toISOString()}, commit ${commit}, run ${runId}.`);
  md.push("");
  md.push(
    table(
      ["", ""],
      [
        ["Cores (available to Node)", String(machine.cores)],
        ["CPU", machine.model],
        ["Node", machine.node],
        ["PostgreSQL", pgVersion.split(",")[0]],
        ["Redis", `${redisVersion}, 127.0.0.1:${opts.redisPort} database ${opts.redisDb}`],
        ["Load average (1/5/15 min) at start → end", `${machine.loadavg} → ${endLoad}`],
        ["argon2id", `m=${opts.argon.memoryKib} KiB, t=${opts.argon.timeCost}, p=${opts.argon.parallelism} (@node-rs/argon2)`],
        ["Phases", `in-process ${microMs / 1000} s (≤ ${opts.microCalls} calls) after a ${warmMs} ms warm-up; service ${opts.durationS} s after a warm-up`],
      ],
      "ll",
    ),
  );
  md.push("");
  if (parts.has(1)) reportPart1(md, results);
  if (parts.has(2)) reportPart2(md, results);
  if (parts.has(3)) reportPart3(md, results);
  if (parts.has(4)) reportPart4(md, results);
  const report = md.join("\n") + "\n";
  process.stdout.write(`\n${report}`);
  if (serviceLog.lines > 0) log(`last service log lines:\n${serviceLog.tail.slice(-10).join("\n")}`);
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "defences-latest.md"), report);
  log("wrote bench/results/defences-latest.md");
}

function reportPart1(md, results) {
  md.push("## 1. Rate limiter and detectors per request");
  md.push("");
  md.push(
    "Keys drawn at random from 50,000 IPs × 50,000 accounts; `login` limits from `defaultLimits` except `global`, raised to 1,000,000/s so " +
      "that the fleet-wide ceiling never refuses the bench's own rate (a refused consume writes nothing; the rare per-key refusal of an account " +
      "drawn more than its burst is counted under non-OK). Detectors: 15-minute window (SPRAY_WINDOW), a random password fingerprint each.",
  );
  md.push("");
  md.push(microTable((r) => r.what.startsWith("Rate limiter") || r.what.startsWith("Detectors")));
  md.push("");
  md.push(
    `Redis calls over the 100 ms command timeout during part 1: ${results.limiterFallbacks.modeChanges}; calls answered from the memory fallback: ${results.limiterFallbacks.memoryAnswers}. ` +
      `Keys left by the limiter at the end of part 1: ${results.limiterKeys} (they expire with their TAT), counters: ${results.counterKeys}.`,
  );
  md.push("");
}

function reportPart2(md, results) {
  md.push("## 2. Brute-force claim + clear (PostgreSQL)");
  md.push("");
  md.push(
    "20,000 account keys drawn at random; BRUTE_FORCE_* defaults. Each call claims (an insert: the account had no failures) and clears (a delete), " +
      "each its own commit, as a successful login does. The what-if rows are not the product.",
  );
  md.push("");
  md.push(microTable((r) => r.what.startsWith("Brute-force") || r.what.includes("synchronous_commit")));
  md.push("");
  md.push(
    table(
      ["Variant", "Callers", "claim p50 µs", "claim p99 µs", "claim max µs", "clear p50 µs", "clear p99 µs", "clear max µs"],
      results.claims.map((s) => [s.what, String(s.concurrency), us(s.claim.p50), us(s.claim.p99), us(s.claim.max), us(s.clear.p50), us(s.clear.p99), us(s.clear.max)]),
      "lrrrrrrr",
    ),
  );
  md.push("");
}

function reportPart3(md, results) {
  md.push("## 3. Risk engine per login");
  md.push("");
  md.push(
    `${opts.riskUsers} users seeded with ${results.seedRecords} history records (${DEVICES_NOTE}) in ${fmt.n(results.seedMs / 1000, 1)} s. ` +
      `geoip-lite: first lookup ${fmt.ms(results.geoLoadMs)} ms, RSS +${fmt.n(results.geoRssMb, 0)} MiB; ${fmt.n(100 * results.geoLocatedShare, 0)} % of random IPv4 addresses located (only located ones are used). ` +
      `Logins: 70 % from a known device, 70 % from a known network. Decisions during the assess phases: ` +
      [...results.riskDecisions].map(([d, c]) => `${d} ${c}`).join(", ") +
      ".",
  );
  md.push("");
  md.push(microTable((r) => r.what.startsWith("Risk") || (r.what.startsWith("—") && !r.what.includes("synchronous_commit"))));
  md.push("");
  md.push(
    table(
      ["Synchronous", "calls", "ops/s", "µs/op"],
      Object.entries(results.pure).map(([k, v]) => [k === "assessRisk" ? "assessRisk (pure engine)" : k === "locate" ? "geo.locate (loaded)" : "networkPrefix", String(v.n), fmt.n(v.perSecond, 0), v.usPerOp.toFixed(2)]),
    ),
  );
  md.push("");
}

function reportPart4(md, results) {
  const rawAll = [...results.raw.login, ...results.raw.failed];
  const rawMean = (list) => list.reduce((a, m) => a + m.result.ok, 0) / (list.reduce((a, m) => a + m.result.elapsedMs, 0) / 1000);
  const rawPerS = rawMean(results.raw.login);
  const [on, off] = results.runs;
  const raised = results.raisedLimits;
  md.push("## 4. The service with defences on and off");
  md.push("");
  md.push(
    `Built service, both configurations running side by side on fresh databases and measured alternately (${results.rounds} rounds of ${fmt.n(durationMs / results.rounds / 1000, 1)} s each, A B then B A), ` +
      `gRPC on the main port (@grpc/grpc-js client, one HTTP/2 connection), ${opts.loginConcurrency} logins in flight, ` +
      `${opts.users} accounts round-robin (one attempt in flight per account), each account from its own address (X-Forwarded-For, TRUSTED_PROXIES=127.0.0.1), GEOIP=false. ` +
      "Brute-force claims and risk scoring run in both configurations (they are part of the product); in (b) the spray/stuffing detectors and source flags run in memory.",
  );
  md.push("");
  md.push(
    table(
      ["Configuration", "What", "logins/s", "per round", "p50 ms", "p99 ms", "max ms", "OK", "non-OK", "server CPU ms/op", "PostgreSQL CPU ms/op", "Redis CPU ms/op", "Redis commands/op (incl. in scripts)", "load-gen CPU ms/op", "other load (cores)"],
      serviceRows.map(({ cfg, what, m }) => {
        const r = m.result;
        const n = r.ok || NaN;
        return [
          cfg.name,
          what,
          fmt.n(r.perSecond, 1),
          m.perRound.map((x) => fmt.n(x, 1)).join(" / "),
          fmt.ms(r.p50),
          fmt.ms(r.p99),
          fmt.ms(r.max),
          String(r.ok),
          fmt.errors(r.errors) + (m.redisDown ? `; Redis timed out ${m.redisDown}× (memory fallback)` : ""),
          fmt.ms(m.serverMs / n),
          fmt.ms(m.pgMs / n),
          fmt.ms(m.redisMs / n),
          fmt.n(m.redisCommands / n, 2),
          fmt.ms(m.selfMs / n),
          fmt.n(m.otherCores, 2),
        ];
      }),
      "llrlrrrrlrrrrrr",
    ),
  );
  md.push("");
  md.push(
    `- Raw @node-rs/argon2 verifications/s on the same cores (${cores} at once, both services idle), one phase before each round: ` +
      `${rawAll.map((m) => fmt.n(m.result.perSecond, 1)).join(" / ")} (other load ${rawAll.map((m) => fmt.n(m.otherCores, 2)).join(" / ")}); ` +
      `mean over the successful-login rounds **${fmt.n(rawPerS, 1)}**, over the failed-login rounds ${fmt.n(rawMean(results.raw.failed), 1)}.`,
  );
  md.push(
    `- Login/s ÷ raw verifications/s: (a) **${fmt.n(on.login.result.perSecond / rawPerS, 2)}**, (b) **${fmt.n(off.login.result.perSecond / rawPerS, 2)}**; ` +
      `(a) ÷ (b) = **${fmt.n(on.login.result.perSecond / off.login.result.perSecond, 2)}** for successful logins, ` +
      `**${fmt.n(on.failed.result.perSecond / off.failed.result.perSecond, 2)}** for failed ones ` +
      `(failed logins/s ÷ raw: (a) ${fmt.n(on.failed.result.perSecond / rawMean(results.raw.failed), 2)}, (b) ${fmt.n(off.failed.result.perSecond / rawMean(results.raw.failed), 2)}).`,
  );
  const roundRatios = (kind) => on[kind].perRound.map((x, i) => x / off[kind].perRound[i]);
  const median = (a) => {
    const b = [...a].sort((x, y) => x - y);
    return b.length % 2 ? b[(b.length - 1) / 2] : (b[b.length / 2 - 1] + b[b.length / 2]) / 2;
  };
  md.push(
    `- (a) ÷ (b) round by round (adjacent in time): successful ${roundRatios("login").map((x) => fmt.n(x, 2)).join(" / ")} (median ${fmt.n(median(roundRatios("login")), 2)}), ` +
      `failed ${roundRatios("failed").map((x) => fmt.n(x, 2)).join(" / ")} (median ${fmt.n(median(roundRatios("failed")), 2)}).`,
  );
  md.push(
    `- Server CPU per login, (a) − (b): ${fmt.ms(on.login.serverMs / on.login.result.ok - off.login.serverMs / off.login.result.ok)} ms (successful), ` +
      `${fmt.ms(on.failed.serverMs / on.failed.result.ok - off.failed.serverMs / off.failed.result.ok)} ms (failed).`,
  );
  if (on.redis) {
    md.push(
    `- (a) used Redis: readiness said redis=${on.svc.ready.redis}; ${on.ctrKeysAfterFailures} detector keys after the failures. Redis commands/op is the server-wide ` +
      "count from INFO, commands run inside the Lua scripts included (other clients of this Redis too: (b) shows that background). " +
      "Per op in (a), by name: successful " +
      [...on.login.commandStats].sort((x, y) => y[1] - x[1]).slice(0, 12).map(([k, v]) => `${k} ${fmt.n(v / on.login.result.ok, 2)}`).join(", ") +
      "; failed " +
      [...on.failed.commandStats].sort((x, y) => y[1] - x[1]).slice(0, 12).map(([k, v]) => `${k} ${fmt.n(v / on.failed.result.ok, 2)}`).join(", ") +
      `. Service log lines at warn or above: ${serviceLog.lines} (of which "Redis unreachable": ${serviceLog.redisDown}).`,
    );
  }
  if (on.redis) {
    md.push(
      "- With the raised limits (1,000,000/s, burst 1,000,000) a limiter key's TAT is 1 µs ahead, so the script stores it for 1 ms: " +
        "the write path runs on every call, but nothing accumulates.",
    );
    md.push(
      `- (a) RATE_LIMITS=\`${raised}\` (other RPCs at their defaults; each account registered from its own address); (b) RATE_LIMITS=off, REDIS_URL unset.`,
    );
  } else {
    md.push("- Calibration (BENCH_CALIBRATE=1): (a) is a second, identical copy of (b); the differences above are the noise floor of this comparison.");
  }
  md.push("");
}
const DEVICES_NOTE = "3 devices and 3 networks each, the first device MFA-verified";

main().then(
  () => cleanup().then(() => process.exit(0)),
  (err) => fail(err),
);
