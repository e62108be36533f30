// The e-mail channel's cost, against PostgreSQL and a local SMTP server.
//
//   npm run bench:mail
//   BENCH_BASELINE=<checkout of an earlier commit, built> npm run bench:mail
//
// 1. Registration throughput with the outbox (each registration writes its
//    verification mail in its transaction, and the dispatcher delivers it to
//    a local SMTP server meanwhile) — alternated, in one run, with the build
//    in BENCH_BASELINE (one without the outbox), when given: A, B, A, B.
// 2. Mails delivered per second by one dispatcher: BENCH_MAILS notices are
//    written to the outbox, then one instance starts and delivers them.
//
// Everything runs on 127.0.0.1; every phase is bounded by a call budget and
// a deadline; the databases are dropped at the end, also on failure.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import postgres from "postgres";
import { SMTPServer } from "smtp-server";
import { assertLoopback, envInt, fmt, grpcJsClient, machineInfo, measured, runCount, sleep, spawnService, stopService, table } from "./lib.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pgUrl = process.env.BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/test";
assertLoopback(pgUrl, "BENCH_PG_URL");
const baseline = process.env.BENCH_BASELINE;
const users = envInt("BENCH_USERS", 300, { min: 10, max: 20_000 });
const concurrency = envInt("BENCH_REGISTER_CONCURRENCY", 8, { min: 1, max: 256 });
const mailCount = envInt("BENCH_MAILS", 2_000, { min: 10, max: 100_000 });
const rounds = envInt("BENCH_ROUNDS", 2, { min: 1, max: 10 });
const PASSWORD = "correct horse battery staple 42";
const log = (...a) => console.error(new Date().toISOString().slice(11, 19), ...a);

// A local SMTP sink: counts what it receives (and by Message-ID, to see duplicates).
async function startSink() {
  const ids = new Map();
  let received = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onData(stream, _session, callback) {
      let head = "";
      stream.on("data", (c) => {
        if (head.length < 4096) head += c.toString("latin1");
      });
      stream.on("end", () => {
        const id = /^message-id:\s*(\S+)/im.exec(head)?.[1] ?? `none-${received}`;
        ids.set(id, (ids.get(id) ?? 0) + 1);
        received++;
        callback();
      });
    },
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `smtp://127.0.0.1:${server.server.address().port}`,
    count: () => received,
    duplicates: () => [...ids.values()].filter((n) => n > 1).length,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
const databases = [];
async function freshDatabase() {
  const name = `bench_mail_${randomBytes(4).toString("hex")}`;
  await admin.unsafe(`create database "${name}"`);
  databases.push(name);
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  return { name, url: url.href };
}

async function withService(dir, env, fn) {
  const mainJs = join(dir, "dist", "src", "main.js");
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing: build that checkout first`);
  const svc = await spawnService({ mainJs, cwd: dir, env: { RATE_LIMITS: "off", MAX_CONNECTIONS_PER_SOURCE: "0", ...env }, serviceLog: [] });
  try {
    return await fn(svc);
  } finally {
    await stopService(svc.child);
  }
}

async function registrationRound(label, dir, sink, extraEnv = {}) {
  const db = await freshDatabase();
  const env = { DATABASE_URL: db.url, ...(sink ? { SMTP_URL: sink.url, MAIL_POLL_INTERVAL: "200ms" } : {}), ...extraEnv };
  const { IdentityService } = await import(pathToFileURL(join(dir, "dist", "gen", "identity", "v1", "identity_service_pb.js")).href);
  return withService(dir, env, async ({ grpcPort, pid }) => {
    const grpc = grpcJsClient(IdentityService, `127.0.0.1:${grpcPort}`);
    const runId = randomBytes(3).toString("hex");
    // Warm-up: JIT, pools, the hasher.
    await runCount({ concurrency, calls: 40, maxMs: 60_000, call: (i) => grpc.call("register", { account: { email: `warm.${runId}.${i}@example.com`, password: PASSWORD } }).then((r) => r.code) });
    const before = sink?.count() ?? 0;
    const m = await measured(pid, () =>
      runCount({
        concurrency,
        calls: users,
        maxMs: Math.max(120_000, users * 300),
        call: (i) => grpc.call("register", { account: { email: `bench.${runId}.${i}@example.com`, password: PASSWORD } }).then((r) => r.code),
      }),
    );
    let lagMs = NaN;
    if (sink && extraEnv.MAIL_DISPATCHER !== "false") {
      const t0 = performance.now();
      while (sink.count() - before < m.result.ok && performance.now() - t0 < 60_000) await sleep(20);
      lagMs = performance.now() - t0;
    }
    grpc.close();
    log(`${label}: ${m.result.perSecond.toFixed(1)} registrations/s`);
    return {
      label,
      perSecond: m.result.perSecond,
      p50: m.result.p50,
      cpuMs: m.serverMs / m.result.ok,
      errors: m.result.failed,
      lagMs,
      mails: sink && extraEnv.MAIL_DISPATCHER !== "false" ? sink.count() - before : undefined,
    };
  });
}

async function dispatcherRound(sink) {
  const db = await freshDatabase();
  // Migrate and create one account with a first start, then fill the outbox.
  const { IdentityService } = await import(pathToFileURL(join(root, "dist", "gen", "identity", "v1", "identity_service_pb.js")).href);
  await withService(root, { DATABASE_URL: db.url, MAIL_DISPATCHER: "false" }, async ({ grpcPort }) => {
    const grpc = grpcJsClient(IdentityService, `127.0.0.1:${grpcPort}`);
    const r = await grpc.call("register", { account: { email: "notices@example.com", password: PASSWORD } });
    grpc.close();
    if (r.code !== "OK") throw new Error(`seeding failed: ${r.code}`);
  });
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  const [{ id: userId }] = await sql`select id from users where email = 'notices@example.com'`;
  await sql`delete from outbox`;
  await sql`insert into outbox (id, kind, user_id, params, next_attempt_at, created_at)
    select gen_random_uuid(), 'security_notice', ${userId}, '{"event":"password_changed"}'::jsonb, now(), now() from generate_series(1, ${mailCount})`;
  await sql.end();
  const before = sink.count();
  // BENCH_PROFILE_DIR: a V8 CPU profile of the service while it delivers.
  const profile = process.env.BENCH_PROFILE_DIR ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}` } : {};
  return withService(root, { DATABASE_URL: db.url, SMTP_URL: sink.url, MAIL_POLL_INTERVAL: "200ms", ...profile }, async ({ pid }) => {
    const m = await measured(pid, async () => {
      const t0 = performance.now();
      while (sink.count() - before < mailCount && performance.now() - t0 < 300_000) await sleep(10);
      return { delivered: sink.count() - before };
    });
    const perSecond = (m.result.delivered * 1000) / m.wallMs;
    log(`dispatcher: ${perSecond.toFixed(0)} mails/s`);
    return { delivered: m.result.delivered, perSecond, cpuUsPerMail: (m.serverMs * 1000) / m.result.delivered, duplicates: sink.duplicates() };
  });
}

async function main() {
  const machine = machineInfo();
  const sink = await startSink();
  try {
    const results = [];
    for (let round = 0; round < rounds; round++) {
      if (baseline) results.push(await registrationRound(`without outbox (${baseline.split("/").pop()})`, baseline, undefined));
      results.push(await registrationRound("with outbox, dispatcher off (mails wait)", root, sink, { MAIL_DISPATCHER: "false" }));
      results.push(await registrationRound("with outbox + dispatcher", root, sink));
    }
    const dispatch = await dispatcherRound(sink);
    const lines = [
      `## E-mail channel (\`npm run bench:mail\`, ${new Date().toISOString().slice(0, 10)})`,
      "",
      `${machine.cores} × ${machine.model}, Node ${machine.node}; PostgreSQL and an SMTP sink (smtp-server) on 127.0.0.1; ${users} registrations per round at ${concurrency} in flight over gRPC, rounds alternated.`,
      "",
      table(
        ["build", "registrations/s", "p50 ms", "server CPU ms/registration", "errors", "mails delivered", "last mail after the last registration (ms)"],
        results.map((r) => [r.label, fmt.n(r.perSecond, 1), fmt.ms(r.p50), fmt.n(r.cpuMs, 1), String(r.errors), r.mails === undefined ? "—" : String(r.mails), Number.isFinite(r.lagMs) ? fmt.n(r.lagMs) : "—"]),
      ),
      "",
      `One dispatcher: ${dispatch.delivered} notices in the outbox delivered at ${fmt.n(dispatch.perSecond)} mails/s (${fmt.us(dispatch.cpuUsPerMail)} µs of service CPU per mail; ${dispatch.duplicates} duplicate Message-IDs).`,
    ];
    console.log(lines.join("\n"));
  } finally {
    await sink.close();
    for (const name of databases) await admin.unsafe(`drop database if exists "${name}" with (force)`).catch(() => {});
    await admin.end();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
