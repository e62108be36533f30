import type { ThrottlePolicy } from "./policies.js";

// What the abuse defences need from outside: the per-account attempt
// counter (PostgreSQL), sliding-window counters and timed flags (Redis, or
// per instance without it), and a CAPTCHA verifier.

export type AttemptClaim =
  | { kind: "claimed"; failuresBefore: number }
  | { kind: "throttled"; failures: number; retryAfterMs: number }
  | { kind: "locked"; failures: number };

/** The per-account attempt counter; lives in PostgreSQL so that it holds with Redis down. */
export interface LoginAttemptStore {
  /** Atomically counts an attempt unless the account must wait or is locked. */
  claim(accountKey: Uint8Array, now: Date, policy: ThrottlePolicy): Promise<AttemptClaim>;
  /** A successful login: the count starts again. */
  clear(accountKey: Uint8Array): Promise<void>;
  /** An administrator's unlock; what was cleared. */
  unlock(accountKey: Uint8Array): Promise<{ clearedFailures: number; wasLocked: boolean }>;
}

/** Sliding-window counters shared by every instance (Redis, or per instance without it). */
export interface WindowCounters {
  addDistinct(key: string, member: string, windowMs: number): Promise<number>;
  increment(key: string, windowMs: number): Promise<number>;
}

/** Timed flags: blocked sources and fleet-wide modes. */
export interface Flags {
  block(key: string, durationMs: number): Promise<void>;
  blockedFor(key: string): Promise<number | undefined>;
}

export type CaptchaResult = { ok: true } | { ok: false; reason: "missing" | "invalid" | "unavailable"; errorCodes: string[] };

export interface CaptchaCheck {
  verify(token: string, remoteIp?: string): Promise<CaptchaResult>;
}
