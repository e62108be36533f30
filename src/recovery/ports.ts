import type { OutboxEntry } from "../mail/ports.js";

// What account recovery and address changes change, each in one
// transaction with the token it spends and the mails it causes.

export type VerifyOutcome =
  /** The account's address is now verified. */
  | { kind: "verified"; email: string }
  /** The pending new address was verified and is now the account's. */
  | { kind: "changed"; email: string; previousEmail: string }
  /** The token was spent meanwhile, or names neither the address nor the pending one any more. */
  | { kind: "stale" };

export interface RecoveryStore {
  /**
   * Spends a verify_email token and verifies (or, for a pending change,
   * switches to) its address. A switch also writes `changeNotice` to the
   * former address (a fresh undo link, whenever the change completes) and
   * voids the reset and login links that went to other addresses. Throws
   * EMAIL_ALREADY_REGISTERED when another account took it.
   */
  verifyAddress(input: { tokenId: string; userId: string; email: string; now: Date; changeNotice: Omit<OutboxEntry, "address"> }): Promise<VerifyOutcome>;
  /**
   * The address proved by other means (an e-mail login): verified if it
   * still is the account's and was not. When it was not, whoever set the
   * password (or holds a session) never proved the mailbox: in the same
   * transaction the password becomes `distrustedPasswordHash` (one nobody
   * knows) and every session ends. The revoked sessions, or undefined when
   * nothing changed.
   */
  markVerified(input: { userId: string; email: string; now: Date; distrustedPasswordHash: () => Promise<string> }): Promise<{ revokedSessionIds: string[] } | undefined>;
  /**
   * Spends a reset token and, in the same transaction: the new hash, every
   * session revoked, the brute-force count cleared, `mail` written.
   * Undefined when the token was spent meanwhile.
   */
  resetPassword(input: {
    tokenId: string;
    userId: string;
    /** The address the reset mail went to: verified by following it, if still the account's. */
    email: string;
    passwordHash: string;
    throttleKey: Uint8Array;
    now: Date;
    mail: OutboxEntry;
  }): Promise<{ revokedSessionIds: string[] } | undefined>;
  /** Records the pending address and writes `mails`; throws EMAIL_ALREADY_REGISTERED when another account has it. */
  startEmailChange(input: { userId: string; newEmail: string; now: Date; mails: readonly OutboxEntry[] }): Promise<void>;
  /**
   * Spends a revert token and restores its address (verified), drops any
   * pending change, voids every other unused token of the account but the
   * undo links of earlier changes, revokes every session and writes `mail`
   * (a password-reset mail to the restored address: whoever changed the
   * address may know the password). Undefined when the token was spent
   * meanwhile; throws EMAIL_ALREADY_REGISTERED when another account took the
   * address in between.
   */
  revertEmail(input: {
    tokenId: string;
    userId: string;
    email: string;
    now: Date;
    mail: OutboxEntry;
    /** When the change being undone began: second factors enrolled since are the changer's and are removed. */
    since: Date;
    /** A password nobody knows: whoever changed the address may know the old one; the owner sets a new one from `mail`. */
    passwordHash: string;
  }): Promise<{ revokedSessionIds: string[] } | undefined>;
  /** Whether a live undo link reserves `email` for the account it was taken from (no one else may register or claim it). */
  reserved(email: string, now: Date): Promise<boolean>;
}
