import { describe, expect, it } from "vitest";
import { resolve } from "node:path";
import { ConfigError, keyEncryptionSource, loadConfig } from "../../../src/config/config.js";
import { OWASP_ARGON2ID } from "../../../src/hashing/argon2.js";
import { configError, namedVariables } from "../../support/config-errors.js";

// loadConfig takes the environment as an argument: no process.env mutation.

describe("loadConfig: defaults", () => {
  const config = loadConfig({});

  it("listens on 8080", () => {
    expect(config.port).toBe(8080);
  });

  it("uses embedded PGlite in ./data without DATABASE_URL", () => {
    expect(config.database).toEqual({ kind: "pglite", dataDir: "./data" });
  });

  it("hashes with the OWASP argon2id minimum (m=19456 KiB, t=2, p=1)", () => {
    expect(config.argon2).toEqual({ memoryKib: 19_456, timeCost: 2, parallelism: 1 });
    expect(config.argon2).toEqual(OWASP_ARGON2ID);
  });

  it("issues 15-minute access tokens", () => {
    expect(config.jwt.accessTokenTtlMs).toBe(15 * 60_000);
  });

  it("has sessions that idle out before they reach their absolute lifetime", () => {
    expect(config.session.idleTtlMs).toBeLessThanOrEqual(config.session.absoluteTtlMs);
  });

  it("trusts no proxy and sets secure cookies", () => {
    expect(config.trustedProxies).toEqual([]);
    expect(config.cookieSecure).toBe(true);
  });

  it("caps password bytes at 4 per allowed code point", () => {
    expect(config.password.minLength).toBe(8);
    expect(config.password.maxBytes).toBe(config.password.maxLength * 4);
  });

  it("is frozen", () => {
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.trustedProxies)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it("is frozen all the way down", () => {
    const unfrozen: string[] = [];
    const walk = (value: unknown, path: string): void => {
      if (typeof value !== "object" || value === null) return;
      if (!Object.isFrozen(value)) unfrozen.push(path);
      for (const [key, child] of Object.entries(value)) walk(child, `${path}.${key}`);
    };
    walk(loadConfig({ CAPTCHA_PROVIDER: "turnstile", CAPTCHA_SECRET: "s", CAPTCHA_HOSTNAMES: "a.example", RATE_LIMITS: "login.ip=1/1s" }), "config");
    expect(unfrozen).toEqual([]);
  });

  it("treats empty strings as unset", () => {
    expect(loadConfig({ PORT: "", DATABASE_URL: "" })).toMatchObject({ port: 8080, database: { kind: "pglite" } });
  });

  it("ignores unrelated variables", () => {
    expect(loadConfig({ PATH: "/usr/bin", HOME: "/root" }).port).toBe(8080);
  });
});

describe("loadConfig: values", () => {
  it("chooses PostgreSQL when DATABASE_URL is set", () => {
    expect(loadConfig({ DATABASE_URL: "postgres://u:p@db:5432/identity", DB_POOL_MAX: "20" }).database).toEqual({
      kind: "postgres",
      url: "postgres://u:p@db:5432/identity",
      poolMax: 20,
    });
    expect(loadConfig({ DATABASE_URL: "postgresql://db/identity" }).database.kind).toBe("postgres");
  });

  it("reads PGlite's DATA_DIR", () => {
    expect(loadConfig({ DATA_DIR: "/var/lib/identity" }).database).toEqual({ kind: "pglite", dataDir: "/var/lib/identity" });
  });

  it.each([
    ["15m", 900_000],
    ["900s", 900_000],
    ["900000", 900_000],
    ["1h", 3_600_000],
    ["60000ms", 60_000],
    [" 30m ", 1_800_000],
  ])("parses the duration %j as %i ms", (value, ms) => {
    expect(loadConfig({ ACCESS_TOKEN_TTL: value }).jwt.accessTokenTtlMs).toBe(ms);
  });

  it("parses day durations", () => {
    const config = loadConfig({ SESSION_IDLE_TTL: "30d", SESSION_ABSOLUTE_TTL: "90d" });
    expect(config.session).toMatchObject({ idleTtlMs: 30 * 86_400_000, absoluteTtlMs: 90 * 86_400_000 });
  });

  it("accepts an idle TTL equal to the absolute TTL", () => {
    expect(loadConfig({ SESSION_IDLE_TTL: "7d", SESSION_ABSOLUTE_TTL: "7d" }).session.idleTtlMs).toBe(7 * 86_400_000);
  });

  it("reads argon2 parameters", () => {
    expect(loadConfig({ ARGON2_MEMORY_KIB: "65536", ARGON2_TIME_COST: "3", ARGON2_PARALLELISM: "4" }).argon2).toEqual({
      memoryKib: 65_536,
      timeCost: 3,
      parallelism: 4,
    });
  });

  it("reads trusted proxies as addresses and CIDR ranges, IPv4 and IPv6", () => {
    expect(loadConfig({ TRUSTED_PROXIES: "10.0.0.0/8, 192.168.1.1 ,fd00::/8,::1" }).trustedProxies).toEqual([
      "10.0.0.0/8",
      "192.168.1.1",
      "fd00::/8",
      "::1",
    ]);
  });

  it.each([
    ["true", true],
    ["1", true],
    ["yes", true],
    ["false", false],
    ["0", false],
    ["no", false],
  ])("reads COOKIE_SECURE=%s as %s", (value, expected) => {
    expect(loadConfig({ COOKIE_SECURE: value }).cookieSecure).toBe(expected);
  });
});

describe("loadConfig: invalid values stop the boot with a ConfigError naming the variable", () => {
  it.each([
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["DATABASE_URL", "mysql://x"],
    ["DATABASE_URL", "not a url"],
    ["DB_POOL_MAX", "0"],
    ["LOG_LEVEL", "verbose"],
    ["ACCESS_TOKEN_TTL", "5y"],
    ["ACCESS_TOKEN_TTL", "15 minutes"],
    ["ACCESS_TOKEN_TTL", "-15m"],
    ["ACCESS_TOKEN_TTL", "1.5h"],
    ["ACCESS_TOKEN_TTL", "10s"],
    ["ACCESS_TOKEN_TTL", "2h"],
    ["SESSION_IDLE_TTL", "soon"],
    ["ARGON2_MEMORY_KIB", "1024"],
    ["ARGON2_TIME_COST", "0"],
    ["ARGON2_PARALLELISM", "many"],
    ["PASSWORD_MIN_LENGTH", "6"],
    ["COOKIE_SECURE", "maybe"],
    ["TRUSTED_PROXIES", "not-an-ip"],
    ["TRUSTED_PROXIES", "10.0.0.0/33"],
    ["TRUSTED_PROXIES", "10.0.0.0/8,garbage"],
    ["TRUSTED_PROXIES", "fd00::/129"],
    ["TRUSTED_PROXIES", "10.0.0.0/abc"],
    ["REDIS_PREFIX", " "],
    ["REDIS_PREFIX", "shop a:"],
    ["REDIS_PREFIX", "shop\ta:"],
    ["REDIS_PREFIX", "{shop}:"],
    ["REDIS_PREFIX", "shop}:"],
    ["REDIS_PREFIX", "bücher:"],
    ["REDIS_PREFIX", "x".repeat(65)],
    ["REDIS_COMMAND_TIMEOUT", "5ms"],
    ["REDIS_COMMAND_TIMEOUT", "1m"],
    ["REDIS_COMMAND_TIMEOUT", "soon"],
  ])("%s=%s", (name, value) => {
    expect(namedVariables(configError({ [name]: value }))).toEqual([name]);
  });

  it("refuses SESSION_IDLE_TTL longer than SESSION_ABSOLUTE_TTL", () => {
    expect(namedVariables(configError({ SESSION_IDLE_TTL: "31d", SESSION_ABSOLUTE_TTL: "30d" }))).toContain("SESSION_IDLE_TTL");
    // The default absolute TTL (90 d) bounds an idle TTL set alone.
    expect(namedVariables(configError({ SESSION_IDLE_TTL: "91d" }))).toContain("SESSION_IDLE_TTL");
  });

  it("names every bad variable at once", () => {
    expect(namedVariables(configError({ PORT: "abc", DATABASE_URL: "mysql://x", ACCESS_TOKEN_TTL: "5y" })).sort()).toEqual(
      ["ACCESS_TOKEN_TTL", "DATABASE_URL", "PORT"],
    );
  });

  it("refuses a CIDR with an empty prefix length instead of reading it as /0 (trust everyone)", () => {
    // "10.0.0.1/" is a typo; Number("") is 0, and a /0 range would trust every
    // client's X-Forwarded-For.
    expect(namedVariables(configError({ TRUSTED_PROXIES: "10.0.0.1/" }))).toEqual(["TRUSTED_PROXIES"]);
  });
});

describe("loadConfig: REDIS_COMMAND_TIMEOUT", () => {
  it("defaults to 100 ms and takes a duration", () => {
    expect(loadConfig({}).redisCommandTimeoutMs).toBe(100);
    expect(loadConfig({ REDIS_COMMAND_TIMEOUT: "2s" }).redisCommandTimeoutMs).toBe(2_000);
    expect(loadConfig({ REDIS_COMMAND_TIMEOUT: "250ms" }).redisCommandTimeoutMs).toBe(250);
  });
});

describe("loadConfig: REDIS_PREFIX", () => {
  it('defaults to "identity:", the names a running fleet and its verifiers already use', () => {
    expect(loadConfig({}).redisPrefix).toBe("identity:");
    // Empty means unset, as for every variable.
    expect(loadConfig({ REDIS_PREFIX: "" }).redisPrefix).toBe("identity:");
  });

  it("takes any printable ASCII without spaces or braces", () => {
    for (const prefix of ["shop-a:", "identity:eu-west-1:", "x", "a|b~c[1]*?:"]) expect(loadConfig({ REDIS_PREFIX: prefix }).redisPrefix).toBe(prefix);
  });
});

describe("loadConfig: roles, session cap and refresh grace", () => {
  const MIN = 60_000;
  const HOUR = 60 * MIN;
  const DAY = 24 * HOUR;

  it("defaults: customers 15m / 30d / 90d, admins 5m / 30m / 12h, 10 sessions, 5 s grace", () => {
    const config = loadConfig({});
    expect(config.lifetimes).toEqual({
      customer: { accessTokenTtlMs: 15 * MIN, idleTtlMs: 30 * DAY, absoluteTtlMs: 90 * DAY },
      admin: { accessTokenTtlMs: 5 * MIN, idleTtlMs: 30 * MIN, absoluteTtlMs: 12 * HOUR },
    });
    expect(config.maxSessionsPerUser).toBe(10);
    expect(config.refreshReuseGraceMs).toBe(5_000);
  });

  it("keeps the customer names: ACCESS_TOKEN_TTL and SESSION_*_TTL are the customer lifetimes", () => {
    const config = loadConfig({ ACCESS_TOKEN_TTL: "10m", SESSION_IDLE_TTL: "7d", SESSION_ABSOLUTE_TTL: "30d" });
    expect(config.lifetimes.customer).toEqual({ accessTokenTtlMs: 10 * MIN, idleTtlMs: 7 * DAY, absoluteTtlMs: 30 * DAY });
  });

  it("reads the admin lifetimes, the cap and the grace", () => {
    const config = loadConfig({
      ADMIN_ACCESS_TOKEN_TTL: "2m",
      ADMIN_SESSION_IDLE_TTL: "15m",
      ADMIN_SESSION_ABSOLUTE_TTL: "8h",
      MAX_SESSIONS_PER_USER: "3",
      REFRESH_REUSE_GRACE: "10s",
    });
    expect(config.lifetimes.admin).toEqual({ accessTokenTtlMs: 2 * MIN, idleTtlMs: 15 * MIN, absoluteTtlMs: 8 * HOUR });
    expect(config.maxSessionsPerUser).toBe(3);
    expect(config.refreshReuseGraceMs).toBe(10_000);
    expect(loadConfig({ REFRESH_REUSE_GRACE: "0" }).refreshReuseGraceMs).toBe(0);
  });

  it("lowers unset admin defaults to the limits above them instead of refusing to boot", () => {
    expect(loadConfig({ ACCESS_TOKEN_TTL: "1m" }).lifetimes.admin.accessTokenTtlMs).toBe(MIN);
    expect(loadConfig({ ADMIN_SESSION_ABSOLUTE_TTL: "20m" }).lifetimes.admin.idleTtlMs).toBe(20 * MIN);
  });

  it.each([
    ["REFRESH_REUSE_GRACE", "11s"],
    ["REFRESH_REUSE_GRACE", "1m"],
    ["REFRESH_REUSE_GRACE", "soon"],
    ["MAX_SESSIONS_PER_USER", "0"],
    ["MAX_SESSIONS_PER_USER", "1001"],
    ["MAX_SESSIONS_PER_USER", "many"],
    ["ADMIN_ACCESS_TOKEN_TTL", "10s"],
    ["ADMIN_ACCESS_TOKEN_TTL", "16m"],
    ["ADMIN_SESSION_IDLE_TTL", "30s"],
    ["ADMIN_SESSION_IDLE_TTL", "13h"],
    ["ADMIN_SESSION_ABSOLUTE_TTL", "31d"],
    ["ADMIN_SESSION_ABSOLUTE_TTL", "0"],
  ])("refuses %s=%s", (name, value) => {
    expect(namedVariables(configError({ [name]: value }))).toEqual([name]);
  });
});

describe("loadConfig: connection deadlines and caps", () => {
  it("defaults: 15 s for the request head, 30 s for the whole request, 5 s keep-alive, 256 connections per source", () => {
    expect(loadConfig({}).connections).toEqual({
      headersTimeoutMs: 15_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 5_000,
      maxConnections: 20_000,
      maxConnectionsPerSource: 256,
    });
  });

  it("takes durations and 0 (no per-source cap)", () => {
    const c = loadConfig({ HTTP_HEADERS_TIMEOUT: "5s", HTTP_REQUEST_TIMEOUT: "1m", MAX_CONNECTIONS_PER_SOURCE: "0" }).connections;
    expect(c.headersTimeoutMs).toBe(5_000);
    expect(c.requestTimeoutMs).toBe(60_000);
    expect(c.maxConnectionsPerSource).toBe(0);
  });

  it("refuses a head deadline longer than the request deadline, or under a second", () => {
    expect(namedVariables(configError({ HTTP_HEADERS_TIMEOUT: "40s" }))).toEqual(["HTTP_HEADERS_TIMEOUT"]);
    expect(namedVariables(configError({ HTTP_HEADERS_TIMEOUT: "500ms" }))).toEqual(["HTTP_HEADERS_TIMEOUT"]);
    expect(namedVariables(configError({ HTTP_KEEPALIVE_TIMEOUT: "0" }))).toContain("HTTP_KEEPALIVE_TIMEOUT");
  });
});

describe("key-encryption keys", () => {
  const K1 = `k1:${Buffer.alloc(32, 1).toString("base64")}`;
  const K2 = `k2:${Buffer.alloc(32, 2).toString("base64url")}`;
  const PG = "postgres://db/identity";

  it("reads KEY_ENCRYPTION_KEYS, the first key sealing", () => {
    const config = loadConfig({ KEY_ENCRYPTION_KEYS: `${K2}, ${K1}` });
    expect(config.keyEncryption.variable).toBe("KEY_ENCRYPTION_KEYS");
    const source = keyEncryptionSource(config);
    expect(source.kind === "configured" && source.keys.map((k) => [k.id, Buffer.from(k.key).toString("hex")])).toEqual([
      ["k2", "02".repeat(32)],
      ["k1", "01".repeat(32)],
    ]);
  });

  it("still reads the deprecated MFA_ENCRYPTION_KEYS, and says which variable the keys came from", () => {
    expect(loadConfig({ MFA_ENCRYPTION_KEYS: K1 }).keyEncryption).toEqual({ keys: K1, variable: "MFA_ENCRYPTION_KEYS" });
    expect(loadConfig({ KEY_ENCRYPTION_KEYS: K1, MFA_ENCRYPTION_KEYS: K1 }).keyEncryption).toEqual({ keys: K1, variable: "KEY_ENCRYPTION_KEYS" });
  });

  it("refuses both names with different values", () => {
    const err = configError({ KEY_ENCRYPTION_KEYS: K1, MFA_ENCRYPTION_KEYS: K2 });
    expect(namedVariables(err)).toEqual(["MFA_ENCRYPTION_KEYS"]);
    expect(err.message).not.toContain(K1.slice(3));
    expect(err.message).not.toContain(K2.slice(3));
  });

  it.each([
    ["KEY_ENCRYPTION_KEYS", "k1"],
    ["KEY_ENCRYPTION_KEYS", `k1:${Buffer.alloc(16).toString("base64")}`],
    ["KEY_ENCRYPTION_KEYS", `bad id!:${Buffer.alloc(32).toString("base64")}`],
    ["KEY_ENCRYPTION_KEYS", `${K1},${K1}`],
    ["MFA_ENCRYPTION_KEYS", "k1:not base64!"],
  ])("%s=%s is refused, naming the variable and not the key", (name, value) => {
    const err = configError({ [name]: value });
    expect(namedVariables(err)).toEqual([name]);
    expect(err.message).not.toContain(Buffer.alloc(32).toString("base64"));
  });

  it("PostgreSQL without KEY_ENCRYPTION_KEYS refuses to boot, saying how to make one", () => {
    let err: unknown;
    try {
      keyEncryptionSource(loadConfig({ DATABASE_URL: PG }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(namedVariables(err as ConfigError)).toEqual(["KEY_ENCRYPTION_KEYS"]);
    expect((err as ConfigError).message).toContain("crypto.randomBytes(32).toString('base64')");
    // loadConfig itself accepts it: operator commands that never open sealed data (migrate, set-role) run without the key.
    expect(loadConfig({ DATABASE_URL: PG }).database.kind).toBe("postgres");
    expect(keyEncryptionSource(loadConfig({ DATABASE_URL: PG, KEY_ENCRYPTION_KEYS: K1 })).kind).toBe("configured");
  });

  it("embedded mode without keys uses a key file beside the data directory, never inside it; memory:// an ephemeral key", () => {
    const source = keyEncryptionSource(loadConfig({ DATA_DIR: "./var/data" }));
    expect(source).toEqual({ kind: "file", path: `${resolve("./var/data")}.kek` });
    expect(source.kind === "file" && source.path.startsWith(`${resolve("./var/data")}/`)).toBe(false);
    expect(keyEncryptionSource(loadConfig({ DATA_DIR: "memory://" }))).toEqual({ kind: "ephemeral" });
    expect(keyEncryptionSource(loadConfig({ KEY_ENCRYPTION_KEYS: K1 })).kind).toBe("configured");
  });
});
