import { distanceKm, type GeoPoint } from "./geo.js";

export interface RiskSignals {
  newDevice: boolean; // the device id presented was never used in a successful login of this account (or none presented)
  newNetwork: boolean; // this /24 (or /48) never seen for this account
  newCountry: boolean; // country known and never seen for this account
  impossibleTravel?: { distanceKm: number; hours: number; speedKmh: number } | undefined; // vs the previous successful login, when both located
  recentFailures: number; // consecutive failed attempts on the account before this one
  flaggedSource: boolean; // the source is flagged by the abuse defences (spray/stuffing)
  firstLogin: boolean; // the account has no previous successful login on record (nothing to compare with)
}

export type RiskDecision = "allow" | "require_mfa" | "require_captcha" | "deny";

export interface RiskThresholds {
  weights: {
    newDevice: number;
    newNetwork: number;
    newCountry: number;
    impossibleTravel: number;
    perRecentFailure: number;
    maxFailureScore: number;
    flaggedSource: number;
  };
  requireMfaAt: number;
  requireCaptchaAt: number;
  denyAt: number; // score thresholds, inclusive
  maxTravelSpeedKmh: number; // above it is impossible travel
}

/** Stable audit-trail strings, one per signal that was counted. */
export type RiskReason =
  | "first_login"
  | "new_device"
  | "new_network"
  | "new_country"
  | "impossible_travel"
  | "recent_failures"
  | "flagged_source";

export interface RiskAssessment {
  score: number;
  decision: RiskDecision;
  reasons: RiskReason[];
}

// Default weights (thresholds inclusive: MFA at 40, CAPTCHA at 70, deny at 110)
//
//   signal              weight   alone gives      why
//   new_device            40     require_mfa      the strongest everyday takeover sign
//   new_network            5     allow            home ISPs and phones change networks daily
//   new_country           15     allow            holidays; only tips other signals over
//   impossible_travel     40     require_mfa      GeoIP is noisy (VPNs, carrier egress, 1000 km radii)
//   recent_failures     5 each   allow            capped at 20: typos are common, guessing adds up
//   flagged_source        70     require_captcha  the source is actively spraying or stuffing
//   first_login            0     allow            nothing to compare with; novelty is not counted
//
// Combinations as they arrive in practice (travel implies a new network, often a new country):
//   known device, VPN jump (travel + network + country)          60  require_mfa
//   new device at home / elsewhere in the country                40–45  require_mfa
//   new device abroad, plausible travel                          60  require_mfa
//   new device + impossible travel (+ network + country)         80–100  require_captcha
//   flagged source + known device                                70–75  require_captcha
//   flagged source + new device                                 110+  deny
//   new device + impossible travel + network + country + 2 fails 110  deny
//
// New device + impossible travel stops at require_captcha, not deny: GeoIP
// jumps are frequent false positives (VPN on a new phone), deny leaves the
// real user no way forward, and an enrolled account still faces MFA from the
// caller. Deny is kept for stacked evidence, above all a flagged source that
// produces a correct password from an unknown device: a credential-stuffing hit.
export const defaultRiskThresholds: RiskThresholds = Object.freeze({
  weights: Object.freeze({
    newDevice: 40,
    newNetwork: 5,
    newCountry: 15,
    impossibleTravel: 40,
    perRecentFailure: 5,
    maxFailureScore: 20,
    flaggedSource: 70,
  }),
  requireMfaAt: 40,
  requireCaptchaAt: 70,
  denyAt: 110,
  maxTravelSpeedKmh: 1000,
});

export function assessRisk(signals: RiskSignals, thresholds: RiskThresholds = defaultRiskThresholds): RiskAssessment {
  const w = thresholds.weights;
  const reasons: RiskReason[] = [];
  let score = 0;

  if (signals.firstLogin) {
    // Novelty and travel compare with a past login; with none, they are noise.
    reasons.push("first_login");
  } else {
    if (signals.newDevice) {
      score += w.newDevice;
      reasons.push("new_device");
    }
    if (signals.newNetwork) {
      score += w.newNetwork;
      reasons.push("new_network");
    }
    if (signals.newCountry) {
      score += w.newCountry;
      reasons.push("new_country");
    }
    if (signals.impossibleTravel !== undefined) {
      score += w.impossibleTravel;
      reasons.push("impossible_travel");
    }
  }

  const failures = signals.recentFailures > 0 ? Math.floor(signals.recentFailures) : 0;
  if (failures > 0) {
    score += Math.min(failures * w.perRecentFailure, w.maxFailureScore);
    reasons.push("recent_failures");
  }
  if (signals.flaggedSource) {
    score += w.flaggedSource;
    reasons.push("flagged_source");
  }

  const decision: RiskDecision =
    score >= thresholds.denyAt
      ? "deny"
      : score >= thresholds.requireCaptchaAt
        ? "require_captcha"
        : score >= thresholds.requireMfaAt
          ? "require_mfa"
          : "allow";
  return { score, decision, reasons };
}

/** Below this, two GeoIP fixes cannot be told apart (city records are often 100–1000 km wide). */
const DEFAULT_MIN_DISTANCE_KM = 300;

/** Impossible-travel check between two located logins; undefined when plausible. */
export function travel(
  prev: { point: GeoPoint; at: Date },
  next: { point: GeoPoint; at: Date },
  maxSpeedKmh: number,
  minDistanceKm = DEFAULT_MIN_DISTANCE_KM,
): { distanceKm: number; hours: number; speedKmh: number } | undefined {
  const distance = distanceKm(prev.point, next.point);
  // Both fixes may be off by their accuracy radius: a jump within that is no evidence.
  const noise = Math.max(minDistanceKm, (prev.point.accuracyKm ?? 0) + (next.point.accuracyKm ?? 0));
  if (!(distance >= noise)) return undefined;
  // Order does not matter for the physics; a clock step must not hide a jump.
  const hours = Math.abs(next.at.getTime() - prev.at.getTime()) / 3_600_000;
  if (Number.isNaN(hours)) return undefined;
  // Same instant, different places: infinitely fast (Infinity serialises as null in JSON).
  const speedKmh = hours === 0 ? Number.POSITIVE_INFINITY : distance / hours;
  return speedKmh > maxSpeedKmh ? { distanceKm: distance, hours, speedKmh } : undefined;
}
