import type { LoginDefence } from "../../abuse/login-defence.js";
import { invalidCredentials } from "../../shared/errors.js";
import { riskOf, type LoginStep } from "../attempt.js";
import type { RecordDecision } from "./decision.js";

/** A score at the deny threshold ends the attempt with the wrong-password answer: nothing to learn from it. */
export function denyOnRisk(deps: { defence: Pick<LoginDefence, "failed">; decide: RecordDecision }): LoginStep {
  return async (attempt) => {
    if (riskOf(attempt).assessment.decision !== "deny") return;
    await deps.decide(attempt, "failure", "deny");
    await deps.defence.failed(attempt.admission, { userId: attempt.userId, factor: "password" }, attempt.call);
    throw invalidCredentials();
  };
}
