import { spawn, type ChildProcess } from "node:child_process";
import { connect, createServer } from "node:net";
import { Redis } from "ioredis";

// Redis runs when the server at REDIS_TEST_URL answers; in CI (CI=true) it
// must answer, so a missing server fails the run instead of skipping. (The
// verifier package probes the same way in its own suite, verifier/test/redis.ts:
// test plumbing is not part of its exports.)
export const REDIS_TEST_URL = process.env.REDIS_TEST_URL ?? "redis://127.0.0.1:6379";

async function probeRedis(): Promise<boolean> {
  const { hostname, port } = new URL(REDIS_TEST_URL);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 6379) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

export const redisAvailable: boolean = await probeRedis();
if (!redisAvailable && process.env.CI) {
  throw new Error(`CI=true but Redis at ${REDIS_TEST_URL} is unreachable: the Redis suites must run in CI`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether a redis-server binary is on PATH (to start private servers for fault tests). */
export const redisServerBinary: boolean = await new Promise((resolve) => {
  const p = spawn("redis-server", ["--version"], { stdio: "ignore" });
  p.once("error", () => resolve(false));
  p.once("exit", (code) => resolve(code === 0));
});

/**
 * A private Redis on a free loopback port that a test can stop and start
 * again (same port), to prove behaviour while Redis is down.
 */
export async function startPrivateRedis(): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}`;
  async function start(): Promise<void> {
    child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    for (let i = 0; i < 100; i++) {
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on("error", () => {});
      try {
        await probe.connect();
        await probe.ping();
        probe.disconnect();
        return;
      } catch {
        probe.disconnect();
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error("private redis-server did not start");
  }
  async function stop(): Promise<void> {
    const c = child;
    // A killed process keeps exitCode null: signalCode says it is gone too.
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGKILL");
    });
  }
  await start();
  return { url, stop, start };
}
