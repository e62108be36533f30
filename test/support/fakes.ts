import { createMemoryCounters } from "../../src/abuse/counters.js";
import { createMemoryRateLimiter } from "../../src/abuse/rate-limiter.js";
import { createLoginDefence, type LoginDefence, type LoginDefenceDeps } from "../../src/abuse/login-defence.js";
import { throttleDelayMs, type ThrottlePolicy } from "../../src/abuse/policies.js";
import { type AttemptClaim, type LoginAttemptStore } from "../../src/abuse/ports.js";
import { type SecurityAlert } from "../../src/notify/ports.js";
import type { MfaChallenges } from "../../src/mfa/challenge.js";
import type { MfaService } from "../../src/mfa/mfa-service.js";
import type { AuditEvent } from "../../src/audit/ports.js";
import type { Clock } from "../../src/shared/clock.js";
import { createRiskAssessor, type RiskAssessor } from "../../src/risk/assessor.js";
import { defaultRiskThresholds } from "../../src/risk/engine.js";

// In-memory stand-ins for domain unit tests: the same semantics as the
// PostgreSQL attempt store (the contract suite checks that one).

export function createMemoryAttemptStore(): LoginAttemptStore & { size(): number } {
  const rows = new Map<string, { failures: number; last: number; locked: boolean }>();
  const id = (k: Uint8Array) => Buffer.from(k).toString("hex");
  return {
    async claim(key, now, policy: ThrottlePolicy): Promise<AttemptClaim> {
      const t = now.getTime();
      const row = rows.get(id(key));
      if (!row) {
        rows.set(id(key), { failures: 1, last: t, locked: false });
        return { kind: "claimed", failuresBefore: 0 };
      }
      if (row.failures >= policy.lockoutThreshold) return { kind: "locked", failures: row.failures };
      const forgotten = policy.resetAfterMs > 0 && row.last <= t - policy.resetAfterMs;
      const due = row.last + throttleDelayMs(row.failures, policy);
      if (!forgotten && row.failures >= policy.freeAttempts && due > t) {
        return { kind: "throttled", failures: row.failures, retryAfterMs: Math.max(1, due - t) };
      }
      const before = forgotten ? 0 : row.failures;
      row.failures = before + 1;
      row.last = t;
      row.locked = row.failures >= policy.lockoutThreshold;
      return { kind: "claimed", failuresBefore: before };
    },
    async clear(key) {
      rows.delete(id(key));
    },
    async unlock(key) {
      const row = rows.get(id(key));
      rows.delete(id(key));
      return { clearedFailures: row?.failures ?? 0, wasLocked: row?.locked ?? false };
    },
    size: () => rows.size,
  };
}

export const testThrottle: ThrottlePolicy = {
  freeAttempts: 5,
  baseDelayMs: 1_000,
  maxDelayMs: 15 * 60_000,
  lockoutThreshold: 100,
  resetAfterMs: 24 * 3_600_000,
};

/** A login defence on memory stores with a recorder of its audit events and alerts. */
export function createTestDefence(
  clock: Clock,
  overrides: Partial<LoginDefenceDeps> = {},
): { defence: LoginDefence; events: AuditEvent[]; alerts: SecurityAlert[]; attempts: ReturnType<typeof createMemoryAttemptStore> } {
  const events: AuditEvent[] = [];
  const alerts: SecurityAlert[] = [];
  const attempts = createMemoryAttemptStore();
  const now = () => clock.now().getTime();
  const defence = createLoginDefence({
    attempts,
    counters: createMemoryCounters({ now }),
    flags: createMemoryRateLimiter({ now }),
    alerts: { notify: (a) => void alerts.push(a) },
    record: async (e) => void events.push({ ...e, at: clock.now() }),
    clock,
    hashKey: new Uint8Array(32).fill(7),
    throttle: testThrottle,
    spray: { windowMs: 15 * 60_000, sourceAccounts: 20, passwordAccounts: 10, blockMs: 30 * 60_000, surgeFailuresPerMinute: 1_000, surgeMs: 15 * 60_000 },
    ...overrides,
  });
  return { defence, events, alerts, attempts };
}

/** No account has MFA (unit tests of flows that do not involve it). */
export const noMfa: MfaService = {
  enabled: async () => false,
  startEnrolment: () => Promise.reject(new Error("not in this test")),
  confirmEnrolment: () => Promise.reject(new Error("not in this test")),
  checkTotp: async () => false,
  useRecoveryCode: async () => false,
  disable: () => Promise.reject(new Error("not in this test")),
  regenerateRecoveryCodes: () => Promise.reject(new Error("not in this test")),
  status: async () => ({ totpEnabled: false, recoveryCodesRemaining: 0 }),
};

/** Two-step login challenges that no test of this kind reaches. */
export const noChallenges: MfaChallenges = {
  issue: () => Promise.reject(new Error("not in this test")),
  open: () => Promise.reject(new Error("not in this test")),
  fail: async () => {},
  consume: async () => {},
};

/** A risk assessor over an empty in-memory history that never finds anything. */
export function quietRisk(): RiskAssessor {
  return createRiskAssessor({
    history: {
      lookup: async () => ({ hasHistory: false, networkKnown: false, countries: [] }),
      forgetMfa: async () => {},
      record: async () => {},
    },
    geo: { locate: () => undefined },
    thresholds: defaultRiskThresholds,
    hashKey: new Uint8Array(32),
    sourceFlagged: async () => false,
  });
}
