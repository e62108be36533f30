import type { AuditTrail } from "../../audit/trail.js";
import type { MfaChallenges } from "../../mfa/challenge.js";
import { riskOf, type LoginStep } from "../attempt.js";
import { mfaRequired, secondFactorPresented, type SecondFactorCheck, type SecondFactors } from "../second-factor.js";
import type { RecordDecision } from "./decision.js";

/**
 * The second factor when the login needs one: checked when the request
 * carries it (one-shot), otherwise MFA_REQUIRED with a challenge for
 * CompleteMfaLogin (two-step); the attempt stays counted until then.
 */
export function secondFactorStep(deps: {
  factors: SecondFactors;
  check: SecondFactorCheck;
  challenges: Pick<MfaChallenges, "issue">;
  decide: RecordDecision;
  trail: Pick<AuditTrail, "record">;
}): LoginStep {
  return async (attempt) => {
    if (!attempt.needSecondFactor) return;
    if (!secondFactorPresented(deps.factors, attempt.secondFactor)) {
      // The challenge now stands for the first factor.
      await attempt.spend?.();
      const challenge = await deps.challenges.issue(attempt.userId, riskOf(attempt).deviceHash, attempt.amr);
      await deps.decide(attempt, "success", "mfa_required");
      await deps.trail.record({ type: "mfa_challenge", outcome: "success", userId: attempt.userId }, attempt.call);
      throw mfaRequired(deps.factors, {
        mfa_challenge: challenge.token,
        expires_in_seconds: String(Math.round((challenge.expiresAt.getTime() - attempt.now.getTime()) / 1000)),
      });
    }
    attempt.secondFactorUsed = await deps.check(attempt.userId, attempt.admission, attempt.secondFactor, attempt.call);
  };
}
