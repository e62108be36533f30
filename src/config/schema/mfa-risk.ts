import { z } from "zod";
import { DAY, MINUTE, bool, duration, int, onceValid, refuse } from "../fields.js";

// TOTP MFA, recent-authentication and trusted devices; risk scoring.

const env = z.object({
  MFA_ISSUER: z.string().min(1).max(64).default("Identity"),
  MFA_CHALLENGE_TTL: duration.default(5 * MINUTE),
  MFA_ENROLMENT_TTL: duration.default(15 * MINUTE),
  RECENT_AUTH_MAX_AGE: duration.default(10 * MINUTE),
  // A device that passed MFA may skip it this long (0 = never skip).
  TRUSTED_DEVICE_TTL: duration.default(30 * DAY),
  // Offline GeoIP (geoip-lite, ~160 MB of memory) for country and travel signals.
  GEOIP: bool.default(true),
  RISK_REQUIRE_MFA_AT: int(1, 1_000).default(40),
  RISK_REQUIRE_CAPTCHA_AT: int(1, 1_000).default(70),
  RISK_DENY_AT: int(1, 1_000).default(110),
  RISK_MAX_TRAVEL_KMH: int(100, 100_000).default(1_000),
});

const RISK_ORDER = "need RISK_REQUIRE_MFA_AT <= RISK_REQUIRE_CAPTCHA_AT <= RISK_DENY_AT";

export const mfaRiskSchema = env
  .superRefine((e, ctx) => {
    if (e.RISK_REQUIRE_MFA_AT > e.RISK_REQUIRE_CAPTCHA_AT) refuse(ctx, "RISK_REQUIRE_MFA_AT", `must not exceed RISK_REQUIRE_CAPTCHA_AT (${RISK_ORDER})`);
    if (e.RISK_REQUIRE_CAPTCHA_AT > e.RISK_DENY_AT) refuse(ctx, "RISK_REQUIRE_CAPTCHA_AT", `must not exceed RISK_DENY_AT (${RISK_ORDER})`);
  }, onceValid)
  .transform((e) => ({
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
  }));
