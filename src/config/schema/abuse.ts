import { z } from "zod";
import type { SprayPolicy, ThrottlePolicy } from "../../abuse/policies.js";
import { parseLimits } from "../../abuse/rate-limits.js";
import { HOUR, MINUTE, SECOND, bool, duration, int, lowercaseList, onceValid, refuse } from "../fields.js";

// Abuse defence: rate limits, the per-account brute-force throttle, spray
// and surge detection, CAPTCHA, e-mail domain policy.

// "off", or overrides of the defaults in src/abuse/rate-limits.ts, e.g.
// "login.ip=30/1m,register.ip=10/1h:5"; parsed here so that a typo stops the boot.
const rateLimits = z
  .string()
  .default("")
  .transform((v, ctx) => {
    try {
      return parseLimits(v.trim());
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
      return z.NEVER;
    }
  });

const env = z.object({
  RATE_LIMITS: rateLimits,
  BRUTE_FORCE_FREE_ATTEMPTS: int(1, 100).default(5),
  BRUTE_FORCE_BASE_DELAY: duration.default(SECOND),
  BRUTE_FORCE_MAX_DELAY: duration.default(15 * MINUTE),
  BRUTE_FORCE_LOCKOUT: int(10, 1_000).default(100),
  // Failures older than this (and no lock) are forgotten; 0 = never.
  BRUTE_FORCE_RESET_AFTER: duration.default(24 * HOUR),
  SPRAY_WINDOW: duration.default(15 * MINUTE),
  SPRAY_SOURCE_ACCOUNTS: int(2, 100_000).default(20),
  SPRAY_PASSWORD_ACCOUNTS: int(2, 100_000).default(10),
  SPRAY_BLOCK_DURATION: duration.default(30 * MINUTE),
  SURGE_FAILURES_PER_MINUTE: int(10, 10_000_000).default(3_000),
  SURGE_DURATION: duration.default(15 * MINUTE),
  CAPTCHA_PROVIDER: z.enum(["turnstile", "hcaptcha", "recaptcha"]).optional(),
  CAPTCHA_SECRET: z.string().min(1).optional(),
  CAPTCHA_VERIFY_URL: z.string().url().optional(),
  CAPTCHA_HOSTNAMES: lowercaseList.default([]),
  CAPTCHA_ON_REGISTER: bool.default(true),
  CAPTCHA_ON_RISKY_LOGIN: bool.default(true),
  // When the CAPTCHA provider cannot be reached: refuse (false) or let the request through.
  CAPTCHA_FAIL_OPEN: bool.default(false),
  DISPOSABLE_EMAIL_CHECK: bool.default(true),
  EMAIL_DOMAIN_ALLOW: lowercaseList.default([]),
  EMAIL_DOMAIN_DENY: lowercaseList.default([]),
});

export const abuseSchema = env
  .superRefine((e, ctx) => {
    if (e.BRUTE_FORCE_BASE_DELAY > e.BRUTE_FORCE_MAX_DELAY) refuse(ctx, "BRUTE_FORCE_BASE_DELAY", "must not exceed BRUTE_FORCE_MAX_DELAY");
    if (e.BRUTE_FORCE_FREE_ATTEMPTS >= e.BRUTE_FORCE_LOCKOUT) refuse(ctx, "BRUTE_FORCE_FREE_ATTEMPTS", "must be below BRUTE_FORCE_LOCKOUT");
    if (e.CAPTCHA_PROVIDER !== undefined && e.CAPTCHA_SECRET === undefined) refuse(ctx, "CAPTCHA_SECRET", "required with CAPTCHA_PROVIDER (set both or neither)");
    if (e.CAPTCHA_SECRET !== undefined && e.CAPTCHA_PROVIDER === undefined) refuse(ctx, "CAPTCHA_PROVIDER", "required with CAPTCHA_SECRET (set both or neither)");
  }, onceValid)
  .transform((e) => ({
    /** The rate limits in force (defaults with the RATE_LIMITS overrides), or undefined when "off". */
    rateLimits: e.RATE_LIMITS,
    bruteForce: {
      freeAttempts: e.BRUTE_FORCE_FREE_ATTEMPTS,
      baseDelayMs: e.BRUTE_FORCE_BASE_DELAY,
      maxDelayMs: e.BRUTE_FORCE_MAX_DELAY,
      lockoutThreshold: e.BRUTE_FORCE_LOCKOUT,
      resetAfterMs: e.BRUTE_FORCE_RESET_AFTER,
    } satisfies ThrottlePolicy,
    spray: {
      windowMs: e.SPRAY_WINDOW,
      sourceAccounts: e.SPRAY_SOURCE_ACCOUNTS,
      passwordAccounts: e.SPRAY_PASSWORD_ACCOUNTS,
      blockMs: e.SPRAY_BLOCK_DURATION,
      surgeFailuresPerMinute: e.SURGE_FAILURES_PER_MINUTE,
      surgeMs: e.SURGE_DURATION,
    } satisfies SprayPolicy,
    captcha:
      e.CAPTCHA_PROVIDER && e.CAPTCHA_SECRET
        ? {
            provider: e.CAPTCHA_PROVIDER,
            secret: e.CAPTCHA_SECRET,
            verifyUrl: e.CAPTCHA_VERIFY_URL,
            hostnames: e.CAPTCHA_HOSTNAMES,
            onRegister: e.CAPTCHA_ON_REGISTER,
            onRiskyLogin: e.CAPTCHA_ON_RISKY_LOGIN,
            failOpen: e.CAPTCHA_FAIL_OPEN,
          }
        : undefined,
    emailDomains: { disposableCheck: e.DISPOSABLE_EMAIL_CHECK, allow: e.EMAIL_DOMAIN_ALLOW, deny: e.EMAIL_DOMAIN_DENY },
  }));
