import { riskOf, type LoginStep } from "../attempt.js";

/**
 * Whether this login must pass the second factor: always when the risk
 * asks for a step-up; otherwise unless the device passed it within
 * `trustedDeviceTtlMs`. Administrators never skip it.
 */
export function trustedDevice(deps: { trustedDeviceTtlMs: number }): LoginStep {
  return async (attempt) => {
    const mfaAt = riskOf(attempt).history.device?.mfaAt?.getTime();
    const trusted = attempt.role !== "admin" && mfaAt !== undefined && attempt.now.getTime() - mfaAt < deps.trustedDeviceTtlMs;
    attempt.needSecondFactor = attempt.secondFactorOn && (attempt.stepUp || !trusted);
  };
}
