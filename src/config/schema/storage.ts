import { z } from "zod";
import { DEFAULT_REDIS_PREFIX, isValidRedisPrefix } from "@platform/identity-verifier/protocol";
import { bool, durationWithin, int, SECOND } from "../fields.js";

// PostgreSQL (or embedded PGlite) and Redis.

const env = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
  DATA_DIR: z.string().min(1).default("./data"),
  DB_POOL_MAX: int(1, 500).default(10),
  // Owners run migrations (npm run migrate); a service role without DDL
  // rights starts with this off (see docs/operations.md).
  MIGRATE_ON_START: bool.default(true),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL")
    .optional(),
  // Every Redis key and channel starts with it: deployments sharing a Redis
  // (or a Redis database) need different ones.
  REDIS_PREFIX: z
    .string()
    .refine(isValidRedisPrefix, "must be 1-64 printable ASCII characters without spaces, { or }")
    .default(DEFAULT_REDIS_PREFIX),
  // How long a rate-limit or detector call may wait on Redis before the
  // instance answers from its own memory (and says so in the log).
  REDIS_COMMAND_TIMEOUT: durationWithin(10, 10 * SECOND, "must be between 10ms and 10s").default(100),
});

export const storageSchema = env.transform((e) => ({
  database: e.DATABASE_URL
    ? { kind: "postgres" as const, url: e.DATABASE_URL, poolMax: e.DB_POOL_MAX }
    : { kind: "pglite" as const, dataDir: e.DATA_DIR },
  migrateOnStart: e.MIGRATE_ON_START,
  /** Redis for the revocation fan-out; undefined = single-instance behaviour. */
  redisUrl: e.REDIS_URL,
  /** The start of every Redis key and channel name of this deployment. */
  redisPrefix: e.REDIS_PREFIX,
  /** Budget of one rate-limit or detector call on Redis before the in-process fallback answers. */
  redisCommandTimeoutMs: e.REDIS_COMMAND_TIMEOUT,
}));
