import { createSiteverifyCaptcha } from "../abuse/captcha.js";
import { createDisposableEmailPolicy } from "../abuse/disposable-email.js";
import { createLoginDefence, type LoginDefence } from "../abuse/login-defence.js";
import type { WindowCounters } from "../abuse/ports.js";
import type { RateLimiter } from "../abuse/rate-limiter.js";
import { loadCommonPasswords } from "../accounts/password-blocklist.js";
import { createPasswordPolicy } from "../accounts/password-policy.js";
import type { UserStore } from "../accounts/ports.js";
import { createAdminService, type AdminService } from "../admin/admin-service.js";
import type { AuditEvent, AuditLog } from "../audit/ports.js";
import type { Config } from "../config/config.js";
import { loadDummyHashes } from "../hashing/dummy-hashes.js";
import type { PasswordHasher } from "../hashing/ports.js";
import { createMfaChallenges } from "../mfa/challenge.js";
import { createMfaService } from "../mfa/mfa-service.js";
import { createTotp } from "../mfa/totp.js";
import type { Notifier } from "../notify/webhook.js";
import { createRiskAssessor } from "../risk/assessor.js";
import { defaultRiskThresholds } from "../risk/engine.js";
import { createGeoIpLocator, type GeoLocator } from "../risk/geo.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { passwordHashParamHeads } from "../storage/credential-params.js";
import type { Db } from "../storage/db.js";
import { createLoginHistoryStore } from "../storage/login-history-store.js";
import { createMfaStore } from "../storage/mfa-store.js";
import { createLoginAttemptStore } from "../storage/throttle-store.js";
import type { IdentityService } from "../transport/rpc/identity-handlers.js";
import type { EmailFlows } from "../transport/rpc/email-handlers.js";
import { combineAlertSinks } from "../notify/mail-notices.js";
import type { AlertSink } from "../notify/ports.js";
import type { MailChannel } from "./mail.js";
import type { Fleet } from "./fleet.js";
import { wireIdentity } from "./identity.js";
import type { OpenedSecrets } from "./secrets.js";

// The features, each built from configuration and its adapters: abuse
// defence, second factors, risk, the identity use cases, administration.

export interface Features {
  identity: IdentityService;
  email: EmailFlows;
  admin: AdminService;
  defence: LoginDefence;
  /** Re-reads which argon2 parameter sets stored hashes use (housekeeping). */
  refreshDummyHashes(): Promise<void>;
}

export async function buildFeatures(
  config: Config,
  deps: {
    db: Db;
    users: UserStore;
    audit: AuditLog;
    hasher: PasswordHasher;
    secrets: OpenedSecrets;
    fleet: Fleet;
    notifier: Notifier;
    mail: MailChannel;
    clock: Clock;
    logger: Logger;
    /** IP geolocation (tests use a fixed table); default: offline GeoIP when GEOIP is on. */
    geo?: GeoLocator | undefined;
  },
): Promise<Features> {
  const { db, users, audit, hasher, secrets, fleet, clock, logger, mail } = deps;
  const record = (event: Omit<AuditEvent, "at">) => audit.record({ ...event, at: clock.now() });
  // Security alerts go to the webhook and, when they concern a user, to the user by mail.
  const alerts = combineAlertSinks(deps.notifier, mail.notices);
  const defence = createDefence(config, { db, counters: fleet.counters, flags: fleet.limiter, alerts, record, clock, logger, hashKey: secrets.hashKey });
  const mfaStore = createMfaStore(db);
  const mfa = createMfaService({
    store: mfaStore,
    box: secrets.totpBox,
    totp: createTotp(),
    clock,
    recoveryKey: secrets.recoveryKey,
    issuer: config.mfa.issuer,
    record,
    enrolmentTtlMs: config.mfa.enrolmentTtlMs,
  });
  const risk = createRiskAssessor({
    history: createLoginHistoryStore(db),
    geo: deps.geo ?? (config.risk.geoip ? warmGeoIp(logger) : { locate: () => undefined }),
    thresholds: {
      ...defaultRiskThresholds,
      requireMfaAt: config.risk.requireMfaAt,
      requireCaptchaAt: config.risk.requireCaptchaAt,
      denyAt: config.risk.denyAt,
      maxTravelSpeedKmh: config.risk.maxTravelKmh,
    },
    hashKey: secrets.hashKey,
    sourceFlagged: (ip) => defence.sourceFlagged(ip),
  });
  const dummyHashes = await loadDummyHashes({
    key: secrets.hashKey,
    current: await hasher.hash(crypto.randomUUID()),
    inUse: () => passwordHashParamHeads(db),
    onUnusable: (count) => logger.warn({ count }, "stored password hashes with parameters no dummy hash can imitate"),
  });
  const wired = wireIdentity({
    mfa,
    challenges: createMfaChallenges({ store: mfaStore, clock, ttlMs: config.mfa.challengeTtlMs }),
    risk,
    recentAuthMaxAgeMs: config.mfa.recentAuthMaxAgeMs,
    trustedDeviceTtlMs: config.mfa.trustedDeviceTtlMs,
    users,
    sessions: fleet.sessions,
    revocations: fleet.revocations,
    audit,
    hasher,
    defence,
    alerts,
    emailDomains: config.emailDomains.disposableCheck
      ? createDisposableEmailPolicy({ allow: config.emailDomains.allow, deny: config.emailDomains.deny })
      : undefined,
    tokens: secrets.tokens,
    policy: createPasswordPolicy({ ...config.password, blocklist: loadCommonPasswords() }),
    clock,
    // Verifying an unknown e-mail's "password" against one of these costs
    // the same as a real verification at one of the costs in use.
    dummyHashFor: (email) => dummyHashes.dummies.forAddress(email),
    lifetimes: config.lifetimes,
    maxSessionsPerUser: config.maxSessionsPerUser,
    refreshReuseGraceMs: config.refreshReuseGraceMs,
    onRehashError: (err) => logger.warn({ err }, "password re-hash failed"),
    mail,
    requireEmailVerification: config.requireEmailVerification,
  });
  mail.start(wired.composers);
  return {
    identity: wired.identity,
    email: wired.email,
    admin: createAdminService({ users, audit, defence, clock }),
    defence,
    refreshDummyHashes: () => dummyHashes.refresh(),
  };
}

// Brute force, sprays and CAPTCHA: attempt counts in PostgreSQL, detectors
// and blocks in Redis (per instance without it).
function createDefence(
  config: Config,
  deps: {
    db: Db;
    counters: WindowCounters;
    flags: RateLimiter;
    alerts: AlertSink;
    record(event: Omit<AuditEvent, "at">): Promise<void>;
    clock: Clock;
    logger: Logger;
    hashKey: Uint8Array;
  },
): LoginDefence {
  return createLoginDefence({
    attempts: createLoginAttemptStore(deps.db),
    counters: deps.counters,
    flags: deps.flags,
    alerts: deps.alerts,
    record: deps.record,
    clock: deps.clock,
    hashKey: deps.hashKey,
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
    onError: (err) => deps.logger.warn({ err }, "abuse detection failed"),
  });
}

// geoip-lite reads ~110 MB synchronously on first use: pay that at boot,
// not inside the first login from a public address.
function warmGeoIp(logger: Logger): GeoLocator {
  const geo = createGeoIpLocator();
  const started = performance.now();
  geo.locate("8.8.8.8");
  logger.info({ ms: Math.round(performance.now() - started) }, "GeoIP data loaded");
  return geo;
}
