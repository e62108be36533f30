import { availableParallelism } from "node:os";
import { isIP } from "node:net";
import { z } from "zod";

// The only reader of process.env. Parsed once, validated, frozen; a bad
// value stops the boot with a message naming the variable.

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

// "15m", "30d", "900s", "500ms" or plain milliseconds.
const duration = z.string().transform((v, ctx) => {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) {
    ctx.addIssue({ code: "custom", message: `"${v}" is not a duration like 900s, 15m, 12h or 30d` });
    return z.NEVER;
  }
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? "ms"]!;
  return Number(m[1]) * unit;
});

const cidrList = z.string().transform((v, ctx) => {
  const items = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    const [addr = "", bits, ...rest] = item.split("/");
    const family = isIP(addr);
    const max = family === 6 ? 128 : 32;
    const badBits = bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    // IPv4-mapped IPv6 ranges: write the IPv4 range instead.
    const mapped = bits !== undefined && family === 6 && addr.toLowerCase().startsWith("::ffff:") && addr.includes(".");
    if (!family || badBits || rest.length > 0 || mapped) {
      ctx.addIssue({ code: "custom", message: `"${item}" is not an IP address or CIDR range` });
    }
  }
  return items;
});

const cores = availableParallelism();

const EnvSchema = z.object({
  PORT: int(0, 65_535).default(8080),
  // "off" disables the internal grpc-js port.
  GRPC_PORT: z.union([z.literal("off"), int(0, 65_535)]).default(9090),
  HOST: z.string().min(1).default("0.0.0.0"),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
  DATA_DIR: z.string().min(1).default("./data"),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL")
    .optional(),
  DB_POOL_MAX: int(1, 500).default(10),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  JWT_ISSUER: z.string().min(1).default("urn:identity-service"),
  JWT_AUDIENCE: z.string().min(1).default("urn:ecommerce-platform"),
  ACCESS_TOKEN_TTL: duration.default(15 * 60_000),
  SESSION_IDLE_TTL: duration.default(30 * 86_400_000),
  SESSION_ABSOLUTE_TTL: duration.default(90 * 86_400_000),
  SESSION_CACHE_TTL: duration.default(1_000),
  ARGON2_MEMORY_KIB: int(8_192, 4_194_304).default(19_456),
  ARGON2_TIME_COST: int(1, 100).default(2),
  ARGON2_PARALLELISM: int(1, 64).default(1),
  HASH_CONCURRENCY: int(1, 1_024).default(cores),
  HASH_QUEUE_MAX: int(0, 100_000).default(64 * cores),
  HASH_QUEUE_TIMEOUT: duration.default(5_000),
  PASSWORD_MIN_LENGTH: int(8, 64).default(8),
  PASSWORD_MAX_LENGTH: int(64, 1_024).default(256),
  MAX_REQUEST_BYTES: int(1_024, 16 * 1_048_576).default(64 * 1_024),
  COOKIE_SECURE: bool.default(true),
  TRUSTED_PROXIES: cidrList.default([]),
  SHUTDOWN_TIMEOUT: duration.default(10_000),
});

export type Config = Readonly<{
  port: number;
  /** The internal @grpc/grpc-js port, or undefined when off. */
  grpcPort: number | undefined;
  host: string;
  database: { kind: "postgres"; url: string; poolMax: number } | { kind: "pglite"; dataDir: string };
  /** Redis for the revocation fan-out; undefined = single-instance behaviour. */
  redisUrl: string | undefined;
  logLevel: z.infer<typeof EnvSchema>["LOG_LEVEL"];
  jwt: { issuer: string; audience: string; accessTokenTtlMs: number };
  session: { idleTtlMs: number; absoluteTtlMs: number; cacheTtlMs: number };
  argon2: { memoryKib: number; timeCost: number; parallelism: number };
  hashing: { concurrency: number; maxQueue: number; queueTimeoutMs: number };
  password: { minLength: number; maxLength: number; maxBytes: number };
  maxRequestBytes: number;
  cookieSecure: boolean;
  trustedProxies: readonly string[];
  shutdownTimeoutMs: number;
}>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "unset", as in most deployment tools.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const e = parsed.data;
  if (e.SESSION_IDLE_TTL > e.SESSION_ABSOLUTE_TTL) {
    throw new ConfigError("invalid configuration:\n  SESSION_IDLE_TTL: must not exceed SESSION_ABSOLUTE_TTL");
  }
  if (e.SESSION_CACHE_TTL > 60_000) {
    throw new ConfigError("invalid configuration:\n  SESSION_CACHE_TTL: must be at most 60s (it bounds how late a revocation is seen without Redis)");
  }
  if (e.ACCESS_TOKEN_TTL < 30_000 || e.ACCESS_TOKEN_TTL > 3_600_000) {
    throw new ConfigError("invalid configuration:\n  ACCESS_TOKEN_TTL: must be between 30s and 1h");
  }
  return Object.freeze({
    port: e.PORT,
    grpcPort: e.GRPC_PORT === "off" ? undefined : e.GRPC_PORT,
    host: e.HOST,
    database: e.DATABASE_URL
      ? { kind: "postgres", url: e.DATABASE_URL, poolMax: e.DB_POOL_MAX }
      : { kind: "pglite", dataDir: e.DATA_DIR },
    redisUrl: e.REDIS_URL,
    logLevel: e.LOG_LEVEL,
    jwt: { issuer: e.JWT_ISSUER, audience: e.JWT_AUDIENCE, accessTokenTtlMs: e.ACCESS_TOKEN_TTL },
    session: { idleTtlMs: e.SESSION_IDLE_TTL, absoluteTtlMs: e.SESSION_ABSOLUTE_TTL, cacheTtlMs: e.SESSION_CACHE_TTL },
    argon2: { memoryKib: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST, parallelism: e.ARGON2_PARALLELISM },
    hashing: { concurrency: e.HASH_CONCURRENCY, maxQueue: e.HASH_QUEUE_MAX, queueTimeoutMs: e.HASH_QUEUE_TIMEOUT },
    // The byte cap: 4 bytes per code point of the longest allowed password.
    password: { minLength: e.PASSWORD_MIN_LENGTH, maxLength: e.PASSWORD_MAX_LENGTH, maxBytes: e.PASSWORD_MAX_LENGTH * 4 },
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    cookieSecure: e.COOKIE_SECURE,
    trustedProxies: Object.freeze([...e.TRUSTED_PROXIES]),
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
  }) as Config;
}
