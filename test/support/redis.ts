import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { Redis } from "ioredis";

export { redisAvailable, REDIS_TEST_URL } from "../../verifier/test/redis.js";

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
