import { describe, expect, it } from "vitest";
import { availableParallelism } from "node:os";
import { defaultLimits } from "../../../src/abuse/rate-limits.js";
import { loadConfig, type Config } from "../../../src/config/config.js";
import { configError, namedVariables } from "../../support/config-errors.js";

// The schema's areas (src/config/schema/*.ts): the rules between their
// variables, RATE_LIMITS parsed at boot, and the defaults as one literal Config.

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

describe("loadConfig: RATE_LIMITS is parsed at boot", () => {
  it("unset: the default table", () => {
    expect(loadConfig({}).rateLimits).toEqual(defaultLimits);
  });

  it('"off": no limits', () => {
    expect(loadConfig({ RATE_LIMITS: "off" }).rateLimits).toBeUndefined();
    expect(loadConfig({ RATE_LIMITS: " off " }).rateLimits).toBeUndefined();
  });

  it("overrides the named limits and keeps the other defaults", () => {
    const table = loadConfig({ RATE_LIMITS: " login.ip=30/1m:10, register.ip=10/1h " }).rateLimits;
    expect(table?.login).toEqual({ ...defaultLimits.login, ip: { limit: 30, periodMs: 60_000, burst: 10 } });
    expect(table?.register?.ip).toEqual({ limit: 10, periodMs: 3_600_000, burst: undefined });
    expect(table?.refresh_token).toEqual(defaultLimits.refresh_token);
    // The defaults themselves are untouched.
    expect(defaultLimits.login?.ip).toEqual({ limit: 60, periodMs: 60_000, burst: 30 });
  });

  it.each([
    ["login.ip=30", '"login.ip=30" is not a limit'],
    ["login.ip=30/1d", '"login.ip=30/1d" is not a limit'],
    ["login.everyone=30/1m", '"login.everyone=30/1m" is not a limit'],
    ["logn.ip=30/1m", 'unknown RPC "logn"'],
    ["login.ip=0/1m", "limit and period must be positive"],
    ["login.ip=30/0s", "limit and period must be positive"],
    ["off,login.ip=30/1m", '"off" is not a limit'],
    ["login.ip=30/1m,register.ip=ten/1h", '"register.ip=ten/1h" is not a limit'],
  ])("%j stops the boot with a ConfigError naming RATE_LIMITS", (value, problem) => {
    const err = configError({ RATE_LIMITS: value });
    expect(namedVariables(err)).toEqual(["RATE_LIMITS"]);
    expect(err.message).toContain(problem);
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
    redisCommandTimeoutMs: 100,
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
    rateLimits: {
      login: {
        ip: { limit: 60, periodMs: MIN, burst: 30 },
        account: { limit: 20, periodMs: MIN, burst: 10 },
        ip_account: { limit: 10, periodMs: MIN, burst: 6 },
        global: { limit: 3_000, periodMs: 1_000, burst: 3_000 },
      },
      complete_mfa_login: { ip: { limit: 60, periodMs: MIN, burst: 30 }, global: { limit: 3_000, periodMs: 1_000, burst: 3_000 } },
      register: {
        ip: { limit: 20, periodMs: HOUR, burst: 10 },
        account: { limit: 5, periodMs: HOUR, burst: 3 },
        global: { limit: 500, periodMs: 1_000, burst: 500 },
      },
      password_forgot: {
        ip: { limit: 20, periodMs: HOUR, burst: 10 },
        account: { limit: 5, periodMs: HOUR, burst: 5 },
        global: { limit: 300, periodMs: 1_000, burst: 300 },
      },
      email_login: {
        ip: { limit: 30, periodMs: HOUR, burst: 10 },
        account: { limit: 10, periodMs: HOUR, burst: 5 },
        global: { limit: 500, periodMs: 1_000, burst: 500 },
      },
      complete_email_login: {
        ip: { limit: 60, periodMs: MIN, burst: 30 },
        account: { limit: 20, periodMs: MIN, burst: 10 },
        global: { limit: 3_000, periodMs: 1_000, burst: 3_000 },
      },
      email_token: { ip: { limit: 60, periodMs: MIN, burst: 30 }, global: { limit: 3_000, periodMs: 1_000, burst: 3_000 } },
      refresh_token: { ip: { limit: 600, periodMs: MIN, burst: 120 }, global: { limit: 20_000, periodMs: 1_000, burst: 20_000 } },
      verify_token: { ip: { limit: 6_000, periodMs: MIN, burst: 1_000 } },
      authenticated: { ip: { limit: 1_200, periodMs: MIN, burst: 300 }, account: { limit: 600, periodMs: MIN, burst: 120 } },
      auth_failure: { ip: { limit: 300, periodMs: MIN, burst: 100 } },
    },
    bruteForce: { freeAttempts: 5, baseDelayMs: 1_000, maxDelayMs: 15 * MIN, lockoutThreshold: 100, resetAfterMs: DAY },
    spray: { windowMs: 15 * MIN, sourceAccounts: 20, passwordAccounts: 10, blockMs: 30 * MIN, surgeFailuresPerMinute: 3_000, surgeMs: 15 * MIN },
    captcha: undefined,
    emailDomains: { disposableCheck: true, allow: [], deny: [] },
    mfa: { issuer: "Identity", challengeTtlMs: 5 * MIN, enrolmentTtlMs: 15 * MIN, recentAuthMaxAgeMs: 10 * MIN, trustedDeviceTtlMs: 30 * DAY },
    risk: { geoip: true, requireMfaAt: 40, requireCaptchaAt: 70, denyAt: 110, maxTravelKmh: 1_000 },
    signingKeys: { publishLeadMs: 10 * MIN },
    keyEncryption: { keys: undefined, variable: undefined },
    webhook: undefined,
    mail: {
      smtpUrl: undefined,
      from: "Identity <no-reply@localhost>",
      messageIdDomain: "localhost",
      appUrl: "http://localhost:3000",
      appName: "Identity",
      dir: undefined,
      dispatcher: true,
      maxAttempts: 10,
      retryBaseMs: 30_000,
      leaseMs: 120_000,
      pollMs: 2_000,
      retentionMs: 30 * DAY,
    },
    requireEmailVerification: false,
  };

  it("loadConfig({}) is exactly today's defaults, key for key", () => {
    expect(loadConfig({})).toStrictEqual(defaults);
  });
});
