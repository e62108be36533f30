import { DomainError } from "../shared/errors.js";
import type { Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";

// Sensitive operations (credential changes, ending other sessions) need a
// login or re-authentication at most `maxAgeMs` old on the caller's session,
// and one that passed the second factor when the account has one: a device
// that skipped MFA at login does not get to change credentials.

export function recentAuthRequired(maxAgeMs: number, acr?: "aal2"): DomainError {
  return new DomainError("unauthenticated", "RECENT_AUTH_REQUIRED", "this operation needs a recent login; call Reauthenticate first", {
    max_age_seconds: String(Math.round(maxAgeMs / 1000)),
    ...(acr ? { acr } : {}),
  });
}

export type RecentAuthGuard = (principal: Principal) => Promise<void>;

export function createRecentAuthGuard(deps: {
  clock: Clock;
  maxAgeMs: number;
  /** Whether the account has a second factor (its sessions must then be aal2). */
  secondFactorEnabled(userId: string): Promise<boolean>;
}): RecentAuthGuard {
  return async (principal) => {
    const at = principal.authTime?.getTime();
    if (at === undefined || deps.clock.now().getTime() - at > deps.maxAgeMs) throw recentAuthRequired(deps.maxAgeMs);
    if (!principal.amr?.includes("mfa") && (await deps.secondFactorEnabled(principal.userId))) throw recentAuthRequired(deps.maxAgeMs, "aal2");
  };
}
