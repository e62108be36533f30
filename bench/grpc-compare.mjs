// Micro benchmark: server CPU per call of one unary RPC implemented ONCE as
// a Connect ServiceImpl (identity.v1 GetProfile returning a constant User, no
// database, no auth) and served by
//   (a) connect-node, gRPC over h2c        (http2.createServer + connectNodeAdapter)
//   (b) connect-node, Connect over HTTP/1.1 (http.createServer + connectNodeAdapter), JSON and binary
//   (c) a plain @grpc/grpc-js Server whose handler calls the same ServiceImpl
// Each server runs in its own child process; the client is this process.
// Server CPU comes from /proc/<pid>/stat (utime+stime) around the measured
// phase.
//
//   npm run build && node bench/grpc-compare.mjs
//   BENCH_DURATION_S=10 BENCH_CONCURRENCY=16 node bench/grpc-compare.mjs
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createContextValues, createHandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { clockTicks, envInt, fmt, grpcJsClient, machineInfo, measured, runLoad, sleep, table, warmUp, CALL_TIMEOUT_MS } from "./lib.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const genJs = join(root, "dist", "gen", "identity", "v1", "identity_service_pb.js");
if (!existsSync(genJs)) {
  process.stderr.write("dist/ is missing: run `npm run build` first\n");
  process.exit(1);
}
const { IdentityService, UserSchema } = await import(pathToFileURL(genJs).href);

// ---------------------------------------------------------------------------
// The one implementation

const USER = create(UserSchema, {
  userId: "0193a5b0-7c1e-7d2a-9f3b-2c4d5e6f7a8b",
  email: "ngoc.phu@example.com",
  infoUser: { name: "Ngoc Phu", phoneNumber: "1234567890", dateOfBirth: "2023-11-12", gender: true, address: "Ha Noi" },
  createTime: timestampFromDate(new Date("2026-01-01T00:00:00Z")),
  updateTime: timestampFromDate(new Date("2026-01-02T00:00:00Z")),
});

/** @type {import("@connectrpc/connect").ServiceImpl<typeof IdentityService>} (partial: the rest answer UNIMPLEMENTED) */
const impl = {
  getProfile(_req, _ctx) {
    return { user: USER };
  },
};

const routes = (router) => router.service(IdentityService, impl);

// ---------------------------------------------------------------------------
// Servers (child processes)

/** Serves `impl` through @grpc/grpc-js: the adapter a grpc-js port would use. */
function grpcJsServer() {
  const definition = {};
  const handlers = {};
  for (const m of IdentityService.methods) {
    const fn = impl[m.localName];
    if (!fn || m.methodKind !== "unary") continue;
    definition[m.localName] = {
      path: `/${IdentityService.typeName}/${m.name}`,
      requestStream: false,
      responseStream: false,
      requestDeserialize: (b) => fromBinary(m.input, b),
      requestSerialize: (v) => Buffer.from(toBinary(m.input, v)),
      responseSerialize: (v) => Buffer.from(toBinary(m.output, create(m.output, v))),
      responseDeserialize: (b) => fromBinary(m.output, b),
    };
    handlers[m.localName] = (call, callback) => {
      // The handler sees what it sees under Connect: headers, a signal, context values.
      const requestHeader = new Headers();
      for (const [k, v] of Object.entries(call.metadata.getMap())) {
        if (typeof v === "string") requestHeader.set(k, v);
      }
      const ctx = createHandlerContext({
        service: IdentityService,
        method: m,
        protocolName: "grpc",
        requestMethod: "POST",
        url: definition[m.localName].path,
        requestHeader,
        contextValues: createContextValues(),
      });
      call.once("cancelled", () => ctx.abort());
      Promise.resolve()
        .then(() => fn(call.request, ctx))
        .then(
          (res) => callback(null, res),
          (err) => {
            const e = ConnectError.from(err);
            // Connect's codes are gRPC's numeric codes.
            callback({ code: e.code, details: e.rawMessage });
          },
        );
    };
  }
  const server = new grpc.Server();
  server.addService(definition, handlers);
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
}

async function serve(kind) {
  let port;
  if (kind === "grpc-js") {
    port = await grpcJsServer();
  } else {
    const handler = connectNodeAdapter({ routes });
    const server = kind === "connect-h2c" ? http2.createServer(handler) : http.createServer({ keepAliveTimeout: 30_000 }, handler);
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = server.address().port;
  }
  process.stdout.write(`READY ${port}\n`);
  // Ends with the parent: on SIGTERM, or when stdin closes.
  process.once("SIGTERM", () => process.exit(0));
  process.stdin.resume();
  process.stdin.once("end", () => process.exit(0));
}

// ---------------------------------------------------------------------------
// Parent: client and measurements

const selfPath = fileURLToPath(import.meta.url);
const children = new Set();

function startServer(kind) {
  const child = spawn(process.execPath, [selfPath, "--serve", kind], { stdio: ["pipe", "pipe", "inherit"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} server did not start within 20 s`)), 20_000);
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (d) => {
      out += d;
      const m = /READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} server exited (code ${code})`));
    });
  });
}

async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  if (!(await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]))) child.kill("SIGKILL");
}

function killAll() {
  for (const c of children) c.kill("SIGKILL");
}
process.once("SIGINT", () => {
  killAll();
  process.exit(130);
});
process.once("exit", killAll);

const codeName = (code) => (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();

function connectCaller(transport) {
  const client = createClient(IdentityService, transport);
  return async (headers) => {
    try {
      await client.getProfile({}, { headers, signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
      return "OK";
    } catch (err) {
      return codeName(ConnectError.from(err).code);
    }
  };
}

async function main() {
  const durationS = envInt("BENCH_DURATION_S", 8, { min: 1, max: 600 });
  const concurrency = envInt("BENCH_CONCURRENCY", 16, { min: 1, max: 1_000 });
  const durationMs = durationS * 1000;
  const warmupMs = Math.min(2_000, Math.max(500, durationMs / 4));
  const watchdog = setTimeout(() => {
    process.stderr.write("watchdog: grpc-compare took too long\n");
    killAll();
    process.exit(1);
  }, Math.max(5 * 60_000, durationMs * 30));
  watchdog.unref();

  // A realistic authorization header, so header handling costs what it would.
  const headers = { authorization: `Bearer ${"x".repeat(40)}.${"y".repeat(160)}.${"z".repeat(86)}` };
  const variants = [
    {
      name: "(a) connect-node, gRPC over h2c",
      client: "@grpc/grpc-js",
      kind: "connect-h2c",
      caller: (port) => {
        const c = grpcJsClient(IdentityService, `127.0.0.1:${port}`);
        return { call: async () => (await c.call("getProfile", {}, headers)).code, close: () => c.close() };
      },
    },
    {
      name: "(a) connect-node, gRPC over h2c",
      client: "connect-node gRPC",
      kind: "connect-h2c",
      caller: (port) => {
        const call = connectCaller(createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
        return { call: () => call(headers), close() {} };
      },
    },
    ...[false, true].map((binary) => ({
      name: `(b) connect-node, Connect ${binary ? "binary" : "JSON"} over HTTP/1.1`,
      client: "connect-node Connect",
      kind: "connect-h1",
      caller: (port) => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
        const call = connectCaller(
          createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: "1.1", useBinaryFormat: binary, nodeOptions: { agent } }),
        );
        return { call: () => call(headers), close: () => agent.destroy() };
      },
    })),
    {
      name: "(c) @grpc/grpc-js Server + same ServiceImpl",
      client: "@grpc/grpc-js",
      kind: "grpc-js",
      caller: (port) => {
        const c = grpcJsClient(IdentityService, `127.0.0.1:${port}`);
        return { call: async () => (await c.call("getProfile", {}, headers)).code, close: () => c.close() };
      },
    },
  ];

  const machine = machineInfo();
  const results = [];
  for (const v of variants) {
    const { child, port } = await startServer(v.kind);
    const client = v.caller(port);
    try {
      await warmUp({ concurrency, call: client.call, minMs: warmupMs, minCalls: 3_000 });
      const m = await measured(child.pid, () => runLoad({ concurrency, durationMs, call: client.call }));
      const n = m.result.ok || NaN;
      results.push({ ...v, m, serverUs: (m.serverMs * 1000) / n, clientUs: (m.clientMs * 1000) / n });
      process.stderr.write(
        `[grpc-compare] ${v.name} (${v.client} client): ${fmt.us((m.serverMs * 1000) / n)} µs server CPU/call, ${fmt.n(m.result.perSecond, 0)} calls/s\n`,
      );
    } finally {
      client.close();
      await stopServer(child);
    }
  }

  const grpcJs = results.find((r) => r.kind === "grpc-js");
  const h2c = results.filter((r) => r.kind === "connect-h2c" && r.client === "@grpc/grpc-js")[0];
  const md = [];
  md.push("# gRPC server comparison (echo-like GetProfile, one ServiceImpl)");
  md.push("");
  md.push(
    `${machine.cores} cores, ${machine.model}, Node ${machine.node}, load average ${machine.loadavg} at start; ` +
      `${durationS} s per variant after a warm-up of ≥ ${warmupMs} ms and ≥ 3,000 calls, concurrency ${concurrency}, one connection; ` +
      `server CPU from /proc/<pid>/stat (${1000 / clockTicks()} ms ticks). Command: \`${process.env.BENCH_DURATION_S ? `BENCH_DURATION_S=${durationS} ` : ""}node bench/grpc-compare.mjs\`.`,
  );
  md.push("");
  md.push(
    table(
      ["Server", "Client", "OK calls", "non-OK", "calls/s", "p50 ms", "p99 ms", "server µs/call", "client µs/call", "× grpc-js server", "other load (cores)"],
      results.map((r) => [
        r.name,
        r.client,
        String(r.m.result.ok),
        fmt.errors(r.m.result.errors),
        fmt.n(r.m.result.perSecond, 0),
        fmt.ms(r.m.result.p50),
        fmt.ms(r.m.result.p99),
        fmt.us(r.serverUs),
        fmt.us(r.clientUs),
        fmt.n(r.serverUs / grpcJs.serverUs, 2),
        fmt.n(r.m.otherCores, 2),
      ]),
      "llrlrrrrrrr",
    ),
  );
  md.push("");
  md.push(
    `gRPC through connect-node costs **${fmt.n(h2c.serverUs / grpcJs.serverUs, 2)}×** the server CPU of a plain grpc-js server for the same handler ` +
      `(aim ≤ 1.5×). _other load_ is the rest of the machine's busy time during the phase, in cores; if it is not near 0 the numbers are noisy.`,
  );
  process.stdout.write(`\n${md.join("\n")}\n`);
}

if (process.argv[2] === "--serve") {
  await serve(process.argv[3]);
} else {
  await main();
  process.exit(0);
}
