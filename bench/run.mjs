// End-to-end benchmark of the identity service against PostgreSQL.
//
//   npm run bench                      (builds, then runs this file)
//   BENCH_DURATION_S=30 npm run bench  (longer phases for a quiet machine)
//
// It creates a throwaway database on BENCH_PG_URL, starts the built service
// (dist/src/main.js) on a free 127.0.0.1 port against it, measures raw
// argon2id, Register, Login and GetProfile (gRPC and REST), and the server CPU
// per GetProfile call, prints one markdown report and writes it to
// bench/results/latest.md. The database is dropped at the end, also on
// failure and Ctrl-C. Every loop is bounded by a call budget and a deadline.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const cores = availableParallelism();
// The load generator verifies `cores` hashes at once on its libuv pool.
if (cores > 4 && !process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(cores);

import postgres from "postgres";
import * as nodeRsArgon2 from "@node-rs/argon2";
import argon2 from "argon2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  assertLoopback,
  clockTicks,
  envInt,
  fmt,
  grpcJsClient,
  haltLoads,
  httpRequest,
  machineInfo,
  measured,
  runCount,
  runLoad,
  table,
  warmUp,
  CALL_TIMEOUT_MS,
  exitCleanly,
  spawnService,
  stopService,
} from "./lib.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const mainJs = join(root, "dist", "src", "main.js");
const genJs = join(root, "dist", "gen", "identity", "v1", "identity_service_pb.js");

// ---------------------------------------------------------------------------
// Options (env)

function readOptions() {
  const opts = {
    pgUrl: process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/test",
    durationS: envInt("BENCH_DURATION_S", 8, { min: 1, max: 600 }),
    users: envInt("BENCH_USERS", 200, { min: 1, max: 100_000 }),
    loginConcurrency: envInt("BENCH_CONCURRENCY", 16, { min: 1, max: 1_000 }),
    registerConcurrency: envInt("BENCH_REGISTER_CONCURRENCY", 4, { min: 1, max: 1_000 }),
    profileConcurrency: envInt("BENCH_PROFILE_CONCURRENCY", 32, { min: 1, max: 1_000 }),
    cpuCalls: envInt("BENCH_CPU_CALLS", 3_000, { min: 100, max: 1_000_000 }),
    cpuConcurrency: envInt("BENCH_CPU_CONCURRENCY", 8, { min: 1, max: 1_000 }),
    grpcClient: process.env.BENCH_GRPC_CLIENT || "grpc-js", // or "connect"
  };
  if (!["grpc-js", "connect"].includes(opts.grpcClient)) throw new Error("BENCH_GRPC_CLIENT must be grpc-js or connect");
  assertLoopback(opts.pgUrl, "BENCH_PG_URL");
  // The service's own defaults (src/config/), so raw hashing uses its cost.
  const argonParams = {
    memoryKib: envInt("ARGON2_MEMORY_KIB", 19_456, { min: 8_192, max: 4_194_304 }),
    timeCost: envInt("ARGON2_TIME_COST", 2, { min: 1, max: 100 }),
    parallelism: envInt("ARGON2_PARALLELISM", 1, { min: 1, max: 64 }),
  };
  return { opts, argonParams };
}

let opts, argonParams;
try {
  ({ opts, argonParams } = readOptions());
} catch (err) {
  process.stderr.write(`[bench] ${err.message}\n`);
  process.exit(2);
}

const durationMs = opts.durationS * 1000;
const warmupMs = Math.min(2_000, Math.max(500, durationMs / 4));
// Whole-run watchdog: nothing here should take anywhere near this long.
const WATCHDOG_MS = Math.max(10 * 60_000, durationMs * 40);

// Passwords the service's policy accepts (long, not common, no context words).
const PASSWORD = "correct horse battery staple 42";
const NAME = "Bench User";

const log = (...a) => process.stderr.write(`[bench] ${a.join(" ")}\n`);

// ---------------------------------------------------------------------------
// Lifecycle: database, child process, cleanup

const runId = randomBytes(6).toString("hex");
const dbName = `bench_${runId}`;
let admin;
let dbCreated = false;
let child;
let stopping = false;
const closers = [];
const serviceLog = { lines: 0, tail: [] };

let cleaning;
function cleanup() {
  cleaning ??= (async () => {
    stopping = true;
    haltLoads();
    for (const close of closers.splice(0)) {
      try {
        close();
      } catch {
        // best effort
      }
    }
    if (child) await stopService(child);
    if (admin && dbCreated) {
      try {
        await admin.unsafe(`drop database if exists "${dbName}" with (force)`);
        dbCreated = false;
        log(`dropped database ${dbName}`);
      } catch (err) {
        log(`could not drop database ${dbName}: ${err.message} (drop it by hand)`);
      }
    }
    if (admin) await admin.end({ timeout: 5 }).catch(() => {});
  })();
  return cleaning;
}

const fail = exitCleanly({ log, cleanup, isStopping: () => stopping, serviceLog, watchdogMs: WATCHDOG_MS });


// ---------------------------------------------------------------------------
// Clients

const codeName = (code) => (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();

function connectClient(IdentityService, transport) {
  const client = createClient(IdentityService, transport);
  return {
    call: (method, init, metadata = {}) =>
      client[method](init, { headers: metadata, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) }).then(
        (res) => ({ code: "OK", res }),
        (err) => ({ code: codeName(ConnectError.from(err).code) }),
      ),
    close() {},
  };
}

/** REST status → "OK" or a code like "HTTP_429 resource_exhausted". */
function restOutcome(r, okStatus) {
  if (r.status === okStatus) return "OK";
  let code = "";
  try {
    code = JSON.parse(r.body).code ?? "";
  } catch {
    // not JSON
  }
  return `HTTP_${r.status}${code ? ` ${code}` : ""}`;
}

// ---------------------------------------------------------------------------
// The run

async function main() {
  if (!existsSync(mainJs) || !existsSync(genJs)) throw new Error("dist/ is missing: run `npm run build` (npm run bench does)");
  const { IdentityService } = await import(pathToFileURL(genJs).href);
  const machine = machineInfo();
  const startedAt = new Date();

  admin = postgres(opts.pgUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  const [{ version: pgVersion }] = await admin`select version()`;
  await admin.unsafe(`create database "${dbName}"`);
  dbCreated = true;
  log(`created database ${dbName}`);
  const dbUrl = new URL(opts.pgUrl);
  dbUrl.pathname = `/${dbName}`;
  const pgPids = async () =>
    (await admin`select pid from pg_stat_activity where datname = ${dbName} or datname is null`).map((r) => r.pid);

  log("starting the service");
  const { port, grpcPort, pid } = await spawnService({
    mainJs,
    cwd: root,
    // All load comes from one address: the per-address limits would measure themselves.
    env: { DATABASE_URL: dbUrl.href, RATE_LIMITS: "off", MAX_CONNECTIONS_PER_SOURCE: "0" },
    serviceLog,
    onSpawn: (c) => (child = c),
    onExit: (code, signal, c) => {
      if (!stopping && !c.expectedExit) fail(new Error(`the service exited unexpectedly (code ${code}, signal ${signal})`));
    },
  });
  log(`service ready (pid ${pid}); phases of ${opts.durationS} s, each after a warm-up`);

  const rows = [];
  const row = (what, protocol, concurrency, m) => {
    if (stopping) return;
    const r = m.result;
    const n = r.ok || NaN;
    rows.push({
      what,
      protocol,
      concurrency,
      perSecond: r.perSecond,
      p50: r.p50,
      p99: r.p99,
      ok: r.ok,
      errors: r.errors,
      serverMs: m.serverMs / n,
      pgMs: m.pgMs === undefined ? NaN : m.pgMs / n,
      clientMs: m.clientMs / n,
      otherCores: m.otherCores,
    });
    log(
      `${what} ${protocol} c=${concurrency}: ${fmt.n(r.perSecond, 1)}/s p50 ${fmt.ms(r.p50)} ms p99 ${fmt.ms(r.p99)} ms` +
        ` ok ${r.ok} non-OK ${fmt.errors(r.errors)}`,
    );
  };

  // -- 1. Raw argon2id, service idle -----------------------------------------
  const nodeRsOptions = {
    algorithm: 2, // Argon2id
    memoryCost: argonParams.memoryKib,
    timeCost: argonParams.timeCost,
    parallelism: argonParams.parallelism,
    outputLen: 32,
  };
  const argon2Options = {
    type: argon2.argon2id,
    memoryCost: argonParams.memoryKib,
    timeCost: argonParams.timeCost,
    parallelism: argonParams.parallelism,
    hashLength: 32,
  };
  const libs = [
    { name: "@node-rs/argon2", hash: (p) => nodeRsArgon2.hash(p, nodeRsOptions), verify: (h, p) => nodeRsArgon2.verify(h, p) },
    { name: "argon2", hash: (p) => argon2.hash(p, argon2Options), verify: (h, p) => argon2.verify(h, p) },
  ];
  const hashes = {};
  for (const lib of libs) hashes[lib.name] = await lib.hash(PASSWORD);
  // Each library verifies the other's PHC string, and rejects a wrong password.
  const cross =
    (await libs[0].verify(hashes["argon2"], PASSWORD)) &&
    (await libs[1].verify(hashes["@node-rs/argon2"], PASSWORD)) &&
    !(await libs[0].verify(hashes["argon2"], `${PASSWORD}x`)) &&
    !(await libs[1].verify(hashes["@node-rs/argon2"], `${PASSWORD}x`));
  log(`cross-verification of PHC strings: ${cross ? "ok" : "FAILED"}`);
  const raw = {};
  for (const lib of libs) {
    const h = hashes[lib.name];
    await runCount({ concurrency: cores, calls: 2 * cores, maxMs: 10_000, call: async () => ((await lib.verify(h, PASSWORD)) ? "OK" : "MISMATCH") });
    const m = await measured(pid, () =>
      runLoad({ concurrency: cores, durationMs, call: async () => ((await lib.verify(h, PASSWORD)) ? "OK" : "MISMATCH") }),
    );
    raw[lib.name] = { perSecond: m.result.perSecond, cpuMs: m.clientMs / m.result.ok, serverIdleMsPerS: (m.serverMs * 1000) / m.wallMs };
    rows.push({
      what: `raw verify, ${lib.name}`,
      protocol: "in-process",
      concurrency: cores,
      perSecond: m.result.perSecond,
      p50: m.result.p50,
      p99: m.result.p99,
      ok: m.result.ok,
      errors: m.result.errors,
      serverMs: NaN,
      pgMs: NaN,
      clientMs: m.clientMs / m.result.ok,
      otherCores: m.otherCores,
    });
    log(`raw verify ${lib.name}: ${fmt.n(m.result.perSecond, 1)}/s, ${fmt.ms(m.clientMs / m.result.ok)} ms CPU each`);
  }

  // -- 2. Clients --------------------------------------------------------------
  const grpc =
    opts.grpcClient === "grpc-js"
      ? grpcJsClient(IdentityService, `127.0.0.1:${port}`)
      : connectClient(IdentityService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
  closers.push(() => grpc.close());
  // The internal port: the same RPCs served by @grpc/grpc-js.
  const grpcInternal = grpcJsClient(IdentityService, `127.0.0.1:${grpcPort}`);
  closers.push(() => grpcInternal.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  closers.push(() => agent.destroy());
  const connectAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  closers.push(() => connectAgent.destroy());
  const connect = connectClient(
    IdentityService,
    createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1", nodeOptions: { agent: connectAgent } }),
  );

  // -- 3. Register (seed) ------------------------------------------------------
  const emails = Array.from({ length: opts.users }, (_, i) => `bench.${runId}.${i}@example.com`);
  const registered = new Array(opts.users).fill(false);
  {
    const m = await measured(
      pid,
      () =>
        runCount({
          concurrency: opts.registerConcurrency,
          calls: opts.users,
          maxMs: Math.max(120_000, opts.users * 200),
          call: async (i) => {
            const r = await grpc.call("register", {
              account: { email: emails[i], password: PASSWORD },
              infoUser: { name: NAME, phoneNumber: "1234567890", dateOfBirth: "1990-04-01", gender: true, address: "Ha Noi" },
            });
            if (r.code === "OK") registered[i] = true;
            return r.code;
          },
        }),
      pgPids,
    );
    row("Register (seed)", "gRPC", opts.registerConcurrency, m);
  }
  const users = emails.filter((_, i) => registered[i]);
  if (users.length === 0) throw new Error("no user could be registered");

  // -- 4. Login ------------------------------------------------------------------
  const tokens = new Map(); // user index → latest access token
  const loginGrpc = async (i) => {
    const u = i % users.length;
    const r = await grpc.call("login", { email: users[u], password: PASSWORD });
    if (r.code === "OK") tokens.set(u, r.res.accessToken);
    return r.code;
  };
  const loginInternal = async (i) => {
    const u = i % users.length;
    const r = await grpcInternal.call("login", { email: users[u], password: PASSWORD });
    if (r.code === "OK") tokens.set(u, r.res.accessToken);
    return r.code;
  };
  const loginRest = async (i) => {
    const u = i % users.length;
    const r = await httpRequest(agent, { port, method: "POST", path: "/login", body: { email: users[u], password: PASSWORD } });
    const outcome = restOutcome(r, 201);
    if (outcome === "OK") tokens.set(u, JSON.parse(r.body).access_token);
    return outcome;
  };
  const login = {};
  for (const [protocol, call] of [
    ["gRPC", loginGrpc],
    ["gRPC internal port", loginInternal],
    ["REST", loginRest],
  ]) {
    await warmUp({ concurrency: opts.loginConcurrency, call, minMs: warmupMs, minCalls: 4 * opts.loginConcurrency });
    const m = await measured(pid, () => runLoad({ concurrency: opts.loginConcurrency, durationMs, call }), pgPids);
    login[protocol] = m.result.perSecond;
    row("Login", protocol, opts.loginConcurrency, m);
  }
  if (tokens.size === 0) throw new Error("no login succeeded; cannot measure GetProfile");
  const tokenList = [...tokens.values()];
  const bearer = (i) => `Bearer ${tokenList[i % tokenList.length]}`;

  // -- 5. GetProfile -------------------------------------------------------------
  const profileGrpc = async (i) => (await grpc.call("getProfile", {}, { authorization: bearer(i) })).code;
  const profileInternal = async (i) => (await grpcInternal.call("getProfile", {}, { authorization: bearer(i) })).code;
  const profileConnect = async (i) => (await connect.call("getProfile", {}, { authorization: bearer(i) })).code;
  const profileRest = async (i) =>
    restOutcome(await httpRequest(agent, { port, method: "GET", path: "/user/profile", headers: { authorization: bearer(i) } }), 200);
  const profile = {};
  for (const [protocol, call] of [
    ["gRPC", profileGrpc],
    ["gRPC internal port", profileInternal],
    ["REST", profileRest],
  ]) {
    await warmUp({ concurrency: opts.profileConcurrency, call, minMs: warmupMs, minCalls: 2_000 });
    const m = await measured(pid, () => runLoad({ concurrency: opts.profileConcurrency, durationMs, call }), pgPids);
    profile[protocol] = m.result.perSecond;
    row("GetProfile", protocol, opts.profileConcurrency, m);
  }

  // -- 6. Server CPU per GetProfile call ----------------------------------------
  const cpuRows = [];
  for (const [protocol, call] of [
    [`gRPC (h2c, ${opts.grpcClient} client)`, profileGrpc],
    ["gRPC internal port (@grpc/grpc-js server)", profileInternal],
    ["Connect JSON (HTTP/1.1)", profileConnect],
    ["REST `GET /user/profile` (HTTP/1.1)", profileRest],
  ]) {
    await warmUp({ concurrency: opts.cpuConcurrency, call, minMs: 0, minCalls: 1_000 });
    const m = await measured(pid, () => runCount({ concurrency: opts.cpuConcurrency, calls: opts.cpuCalls, maxMs: 120_000, call }), pgPids);
    const n = m.result.ok || NaN;
    cpuRows.push([
      protocol,
      String(m.result.ok),
      fmt.errors(m.result.errors),
      fmt.us((m.serverMs * 1000) / n),
      m.pgMs === undefined ? "n/a" : fmt.us((m.pgMs * 1000) / n),
      fmt.us((m.clientMs * 1000) / n),
      fmt.n(m.result.perSecond, 0),
      fmt.n(m.otherCores, 2),
    ]);
    log(`CPU/call ${protocol}: server ${fmt.us((m.serverMs * 1000) / n)} µs`);
  }

  // -- 7. Report ---------------------------------------------------------------
  const endLoad = machineInfo().loadavg;
  const nodeRs = raw["@node-rs/argon2"];
  const npmArgon2 = raw["argon2"];
  const ratio = (x) => x / nodeRs.perSecond;
  const aim = (ok) => (ok ? "meets" : "below");
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8", timeout: 5_000 }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "gen", "package.json"], { cwd: root, encoding: "utf8", timeout: 5_000 }).trim();
    if (dirty) commit += " (with uncommitted changes in src/gen/package.json)";
  } catch {
    // not a git checkout
  }
  const envShown = Object.entries(process.env)
    .filter(([k]) => /^BENCH_|^ARGON2_|^HASH_|^DB_POOL_MAX$/.test(k))
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");

  const md = [];
  md.push(`# Identity service benchmark`);
  md.push("");
  md.push(`Command: \`${envShown ? `${envShown} ` : ""}npm run bench\` — ${startedAt.toISOString()}, commit ${commit}.`);
  md.push("");
  md.push("## Machine");
  md.push("");
  md.push(
    table(
      ["", ""],
      [
        ["Cores (available to Node)", String(machine.cores)],
        ["CPU", machine.model],
        ["Node", machine.node],
        ["PostgreSQL", pgVersion],
        ["Load average (1/5/15 min) at start → end", `${machine.loadavg} → ${endLoad}`],
        ["argon2id", `m=${argonParams.memoryKib} KiB, t=${argonParams.timeCost}, p=${argonParams.parallelism}`],
        ["Service", `1 process, LOG_LEVEL=warn, HASH_CONCURRENCY=${process.env.HASH_CONCURRENCY || `default (${cores})`}, DB_POOL_MAX=${process.env.DB_POOL_MAX || "default (10)"}`],
        ["Load generator", `this process, same cores; gRPC via ${opts.grpcClient === "grpc-js" ? "@grpc/grpc-js" : "connect-node createGrpcTransport"} (one HTTP/2 connection), REST via node:http keep-alive`],
        ["Phases", `${opts.durationS} s each after a warm-up of ≥ ${warmupMs} ms (and ≥ 2,000 calls for GetProfile, ≥ ${4 * opts.loginConcurrency} for Login); ${users.length} users`],
      ],
      "ll",
    ),
  );
  md.push("");
  md.push("## Throughput");
  md.push("");
  md.push(
    table(
      ["What", "Protocol", "Concurrency", "ops/s", "p50 ms", "p99 ms", "OK", "non-OK", "server CPU ms/op", "PostgreSQL CPU ms/op", "load-gen CPU ms/op", "other load (cores)"],
      rows.map((r) => [
        r.what,
        r.protocol,
        String(r.concurrency),
        fmt.n(r.perSecond, 1),
        fmt.ms(r.p50),
        fmt.ms(r.p99),
        String(r.ok),
        fmt.errors(r.errors),
        fmt.ms(r.serverMs),
        fmt.ms(r.pgMs),
        fmt.ms(r.clientMs),
        fmt.n(r.otherCores, 2),
      ]),
      "llrrrrrlrrrr",
    ),
  );
  md.push("");
  md.push("## Ratios and aims");
  md.push("");
  md.push(
    `- **Login/s ÷ raw @node-rs/argon2 verifications/s**: gRPC **${fmt.n(ratio(login.gRPC), 2)}**, ` +
      `gRPC internal port **${fmt.n(ratio(login["gRPC internal port"]), 2)}**, REST **${fmt.n(ratio(login.REST), 2)}**` +
      ` (aim ≥ 0.90: gRPC ${aim(ratio(login.gRPC) >= 0.9)}, internal ${aim(ratio(login["gRPC internal port"]) >= 0.9)}, REST ${aim(ratio(login.REST) >= 0.9)}).`,
  );
  md.push(
    `- **GetProfile/s** (aim ≥ 3,000 on these cores with PostgreSQL beside them): gRPC ${fmt.n(profile.gRPC, 0)} (${aim(profile.gRPC >= 3000)}),` +
      ` REST ${fmt.n(profile.REST, 0)} (${aim(profile.REST >= 3000)}).`,
  );
  md.push(
    `- **@node-rs/argon2 vs argon2**: ${fmt.n(nodeRs.perSecond, 1)} vs ${fmt.n(npmArgon2.perSecond, 1)} verifications/s` +
      ` (${fmt.n(nodeRs.perSecond / npmArgon2.perSecond, 2)}×); CPU per verification ${fmt.ms(nodeRs.cpuMs)} vs ${fmt.ms(npmArgon2.cpuMs)} ms.` +
      ` Each verifies the other's PHC strings: ${cross ? "yes" : "NO"}.`,
  );
  md.push(`- Server CPU while idle during the raw-hash phase: ${fmt.n(nodeRs.serverIdleMsPerS, 1)} ms per second.`);
  md.push("");
  md.push("## Server CPU per authenticated GetProfile call");
  md.push("");
  md.push(
    `${opts.cpuCalls} calls per protocol at concurrency ${opts.cpuConcurrency}; server CPU from /proc/<pid>/stat (utime+stime, ` +
      `${1000 / clockTicks()} ms ticks). Each call verifies the JWT, looks the session up and reads the profile; ` +
      "`node bench/grpc-compare.mjs` isolates the RPC stack's share.",
  );
  md.push("");
  md.push(
    table(
      ["Protocol", "OK calls", "non-OK", "server µs/call", "PostgreSQL µs/call", "load-gen µs/call", "calls/s", "other load (cores)"],
      cpuRows,
      "lrlrrrrr",
    ),
  );
  md.push("");
  md.push(
    "_Columns_: _server CPU_ is the service process (all threads); _PostgreSQL CPU_ is the backends of the bench database plus the shared " +
      "background processes; _load-gen CPU_ is this process; _other load_ is the rest of the machine's busy time during the phase, in cores " +
      "(other engineers' jobs, the kernel) — if it is not near 0 the numbers are not comparable. Non-OK responses are counted apart and never as throughput.",
  );
  md.push(`\nService log lines at warn or above during the run: ${serviceLog.lines}.`);
  const report = md.join("\n") + "\n";

  process.stdout.write(`\n${report}`);
  if (serviceLog.lines > 0) log(`last service log lines:\n${serviceLog.tail.join("\n")}`);
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", "latest.md"), report);
  log("wrote bench/results/latest.md");
}

main().then(
  () => cleanup().then(() => process.exit(0)),
  (err) => fail(err),
);
