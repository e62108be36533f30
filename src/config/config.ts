import { availableParallelism } from "node:os";
import { isIP } from "node:net";
import { resolve } from "node:path";
import { z } from "zod";
import type { SprayPolicy, ThrottlePolicy } from "../abuse/login-defence.js";
import type { RoleLifetimes } from "../sessions/ports.js";
import { parseSecretBoxKeys } from "../keys/secret-box.js";
import { DEFAULT_REDIS_PREFIX, isValidRedisPrefix } from "@platform/identity-verifier/protocol";

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

// "https://shop.example.com,https://admin.example.com": exact origins only
// (no wildcard: credentialed CORS cannot use one, and a pattern is easy to get wrong).
const originList = z.string().transform((v, ctx) => {
  const items = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    let origin: string | undefined;
    try {
      const url = new URL(item);
      if (url.protocol === "https:" || url.protocol === "http:") origin = url.origin;
    } catch {
      // reported below
    }
    if (origin !== item) ctx.addIssue({ code: "custom", message: `"${item}" is not an origin like https://app.example.com` });
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
  // Every Redis key and channel starts with it: deployments sharing a Redis
  // (or a Redis database) need different ones.
  REDIS_PREFIX: z
    .string()
    .refine(isValidRedisPrefix, "must be 1-64 printable ASCII characters without spaces, { or }")
    .default(DEFAULT_REDIS_PREFIX),
  DB_POOL_MAX: int(1, 500).default(10),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  JWT_ISSUER: z.string().min(1).default("urn:identity-service"),
  JWT_AUDIENCE: z.string().min(1).default("urn:ecommerce-platform"),
  ACCESS_TOKEN_TTL: duration.default(15 * 60_000),
  SESSION_IDLE_TTL: duration.default(30 * 86_400_000),
  SESSION_ABSOLUTE_TTL: duration.default(90 * 86_400_000),
  // Administrators: short-lived tokens and sessions. Unset, the access and
  // idle TTLs are 5m and 30m, or less when the limits above them are lower.
  ADMIN_ACCESS_TOKEN_TTL: duration.optional(),
  ADMIN_SESSION_IDLE_TTL: duration.optional(),
  ADMIN_SESSION_ABSOLUTE_TTL: duration.default(12 * 3_600_000),
  MAX_SESSIONS_PER_USER: int(1, 1_000).default(10),
  REFRESH_REUSE_GRACE: duration.default(5_000),
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
  // Deadlines of a connection on the main port (slowloris): the request head,
  // the whole request, an idle keep-alive HTTP/1.1 connection.
  HTTP_HEADERS_TIMEOUT: duration.default(15_000),
  HTTP_REQUEST_TIMEOUT: duration.default(30_000),
  HTTP_KEEPALIVE_TIMEOUT: duration.default(5_000),
  MAX_CONNECTIONS: int(1, 1_000_000).default(20_000),
  // Per source address (IPv6 by /64); TRUSTED_PROXIES are exempt. 0 = no cap.
  MAX_CONNECTIONS_PER_SOURCE: int(0, 1_000_000).default(256),
  COOKIE_SECURE: bool.default(true),
  COOKIE_HOST_PREFIX: bool.default(false),
  CORS_ORIGINS: originList.default([]),
  CSRF_ALLOW_SAME_SITE: bool.default(false),
  KEY_PUBLISH_LEAD: duration.default(10 * 60_000),
  TRUSTED_PROXIES: cidrList.default([]),
  SHUTDOWN_TIMEOUT: duration.default(10_000),
  // Owners run migrations (npm run migrate); a service role without DDL
  // rights starts with this off (see docs/operations.md).
  MIGRATE_ON_START: bool.default(true),
  // Rate limits: "off", or overrides of the defaults in
  // src/transport/rpc/rate-limit.ts, e.g. "login.ip=30/1m,register.ip=10/1h:5".
  RATE_LIMITS: z.string().default(""),
  BRUTE_FORCE_FREE_ATTEMPTS: int(1, 100).default(5),
  BRUTE_FORCE_BASE_DELAY: duration.default(1_000),
  BRUTE_FORCE_MAX_DELAY: duration.default(15 * 60_000),
  BRUTE_FORCE_LOCKOUT: int(10, 1_000).default(100),
  // Failures older than this (and no lock) are forgotten; 0 = never.
  BRUTE_FORCE_RESET_AFTER: duration.default(24 * 3_600_000),
  SPRAY_WINDOW: duration.default(15 * 60_000),
  SPRAY_SOURCE_ACCOUNTS: int(2, 100_000).default(20),
  SPRAY_PASSWORD_ACCOUNTS: int(2, 100_000).default(10),
  SPRAY_BLOCK_DURATION: duration.default(30 * 60_000),
  SURGE_FAILURES_PER_MINUTE: int(10, 10_000_000).default(3_000),
  SURGE_DURATION: duration.default(15 * 60_000),
  CAPTCHA_PROVIDER: z.enum(["turnstile", "hcaptcha", "recaptcha"]).optional(),
  CAPTCHA_SECRET: z.string().min(1).optional(),
  CAPTCHA_VERIFY_URL: z.string().url().optional(),
  CAPTCHA_HOSTNAMES: z.string().default(""),
  CAPTCHA_ON_REGISTER: bool.default(true),
  CAPTCHA_ON_RISKY_LOGIN: bool.default(true),
  // When the CAPTCHA provider cannot be reached: refuse (false) or let the request through.
  CAPTCHA_FAIL_OPEN: bool.default(false),
  DISPOSABLE_EMAIL_CHECK: bool.default(true),
  EMAIL_DOMAIN_ALLOW: z.string().default(""),
  EMAIL_DOMAIN_DENY: z.string().default(""),
  // "k2:BASE64,k1:BASE64": AES-256 key-encryption keys sealing the signing
  // keys, the server secrets and the TOTP secrets; the first seals
  // (rotation: put the new key first, keep the old ones).
  KEY_ENCRYPTION_KEYS: z.string().optional(),
  // Its former name, from when it sealed TOTP secrets only: still read.
  MFA_ENCRYPTION_KEYS: z.string().optional(),
  MFA_ISSUER: z.string().min(1).max(64).default("Identity"),
  MFA_CHALLENGE_TTL: duration.default(5 * 60_000),
  MFA_ENROLMENT_TTL: duration.default(15 * 60_000),
  RECENT_AUTH_MAX_AGE: duration.default(10 * 60_000),
  // A device that passed MFA may skip it this long (0 = never skip).
  TRUSTED_DEVICE_TTL: duration.default(30 * 86_400_000),
  // Offline GeoIP (geoip-lite, ~160 MB of memory) for country and travel signals.
  GEOIP: bool.default(true),
  RISK_REQUIRE_MFA_AT: int(1, 1_000).default(40),
  RISK_REQUIRE_CAPTCHA_AT: int(1, 1_000).default(70),
  RISK_DENY_AT: int(1, 1_000).default(110),
  RISK_MAX_TRAVEL_KMH: int(100, 100_000).default(1_000),
  WEBHOOK_URL: z.string().url().optional(),
  WEBHOOK_SECRET: z.string().min(16).optional(),
});

export type Config = Readonly<{
  port: number;
  /** The internal @grpc/grpc-js port, or undefined when off. */
  grpcPort: number | undefined;
  host: string;
  database: { kind: "postgres"; url: string; poolMax: number } | { kind: "pglite"; dataDir: string };
  /** Redis for the revocation fan-out; undefined = single-instance behaviour. */
  redisUrl: string | undefined;
  /** The start of every Redis key and channel name of this deployment. */
  redisPrefix: string;
  logLevel: z.infer<typeof EnvSchema>["LOG_LEVEL"];
  jwt: { issuer: string; audience: string; accessTokenTtlMs: number };
  session: { idleTtlMs: number; absoluteTtlMs: number; cacheTtlMs: number };
  /** Token and session lifetimes by role; `customer` repeats ACCESS_TOKEN_TTL and SESSION_*_TTL. */
  lifetimes: RoleLifetimes;
  maxSessionsPerUser: number;
  /** A retired refresh token presented this soon after its rotation is not treated as reuse (0 = never). */
  refreshReuseGraceMs: number;
  argon2: { memoryKib: number; timeCost: number; parallelism: number };
  hashing: { concurrency: number; maxQueue: number; queueTimeoutMs: number };
  password: { minLength: number; maxLength: number; maxBytes: number };
  maxRequestBytes: number;
  /** Deadlines and caps of connections on the main port. */
  connections: {
    headersTimeoutMs: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    maxConnections: number;
    maxConnectionsPerSource: number;
  };
  cookieSecure: boolean;
  /** Cookie names get the __Host- (access) and __Secure- (refresh) prefixes. */
  cookieHostPrefix: boolean;
  /** Origins allowed to call with credentials (CORS), and trusted by the CSRF check. */
  corsOrigins: readonly string[];
  /** The CSRF check also accepts Sec-Fetch-Site: same-site (sibling subdomains). */
  csrfAllowSameSite: boolean;
  /** How long a rotated-in signing key is in the JWKS before it signs. */
  signingKeys: { publishLeadMs: number };
  trustedProxies: readonly string[];
  shutdownTimeoutMs: number;
  migrateOnStart: boolean;
  /** Overrides of the default rate limits ("" = defaults), or "off". */
  rateLimits: string;
  bruteForce: ThrottlePolicy;
  spray: SprayPolicy;
  captcha:
    | {
        provider: "turnstile" | "hcaptcha" | "recaptcha";
        secret: string;
        verifyUrl: string | undefined;
        hostnames: readonly string[];
        onRegister: boolean;
        onRiskyLogin: boolean;
        failOpen: boolean;
      }
    | undefined;
  emailDomains: { disposableCheck: boolean; allow: readonly string[]; deny: readonly string[] };
  webhook: { url: string; secret: string } | undefined;
  /**
   * The key-encryption keys ("id:base64,…", validated) and the variable they
   * came from; unset: see keyEncryptionSource.
   */
  keyEncryption: { keys: string | undefined; variable: "KEY_ENCRYPTION_KEYS" | "MFA_ENCRYPTION_KEYS" | undefined };
  mfa: {
    issuer: string;
    challengeTtlMs: number;
    enrolmentTtlMs: number;
    recentAuthMaxAgeMs: number;
    trustedDeviceTtlMs: number;
  };
  risk: { geoip: boolean; requireMfaAt: number; requireCaptchaAt: number; denyAt: number; maxTravelKmh: number };
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
  if (e.ADMIN_SESSION_ABSOLUTE_TTL < 60_000 || e.ADMIN_SESSION_ABSOLUTE_TTL > 30 * 86_400_000) {
    throw new ConfigError("invalid configuration:\n  ADMIN_SESSION_ABSOLUTE_TTL: must be between 1m and 30d");
  }
  const adminAccessTokenTtl = e.ADMIN_ACCESS_TOKEN_TTL ?? Math.min(5 * 60_000, e.ACCESS_TOKEN_TTL);
  if (adminAccessTokenTtl < 30_000 || adminAccessTokenTtl > e.ACCESS_TOKEN_TTL) {
    // Revocation denylists and verifier caches keep an entry for ACCESS_TOKEN_TTL.
    throw new ConfigError("invalid configuration:\n  ADMIN_ACCESS_TOKEN_TTL: must be between 30s and ACCESS_TOKEN_TTL");
  }
  const adminIdleTtl = e.ADMIN_SESSION_IDLE_TTL ?? Math.min(30 * 60_000, e.ADMIN_SESSION_ABSOLUTE_TTL);
  if (adminIdleTtl < 60_000 || adminIdleTtl > e.ADMIN_SESSION_ABSOLUTE_TTL) {
    throw new ConfigError("invalid configuration:\n  ADMIN_SESSION_IDLE_TTL: must be at least 1m and not exceed ADMIN_SESSION_ABSOLUTE_TTL");
  }
  if (e.COOKIE_HOST_PREFIX && !e.COOKIE_SECURE) {
    throw new ConfigError("invalid configuration:\n  COOKIE_HOST_PREFIX: __Host- and __Secure- cookies must be Secure; unset COOKIE_SECURE=false");
  }
  if (e.KEY_PUBLISH_LEAD < 6 * 60_000 || e.KEY_PUBLISH_LEAD > 7 * 86_400_000) {
    // Verifiers cache the JWKS for 300 s and refetch at most once a minute.
    throw new ConfigError("invalid configuration:\n  KEY_PUBLISH_LEAD: must be between 6m (JWKS max-age 5m + refetch interval 1m) and 7d");
  }
  if (e.REFRESH_REUSE_GRACE > 10_000) {
    // RFC 9700 §4.14.2: the window in which a replayed refresh token does not end its session stays short.
    throw new ConfigError("invalid configuration:\n  REFRESH_REUSE_GRACE: must be at most 10s");
  }
  if ((e.CAPTCHA_PROVIDER === undefined) !== (e.CAPTCHA_SECRET === undefined)) {
    throw new ConfigError("invalid configuration:\n  CAPTCHA_PROVIDER and CAPTCHA_SECRET: set both or neither");
  }
  if ((e.WEBHOOK_URL === undefined) !== (e.WEBHOOK_SECRET === undefined)) {
    throw new ConfigError("invalid configuration:\n  WEBHOOK_URL and WEBHOOK_SECRET: set both or neither");
  }
  if (!(e.RISK_REQUIRE_MFA_AT <= e.RISK_REQUIRE_CAPTCHA_AT && e.RISK_REQUIRE_CAPTCHA_AT <= e.RISK_DENY_AT)) {
    throw new ConfigError("invalid configuration:\n  RISK_*_AT: need RISK_REQUIRE_MFA_AT <= RISK_REQUIRE_CAPTCHA_AT <= RISK_DENY_AT");
  }
  if (e.KEY_ENCRYPTION_KEYS !== undefined && e.MFA_ENCRYPTION_KEYS !== undefined && e.KEY_ENCRYPTION_KEYS.trim() !== e.MFA_ENCRYPTION_KEYS.trim()) {
    throw new ConfigError(
      "invalid configuration:\n  MFA_ENCRYPTION_KEYS: the deprecated name of KEY_ENCRYPTION_KEYS, set to a different value; set KEY_ENCRYPTION_KEYS only",
    );
  }
  const kekVariable = e.KEY_ENCRYPTION_KEYS !== undefined ? "KEY_ENCRYPTION_KEYS" : e.MFA_ENCRYPTION_KEYS !== undefined ? "MFA_ENCRYPTION_KEYS" : undefined;
  const keks = e.KEY_ENCRYPTION_KEYS ?? e.MFA_ENCRYPTION_KEYS;
  if (keks !== undefined) {
    try {
      parseSecretBoxKeys(keks);
    } catch (err) {
      throw new ConfigError(`invalid configuration:\n  ${kekVariable}: ${(err as Error).message}`);
    }
  }
  if (e.HTTP_HEADERS_TIMEOUT < 1_000 || e.HTTP_HEADERS_TIMEOUT > e.HTTP_REQUEST_TIMEOUT) {
    throw new ConfigError("invalid configuration:\n  HTTP_HEADERS_TIMEOUT: must be at least 1s and not exceed HTTP_REQUEST_TIMEOUT");
  }
  if (e.HTTP_REQUEST_TIMEOUT > 600_000) {
    throw new ConfigError("invalid configuration:\n  HTTP_REQUEST_TIMEOUT: must be at most 10m");
  }
  if (e.HTTP_KEEPALIVE_TIMEOUT < 1_000 || e.HTTP_KEEPALIVE_TIMEOUT > 600_000) {
    throw new ConfigError("invalid configuration:\n  HTTP_KEEPALIVE_TIMEOUT: must be between 1s and 10m");
  }
  if (e.BRUTE_FORCE_BASE_DELAY > e.BRUTE_FORCE_MAX_DELAY) {
    throw new ConfigError("invalid configuration:\n  BRUTE_FORCE_BASE_DELAY: must not exceed BRUTE_FORCE_MAX_DELAY");
  }
  if (e.BRUTE_FORCE_FREE_ATTEMPTS >= e.BRUTE_FORCE_LOCKOUT) {
    throw new ConfigError("invalid configuration:\n  BRUTE_FORCE_FREE_ATTEMPTS: must be below BRUTE_FORCE_LOCKOUT");
  }
  const list = (v: string) =>
    Object.freeze(
      v
        .split(",")
        .map((x) => x.trim().toLowerCase())
        .filter(Boolean),
    );
  return Object.freeze({
    port: e.PORT,
    grpcPort: e.GRPC_PORT === "off" ? undefined : e.GRPC_PORT,
    host: e.HOST,
    database: e.DATABASE_URL
      ? { kind: "postgres", url: e.DATABASE_URL, poolMax: e.DB_POOL_MAX }
      : { kind: "pglite", dataDir: e.DATA_DIR },
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    logLevel: e.LOG_LEVEL,
    jwt: { issuer: e.JWT_ISSUER, audience: e.JWT_AUDIENCE, accessTokenTtlMs: e.ACCESS_TOKEN_TTL },
    session: { idleTtlMs: e.SESSION_IDLE_TTL, absoluteTtlMs: e.SESSION_ABSOLUTE_TTL, cacheTtlMs: e.SESSION_CACHE_TTL },
    lifetimes: {
      customer: { accessTokenTtlMs: e.ACCESS_TOKEN_TTL, idleTtlMs: e.SESSION_IDLE_TTL, absoluteTtlMs: e.SESSION_ABSOLUTE_TTL },
      admin: {
        accessTokenTtlMs: adminAccessTokenTtl,
        idleTtlMs: adminIdleTtl,
        absoluteTtlMs: e.ADMIN_SESSION_ABSOLUTE_TTL,
      },
    },
    maxSessionsPerUser: e.MAX_SESSIONS_PER_USER,
    refreshReuseGraceMs: e.REFRESH_REUSE_GRACE,
    argon2: { memoryKib: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST, parallelism: e.ARGON2_PARALLELISM },
    hashing: { concurrency: e.HASH_CONCURRENCY, maxQueue: e.HASH_QUEUE_MAX, queueTimeoutMs: e.HASH_QUEUE_TIMEOUT },
    // The byte cap: 4 bytes per code point of the longest allowed password.
    password: { minLength: e.PASSWORD_MIN_LENGTH, maxLength: e.PASSWORD_MAX_LENGTH, maxBytes: e.PASSWORD_MAX_LENGTH * 4 },
    maxRequestBytes: e.MAX_REQUEST_BYTES,
    connections: {
      headersTimeoutMs: e.HTTP_HEADERS_TIMEOUT,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT,
      keepAliveTimeoutMs: e.HTTP_KEEPALIVE_TIMEOUT,
      maxConnections: e.MAX_CONNECTIONS,
      maxConnectionsPerSource: e.MAX_CONNECTIONS_PER_SOURCE,
    },
    cookieSecure: e.COOKIE_SECURE,
    cookieHostPrefix: e.COOKIE_HOST_PREFIX,
    corsOrigins: Object.freeze([...e.CORS_ORIGINS]),
    csrfAllowSameSite: e.CSRF_ALLOW_SAME_SITE,
    signingKeys: { publishLeadMs: e.KEY_PUBLISH_LEAD },
    trustedProxies: Object.freeze([...e.TRUSTED_PROXIES]),
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
    migrateOnStart: e.MIGRATE_ON_START,
    rateLimits: e.RATE_LIMITS.trim(),
    bruteForce: {
      freeAttempts: e.BRUTE_FORCE_FREE_ATTEMPTS,
      baseDelayMs: e.BRUTE_FORCE_BASE_DELAY,
      maxDelayMs: e.BRUTE_FORCE_MAX_DELAY,
      lockoutThreshold: e.BRUTE_FORCE_LOCKOUT,
      resetAfterMs: e.BRUTE_FORCE_RESET_AFTER,
    },
    spray: {
      windowMs: e.SPRAY_WINDOW,
      sourceAccounts: e.SPRAY_SOURCE_ACCOUNTS,
      passwordAccounts: e.SPRAY_PASSWORD_ACCOUNTS,
      blockMs: e.SPRAY_BLOCK_DURATION,
      surgeFailuresPerMinute: e.SURGE_FAILURES_PER_MINUTE,
      surgeMs: e.SURGE_DURATION,
    },
    captcha:
      e.CAPTCHA_PROVIDER && e.CAPTCHA_SECRET
        ? {
            provider: e.CAPTCHA_PROVIDER,
            secret: e.CAPTCHA_SECRET,
            verifyUrl: e.CAPTCHA_VERIFY_URL,
            hostnames: list(e.CAPTCHA_HOSTNAMES),
            onRegister: e.CAPTCHA_ON_REGISTER,
            onRiskyLogin: e.CAPTCHA_ON_RISKY_LOGIN,
            failOpen: e.CAPTCHA_FAIL_OPEN,
          }
        : undefined,
    emailDomains: {
      disposableCheck: e.DISPOSABLE_EMAIL_CHECK,
      allow: list(e.EMAIL_DOMAIN_ALLOW),
      deny: list(e.EMAIL_DOMAIN_DENY),
    },
    webhook: e.WEBHOOK_URL && e.WEBHOOK_SECRET ? { url: e.WEBHOOK_URL, secret: e.WEBHOOK_SECRET } : undefined,
    keyEncryption: { keys: keks, variable: kekVariable },
    mfa: {
      issuer: e.MFA_ISSUER,
      challengeTtlMs: e.MFA_CHALLENGE_TTL,
      enrolmentTtlMs: e.MFA_ENROLMENT_TTL,
      recentAuthMaxAgeMs: e.RECENT_AUTH_MAX_AGE,
      trustedDeviceTtlMs: e.TRUSTED_DEVICE_TTL,
    },
    risk: {
      geoip: e.GEOIP,
      requireMfaAt: e.RISK_REQUIRE_MFA_AT,
      requireCaptchaAt: e.RISK_REQUIRE_CAPTCHA_AT,
      denyAt: e.RISK_DENY_AT,
      maxTravelKmh: e.RISK_MAX_TRAVEL_KMH,
    },
  }) as Config;
}

/** The longest access-token lifetime of any role: a rotated-out signing key stays published this long after its last use. */
export function longestAccessTokenTtlMs(config: Config): number {
  return Math.max(config.jwt.accessTokenTtlMs, ...Object.values(config.lifetimes).map((l) => l.accessTokenTtlMs));
}

/** Where the key-encryption keys come from. */
export type KeyEncryptionSource =
  | { kind: "configured"; keys: { id: string; key: Uint8Array }[] }
  /** Embedded mode without KEY_ENCRYPTION_KEYS: a key file beside (never inside) the data directory. */
  | { kind: "file"; path: string }
  /** An in-memory database (tests): a key that lives as long as it does. */
  | { kind: "ephemeral" };

/**
 * The key-encryption keys the service and rotate-signing-key need (the other
 * operator commands never touch sealed data, so whoever only migrates or
 * grants roles need not hold them). PostgreSQL without KEY_ENCRYPTION_KEYS is
 * refused: a key kept beside a shared database would protect nothing.
 */
export function keyEncryptionSource(config: Config): KeyEncryptionSource {
  if (config.keyEncryption.keys !== undefined) return { kind: "configured", keys: parseSecretBoxKeys(config.keyEncryption.keys) };
  if (config.database.kind === "postgres") {
    throw new ConfigError(
      [
        "invalid configuration:",
        "  KEY_ENCRYPTION_KEYS: required with DATABASE_URL: it seals the signing keys and secrets kept in PostgreSQL,",
        "    so that a copy of the database cannot sign tokens. Generate one and give every instance the same value:",
        `    KEY_ENCRYPTION_KEYS=$(node -e "console.log('k1:'+crypto.randomBytes(32).toString('base64'))")`,
      ].join("\n"),
    );
  }
  const dataDir = config.database.dataDir;
  if (dataDir.startsWith("memory://")) return { kind: "ephemeral" };
  return { kind: "file", path: `${resolve(dataDir)}.kek` };
}
