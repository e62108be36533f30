import { z } from "zod";
import { DEFAULT_REDIS_PREFIX, isValidRedisPrefix } from "@platform/identity-verifier/protocol";
import { bool, int } from "../fields.js";

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
}));
