// What an unauthenticated client can cost the service, per request and per
// connection, on each protocol of the main port (docs/threat-model.md).
//
//   npm run bench:unauthenticated
//
// Starts the built service against a throwaway PostgreSQL database with its
// rate limits and per-source connection cap off (to see the raw cost; those
// then bound the rate), sends each kind of request an outsider can send
// without an account, and reports the service's CPU per request; then opens idle connections of
// each kind and reports resident memory per connection. Bounded: each phase
// has a call budget and a deadline; loopback only; the database is dropped.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import {
  assertLoopback,
  envInt,
  exitCleanly,
  fmt,
  haltLoads,
  httpRequest,
  machineInfo,
  measured,
  rssBytes,
  runLoad,
  sleep,
  spawnService,
  stopService,
  table,
} from "./lib.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const mainJs = join(root, "dist", "src", "main.js");
const pgUrl = process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/test";
assertLoopback(pgUrl, "BENCH_PG_URL");
const durationMs = envInt("BENCH_DURATION_S", 5, { min: 1, max: 120 }) * 1000;
const idleConnections = envInt("BENCH_IDLE_CONNECTIONS", 2_000, { min: 100, max: 20_000 });
const log = (...a) => process.stderr.write(`[bench] ${a.join(" ")}\n`);

const dbName = `bench_unauth_${randomBytes(6).toString("hex")}`;
const serviceLog = { lines: 0, tail: [] };
let admin;
let service;
let stopping = false;
const sockets = new Set();

let cleaning;
function cleanup() {
  cleaning ??= (async () => {
    stopping = true;
    haltLoads();
    for (const s of sockets) s.destroy();
    if (service) await stopService(service.child).catch(() => {});
    if (admin) {
      await admin.unsafe(`drop database if exists "${dbName}" with (force)`).catch((err) => log(`drop ${dbName} by hand: ${err.message}`));
      await admin.end({ timeout: 5 }).catch(() => {});
    }
  })();
  return cleaning;
}
const fail = exitCleanly({ log, cleanup, isStopping: () => stopping, serviceLog, watchdogMs: 15 * 60_000 });

const LOGIN_PATH = "/identity.v1.IdentityService/Login";
// LoginRequest{email:"a@example.com", password:"x"} in protobuf, then garbage.
const loginProto = Buffer.from([0x0a, 0x0d, ...Buffer.from("a@example.com"), 0x12, 0x01, 0x78]);
const malformedProto = Buffer.from([0x0f, 0xff, 0xff]);
const oversizeProto = Buffer.concat([loginProto, Buffer.alloc(4 * 1024 * 1024, 0)]);

function envelope(message, declared = message.length) {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(declared, 1);
  return Buffer.concat([head, message]);
}

/** A well-shaped JWT no key of ours signed: costs a header parse and a key lookup, or a signature check. */
function forgedJwt() {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "EdDSA", typ: "at+jwt", kid: "x".repeat(43) })}.${b64({ sub: "u", sid: "s", exp: 2e9 })}.${randomBytes(64).toString("base64url")}`;
}

function h2Session(port) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  return session;
}

function grpcCall(session, body) {
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": LOGIN_PATH, "content-type": "application/grpc+proto", te: "trailers" });
    let code = "NO_STATUS";
    stream.on("response", (h) => h["grpc-status"] !== undefined && (code = `GRPC_${h["grpc-status"]}`));
    stream.on("trailers", (t) => (code = `GRPC_${t["grpc-status"]}`));
    stream.on("close", () => resolve(code));
    stream.on("error", () => {});
    stream.resume();
    stream.end(body);
  });
}

async function main() {
  if (!existsSync(mainJs)) throw new Error("dist/ is missing: run `npm run build` (npm run bench:unauthenticated does)");
  admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${dbName}"`);
  const dbUrl = new URL(pgUrl);
  dbUrl.pathname = `/${dbName}`;
  const pgPids = async () => (await admin`select pid from pg_stat_activity where datname = ${dbName}`).map((r) => r.pid);
  service = await spawnService({
    mainJs,
    cwd: root,
    env: { DATABASE_URL: dbUrl.href, RATE_LIMITS: "off", MAX_CONNECTIONS_PER_SOURCE: "0" },
    serviceLog,
    onExit: (code, signal) => !stopping && fail(new Error(`the service exited (code ${code}, signal ${signal})`)),
  });
  const { port, pid } = service;
  log(`service ready (pid ${pid})`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const rest = (method, path, opts = {}) => httpRequest(agent, { port, method, path, ...opts });
  const status = (want) => (r) => (r.status === want ? "OK" : `HTTP_${r.status}`);
  const session = h2Session(port);

  const kinds = [
    { what: "GET /healthz", protocol: "HTTP/1.1", call: async () => status(200)(await rest("GET", "/healthz")) },
    { what: "unknown route (404)", protocol: "HTTP/1.1", call: async () => status(404)(await rest("GET", "/nope")) },
    { what: "malformed JSON body (400)", protocol: "REST", call: async () => status(400)(await rest("POST", "/login", { body: "{" })) },
    {
      what: "malformed protobuf (400)",
      protocol: "Connect",
      call: async () => status(400)(await rest("POST", LOGIN_PATH, { body: malformedProto, headers: { "content-type": "application/proto" } })),
    },
    { what: "malformed protobuf", protocol: "gRPC", call: async () => ((await grpcCall(session, envelope(malformedProto))) === "GRPC_3" ? "OK" : "WRONG") },
    {
      what: "4 MB body (refused unread)",
      protocol: "Connect",
      call: async () => status(429)(await rest("POST", LOGIN_PATH, { body: oversizeProto, headers: { "content-type": "application/proto" } }).catch(() => ({ status: 0 }))),
      concurrency: 4,
    },
    { what: "envelope declaring 4 MB", protocol: "gRPC", call: async () => ((await grpcCall(session, envelope(loginProto, 4 << 20))) === "GRPC_8" ? "OK" : "WRONG") },
    { what: "no token on GET /user/profile (401)", protocol: "REST", call: async () => status(401)(await rest("GET", "/user/profile")) },
    {
      what: "forged JWT on GET /user/profile (401)",
      protocol: "REST",
      call: async () => status(401)(await rest("GET", "/user/profile", { headers: { authorization: `Bearer ${forgedJwt()}` } })),
    },
    {
      what: "weak password at registration (400)",
      protocol: "REST",
      call: async (i) => status(400)(await rest("POST", "/register", { body: { account: { email: `w${i}@example.com`, password: "password" } } })),
    },
    {
      what: "login, unknown address (argon2 verify)",
      protocol: "REST",
      call: async (i) => status(401)(await rest("POST", "/login", { body: { email: `nobody${i}@example.com`, password: "correct horse battery staple" } })),
      concurrency: 8,
    },
  ];

  const rows = [];
  for (const k of kinds) {
    if (stopping) return;
    const concurrency = k.concurrency ?? 16;
    await runLoad({ concurrency, durationMs: 1_000, maxCalls: 200, call: k.call });
    const m = await measured(pid, () => runLoad({ concurrency, durationMs, maxCalls: 200_000, call: k.call }), pgPids);
    const n = m.result.ok;
    rows.push([k.what, k.protocol, fmt.n(m.result.perSecond, 0), fmt.us((m.serverMs / n) * 1000), fmt.us(((m.pgMs ?? 0) / n) * 1000), fmt.errors(m.result.errors)]);
    log(`${k.what} (${k.protocol}): ${fmt.n(m.result.perSecond, 0)}/s, server ${fmt.us((m.serverMs / n) * 1000)} µs CPU each`);
  }
  session.close();
  agent.destroy();
  await sleep(500);

  // Idle connections: resident memory per connection of each kind.
  const memRows = [];
  const kindsOfIdle = [
    { what: "TCP connection, nothing sent", open: (s) => s },
    { what: "HTTP/1.1, request head half sent", open: (s) => s.write("GET / HTTP/1.1\r\nHost: x\r\n") },
    { what: "HTTP/2 session, preface + SETTINGS", h2: true },
  ];
  for (const k of kindsOfIdle) {
    if (stopping) return;
    const before = rssBytes(pid);
    const opened = [];
    for (let i = 0; i < idleConnections; i++) {
      if (k.h2) {
        opened.push(h2Session(port));
      } else {
        const s = net.connect(port, "127.0.0.1");
        s.on("error", () => {});
        s.once("connect", () => k.open(s));
        sockets.add(s);
        opened.push(s);
      }
      if (i % 100 === 99) await sleep(20);
    }
    await sleep(1_000);
    const after = rssBytes(pid);
    memRows.push([k.what, fmt.n(idleConnections), fmt.n((after - before) / idleConnections / 1024, 1)]);
    log(`${k.what}: ${fmt.n((after - before) / idleConnections / 1024, 1)} KiB each`);
    for (const o of opened) (o.destroy ?? o.close).call(o);
    for (const s of opened) sockets.delete(s);
    await sleep(1_500);
  }

  const machine = machineInfo();
  process.stdout.write(
    [
      `## Unauthenticated cost per request (${new Date().toISOString().slice(0, 10)}, ${machine.model}, ${machine.cores} cores, Node ${machine.node})`,
      "",
      table(["request", "protocol", "per s (c=16)", "server CPU µs", "PostgreSQL CPU µs", "non-OK"], rows),
      "",
      `## Resident memory per idle connection (${fmt.n(idleConnections)} opened)`,
      "",
      table(["connection", "opened", "KiB each"], memRows),
      "",
    ].join("\n"),
  );
  await cleanup();
}

main().catch(fail);
