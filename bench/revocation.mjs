#!/usr/bin/env node
// Revocation delay across instances, and the verifier library's throughput.
//
//   npm run build && taskset -c 0 node bench/revocation.mjs
//
// Starts two service instances (A and B) on one fresh PostgreSQL database and
// the Redis at BENCH_REDIS_URL, both caching "session active" for a minute so
// that only the revocation feed can make B refuse in time. Under a background
// GetProfile load on B, it logs sessions out on A one at a time and measures
// how long until B (REST) and a verifier-library client refuse the token.
// Then it measures the verifier's verifications per second on this process's
// one thread: first-time tokens (distinct) and repeated tokens.
// Only loopback addresses are used; every loop is bounded in count and time.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { assertLoopback, benchKeyEncryptionKeys, envInt, fmt, freePort, httpRequest, machineInfo, percentile, sleep, table } from "./lib.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const mainJs = join(root, "dist/src/main.js");
// The workspace package, as a consuming service imports it: its built verifier/dist.
const verifierJs = fileURLToPath(import.meta.resolve("@platform/identity-verifier"));
const opts = {
  pgUrl: process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/test",
  redisUrl: process.env.BENCH_REDIS_URL || "redis://127.0.0.1:6379",
  revocations: envInt("BENCH_REVOCATIONS", 100, { max: 10_000 }),
  loadConcurrency: envInt("BENCH_LOAD_CONCURRENCY", 8, { max: 256 }),
  verifyTokens: envInt("BENCH_VERIFY_TOKENS", 20_000, { max: 200_000 }),
  verifySeconds: envInt("BENCH_VERIFY_SECONDS", 5, { max: 120 }),
};
assertLoopback(opts.pgUrl, "BENCH_PG_URL");
assertLoopback(opts.redisUrl, "BENCH_REDIS_URL");
const PASSWORD = "correct horse battery staple 42";
const dbName = `bench_${randomBytes(6).toString("hex")}`;
const children = [];
let admin;
const log = (m) => process.stderr.write(`[revocation] ${m}\n`);
setTimeout(() => {
  log("watchdog: giving up after 10 minutes");
  cleanup().finally(() => process.exit(1));
}, 600_000).unref();

async function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await sleep(500);
  if (admin) {
    await admin.unsafe(`drop database if exists "${dbName}" with (force)`).catch(() => {});
    await admin.end({ timeout: 5 }).catch(() => {});
  }
}
process.once("SIGINT", () => cleanup().finally(() => process.exit(130)));

async function startInstance(dbUrl) {
  const port = await freePort();
  // Run under `taskset -c 0` to measure the verifier on one core: the
  // instances get every core back (they inherit the affinity otherwise).
  const allCores = `0-${cpus().length - 1}`;
  const child = spawn("taskset", ["-c", allCores, process.execPath, mainJs], {
    cwd: root,
    env: {
      ...process.env,
      PORT: String(port),
      GRPC_PORT: "off",
      HOST: "127.0.0.1",
      DATABASE_URL: dbUrl,
      KEY_ENCRYPTION_KEYS: benchKeyEncryptionKeys,
      REDIS_URL: opts.redisUrl,
      SESSION_CACHE_TTL: "60s",
      LOG_LEVEL: "warn",
      ARGON2_MEMORY_KIB: "8192",
      ARGON2_TIME_COST: "1",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.push(child);
  const agent = new http.Agent({ keepAlive: false });
  for (let i = 0; i < 300; i++) {
    try {
      const r = await httpRequest(agent, { port, method: "GET", path: "/readyz", timeoutMs: 2_000 });
      if (r.status === 200 && JSON.parse(r.body).redis === "up") return port;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error("instance did not become ready with Redis up");
}

async function main() {
  if (!existsSync(mainJs) || !existsSync(verifierJs)) throw new Error("run `npm run build` first");
  const { createVerifier } = await import("@platform/identity-verifier");
  admin = postgres(opts.pgUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${dbName}"`);
  const dbUrl = new URL(opts.pgUrl);
  dbUrl.pathname = `/${dbName}`;
  const a = await startInstance(dbUrl.href);
  const b = await startInstance(dbUrl.href);
  log(`instances on ${a} and ${b}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const call = (port, method, path, body, token) =>
    httpRequest(agent, { port, method, path, body, headers: token ? { authorization: `Bearer ${token}` } : {} });

  const users = Math.min(opts.revocations, 200);
  for (let i = 0; i < users; i++) {
    const r = await call(a, "POST", "/register", { account: { email: `rev.${dbName}.${i}@example.com`, password: PASSWORD } });
    if (r.status !== 201) throw new Error(`register ${r.status}`);
  }
  const login = async (i) => {
    const r = await call(a, "POST", "/login", { email: `rev.${dbName}.${i % users}@example.com`, password: PASSWORD });
    if (r.status !== 201) throw new Error(`login ${r.status}`);
    return JSON.parse(r.body).access_token;
  };

  const verifier = createVerifier({
    jwksUrl: `http://127.0.0.1:${a}/.well-known/jwks.json`,
    issuer: "urn:identity-service",
    audience: "urn:ecommerce-platform",
    revocation: { redis: opts.redisUrl },
  });
  await verifier.ready();

  // Background load on B with sessions that stay valid.
  const loadTokens = await Promise.all(Array.from({ length: opts.loadConcurrency }, (_, i) => login(i)));
  let loading = true;
  let loadCalls = 0;
  const load = Promise.all(
    loadTokens.map(async (t) => {
      const until = performance.now() + 600_000;
      while (loading && performance.now() < until) {
        await call(b, "GET", "/user/profile", undefined, t);
        loadCalls++;
      }
    }),
  );

  const delaysB = [];
  const delaysV = [];
  const pollUntil = async (check, limitMs) => {
    const t0 = performance.now();
    while (performance.now() - t0 < limitMs) {
      if (await check()) return true;
      await sleep(1);
    }
    return false;
  };
  const loadStart = performance.now();
  for (let i = 0; i < opts.revocations; i++) {
    const token = await login(i);
    // Both sides have seen the session active (B caches that for a minute).
    if ((await call(b, "GET", "/user/profile", undefined, token)).status !== 200) throw new Error("B refused a fresh token");
    await verifier.verify(token);
    const t0 = performance.now();
    const out = await call(a, "POST", "/logout", undefined, token);
    if (out.status !== 204) throw new Error(`logout ${out.status}`);
    const [okB, okV] = await Promise.all([
      pollUntil(async () => (await call(b, "GET", "/user/profile", undefined, token)).status === 401, 5_000).then((ok) => {
        delaysB.push(ok ? performance.now() - t0 : Infinity);
        return ok;
      }),
      pollUntil(() => verifier.verify(token).then(() => false, (e) => e.code === "TOKEN_REVOKED"), 5_000).then((ok) => {
        delaysV.push(ok ? performance.now() - t0 : Infinity);
        return ok;
      }),
    ]);
    if (!okB || !okV) log(`revocation ${i} not seen within 5 s (B ${okB}, verifier ${okV})`);
  }
  loading = false;
  await load;
  const loadRate = loadCalls / ((performance.now() - loadStart) / 1000);
  await verifier.close();

  // Verifier throughput on this one thread.
  const fresh = [];
  for (let i = 0; i < Math.min(opts.verifyTokens, 2_000); i++) fresh.push(await login(i));
  const v2 = createVerifier({ jwksUrl: `http://127.0.0.1:${a}/.well-known/jwks.json`, issuer: "urn:identity-service", audience: "urn:ecommerce-platform", cacheSize: 100 });
  await v2.ready();
  const rate = async (tokens, seconds) => {
    let n = 0;
    const end = performance.now() + seconds * 1000;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    while (performance.now() < end && n < 5_000_000) {
      await Promise.all(tokens.slice(0, 64).map((t, k) => v2.verify(tokens[(n + k) % tokens.length])));
      n += 64;
    }
    const c = process.cpuUsage(c0);
    return { perSecond: n / ((performance.now() - t0) / 1000), cpuPerOpUs: (c.user + c.system) / n };
  };
  // cacheSize 100 with 2,000 rotating tokens: every verification is a cache miss.
  const first = await rate(fresh, opts.verifySeconds);
  const repeated = await rate(fresh.slice(0, 64), opts.verifySeconds);
  await v2.close();

  const stat = (d) => {
    const s = [...d].sort((x, y) => x - y);
    return [fmt.ms(percentile(s, 0.5)), fmt.ms(percentile(s, 0.99)), fmt.ms(s[s.length - 1])];
  };
  const m = machineInfo();
  const md = [
    `# Revocation and verifier benchmark`,
    ``,
    `${new Date().toISOString()} — ${m.cores} cores, ${m.model}, Node ${process.versions.node}; load average ${m.loadavg}.`,
    ``,
    `Two instances on one PostgreSQL database and Redis; both cache "session active" for 60 s, so only the feed makes B refuse. ` +
      `${opts.revocations} logouts on A, one at a time, under ${fmt.n(loadRate, 0)} GetProfile/s of background load on B (concurrency ${opts.loadConcurrency}). ` +
      `Delay = from sending the logout to A until the first refusal seen by polling (every ~1 ms, so each figure includes up to one poll round trip).`,
    ``,
    table(
      ["Refused by", "p50 ms", "p99 ms", "max ms"],
      [
        ["instance B (REST GetProfile → 401)", ...stat(delaysB)],
        ["verifier library (TOKEN_REVOKED)", ...stat(delaysV)],
      ],
      "lrrr",
    ),
    ``,
    `Verifier library on one thread (this process, 64 in flight):`,
    ``,
    table(
      ["Tokens", "verifications/s", "CPU µs each"],
      [
        ["first-time (cache misses: signature checked)", fmt.n(first.perSecond, 0), fmt.n(first.cpuPerOpUs, 1)],
        ["repeated (cache hits)", fmt.n(repeated.perSecond, 0), fmt.n(repeated.cpuPerOpUs, 2)],
      ],
      "lrr",
    ),
    ``,
  ].join("\n");
  process.stdout.write(`${md}\n`);
  mkdirSync(join(root, "bench/results"), { recursive: true });
  writeFileSync(join(root, "bench/results/revocation.md"), md);
}

main()
  .then(() => cleanup())
  .then(() => process.exit(0))
  .catch((err) => {
    log(`failed: ${err?.stack ?? err}`);
    cleanup().finally(() => process.exit(1));
  });
