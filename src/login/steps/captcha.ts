import type { LoginDefence } from "../../abuse/login-defence.js";
import { isDomainError } from "../../shared/errors.js";
import { riskOf, type LoginStep } from "../attempt.js";
import type { RecordDecision } from "./decision.js";

/**
 * A score asking for a CAPTCHA: one solved at admission or now settles the
 * step-up; without a CAPTCHA provider the second factor is the step-up.
 */
export function captchaOnRisk(deps: { defence: Pick<LoginDefence, "challengeCaptcha">; decide: RecordDecision }): LoginStep {
  return async (attempt) => {
    if (riskOf(attempt).assessment.decision !== "require_captcha") return;
    try {
      attempt.stepUp = !(attempt.admission.captchaPassed || (await deps.defence.challengeCaptcha(attempt.captchaToken, attempt.call)));
    } catch (err) {
      await deps.decide(attempt, "failure", isDomainError(err) ? err.reason : "INTERNAL_ERROR");
      throw err;
    }
  };
}
