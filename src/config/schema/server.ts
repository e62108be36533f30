import { z } from "zod";
import { MINUTE, SECOND, cidrList, duration, durationWithin, int, onceValid, refuse } from "../fields.js";

// The listening ports, connection deadlines and caps, proxies, logging, shutdown.

const env = z.object({
  PORT: int(0, 65_535).default(8080),
  // "off" disables the internal grpc-js port.
  GRPC_PORT: z.union([z.literal("off"), int(0, 65_535)]).default(9090),
  HOST: z.string().min(1).default("0.0.0.0"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  MAX_REQUEST_BYTES: int(1_024, 16 * 1_048_576).default(64 * 1_024),
  // Deadlines of a connection on the main port (slowloris): the request head,
  // the whole request, an idle keep-alive HTTP/1.1 connection.
  HTTP_HEADERS_TIMEOUT: duration.default(15 * SECOND),
  HTTP_REQUEST_TIMEOUT: durationWithin(0, 10 * MINUTE, "must be at most 10m").default(30 * SECOND),
  HTTP_KEEPALIVE_TIMEOUT: durationWithin(SECOND, 10 * MINUTE, "must be between 1s and 10m").default(5 * SECOND),
  MAX_CONNECTIONS: int(1, 1_000_000).default(20_000),
  // Per source address (IPv6 by /64); TRUSTED_PROXIES are exempt. 0 = no cap.
  MAX_CONNECTIONS_PER_SOURCE: int(0, 1_000_000).default(256),
  TRUSTED_PROXIES: cidrList.default([]),
  SHUTDOWN_TIMEOUT: duration.default(10 * SECOND),
});

export const serverSchema = env
  .superRefine((e, ctx) => {
    if (e.HTTP_HEADERS_TIMEOUT < SECOND || e.HTTP_HEADERS_TIMEOUT > e.HTTP_REQUEST_TIMEOUT) {
      refuse(ctx, "HTTP_HEADERS_TIMEOUT", "must be at least 1s and not exceed HTTP_REQUEST_TIMEOUT");
    }
  }, onceValid)
  .transform((e) => ({
    port: e.PORT,
    /** The internal @grpc/grpc-js port, or undefined when off. */
    grpcPort: e.GRPC_PORT === "off" ? undefined : e.GRPC_PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    /** Deadlines and caps of connections on the main port. */
    connections: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT,
      keepAliveTimeoutMs: e.HTTP_KEEPALIVE_TIMEOUT,
      maxConnections: e.MAX_CONNECTIONS,
      maxConnectionsPerSource: e.MAX_CONNECTIONS_PER_SOURCE,
    },
    trustedProxies: e.TRUSTED_PROXIES,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
  }));
