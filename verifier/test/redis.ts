import { randomUUID } from "node:crypto";
import { connect } from "node:net";

// Redis runs when the server at REDIS_TEST_URL answers; in CI (CI=true) it
// must answer, so a missing server fails the run instead of skipping.
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
  throw new Error(`CI=true but Redis at ${REDIS_TEST_URL} is unreachable: the revocation-feed suites must run in CI`);
}

/** A channel and key prefix no other test (or process) uses. */
export function uniqueFeed(): { channel: string; keyPrefix: string } {
  const id = randomUUID();
  return { channel: `identity:test:${id}:revocations`, keyPrefix: `identity:test:${id}:revoked:` };
}

