import type { AuditTrail } from "../../audit/trail.js";
import { riskOf, type LoginAttempt } from "../attempt.js";

// Every login that reaches the risk engine leaves one risk_decision row:
// the score, the decision, the signals and how the attempt ended.

export type RecordDecision = (attempt: LoginAttempt, outcome: "success" | "failure", reason: string) => Promise<void>;

export function createDecisionRecorder(trail: Pick<AuditTrail, "record">): RecordDecision {
  return (attempt, outcome, reason) => {
    const risk = riskOf(attempt);
    const { assessment } = risk;
    const details = {
      score: assessment.score,
      decision: assessment.decision,
      reasons: [...assessment.reasons],
      mfa_enabled: attempt.secondFactorOn,
      ...(risk.point?.country ? { country: risk.point.country } : {}),
      ...(risk.signals.impossibleTravel ? { travel_kmh: Math.round(Math.min(risk.signals.impossibleTravel.speedKmh, 1e6)) } : {}),
    };
    return trail.record({ type: "risk_decision", outcome, reason, userId: attempt.userId, details }, attempt.call);
  };
}
