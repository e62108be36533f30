import { createHmac } from "node:crypto";
import { sourcePrefix } from "../risk/geo.js";
import { DomainError, invalidCredentials } from "../shared/errors.js";
import type { AuditEvent } from "../audit/ports.js";
import type { Clock } from "../shared/clock.js";
import type { AlertSink } from "../notify/ports.js";
import type { CallContext } from "../shared/call.js";
import type { Flags, LoginAttemptStore, WindowCounters } from "./ports.js";
import type { CaptchaPolicy, SprayPolicy, ThrottlePolicy } from "./policies.js";

// Brute-force, password-spray and credential-stuffing defence for logins
// (NIST SP 800-63B §3.2.2 "rate limiting"; ASVS 2.2.1). One piece on
// purpose (just over 300 lines): the admission a claim returns is what a
// failure or success later settles, and the detectors, lockout audit and
// CAPTCHA demand all read the same keys and flags; split, they would pass
// that state between files.
//
// - Per account: every attempt is claimed in PostgreSQL before the password
//   is checked. A few attempts are free, then each needs a growing wait
//   since the previous one (capped), and `lockoutThreshold` consecutive
//   failures stop the account until an unlock. The account is the
//   canonical (normalised) e-mail under a keyed hash, so the count is the
//   same over REST and gRPC, whatever address the attempts come from, and
//   for e-mails without an account too (a throttled answer never says
//   whether an account exists). A throttled attempt gets exactly the
//   wrong-password answer.
// - Per source and fleet-wide: failed attempts feed sliding-window distinct
//   counters (keyed hashes only; no password or e-mail is kept). One source
//   failing against many accounts, or one password failing against many
//   accounts, is a spray or stuffing run: the source is blocked for a while
//   and logins from unknown devices need a CAPTCHA. A fleet-wide surge of
//   failures does the latter. Each detection is audited with its evidence
//   and alerted.

export interface LoginDefenceDeps {
  attempts: LoginAttemptStore;
  counters: WindowCounters;
  flags: Flags;
  alerts: AlertSink;
  record(event: Omit<AuditEvent, "at">): Promise<void>;
  clock: Clock;
  /** Key of the keyed hashes (a shared server secret). */
  hashKey: Uint8Array;
  throttle: ThrottlePolicy;
  spray: SprayPolicy;
  captcha?: CaptchaPolicy | undefined;
  onError?(err: unknown): void;
}

export interface Admission {
  accountKey: Uint8Array;
  /** Consecutive failures before this attempt. */
  failuresBefore: number;
  /** A CAPTCHA was solved for this attempt (providers accept a token once: never check it again). */
  captchaPassed: boolean;
}

export interface LoginDefence {
  /** The key the account's attempts are counted under. */
  accountKey(canonicalEmail: string): Uint8Array;
  /**
   * Before any password check: a CAPTCHA when one is due, then the
   * account's attempt claim. Throws the wrong-password error when the
   * account must wait or is locked.
   */
  admit(
    input: {
      canonicalEmail: string;
      captchaToken?: string | undefined;
      knownDevice: boolean | (() => Promise<boolean>);
      /**
       * A device the account knows (its token's hash): its attempts are
       * counted apart, so failures from elsewhere cannot lock it out.
       */
      trustedDevice?: Uint8Array | undefined;
      /** The account's id when known, for the audit trail only. */
      userId?: string | undefined;
    },
    call: CallContext,
  ): Promise<Admission>;
  /** A wrong password or second factor: the lockout event and the spray/stuffing detectors. */
  failed(
    admission: Admission,
    input: { password?: string | undefined; userId?: string | undefined; factor: "password" | "mfa" | "email_code" },
    call: CallContext,
  ): Promise<void>;
  /** A successful login: the account's count starts again. */
  succeeded(admission: Admission): Promise<void>;
  /** A CAPTCHA demanded by the risk engine: false when none is configured (the caller steps up otherwise); throws when missing or refused. */
  challengeCaptcha(captchaToken: string | undefined, call: CallContext): Promise<boolean>;
  /** Checks the CAPTCHA a registration must carry (when configured). */
  admitRegistration(captchaToken: string | undefined, call: CallContext): Promise<void>;
  unlock(canonicalEmail: string): Promise<{ clearedFailures: number; wasLocked: boolean }>;
  /** Whether the source is blocked by the spray and stuffing detection (a risk signal). */
  sourceFlagged(ip: string | undefined): Promise<boolean>;
}

export const SOURCE_BLOCK_PREFIX = "src:";
const SPRAY_MODE = "mode:spray";
const SURGE_MODE = "mode:surge";
const FLEET_FAILURES = "fleet:failures";

/** The key a client address is limited, counted and blocked under (IPv6 by /64). */
export function sourceOf(ip: string | undefined): string {
  return (ip === undefined ? undefined : sourcePrefix(ip)) ?? "unknown";
}

/** A keyed hash as it appears in counter and limiter keys: 132 bits, base64url. */
export function keyTag(hash: Uint8Array): string {
  return Buffer.from(hash).toString("base64url").slice(0, 22);
}

export function sourceBlockKey(ip: string | undefined): string {
  return SOURCE_BLOCK_PREFIX + sourceOf(ip);
}

export function createLoginDefence(deps: LoginDefenceDeps): LoginDefence {
  const { attempts, counters, flags, alerts, clock, throttle, spray } = deps;
  const mac = (label: string, value: string) => createHmac("sha256", deps.hashKey).update(label).update("\0").update(value).digest();
  const accountKey = (email: string) => mac("account", email);

  async function safely(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      // Detection must never turn an answer into a 500; the cause is logged.
      deps.onError?.(err);
    }
  }

  async function demandCaptcha(token: string | undefined, call: CallContext, context: "register" | "login"): Promise<void> {
    const captcha = deps.captcha;
    if (!captcha) return;
    if (token === undefined || token === "") {
      await deps.record({ type: "captcha", outcome: "failure", reason: "CAPTCHA_REQUIRED", ...call, details: { context } });
      throw new DomainError("permission_denied", "CAPTCHA_REQUIRED", "solve a CAPTCHA and send its token in captcha_token", {
        context,
      });
    }
    const result = await captcha.verifier.verify(token, call.client.ip);
    if (result.ok) return;
    if (result.reason === "unavailable" && captcha.failOpen) {
      await deps.record({ type: "captcha", outcome: "success", reason: "provider_unavailable_fail_open", ...call, details: { context } });
      return;
    }
    await deps.record({
      type: "captcha",
      outcome: "failure",
      reason: result.reason === "unavailable" ? "DEPENDENCY_UNAVAILABLE" : "CAPTCHA_INVALID",
      ...call,
      details: { context, error_codes: result.errorCodes.slice(0, 5) },
    });
    if (result.reason === "unavailable") {
      throw new DomainError("unavailable", "DEPENDENCY_UNAVAILABLE", "the CAPTCHA provider cannot be reached; retry shortly");
    }
    throw new DomainError("permission_denied", "CAPTCHA_INVALID", "the CAPTCHA token was refused; solve a new one", { context });
  }

  async function underAttack(): Promise<boolean> {
    const [sprayLeft, surgeLeft] = await Promise.all([flags.blockedFor(SPRAY_MODE), flags.blockedFor(SURGE_MODE)]);
    return sprayLeft !== undefined || surgeLeft !== undefined;
  }

  // Sets a timed flag and reports whether this call set it (so a detection
  // is audited and alerted once per period rather than on every failure).
  async function raise(key: string, durationMs: number): Promise<boolean> {
    if ((await flags.blockedFor(key)) !== undefined) return false;
    await flags.block(key, durationMs);
    return true;
  }

  async function detect(admission: Admission, password: string | undefined, call: CallContext): Promise<void> {
    const ip = call.client.ip ?? "unknown";
    const source = sourceOf(call.client.ip);
    const account = keyTag(admission.accountKey);
    const passwordKey = password === undefined ? undefined : keyTag(mac("password", password));
    const [sourceAccounts, sourcePasswords, passwordAccounts, fleet] = await Promise.all([
      counters.addDistinct(`src-acct:${source}`, account, spray.windowMs),
      passwordKey ? counters.addDistinct(`src-pw:${source}`, passwordKey, spray.windowMs) : Promise.resolve(0),
      passwordKey ? counters.addDistinct(`pw-acct:${passwordKey}`, account, spray.windowMs) : Promise.resolve(0),
      counters.increment(FLEET_FAILURES, 60_000),
    ]);
    const now = clock.now();
    const windowSeconds = Math.round(spray.windowMs / 1000);

    if (sourceAccounts >= spray.sourceAccounts) {
      // Few distinct passwords over many accounts is a spray; about one per
      // account is stuffing (leaked e-mail/password pairs).
      const kind = sourcePasswords * 4 <= sourceAccounts ? "password_spray" : "credential_stuffing";
      if (await raise(sourceBlockKey(ip), spray.blockMs)) {
        const details = {
          kind,
          source_ip: ip,
          distinct_accounts: sourceAccounts,
          distinct_passwords: sourcePasswords,
          window_seconds: windowSeconds,
          threshold: spray.sourceAccounts,
          block_seconds: Math.round(spray.blockMs / 1000),
        };
        await deps.record({ type: "spray_detected", outcome: "success", reason: kind, ...call, details });
        await deps.record({ type: "source_blocked", outcome: "success", reason: kind, ...call, details });
        alerts.notify({ type: kind, at: now, details });
        alerts.notify({ type: "source_blocked", at: now, details });
        // Stuffing and sprays also come from many addresses at once:
        // unknown devices need a CAPTCHA everywhere for a while.
        await flags.block(SPRAY_MODE, spray.blockMs);
      }
    }
    if (passwordKey && passwordAccounts >= spray.passwordAccounts) {
      const fresh = await raise(`pw-flag:${passwordKey}`, spray.blockMs);
      const newlyBlocked = await raise(sourceBlockKey(ip), spray.blockMs);
      await flags.block(SPRAY_MODE, spray.blockMs);
      if (newlyBlocked) {
        const details = { kind: "password_spray", source_ip: ip, block_seconds: Math.round(spray.blockMs / 1000) };
        await deps.record({ type: "source_blocked", outcome: "success", reason: "password_spray", ...call, details });
        alerts.notify({ type: "source_blocked", at: now, details });
      }
      if (fresh) {
        const details = {
          kind: "password_spray",
          // A keyed fingerprint: detections of one password can be told
          // apart and correlated; the password cannot be recovered.
          password_fingerprint: passwordKey.slice(0, 12),
          distinct_accounts: passwordAccounts,
          source_ip: ip,
          window_seconds: windowSeconds,
          threshold: spray.passwordAccounts,
          block_seconds: Math.round(spray.blockMs / 1000),
        };
        await deps.record({ type: "spray_detected", outcome: "success", reason: "password_spray", ...call, details });
        alerts.notify({ type: "password_spray", at: now, details });
      }
    }
    if (fleet >= spray.surgeFailuresPerMinute && (await raise(SURGE_MODE, spray.surgeMs))) {
      const details = { failures_last_minute: fleet, threshold: spray.surgeFailuresPerMinute, mode_seconds: Math.round(spray.surgeMs / 1000) };
      await deps.record({ type: "failure_surge", outcome: "success", ...call, details });
      alerts.notify({ type: "failure_surge", at: now, details });
    }
  }

  return {
    accountKey,

    async admit(input, call) {
      let captchaPassed = false;
      if (deps.captcha?.onRiskyLogin && (input.captchaToken !== undefined || (await underAttack()))) {
        // Only unknown devices are asked (looked up only now, under attack);
        // a token sent unasked is checked too.
        const known = typeof input.knownDevice === "function" ? await input.knownDevice() : input.knownDevice;
        if (!known || input.captchaToken !== undefined) {
          await demandCaptcha(input.captchaToken, call, "login");
          captchaPassed = true;
        }
      }
      const key = input.trustedDevice
        ? mac("account-device", `${input.canonicalEmail}\0${Buffer.from(input.trustedDevice).toString("hex")}`)
        : accountKey(input.canonicalEmail);
      const claim = await attempts.claim(key, clock.now(), throttle);
      if (claim.kind === "claimed") return { accountKey: key, failuresBefore: claim.failuresBefore, captchaPassed };
      await deps.record({
        type: "login_throttled",
        outcome: "failure",
        reason: claim.kind === "locked" ? "account_locked" : "progressive_delay",
        userId: input.userId,
        ...call,
        details:
          claim.kind === "locked"
            ? { failures: claim.failures }
            : { failures: claim.failures, retry_after_seconds: Math.ceil(claim.retryAfterMs / 1000) },
      });
      // Exactly the wrong-password answer: the caller learns nothing.
      throw invalidCredentials();
    },

    async failed(admission, input, call) {
      const failures = admission.failuresBefore + 1;
      if (failures === throttle.lockoutThreshold) {
        const details = { failures, threshold: throttle.lockoutThreshold, last_factor: input.factor };
        await safely(async () => {
          await deps.record({ type: "account_locked", outcome: "success", userId: input.userId, ...call, details });
          alerts.notify({ type: "account_locked", at: clock.now(), userId: input.userId, details });
        });
      }
      await safely(() => detect(admission, input.password, call));
    },

    async succeeded(admission) {
      await attempts.clear(admission.accountKey);
    },

    async challengeCaptcha(captchaToken, call) {
      if (!deps.captcha) return false;
      await demandCaptcha(captchaToken, call, "login");
      return true;
    },

    async admitRegistration(captchaToken, call) {
      if (deps.captcha?.onRegister) await demandCaptcha(captchaToken, call, "register");
    },

    unlock: (email) => attempts.unlock(accountKey(email)),

    async sourceFlagged(ip) {
      // Only the source itself: a fleet-wide surge already asks unknown
      // devices for a CAPTCHA and must not mark every login risky.
      return (await flags.blockedFor(sourceBlockKey(ip))) !== undefined;
    },
  };
}
