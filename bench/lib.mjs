// Helpers shared by bench/run.mjs and bench/grpc-compare.mjs: bounded load
// loops, latency percentiles, CPU accounting from /proc, and the two kinds of
// client (a @grpc/grpc-js stub built from a protobuf-es descriptor, and plain
// HTTP/1.1 keep-alive requests).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { availableParallelism, cpus, loadavg } from "node:os";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

// ---------------------------------------------------------------------------
// Environment

export function envInt(name, fallback, { min = 1, max = 1_000_000 } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new Error(`${name}=${raw}: expected a number between ${min} and ${max}`);
  }
  return n;
}

/**
 * KEY_ENCRYPTION_KEYS for the services a benchmark starts on PostgreSQL
 * (they refuse to start without it): the caller's, or a key for this run
 * that every instance shares.
 */
export const benchKeyEncryptionKeys = process.env.KEY_ENCRYPTION_KEYS || `bench:${randomBytes(32).toString("base64")}`;

/** Refuses any database or server URL that is not on this machine's loopback. */
export function assertLoopback(urlString, name) {
  const host = new URL(urlString).hostname.replace(/^\[|\]$/g, "");
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") {
    throw new Error(`${name} must point at 127.0.0.1 (got host "${host}")`);
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// CPU accounting

let clkTck;
/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`). */
export function clockTicks() {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads) in ms, or undefined if it is gone. */
export function procCpuMs(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces: split after its ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]); // field 14
  const stime = Number(rest[12]); // field 15
  return ((utime + stime) * 1000) / clockTicks();
}

/** Sum of procCpuMs over pids, ignoring those that are gone; returns a Map too. */
export function sumCpuMs(pids) {
  const each = new Map();
  let total = 0;
  for (const pid of pids) {
    const ms = procCpuMs(pid);
    if (ms === undefined) continue;
    each.set(pid, ms);
    total += ms;
  }
  return { total, each };
}

/** Busy time of the whole machine (all cores) in ms, from /proc/stat. */
export function machineBusyMs() {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest is inside user)
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0);
    return (busy * 1000) / clockTicks();
  } catch {
    return undefined;
  }
}

/** CPU of this process (all threads, libuv pool included) in ms. */
export function selfCpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function machineInfo() {
  let model = cpus()[0]?.model ?? "unknown";
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) model = m[1].trim();
  } catch {
    // keep os.cpus()'s
  }
  return { cores: availableParallelism(), model, node: process.version, loadavg: loadavg().map((x) => x.toFixed(2)).join(" ") };
}

// ---------------------------------------------------------------------------
// Load loops. Every loop stops at whichever comes first: its deadline or its
// call budget. Each call has its own client-side timeout, so the loop also
// ends when the server stops answering.

export const CALL_TIMEOUT_MS = 15_000;

let halted = false;
/** Makes every running and future load loop stop at its next call (on Ctrl-C or failure). */
export function haltLoads() {
  halted = true;
}

/**
 * Runs `call(i)` from `concurrency` workers until `durationMs` elapsed or
 * `maxCalls` were started. `call` resolves to "OK" or an error code string.
 * Latencies are recorded for OK calls only.
 */
export async function runLoad({ concurrency, durationMs, maxCalls = 5_000_000, call }) {
  const latencies = [];
  const errors = new Map();
  let started = 0;
  let ok = 0;
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  async function worker() {
    while (!halted && started < maxCalls && performance.now() < deadline) {
      const i = started++;
      const s = performance.now();
      let code;
      try {
        code = await call(i);
      } catch (err) {
        code = errorCode(err);
      }
      if (code === "OK") {
        ok++;
        latencies.push(performance.now() - s);
      } else {
        errors.set(code, (errors.get(code) ?? 0) + 1);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  return {
    ok,
    failed: [...errors.values()].reduce((a, b) => a + b, 0),
    errors,
    elapsedMs,
    perSecond: (ok * 1000) / elapsedMs,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies.length ? latencies[latencies.length - 1] : NaN,
  };
}

/**
 * Warm-up (JIT, connections, pools): runs until both `minMs` elapsed and
 * `minCalls` were made, but never longer than `maxMs`.
 */
export async function warmUp({ concurrency, call, minMs, minCalls, maxMs = 20_000 }) {
  const t0 = performance.now();
  let made = 0;
  const counted = (i) => {
    made++;
    return call(i);
  };
  await runLoad({ concurrency, durationMs: minMs, call: counted });
  if (made < minCalls) {
    await runLoad({ concurrency, durationMs: Math.max(0, maxMs - (performance.now() - t0)), maxCalls: minCalls - made, call: counted });
  }
  return made;
}

/** A fixed number of calls (bounded by maxMs as well). */
export function runCount({ concurrency, calls, maxMs, call }) {
  return runLoad({ concurrency, durationMs: maxMs, maxCalls: calls, call });
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

export function errorCode(err) {
  if (err && typeof err === "object") {
    if (typeof err.code === "number" && grpc.status[err.code]) return grpc.status[err.code];
    if (typeof err.code === "string") return err.code;
    if (err.name) return err.name;
  }
  return "ERROR";
}

/**
 * Measures CPU of the server process, the PostgreSQL processes, this process
 * and the whole machine around `fn`. `pgPids` is a function (backends come
 * and go) returning the current PostgreSQL pids, or undefined.
 */
export async function measured(serverPid, fn, pgPids) {
  const pg0 = pgPids ? sumCpuMs(await pgPids()) : undefined;
  const s0 = procCpuMs(serverPid);
  const c0 = selfCpuMs();
  const m0 = machineBusyMs();
  const t0 = performance.now();
  const result = await fn();
  const wallMs = performance.now() - t0;
  const s1 = procCpuMs(serverPid);
  const c1 = selfCpuMs();
  const m1 = machineBusyMs();
  let pgMs;
  if (pgPids && pg0) {
    const pg1 = sumCpuMs(await pgPids());
    // Backends that appeared count in full; those that vanished are lost.
    pgMs = 0;
    for (const [pid, ms] of pg1.each) pgMs += ms - (pg0.each.get(pid) ?? 0);
  }
  const serverMs = s0 !== undefined && s1 !== undefined ? s1 - s0 : NaN;
  const clientMs = c1 - c0;
  const machineMs = m0 !== undefined && m1 !== undefined ? m1 - m0 : NaN;
  const ours = serverMs + clientMs + (pgMs ?? 0);
  return {
    result,
    wallMs,
    serverMs,
    clientMs,
    pgMs,
    machineMs,
    // Cores' worth of CPU used by everything else on the machine meanwhile.
    otherCores: Number.isFinite(machineMs) ? Math.max(0, machineMs - ours) / wallMs : NaN,
  };
}

// ---------------------------------------------------------------------------
// Clients

/**
 * A unary @grpc/grpc-js client for a protobuf-es service, as an internal
 * service would build one. `call(method, init, metadata)` resolves to
 * { code: "OK", res } or { code: "<GRPC_CODE>" }.
 */
export function grpcJsClient(service, address) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
  });
  const byName = new Map();
  for (const m of service.methods) {
    byName.set(m.localName, {
      path: `/${service.typeName}/${m.name}`,
      serialize: (v) => Buffer.from(toBinary(m.input, create(m.input, v))),
      deserialize: (b) => fromBinary(m.output, b),
    });
  }
  return {
    call(method, init, metadata = {}, timeoutMs = CALL_TIMEOUT_MS) {
      const m = byName.get(method);
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      return new Promise((resolve) => {
        // A client-side timer instead of a deadline: no grpc-timeout header,
        // so the server does the same work as for a call without one.
        let timer;
        const call = client.makeUnaryRequest(m.path, m.serialize, m.deserialize, init, md, {}, (err, res) => {
          clearTimeout(timer);
          resolve(err ? { code: grpc.status[err.code] ?? String(err.code) } : { code: "OK", res });
        });
        timer = setTimeout(() => call.cancel(), timeoutMs);
      });
    },
    close: () => client.close(),
  };
}

/** One HTTP/1.1 request on a keep-alive agent; resolves { status, body } (body as a string). */
export function httpRequest(agent, { port, method, path, headers = {}, body, timeoutMs = CALL_TIMEOUT_MS }) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const h = { ...headers };
    if (payload !== undefined) {
      h["content-type"] ??= "application/json";
      h["content-length"] = Buffer.byteLength(payload);
    }
    const req = http.request({ host: "127.0.0.1", port, method, path, headers: h, agent, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("client timeout"), { code: "CLIENT_TIMEOUT" })));
    req.on("error", reject);
    req.end(payload);
  });
}

// ---------------------------------------------------------------------------
// Formatting

export const fmt = {
  n: (x, digits = 0) => (Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a"),
  ms: (x) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) : "n/a"),
  us: (x) => (Number.isFinite(x) ? x.toFixed(0) : "n/a"),
  errors: (map) => (map.size === 0 ? "0" : [...map].map(([k, v]) => `${v} ${k}`).join(", ")),
};

/** A markdown table; `align` has one letter per column, "l" or "r" (default: first left, rest right). */
export function table(headers, rows, align) {
  const a = align ?? "l" + "r".repeat(headers.length - 1);
  const lines = [`| ${headers.join(" | ")} |`, `|${headers.map((_, i) => (a[i] === "r" ? "---:" : "---")).join("|")}|`];
  for (const r of rows) lines.push(`| ${r.join(" | ")} |`);
  return lines.join("\n");
}

/**
 * Keeps a service's output: a count of its lines and the last 30 (each cut
 * at 500 characters), for the report and for a failure message. `onLine`
 * sees every non-empty line.
 */
export function captureOutput(stream, serviceLog, onLine) {
  let partial = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop();
    for (const line of parts) {
      if (!line.trim()) continue;
      serviceLog.lines++;
      onLine?.(line);
      serviceLog.tail.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
      if (serviceLog.tail.length > 30) serviceLog.tail.shift();
    }
  });
}

/**
 * How a benchmark ends whatever happens: a failure logs the service's last
 * output and cleans up (exit 1), Ctrl-C and SIGTERM clean up, and a watchdog
 * fails a run that takes longer than `watchdogMs`. Returns `fail`.
 */
export function exitCleanly({ log, cleanup, isStopping, serviceLog, watchdogMs }) {
  const fail = (err) => {
    // After Ctrl-C the phases unwind with errors; the cleanup already runs.
    if (isStopping()) return;
    log(`failed: ${err?.stack ?? err}`);
    if (serviceLog.tail.length) log(`last service output:\n${serviceLog.tail.join("\n")}`);
    cleanup().finally(() => process.exit(1));
  };
  process.once("SIGINT", () => {
    log("interrupted; cleaning up");
    cleanup().finally(() => process.exit(130));
  });
  process.once("SIGTERM", () => cleanup().finally(() => process.exit(143)));
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  setTimeout(() => fail(new Error(`watchdog: the run took longer than ${watchdogMs / 1000} s`)), watchdogMs).unref();
  return fail;
}

// ---------------------------------------------------------------------------
// The built service as a child process

/** Variables of the caller's shell that would change what a benchmark compares. */
export const SERVICE_ENV_NOISE = ["REDIS_URL", "RATE_LIMITS", "TRUSTED_PROXIES", "GEOIP", "CAPTCHA_PROVIDER", "CAPTCHA_SECRET", "WEBHOOK_URL", "WEBHOOK_SECRET"];

/**
 * Starts `node <mainJs>` on free loopback ports with `env` over a cleaned
 * copy of this process's environment, keeps its output in `serviceLog`, and
 * resolves once /readyz answers 200 (at most 60 s). `onExit` hears of an
 * exit at any time.
 */
export async function spawnService({ mainJs, cwd, env, serviceLog, onLine, onSpawn, onExit }) {
  const { spawn } = await import("node:child_process");
  const port = await freePort();
  const grpcPort = await freePort();
  const full = { ...process.env };
  for (const k of SERVICE_ENV_NOISE) delete full[k];
  Object.assign(full, {
    PORT: String(port),
    GRPC_PORT: String(grpcPort),
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    KEY_ENCRYPTION_KEYS: benchKeyEncryptionKeys,
    ...env,
  });
  const child = spawn(process.execPath, [mainJs], { cwd, env: full, stdio: ["ignore", "pipe", "pipe"] });
  onSpawn?.(child);
  let exited = false;
  captureOutput(child.stdout, serviceLog, onLine);
  captureOutput(child.stderr, serviceLog, onLine);
  child.once("exit", (code, signal) => {
    exited = true;
    onExit?.(code, signal, child);
  });
  const agent = new http.Agent({ keepAlive: false });
  const until = performance.now() + 60_000;
  while (performance.now() < until && !exited) {
    try {
      const r = await httpRequest(agent, { port, method: "GET", path: "/readyz", timeoutMs: 2_000 });
      if (r.status === 200) return { child, port, grpcPort, pid: child.pid, ready: JSON.parse(r.body) };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  child.kill("SIGKILL");
  throw new Error("the service did not become ready within 60 s");
}

/** SIGTERM, then SIGKILL after 15 s; the exit is marked expected (`child.expectedExit`). */
export async function stopService(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.expectedExit = true;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const done = await Promise.race([exited.then(() => true), sleep(15_000).then(() => false)]);
  if (!done) {
    child.kill("SIGKILL");
    await Promise.race([exited, sleep(5_000)]);
  }
}

/** Resident set size of a process in bytes (Linux), or NaN. */
export function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}
