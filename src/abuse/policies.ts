import type { CaptchaCheck } from "./ports.js";

// The knobs of the abuse defences (from configuration) and the delay rule.

export interface ThrottlePolicy {
  /** Attempts without any wait. */
  freeAttempts: number;
  /** The wait after the first attempt beyond the free ones; doubles per failure. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Consecutive failures that lock the account until an unlock. */
  lockoutThreshold: number;
  /** Failures this old (and no lock) are forgotten; 0 = never. */
  resetAfterMs: number;
}

/** The wait an account needs after `failures` consecutive failures (0 while free). */
export function throttleDelayMs(failures: number, policy: ThrottlePolicy): number {
  if (failures < policy.freeAttempts) return 0;
  const exponent = Math.min(failures - policy.freeAttempts, 40);
  return Math.min(policy.baseDelayMs * 2 ** exponent, policy.maxDelayMs);
}

export interface SprayPolicy {
  windowMs: number;
  /** Distinct accounts failing from one source within the window. */
  sourceAccounts: number;
  /** Distinct accounts failing with one password within the window. */
  passwordAccounts: number;
  blockMs: number;
  surgeFailuresPerMinute: number;
  surgeMs: number;
}

export interface CaptchaPolicy {
  verifier: CaptchaCheck;
  onRegister: boolean;
  onRiskyLogin: boolean;
  failOpen: boolean;
}
