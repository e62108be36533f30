import { DomainError } from "../../shared/errors.js";
import type { LoginStep } from "../attempt.js";

// REQUIRE_EMAIL_VERIFICATION: an account whose address nobody has proved
// does not log in. Checked after the first factor passed, so the answer
// tells nothing to someone who does not know the password.

export function emailNotVerified(): DomainError {
  return new DomainError("permission_denied", "EMAIL_NOT_VERIFIED", "verify the e-mail address first: follow the link in the verification mail, or ask for a new one");
}

export function verifiedAddress(deps: { required: boolean }): LoginStep {
  return async (attempt) => {
    if (deps.required && attempt.emailVerified !== true) throw emailNotVerified();
  };
}
