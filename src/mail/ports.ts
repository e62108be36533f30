// The mail channel's ports: the outbox every feature writes to (in the same
// transaction as the change that causes a mail), and the transport the
// dispatcher delivers through.

/** What a mail is about; each kind has a composer (who gets it, with what) and a template. */
export type MailKind =
  | "verify_email"
  | "registration_attempt"
  | "password_reset"
  | "email_login"
  | "email_change_notice"
  | "security_notice";

export const mailKinds: readonly MailKind[] = ["verify_email", "registration_attempt", "password_reset", "email_login", "email_change_notice", "security_notice"];

/** A mail to write to the outbox. Holds no secret: tokens are derived from `id` when the mail is rendered. */
export interface OutboxEntry {
  id: string;
  kind: MailKind;
  /** The account the mail is about: its current address and locale are read when it is sent. */
  userId?: string | undefined;
  /** An explicit recipient (an address being verified, a former address, a requested one). */
  address?: string | undefined;
  /** What the template needs besides the token: never a secret. */
  params: Readonly<Record<string, string>>;
  createdAt: Date;
}

/** A row the dispatcher leased. */
export interface OutboxMessage extends OutboxEntry {
  /** Delivery attempts so far, this one included. */
  attempts: number;
}

export interface OutboxStore {
  /** Writes one mail on its own (for mails no state change goes with, e.g. notices). */
  enqueue(entry: OutboxEntry): Promise<void>;
  /**
   * Leases up to `limit` due mails (pending, or sending with an expired
   * lease: a dispatcher died mid-send) for `leaseMs`, counting the attempt.
   * Concurrent dispatchers never lease the same row.
   */
  claim(now: Date, limit: number, leaseMs: number): Promise<OutboxMessage[]>;
  // The outcome of a leased row. With `attempt` (the dispatcher always
  // passes its lease's), only while the row is still that lease's: a
  // dispatcher whose lease expired and was taken over changes nothing.
  markSent(id: string, now: Date, attempt?: number): Promise<void>;
  /** Nothing to send (unknown address, capped, expired before delivery). */
  markDropped(id: string, now: Date, reason: string, attempt?: number): Promise<void>;
  /** Back to pending after a failed attempt, due again at `nextAttemptAt`. */
  retry(id: string, nextAttemptAt: Date, error: string, attempt?: number): Promise<void>;
  markDead(id: string, now: Date, error: string, attempt?: number): Promise<void>;
  /** Pending or leased mails, and dead letters. */
  backlog(): Promise<{ pending: number; dead: number }>;
  /** Deletes sent, dropped and dead rows created before `before`. */
  prune(before: Date): Promise<number>;
}

/** A rendered mail, ready to send. */
export interface Mail {
  /** Stable per outbox row: a resend after a crash is recognisably the same mail. */
  messageId: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  /** The links in the mail (logged by the file transport in embedded mode only). */
  links: readonly string[];
}

export interface MailTransport {
  readonly kind: "smtp" | "file";
  send(mail: Mail): Promise<void>;
  close(): Promise<void>;
}

/** What a mail's token is for. */
export type TokenPurpose = "verify_email" | "reset_password" | "email_login" | "revert_email";

/** A token carried by a mail, as stored (its SHA-256 only). */
export interface EmailToken {
  /** The id of the outbox row that carried it. */
  id: string;
  userId: string;
  purpose: TokenPurpose;
  /** The address it is about: being verified, or restored by a revert. */
  email: string;
  /** E-mail login: SHA-256 of the asking client's `attempt`. */
  bindingHash?: Uint8Array | undefined;
  failedCodes: number;
  createdAt: Date;
  expiresAt: Date;
}

export interface NewEmailToken extends Omit<EmailToken, "failedCodes"> {
  tokenHash: Uint8Array;
}

export interface EmailTokenStore {
  /**
   * Stores a token and voids the user's older unused tokens of the same
   * purpose (but for undo links: revert_email tokens never void one
   * another). "superseded" when a newer token of the user and purpose exists
   * (mails are not composed in the order they were written: the older one is
   * stored void); "capped", with nothing stored, when `cap.max` tokens of the
   * user and purpose were issued within `cap.windowMs` of this one's
   * creation. Issues of one user and purpose are serialised, so mails
   * composed concurrently cannot all pass the cap. With `cap.maxToAddress`,
   * also "capped" when that many tokens of the purpose went to the token's
   * address (whichever account asked) within the window, serialised per
   * address too. A resend (the same id)
   * stores nothing and answers as the first time did.
   */
  issue(token: NewEmailToken, cap?: { max: number; windowMs: number; maxToAddress?: number | undefined }): Promise<"issued" | "capped" | "superseded">;
  /** The unused, unexpired token with this hash and purpose. */
  find(tokenHash: Uint8Array, purpose: TokenPurpose, now: Date): Promise<EmailToken | undefined>;
  /** The user's newest unused, unexpired token of `purpose`. */
  latest(userId: string, purpose: TokenPurpose, now: Date): Promise<EmailToken | undefined>;
  /** Marks the token used; false when it already was (a concurrent use won). */
  consume(id: string, now: Date): Promise<boolean>;
  /** Counts a wrong code; the token is void once `maxFailures` is reached. */
  failCode(id: string, maxFailures: number, now: Date): Promise<void>;
  /**
   * Takes one of the token's `max` tries before a code (or a second factor)
   * is compared: which try this is (1…max), or undefined when none is left
   * or the token is spent. Atomic, so requests in parallel cannot get more
   * tries than `max`.
   */
  reserveCodeAttempt(id: string, max: number, now: Date): Promise<number | undefined>;

  /** Tokens of `purpose` issued to the user in [since, before). */
  countIssued(userId: string, purpose: TokenPurpose, since: Date, before: Date): Promise<number>;
}
