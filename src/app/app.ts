import type { Config } from "../config/config.js";
import { createArgon2Hasher } from "../hashing/argon2.js";
import type { PasswordHasher } from "../hashing/ports.js";
import { createWebhookNotifier, nullNotifier, type Notifier } from "../notify/webhook.js";
import type { GeoLocator } from "../risk/geo.js";
import type { RedisRevocationFeed } from "../sessions/redis-revocation-feed.js";
import { systemClock, type Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { createAuditLog } from "../storage/audit-store.js";
import { openDatabase, type Database } from "../storage/db.js";
import { createSessionStore } from "../storage/session-store.js";
import { createUserStore } from "../storage/user-store.js";
import type { JwtService } from "../tokens/jwt-service.js";
import type { GrpcJsServer } from "../transport/grpc-js.js";
import type { ListeningServer, RequestHandler } from "../transport/one-port.js";
import { createClientInfoResolver } from "../transport/rpc/client-info.js";
import type { IdentityService } from "../transport/rpc/identity-handlers.js";
import { buildFeatures } from "./features.js";
import { joinFleet, type Fleet } from "./fleet.js";
import { startHousekeeping } from "./housekeeping.js";
import { buildHttpHandler } from "./http.js";
import { listeners } from "./listeners.js";
import { openMailChannel, type MailChannel } from "./mail.js";
import { buildRpc, loadAccessPolicies } from "./rpc.js";
import { checkKeySource, openSecrets, type OpenedSecrets } from "./secrets.js";

// The composition root: the only module that knows every part. Each area is
// wired in its own module; this one orders them and owns their lifetimes.

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
  /** The e-mail channel (tests drive its dispatcher). */
  mail: MailChannel;
  database: Database;
  tokens: JwtService;
  /** Marks the service NOT_SERVING (health) before a drain. */
  beginShutdown(): void;
  dispose(): Promise<void>;
}

export async function createApp(config: Config, logger: Logger, overrides: AppOverrides = {}): Promise<App> {
  const clock = overrides.clock ?? systemClock;
  // Refused before anything is opened: a served RPC without an access
  // policy, and PostgreSQL without KEY_ENCRYPTION_KEYS.
  const policies = loadAccessPolicies();
  checkKeySource(config);
  const database = overrides.database ?? (await openDatabase(config.database, { migrate: config.migrateOnStart }));
  const { db } = database;
  let secrets: OpenedSecrets;
  try {
    secrets = await openSecrets(config, db, { logger, clock });
  } catch (err) {
    if (!overrides.database) await database.close();
    throw err;
  }
  const hasher =
    overrides.hasher ??
    createArgon2Hasher(config.argon2, {
      concurrency: config.hashing.concurrency,
      maxQueue: config.hashing.maxQueue,
      queueTimeoutMs: config.hashing.queueTimeoutMs,
    });
  const fleet: Fleet = joinFleet(config, { sessions: createSessionStore(db), tokens: secrets.tokens, logger, clock });
  const notifier: Notifier = config.webhook
    ? createWebhookNotifier({ url: config.webhook.url, secret: config.webhook.secret, logger })
    : nullNotifier;
  const users = createUserStore(db);
  const audit = createAuditLog(db);
  const mail = openMailChannel(config, { db, mailKey: secrets.mailKey, clock, logger, record: (event) => audit.record({ ...event, at: clock.now() }) });
  const features = await buildFeatures(config, {
    db,
    users,
    audit,
    hasher,
    secrets,
    fleet,
    notifier,
    mail,
    clock,
    logger,
    geo: overrides.geo,
  });
  const housekeeping = startHousekeeping(config, { db, clock, logger, refreshDummyHashes: features.refreshDummyHashes, pruneMail: (now) => mail.prune(now) });

  const rpc = buildRpc(config, {
    policies,
    features,
    limiter: fleet.limiter,
    roleOf: async (userId) => (await users.findCredentialByUserId(userId))?.role,
    clock,
    logger,
  });
  const clientInfo = createClientInfoResolver(config.trustedProxies);
  const handler = buildHttpHandler(config, {
    rpc,
    policies,
    clientInfo,
    probes: {
      // Redis is not a readiness condition: without it the service still
      // answers correctly (revocations reach other instances more slowly).
      ready: async () => {
        await database.ping();
        return { redis: fleet.feed ? fleet.feed.state() : "not_configured" };
      },
      jwks: () => secrets.tokens.jwks(),
    },
    clock,
    logger,
  });

  return {
    handler,
    feed: fleet.feed,
    ...listeners(config, { handler, invoke: rpc.invoke, clientInfo, logger }),
    identity: features.identity,
    mail,
    database,
    tokens: secrets.tokens,
    beginShutdown: () => rpc.health.shutdown(),
    dispose: async () => {
      rpc.health.shutdown();
      housekeeping.stop();
      secrets.tokens.close();
      await mail.close();
      await Promise.all([fleet.close(), notifier.close()]);
      if (!overrides.database) await database.close();
    },
  };
}
