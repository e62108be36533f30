import type { RiskAssessor } from "../../risk/assessor.js";
import type { LoginStep } from "../attempt.js";
import type { SecondFactors } from "../second-factor.js";

/** The risk engine's view of the attempt, and whether the account has a second factor (one round trip for both). */
export function assessRisk(deps: { risk: Pick<RiskAssessor, "assess">; factors: Pick<SecondFactors, "enabled"> }): LoginStep {
  return async (attempt) => {
    const [risk, secondFactorOn] = await Promise.all([
      deps.risk.assess({
        userId: attempt.userId,
        deviceId: attempt.deviceToken,
        ip: attempt.call.client.ip,
        failuresBefore: attempt.admission.failuresBefore,
        now: attempt.now,
      }),
      deps.factors.enabled(attempt.userId),
    ]);
    attempt.risk = risk;
    attempt.secondFactorOn = secondFactorOn;
    attempt.stepUp = risk.assessment.decision !== "allow";
  };
}
