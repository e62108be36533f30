import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type App, type AppOverrides } from "../../src/app/app.js";
import { loadConfig, type Config } from "../../src/config/config.js";
import { createLogger } from "../../src/shared/logger.js";
import type { ListeningServer } from "../../src/transport/one-port.js";
import { createPostgresDatabase, type Backend } from "./databases.js";
import { TEST_KEY_ENCRYPTION_KEYS } from "./keys.js";

// Starts the real service on a free port against a fresh database.
// argon2id runs for real, at the lowest cost config allows, to keep tests fast.

export const TEST_ENV: Record<string, string> = {
  PORT: "0",
  GRPC_PORT: "0",
  HOST: "127.0.0.1",
  LOG_LEVEL: "silent",
  ARGON2_MEMORY_KIB: "8192",
  ARGON2_TIME_COST: "1",
  COOKIE_SECURE: "false",
  // Suites share 127.0.0.1 for thousands of calls; the abuse-defence suite
  // turns the limits on with its own values.
  RATE_LIMITS: "off",
  // Risk suites inject a fixed location table; the GeoIP data itself has a
  // unit test (loading it in every test server would cost 160 MB each).
  GEOIP: "false",
  // Required with PostgreSQL; PGlite suites use it too (the embedded key file has a suite of its own).
  KEY_ENCRYPTION_KEYS: TEST_KEY_ENCRYPTION_KEYS,
  // Test processes run in parallel on one Redis (and so do other checkouts'):
  // each process's servers get keys and channels of their own.
  REDIS_PREFIX: `identity:test:${randomUUID()}:`,
};

export interface TestServer {
  baseUrl: string;
  port: number;
  /** The internal @grpc/grpc-js port. */
  grpcPort: number;
  config: Config;
  app: App;
  server: ListeningServer;
  /** Stops the server (once, however often called); keeps the database unless destroy() is called. */
  stop(): Promise<void>;
  /** Starts a new server on the same database (restart persistence), with changed settings if given. */
  restart(changes?: { env?: Record<string, string>; overrides?: AppOverrides }): Promise<TestServer>;
  /** Stops the server and removes the database. */
  destroy(): Promise<void>;
}

export async function startTestServer(
  backend: Backend,
  opts: { env?: Record<string, string>; overrides?: AppOverrides; shareDatabaseWith?: TestServer } = {},
): Promise<TestServer> {
  let dropDatabase = async () => {};
  const env = { ...TEST_ENV, ...opts.env };
  const shared = opts.shareDatabaseWith?.config.database;
  if (shared) {
    // A second instance on the first one's database (PostgreSQL only: PGlite is single-process).
    if (shared.kind !== "postgres") throw new Error("only PostgreSQL databases can be shared between instances");
    env.DATABASE_URL = shared.url;
  } else if (backend === "postgres") {
    const pg = await createPostgresDatabase();
    env.DATABASE_URL = pg.url;
    dropDatabase = pg.drop;
  } else {
    env.DATA_DIR = join(mkdtempSync(join(tmpdir(), "identity-test-")), "data");
  }
  async function boot(config: Config, overrides: AppOverrides | undefined): Promise<TestServer> {
    const app = await createApp(config, createLogger(config.logLevel), overrides);
    const server = await app.listen({ port: 0, host: "127.0.0.1" });
    const grpcServer = await app.listenGrpcJs({ port: 0, host: "127.0.0.1" });
    // Once: destroy() after stop() (an instance stopped while another goes on with its database) only drops the database.
    let stopped: Promise<void> | undefined;
    const stop = () =>
      (stopped ??= (async () => {
        app.beginShutdown();
        await Promise.all([server.close(2_000), grpcServer.close(2_000)]);
        await app.dispose();
      })());
    return {
      baseUrl: `http://127.0.0.1:${server.port}`,
      port: server.port,
      grpcPort: grpcServer.port,
      config,
      app,
      server,
      stop,
      restart: async (changes = {}) => {
        await stop();
        // The database stays: DATABASE_URL and DATA_DIR are not changed.
        return boot(changes.env ? loadConfig({ ...env, ...changes.env, ...databaseEnv }) : config, changes.overrides ?? overrides);
      },
      destroy: async () => {
        await stop();
        await dropDatabase();
      },
    };
  }
  const databaseEnv = Object.fromEntries(Object.entries(env).filter(([k]) => k === "DATABASE_URL" || k === "DATA_DIR"));
  return boot(loadConfig(env), opts.overrides);
}
