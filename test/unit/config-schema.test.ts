import { describe, expect, it } from "vitest";
import { availableParallelism } from "node:os";
import { loadConfig, type Config } from "../../src/config/config.js";
import { configError, namedVariables } from "../support/config-errors.js";

// The schema's areas (src/config/schema/*.ts): the rules between their
// variables, and the defaults as one literal Config.

describe("loadConfig: rules between variables name one variable", () => {
  it.each([
    [{ CAPTCHA_PROVIDER: "turnstile" }, "CAPTCHA_SECRET"],
    [{ CAPTCHA_SECRET: "s" }, "CAPTCHA_PROVIDER"],
    [{ WEBHOOK_URL: "https://hooks.example.com/x" }, "WEBHOOK_SECRET"],
    [{ WEBHOOK_SECRET: "0123456789abcdef" }, "WEBHOOK_URL"],
    [{ RISK_REQUIRE_MFA_AT: "80" }, "RISK_REQUIRE_MFA_AT"],
    [{ RISK_DENY_AT: "50" }, "RISK_REQUIRE_CAPTCHA_AT"],
    [{ BRUTE_FORCE_BASE_DELAY: "20m" }, "BRUTE_FORCE_BASE_DELAY"],
    [{ BRUTE_FORCE_FREE_ATTEMPTS: "10", BRUTE_FORCE_LOCKOUT: "10" }, "BRUTE_FORCE_FREE_ATTEMPTS"],
    [{ SESSION_CACHE_TTL: "61s" }, "SESSION_CACHE_TTL"],
  ])("%j is refused naming %s", (env, name) => {
    expect(namedVariables(configError(env))).toEqual([name]);
  });

  it("reports a bad value once, not again through the rules that read it", () => {
    // 10s is below ACCESS_TOKEN_TTL's minimum; the admin default derived from it is not reported as well.
    expect(namedVariables(configError({ ACCESS_TOKEN_TTL: "10s" }))).toEqual(["ACCESS_TOKEN_TTL"]);
    expect(namedVariables(configError({ BRUTE_FORCE_LOCKOUT: "5" }))).toEqual(["BRUTE_FORCE_LOCKOUT"]);
    expect(namedVariables(configError({ WEBHOOK_URL: "https://hooks.example.com/x", WEBHOOK_SECRET: "short" }))).toEqual(["WEBHOOK_SECRET"]);
  });

  it("reports the rules of one area even when another area has a bad value", () => {
    expect(namedVariables(configError({ PORT: "abc", SESSION_IDLE_TTL: "31d", SESSION_ABSOLUTE_TTL: "30d" })).sort()).toEqual(["PORT", "SESSION_IDLE_TTL"]);
  });
});

describe("Config: the schema and the type cannot drift", () => {
  // A literal of the whole Config: a field the schema adds, drops, renames or
  // retypes fails to compile here, and a changed default fails the test.
  const MIN = 60_000;
  const HOUR = 60 * MIN;
  const DAY = 24 * HOUR;
  const cores = availableParallelism();
  const defaults: Config = {
    port: 8080,
    grpcPort: 9090,
    host: "0.0.0.0",
    logLevel: "info",
    maxRequestBytes: 65_536,
    connections: { headersTimeoutMs: 15_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000, maxConnections: 20_000, maxConnectionsPerSource: 256 },
    trustedProxies: [],
    shutdownTimeoutMs: 10_000,
    cookieSecure: true,
    cookieHostPrefix: false,
    corsOrigins: [],
    csrfAllowSameSite: false,
    database: { kind: "pglite", dataDir: "./data" },
    migrateOnStart: true,
    redisUrl: undefined,
    redisPrefix: "identity:",
    jwt: { issuer: "urn:identity-service", audience: "urn:ecommerce-platform", accessTokenTtlMs: 15 * MIN },
    session: { idleTtlMs: 30 * DAY, absoluteTtlMs: 90 * DAY, cacheTtlMs: 1_000 },
    lifetimes: {
      customer: { accessTokenTtlMs: 15 * MIN, idleTtlMs: 30 * DAY, absoluteTtlMs: 90 * DAY },
      admin: { accessTokenTtlMs: 5 * MIN, idleTtlMs: 30 * MIN, absoluteTtlMs: 12 * HOUR },
    },
    maxSessionsPerUser: 10,
    refreshReuseGraceMs: 5_000,
    argon2: { memoryKib: 19_456, timeCost: 2, parallelism: 1 },
    hashing: { concurrency: cores, maxQueue: 64 * cores, queueTimeoutMs: 5_000 },
    password: { minLength: 8, maxLength: 256, maxBytes: 1_024 },
    rateLimits: "",
    bruteForce: { freeAttempts: 5, baseDelayMs: 1_000, maxDelayMs: 15 * MIN, lockoutThreshold: 100, resetAfterMs: DAY },
    spray: { windowMs: 15 * MIN, sourceAccounts: 20, passwordAccounts: 10, blockMs: 30 * MIN, surgeFailuresPerMinute: 3_000, surgeMs: 15 * MIN },
    captcha: undefined,
    emailDomains: { disposableCheck: true, allow: [], deny: [] },
    mfa: { issuer: "Identity", challengeTtlMs: 5 * MIN, enrolmentTtlMs: 15 * MIN, recentAuthMaxAgeMs: 10 * MIN, trustedDeviceTtlMs: 30 * DAY },
    risk: { geoip: true, requireMfaAt: 40, requireCaptchaAt: 70, denyAt: 110, maxTravelKmh: 1_000 },
    signingKeys: { publishLeadMs: 10 * MIN },
    keyEncryption: { keys: undefined, variable: undefined },
    webhook: undefined,
  };

  it("loadConfig({}) is exactly today's defaults, key for key", () => {
    expect(loadConfig({})).toStrictEqual(defaults);
  });
});
