import { createApp } from "./app/app.js";
import { ConfigError, loadConfig } from "./config/config.js";
import { createLogger } from "./shared/logger.js";

// Process entry: config → app → listen; SIGTERM/SIGINT → drain → close.
async function main(): Promise<void> {
  let config;
  let logger;
  let app;
  try {
    config = loadConfig();
    logger = createLogger(config.logLevel);
    // Also refuses to start without the key-encryption keys it needs.
    app = await createApp(config, logger);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const server = await app.listen({ port: config.port, host: config.host });
  const grpcServer = config.grpcPort === undefined ? undefined : await app.listenGrpcJs({ port: config.grpcPort, host: config.host });
  logger.info(
    { port: server.port, grpcPort: grpcServer?.port, database: app.database.kind, argon2: config.argon2, hashConcurrency: config.hashing.concurrency },
    "identity service listening",
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, inFlight: server.inFlight() }, "draining");
    // A last resort if something refuses to close.
    setTimeout(() => {
      logger.error("shutdown timed out");
      process.exit(1);
    }, config.shutdownTimeoutMs + 5_000).unref();
    app.beginShutdown();
    await Promise.all([server.close(config.shutdownTimeoutMs), grpcServer?.close(config.shutdownTimeoutMs)]);
    await app.dispose();
    logger.info("stopped");
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
}

main().catch((err: unknown) => {
  process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
