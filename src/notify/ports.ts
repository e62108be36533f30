// Security alerts: what happened to whom, for the user's and the operators'
// channels (webhooks today). Senders never block on delivery.

export type SecurityAlertType =
  | "account_locked"
  | "password_spray"
  | "credential_stuffing"
  | "source_blocked"
  | "failure_surge"
  | "refresh_token_reuse"
  | "new_device_login"
  /** The account's second factor changed: the user should hear of it (ASVS 2.5.5). */
  | "mfa_enabled"
  /** An authenticator enrolment began: the user hears of it before it can be confirmed. */
  | "mfa_enrollment_started"
  | "mfa_disabled"
  | "recovery_codes_regenerated"
  | "password_changed"
  /** A password reset by a link from a reset mail (every session ended). */
  | "password_reset"
  /** The account's address changed (a verified change), or a change was undone. */
  | "email_changed"
  | "email_change_reverted";

export interface SecurityAlert {
  type: SecurityAlertType;
  at: Date;
  userId?: string | undefined;
  /** Sent as given under `data`; keys are snake_case. */
  details: Record<string, string | number | boolean | string[]>;
}

export interface AlertSink {
  notify(alert: SecurityAlert): void;
}
