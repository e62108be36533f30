import { isDomainError } from "../shared/errors.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import type { AuditEvent, AuditLog } from "./ports.js";

// What every use case writes to the trail, with the call's facts attached
// in one place.

/** An event as a use case states it; the call and the time are added here. */
export type TrailEvent = Omit<AuditEvent, "at" | "client" | "requestId" | "clientRequestId">;

export interface AuditTrail {
  /** Resolves once the event is committed (and chained). */
  record(event: TrailEvent, call: CallContext): Promise<void>;
  /** Records the failure of an attempt with the error's reason, then rethrows the error. */
  failed(
    type: AuditEvent["type"],
    err: unknown,
    call: CallContext,
    ids?: { userId?: string | undefined; sessionId?: string | undefined },
  ): Promise<never>;
  /**
   * One row per ended session, so "how did session S end?" has an answer
   * (the revocation listener has been told before, after the commit).
   */
  sessionsEnded(userId: string, sessionIds: readonly string[], reason: string, call: CallContext): Promise<void>;
}

export function createAuditTrail(deps: { audit: AuditLog; clock: Clock }): AuditTrail {
  const record = (event: TrailEvent, call: CallContext) =>
    deps.audit.record({ ...event, client: call.client, requestId: call.requestId, clientRequestId: call.clientRequestId, at: deps.clock.now() });
  return {
    record,
    async failed(type, err, call, ids = {}) {
      const reason = isDomainError(err) ? err.reason : "INTERNAL_ERROR";
      try {
        await record({ type, outcome: "failure", reason, ...ids }, call);
      } catch {
        // The original failure is what the caller must see; the audit store
        // being down surfaces on the next successful write.
      }
      throw err;
    },
    async sessionsEnded(userId, sessionIds, reason, call) {
      await Promise.all(sessionIds.map((sessionId) => record({ type: "session_revoke", outcome: "success", reason, userId, sessionId }, call)));
    },
  };
}
