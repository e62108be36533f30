import type { LoginDefence } from "../../abuse/login-defence.js";
import { DomainError } from "../../shared/errors.js";
import type { LoginStep } from "../attempt.js";
import type { RecordDecision } from "./decision.js";

export function mfaEnrollmentRequired(): DomainError {
  return new DomainError("permission_denied", "MFA_ENROLLMENT_REQUIRED", "administrators must have TOTP on");
}

/**
 * Administrators must have a second factor: without one they cannot log in
 * (the password was right, so the attempt does not count as a failure).
 */
export function accountPolicy(deps: { defence: Pick<LoginDefence, "succeeded">; decide: RecordDecision }): LoginStep {
  return async (attempt) => {
    if (attempt.role !== "admin" || attempt.secondFactorOn) return;
    await deps.defence.succeeded(attempt.admission);
    await deps.decide(attempt, "failure", "MFA_ENROLLMENT_REQUIRED");
    throw mfaEnrollmentRequired();
  };
}
