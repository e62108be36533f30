import type { AlertSink, SecurityAlertType } from "../notify/ports.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";

// When a user's credentials change (password, second factor, recovery
// codes), no device skips MFA on the strength of the old ones any more, and
// the user hears of it, with the session and address it came from.

export type CredentialChangeType = "mfa_enabled" | "mfa_disabled" | "recovery_codes_regenerated" | "password_changed";

export interface CredentialEvents {
  /** A credential changed: trusted devices are forgotten, then the user is alerted. */
  changed(type: CredentialChangeType, principal: Principal, call: CallContext): Promise<void>;
  /** Only the alert (nothing changed yet, e.g. an enrolment started). */
  alert(type: SecurityAlertType, principal: Principal, call: CallContext): void;
}

export function createCredentialEvents(deps: {
  /** No device of the user may skip MFA any more. */
  forgetTrustedDevices(userId: string): Promise<void>;
  alerts: AlertSink;
  clock: Clock;
}): CredentialEvents {
  const alert: CredentialEvents["alert"] = (type, principal, call) =>
    deps.alerts.notify({
      type,
      at: deps.clock.now(),
      userId: principal.userId,
      details: { session_id: principal.sessionId, ip: call.client.ip ?? "" },
    });
  return {
    alert,
    async changed(type, principal, call) {
      await deps.forgetTrustedDevices(principal.userId);
      alert(type, principal, call);
    },
  };
}
