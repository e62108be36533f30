import type { MailKind } from "../ports.js";

// What a mail says, per language: a catalogue turns the mail's variables
// into a subject and blocks; layout.ts turns those into a text and an HTML
// part. Catalogues hold words only, never markup.

export interface MailVars {
  appName: string;
  /** The action link (verification, reset, login, undo). */
  link?: string | undefined;
  /** E-mail login: the 6-digit code. */
  code?: string | undefined;
  /** Security notices: which event (security_notice params.event). */
  event?: string | undefined;
  /** Where and when the request came from, as far as known. */
  ip?: string | undefined;
  at?: string | undefined;
  /** Address change: the new address, partly hidden. */
  newEmail?: string | undefined;
  /** Validity of the link, in the catalogue's words. */
  validFor?: string | undefined;
}

export interface MailContent {
  subject: string;
  paragraphs: string[];
  action?: { label: string; url: string } | undefined;
  code?: string | undefined;
  /** Closing lines in smaller print: what to do if it was not you. */
  footer: string[];
}

export type Catalogue = Record<MailKind, (v: MailVars) => MailContent>;

/** Security-notice events with a sentence of their own in every catalogue. */
export const noticeEvents = [
  "new_device_login",
  "password_changed",
  "password_reset",
  "mfa_enabled",
  "mfa_disabled",
  "mfa_enrollment_started",
  "recovery_codes_regenerated",
  "email_changed",
  "account_locked",
] as const;
export type NoticeEvent = (typeof noticeEvents)[number];

export function isNoticeEvent(value: string): value is NoticeEvent {
  return (noticeEvents as readonly string[]).includes(value);
}
