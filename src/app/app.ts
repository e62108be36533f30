import type { ServerResponse } from "node:http";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { Code, createServiceImplSpec, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createContextValues } from "@connectrpc/connect";
import { AdminService as AdminServiceDesc, file_identity_v1_admin_service } from "../../gen/identity/v1/admin_service_pb.js";
import { http_success_status } from "../../gen/identity/v1/annotations_pb.js";
import {
  file_identity_v1_identity_service,
  IdentityService as IdentityServiceDesc,
} from "../../gen/identity/v1/identity_service_pb.js";
import { createSiteverifyCaptcha } from "../abuse/captcha.js";
import { createMemoryCounters, createRedisCounters, type WindowCounters } from "../abuse/counters.js";
import { createDisposableEmailPolicy } from "../abuse/disposable-email.js";
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from "../abuse/rate-limiter.js";
import { createAdminService } from "../admin/admin-service.js";
import { createLoginDefence, keyTag } from "../abuse/login-defence.js";
import { createMfaService } from "../mfa/mfa-service.js";
import { createRiskAssessor } from "../risk/assessor.js";
import { createSecretBox, type SecretBox } from "../keys/secret-box.js";
import { createTotp } from "../mfa/totp.js";
import { defaultRiskThresholds } from "../risk/engine.js";
import { createGeoIpLocator, type GeoLocator } from "../risk/geo.js";
import { createLoginHistoryStore } from "../storage/login-history-store.js";
import { createMfaStore, pruneExpiredChallenges } from "../storage/mfa-store.js";
import { createWebhookNotifier, nullNotifier, type Notifier } from "../notify/webhook.js";
import { adminHandlers } from "../transport/rpc/admin-handlers.js";
import { rateLimitClasses, rateLimitInterceptors } from "../transport/rpc/rate-limit.js";
import { createLoginAttemptStore, pruneLoginThrottle } from "../storage/throttle-store.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { keyEncryptionSource, longestAccessTokenTtlMs, type Config } from "../config/config.js";
import { wireIdentity } from "./identity.js";
import { createMfaChallenges } from "../mfa/challenge.js";
import type { IdentityService } from "../transport/rpc/identity-handlers.js";
import { createPasswordPolicy } from "../accounts/password-policy.js";
import { systemClock, type Clock } from "../shared/clock.js";
import { type AuditEvent } from "../audit/ports.js";
import { type PasswordHasher } from "../hashing/ports.js";
import { createRestGateway, writeError } from "../transport/gateway/gateway.js";
import { listenGrpcJs, type GrpcJsServer } from "../transport/grpc-js.js";
import { createArgon2Hasher } from "../hashing/argon2.js";
import { loadDummyHashes } from "../hashing/dummy-hashes.js";
import { createBrowserCredentials } from "../transport/http/browser-credentials.js";
import { createCors } from "../transport/http/cors.js";
import type { Logger } from "../shared/logger.js";
import { loadCommonPasswords } from "../accounts/password-blocklist.js";
import { buildAccessPolicies } from "../transport/rpc/access-policy.js";
import { authInterceptor } from "../transport/rpc/auth.js";
import { authorizeInterceptor } from "../transport/rpc/authorize.js";
import { createClientInfoResolver, createProxyMatcher } from "../transport/rpc/client-info.js";
import { createDirectTransport, createUnaryInvoker } from "../transport/rpc/direct.js";
import { kClient, REST_PROTOCOL } from "../transport/rpc/context.js";
import { edgeErrorGate } from "../transport/rpc/edge-errors.js";
import { connectErrorOf, ERROR_DOMAIN, errorInterceptor } from "../transport/rpc/errors.js";
import { createHealth } from "../transport/rpc/health.js";
import { identityHandlers } from "../transport/rpc/identity-handlers.js";
import { observeInterceptor } from "../transport/rpc/observe.js";
import { registerReflection } from "../transport/rpc/reflection.js";
import { validationInterceptor } from "../transport/rpc/validate.js";
import { listen, type AnyRequest, type AnyResponse, type ListeningServer, type RequestHandler } from "../transport/one-port.js";
import { openDatabase, isUnavailableError, type Database } from "../storage/db.js";
import { openKeyEncryptionKeys } from "../config/key-encryption-keys.js";
import { passwordHashParamHeads } from "../storage/credential-params.js";
import { createKeyStore } from "../storage/key-store.js";
import { holdsSealedData } from "../storage/sealed.js";
import { createServerSecrets } from "../storage/server-secrets.js";
import { createAuditLog } from "../storage/audit-store.js";
import { createSessionStore } from "../storage/session-store.js";
import { createUserStore } from "../storage/user-store.js";
import { combineListeners, createRedisRevocationFeed, type RedisRevocationFeed } from "../sessions/redis-revocation-feed.js";
import { createSessionCache } from "../sessions/session-cache.js";
import { createJwtService, type JwtService } from "../tokens/jwt-service.js";

// The composition root: the only module that knows every part.

export interface AppOverrides {
  clock?: Clock;
  /** IP geolocation for the risk engine (tests use a fixed table). */
  geo?: GeoLocator;
  hasher?: PasswordHasher;
  database?: Database;
}

export interface App {
  handler: RequestHandler;
  /** The Redis revocation feed, when REDIS_URL is set. */
  feed: RedisRevocationFeed | undefined;
  /** Serves every protocol on the main port, with the configured connection deadlines and caps. */
  listen(opts: { port: number; host: string }): Promise<ListeningServer>;
  /** Serves the unary RPCs through @grpc/grpc-js on a port of their own (internal callers). */
  listenGrpcJs(opts: { port: number; host: string }): Promise<GrpcJsServer>;
  identity: IdentityService;
  database: Database;
  tokens: JwtService;
  /** Marks the service NOT_SERVING (health) before a drain. */
  beginShutdown(): void;
  dispose(): Promise<void>;
}

export async function createApp(config: Config, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
  const clock = overrides.clock ?? systemClock;
  // Who may call each RPC, from the access policies in the proto; a served
  // method without one stops the boot here, before anything is opened.
  const policies = buildAccessPolicies([IdentityServiceDesc, AdminServiceDesc], rateLimitClasses);
  // Before anything is opened: PostgreSQL without KEY_ENCRYPTION_KEYS is refused.
  const kekSource = keyEncryptionSource(config);
  const database = overrides.database ?? (await openDatabase(config.database, { migrate: config.migrateOnStart }));
  const { db } = database;
  const hasher =
    overrides.hasher ??
    createArgon2Hasher(config.argon2, {
      concurrency: config.hashing.concurrency,
      maxQueue: config.hashing.maxQueue,
      queueTimeoutMs: config.hashing.queueTimeoutMs,
    });
  let tokens: JwtService;
  let hashKey: Uint8Array;
  let recoveryKey: Uint8Array;
  let totpBox: SecretBox;
  try {
    if (config.keyEncryption.variable === "MFA_ENCRYPTION_KEYS") {
      logger.warn("MFA_ENCRYPTION_KEYS is deprecated: rename it KEY_ENCRYPTION_KEYS (it now also seals the signing keys and server secrets)");
    }
    const keks = await openKeyEncryptionKeys(kekSource, { holdsSealedData: () => holdsSealedData(db), warn: (message) => logger.warn(message) });
    // One set of key-encryption keys seals everything secret at rest.
    const box = createSecretBox(keks);
    const secrets = createServerSecrets(db, box);
    // Sealed too: with the database and Redis alone, password guesses cannot be tested against the spray fingerprints.
    hashKey = await secrets.shared("abuse_hmac_key");
    recoveryKey = await secrets.shared("recovery_code_key");
    // Before KEY_ENCRYPTION_KEYS, a service without MFA_ENCRYPTION_KEYS sealed
    // TOTP secrets with this key (id "db"). It only opens now: each such
    // secret is re-sealed with the current key at its next use.
    const legacyTotpKey = await secrets.existing("mfa_secret_box_key");
    const idTaken = keks.some((k) => k.id === LEGACY_TOTP_KEY_ID);
    if (legacyTotpKey && idTaken) logger.warn(`a key-encryption key has the id "${LEGACY_TOTP_KEY_ID}" of the former TOTP key: TOTP secrets sealed with that one will not open`);
    totpBox = legacyTotpKey && !idTaken ? createSecretBox([...keks, { id: LEGACY_TOTP_KEY_ID, key: legacyTotpKey }]) : box;
    // Last in the block: init() starts the key reload timer, and nothing after it can fail.
    tokens = createJwtService({
      keys: createKeyStore(db, box),
      issuer: config.jwt.issuer,
      audience: config.jwt.audience,
      accessTokenTtlMs: config.jwt.accessTokenTtlMs,
      maxAccessTokenTtlMs: longestAccessTokenTtlMs(config),
      publishLeadMs: config.signingKeys.publishLeadMs,
      onRefreshError: (err) => logger.warn({ err }, "signing key reload failed"),
      now: () => clock.now(),
    });
    await tokens.init();
  } catch (err) {
    if (!overrides.database) await database.close();
    throw err;
  }

  const sessionCache = createSessionCache(createSessionStore(db), { ttlMs: config.session.cacheTtlMs, max: 100_000 });
  const feed = config.redisUrl
    ? createRedisRevocationFeed({
        url: config.redisUrl,
        prefix: config.redisPrefix,
        logger,
        onRevoked: (ids) => sessionCache.sessionsRevoked(ids.map((id) => ({ id, userId: "" }))),
        onKeysChanged: () => {
          tokens.reload().catch((err: unknown) => logger.warn({ err }, "signing key reload failed"));
        },
        // Every token of a session revoked now has expired by then (plus skew).
        until: () => Math.ceil((clock.now().getTime() + config.jwt.accessTokenTtlMs) / 1000) + 5,
      })
    : undefined;
  // Abuse defence: limits and detectors in Redis (per instance without it),
  // attempt counts in PostgreSQL.
  const modeLogger = (what: string) => (mode: "redis" | "memory", err?: unknown) => {
    if (mode === "memory") logger.warn({ err }, `${what}: Redis unreachable; limits are per instance until it is back`);
    else logger.info(`${what}: Redis is back; limits are shared again`);
  };
  const limiter: RateLimiter = config.redisUrl
    ? createRedisRateLimiter({
        url: config.redisUrl,
        prefix: `${config.redisPrefix}rl:`,
        fallback: createMemoryRateLimiter(),
        onModeChange: modeLogger("rate limiter"),
      })
    : createMemoryRateLimiter();
  const counters: WindowCounters = config.redisUrl
    ? createRedisCounters({
        url: config.redisUrl,
        prefix: `${config.redisPrefix}ctr:`,
        fallback: createMemoryCounters(),
        onModeChange: modeLogger("abuse detectors"),
      })
    : createMemoryCounters();
  const notifier: Notifier = config.webhook
    ? createWebhookNotifier({ url: config.webhook.url, secret: config.webhook.secret, logger })
    : nullNotifier;
  const audit = createAuditLog(db);
  const record = (event: Omit<AuditEvent, "at">) => audit.record({ ...event, at: clock.now() });
  const users = createUserStore(db);
  const defence = createLoginDefence({
    attempts: createLoginAttemptStore(db),
    counters,
    flags: limiter,
    alerts: notifier,
    record,
    clock,
    hashKey,
    throttle: config.bruteForce,
    spray: config.spray,
    captcha: config.captcha && {
      verifier: createSiteverifyCaptcha({
        provider: config.captcha.provider,
        secret: config.captcha.secret,
        verifyUrl: config.captcha.verifyUrl,
        expectedHostnames: config.captcha.hostnames.length > 0 ? config.captcha.hostnames : undefined,
      }),
      onRegister: config.captcha.onRegister,
      onRiskyLogin: config.captcha.onRiskyLogin,
      failOpen: config.captcha.failOpen,
    },
    onError: (err) => logger.warn({ err }, "abuse detection failed"),
  });
  const mfaStore = createMfaStore(db);
  const mfa = createMfaService({
    store: mfaStore,
    box: totpBox,
    totp: createTotp(),
    clock,
    recoveryKey,
    issuer: config.mfa.issuer,
    record,
    enrolmentTtlMs: config.mfa.enrolmentTtlMs,
  });
  const risk = createRiskAssessor({
    history: createLoginHistoryStore(db),
    geo: overrides.geo ?? (config.risk.geoip ? warmGeoIp(logger) : { locate: () => undefined }),
    thresholds: {
      ...defaultRiskThresholds,
      requireMfaAt: config.risk.requireMfaAt,
      requireCaptchaAt: config.risk.requireCaptchaAt,
      denyAt: config.risk.denyAt,
      maxTravelSpeedKmh: config.risk.maxTravelKmh,
    },
    hashKey,
    sourceFlagged: (ip) => defence.sourceFlagged(ip),
  });
  const dummyHashes = await loadDummyHashes({
    key: hashKey,
    current: await hasher.hash(crypto.randomUUID()),
    inUse: () => passwordHashParamHeads(db),
    onUnusable: (count) => logger.warn({ count }, "stored password hashes with parameters no dummy hash can imitate"),
  });
  const identity = wireIdentity({
    mfa,
    challenges: createMfaChallenges({ store: mfaStore, clock, ttlMs: config.mfa.challengeTtlMs }),
    risk,
    recentAuthMaxAgeMs: config.mfa.recentAuthMaxAgeMs,
    trustedDeviceTtlMs: config.mfa.trustedDeviceTtlMs,
    users,
    sessions: sessionCache.store,
    revocations: feed ? combineListeners(sessionCache, feed) : sessionCache,
    audit,
    hasher,
    defence,
    alerts: notifier,
    emailDomains: config.emailDomains.disposableCheck
      ? createDisposableEmailPolicy({ allow: config.emailDomains.allow, deny: config.emailDomains.deny })
      : undefined,
    tokens,
    policy: createPasswordPolicy({ ...config.password, blocklist: loadCommonPasswords() }),
    clock,
    // Verifying an unknown e-mail's "password" against one of these costs
    // the same as a real verification at one of the costs in use.
    dummyHashFor: (email) => dummyHashes.dummies.forAddress(email),
    lifetimes: config.lifetimes,
    maxSessionsPerUser: config.maxSessionsPerUser,
    refreshReuseGraceMs: config.refreshReuseGraceMs,
    onRehashError: (err) => logger.warn({ err }, "password re-hash failed"),
  });

  const admin = createAdminService({ users, audit, defence, clock });

  // Housekeeping: forgotten failure counts and spent MFA challenges, and the
  // dummy hashes of the parameter sets still in use. Every instance may run
  // it; the deletes are idempotent.
  const prune = () => {
    const now = clock.now();
    dummyHashes.refresh().catch((err: unknown) => logger.warn({ err }, "refreshing the dummy hashes failed"));
    Promise.all([pruneLoginThrottle(db, now, config.bruteForce), pruneExpiredChallenges(db, now)]).then(
      ([throttles, challenges]) => {
        if (throttles + challenges > 0) logger.info({ throttles, challenges }, "pruned expired abuse-defence rows");
      },
      (err: unknown) => logger.warn({ err }, "pruning expired abuse-defence rows failed"),
    );
  };
  const pruneTimer = setInterval(prune, PRUNE_INTERVAL_MS);
  pruneTimer.unref();

  const health = createHealth();
  const limits = config.rateLimits
    ? rateLimitInterceptors({
        limiter,
        table: config.rateLimits,
        policies,
        accountKey: (email) => keyTag(defence.accountKey(email)),
        onRefused: (info) => logger.info(info, "rate limit refused a call"),
      })
    : undefined;
  // Outermost first: observe → map errors → limit → authenticate → limit per caller → validate → authorise.
  const interceptors: Interceptor[] = [
    observeInterceptor(logger),
    errorInterceptor(logger, isUnavailableError),
    ...(limits ? [limits.beforeAuth] : []),
    authInterceptor(identity, policies),
    ...(limits ? [limits.afterAuth] : []),
    validationInterceptor(config.maxRequestBytes),
    authorizeInterceptor({
      policies,
      roleOf: async (userId) => (await users.findCredentialByUserId(userId))?.role,
      recentAuthMaxAgeMs: config.mfa.recentAuthMaxAgeMs,
    }),
  ];
  const identityImpl = identityHandlers(identity, clock);
  const adminImpl = adminHandlers(admin);
  const invoke = createUnaryInvoker(
    [
      createServiceImplSpec<typeof IdentityServiceDesc>(IdentityServiceDesc, identityImpl),
      createServiceImplSpec<typeof AdminServiceDesc>(AdminServiceDesc, adminImpl),
      createServiceImplSpec<typeof Health>(Health, health.impl),
    ],
    interceptors,
  );
  const routes = (router: ConnectRouter) => {
    router.service(IdentityServiceDesc, identityImpl);
    router.service(AdminServiceDesc, adminImpl);
    health.register(router);
    registerReflection(
      router,
      [file_identity_v1_identity_service, file_identity_v1_admin_service],
      [IdentityServiceDesc.typeName, AdminServiceDesc.typeName],
    );
  };

  const clientInfo = createClientInfoResolver(config.trustedProxies);
  const contextValues = (req: AnyRequest) => createContextValues().set(kClient, clientInfo(req));

  const browser = createBrowserCredentials({
    cookieSecure: config.cookieSecure,
    cookieHostPrefix: config.cookieHostPrefix,
    corsOrigins: config.corsOrigins,
    csrfAllowSameSite: config.csrfAllowSameSite,
    publicMethods: policies.publicMethods,
    trustedDeviceTtlMs: config.mfa.trustedDeviceTtlMs,
    now: () => clock.now(),
    onCsrfRejected: (req, error) =>
      logger.info(
        { path: req.url, origin: req.headers.origin, secFetchSite: req.headers["sec-fetch-site"], reason: error.rawMessage },
        "csrf check refused a request",
      ),
  });
  const cors = createCors({ origins: config.corsOrigins });

  const gateway = createRestGateway({
    services: [IdentityServiceDesc, AdminServiceDesc],
    errorDomain: ERROR_DOMAIN,
    successStatus: (method) => (hasOption(method, http_success_status) ? getOption(method, http_success_status) : undefined),
    transport: createDirectTransport(invoke, REST_PROTOCOL),
    maxBodyBytes: config.maxRequestBytes,
    forwardHeaders: ["retry-after", "x-request-id"],
    onError({ method, error }) {
      if (!method) logger.info({ code: error.code, reason: error.rawMessage }, "rest request refused");
    },
    requestHeaders(req) {
      const headers = new Headers();
      const auth = req.headers.authorization;
      const fromCookie = browser.accessToken(req);
      if (auth) headers.set("authorization", auth);
      // Whatever the cookie holds, the auth interceptor judges it.
      else if (fromCookie) headers.set("authorization", /^[\x21-\x7e]+$/.test(fromCookie) ? `Bearer ${fromCookie}` : "Bearer -");
      const rid = req.headers["x-request-id"];
      if (typeof rid === "string") headers.set("x-request-id", rid);
      return headers;
    },
    contextValues,
    prepareCall: browser.prepareCall,
    onSuccess: browser.onSuccess,
  });

  const connect = connectNodeAdapter({
    routes,
    interceptors,
    // Refused before a byte of it is decoded; the edge gate adds the reason.
    readMaxBytes: config.maxRequestBytes,
    // Unknown fields are skipped, not kept (millions of empty ones would
    // otherwise each become an object), and nesting is bounded.
    binaryOptions: { readUnknownFields: false, recursionLimit: 32 },
    jsonOptions: { ignoreUnknownFields: false },
    requestGate: edgeErrorGate({
      maxRequestBytes: config.maxRequestBytes,
      onRefused: (info) => logger.info(info, "request refused before its handler"),
    }),
    contextValues,
    fallback(req, res) {
      // Errors in the gateway's error JSON, with a reason like every other.
      gateway(req as never, res as never).then(
        (handled) => {
          if (!handled) writeError(req, res as ServerResponse, connectErrorOf(Code.NotFound, "ROUTE_NOT_FOUND", "no such route"));
        },
        (err: unknown) => {
          logger.error({ err }, "gateway failed");
          if (!res.headersSent) writeError(req, res as ServerResponse, connectErrorOf(Code.Internal, "INTERNAL_ERROR", "internal error"));
          else res.end();
        },
      );
    },
  });

  const handler: RequestHandler = (req, res) => {
    if (cors.handle(req, res)) return; // a preflight, answered
    const url = req.url ?? "/";
    if (req.method === "GET" || req.method === "HEAD") {
      if (url === "/healthz") return json(res, 200, { status: "ok" });
      if (url === "/readyz") {
        // Redis is not a readiness condition: without it the service still
        // answers correctly (revocations reach other instances more slowly).
        const redis = feed ? feed.state() : "not_configured";
        database.ping().then(
          () => json(res, 200, { status: "ready", redis }),
          () => json(res, 503, { status: "unavailable", reason: "DEPENDENCY_UNAVAILABLE" }),
        );
        return;
      }
      if (url === "/.well-known/jwks.json") {
        return json(res, 200, tokens.jwks(), { "cache-control": "public, max-age=300" });
      }
    }
    // A body declared too large is refused unread (edge gate); closing the
    // connection spares reading and discarding the rest of it.
    if (req.httpVersionMajor === 1 && Number(req.headers["content-length"]) > config.maxRequestBytes) {
      res.setHeader("connection", "close");
    }
    connect(req as never, res as never);
  };

  return {
    handler,
    feed,
    listen: ({ port, host }) =>
      listen(handler, {
        port,
        host,
        limits: config.connections,
        exemptFromSourceCap: createProxyMatcher(config.trustedProxies),
        onSourceCapped: (source) => logger.warn({ source }, "connection refused: too many open connections from one source"),
      }),
    listenGrpcJs: ({ port, host }) =>
      listenGrpcJs({
        port,
        host,
        services: [IdentityServiceDesc, AdminServiceDesc, Health],
        invoke,
        maxReceiveBytes: config.maxRequestBytes,
        transportMaxBytes: transportMaxBytes(config),
        contextValues: ({ remoteAddress, headers }) =>
          createContextValues().set(kClient, clientInfo({ headers, socket: { remoteAddress } })),
      }),
    identity,
    database,
    tokens,
    beginShutdown: () => health.shutdown(),
    dispose: async () => {
      health.shutdown();
      clearInterval(pruneTimer);
      tokens.close();
      await Promise.all([feed?.close(), limiter.close(), counters.close(), notifier.close()]);
      if (!overrides.database) await database.close();
    },
  };
}

const PRUNE_INTERVAL_MS = 3_600_000;
const LEGACY_TOTP_KEY_ID = "db";

// geoip-lite reads ~110 MB synchronously on first use: pay that at boot,
// not inside the first login from a public address.
function warmGeoIp(logger: Logger): GeoLocator {
  const geo = createGeoIpLocator();
  const started = performance.now();
  geo.locate("8.8.8.8");
  logger.info({ ms: Math.round(performance.now() - started) }, "GeoIP data loaded");
  return geo;
}

function transportMaxBytes(config: Config): number {
  return Math.max(4 * 1_048_576, config.maxRequestBytes);
}

function json(res: AnyResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  const r = res as ServerResponse;
  r.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  r.end(payload);
}
