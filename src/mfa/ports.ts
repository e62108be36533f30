// What the second-factor feature keeps: TOTP secrets (sealed), recovery
// codes (keyed hashes) and two-step login challenges (hashed).

export interface TotpRecord {
  sealedSecret: Uint8Array;
  confirmedAt?: Date | undefined;
  /** The last time step accepted; codes of this step or earlier are refused. */
  lastUsedStep?: number | undefined;
  /** An unconfirmed enrolment is void after this. */
  pendingExpiresAt?: Date | undefined;
}

export interface MfaStore {
  getTotp(userId: string): Promise<TotpRecord | undefined>;
  /** Starts or replaces an unconfirmed enrolment; false when TOTP is already confirmed. */
  startTotp(input: { userId: string; sealedSecret: Uint8Array; now: Date; expiresAt: Date }): Promise<boolean>;
  /**
   * Confirms the pending enrolment whose secret is `sealedSecret`, records
   * `step` as used and replaces the recovery codes, in one transaction;
   * false when there is no such unexpired enrolment.
   */
  confirmTotp(input: { userId: string; sealedSecret: Uint8Array; step: number; now: Date; codeHashes: Uint8Array[] }): Promise<boolean>;
  /** Records `step` as used when it is later than the last used one (one atomic statement); false = replay. */
  useTotpStep(userId: string, step: number): Promise<boolean>;
  /** Re-seals the secret under the current key if it is still `expected`. */
  resealTotp(userId: string, expected: Uint8Array, next: Uint8Array): Promise<void>;
  /** Removes TOTP and the recovery codes; false when there was no confirmed TOTP. */
  disableTotp(userId: string): Promise<boolean>;
  /** Marks the unused code as used (one atomic statement); false when unknown or already used. */
  useRecoveryCode(userId: string, codeHash: Uint8Array, now: Date): Promise<boolean>;
  replaceRecoveryCodes(userId: string, codeHashes: Uint8Array[], now: Date): Promise<void>;
  remainingRecoveryCodes(userId: string): Promise<number>;
  createChallenge(input: {
    tokenHash: Uint8Array;
    userId: string;
    now: Date;
    expiresAt: Date;
    deviceHash?: Uint8Array | undefined;
    /** The first factor's amr values (["pwd"], ["email"]). */
    firstFactorAmr?: readonly string[] | undefined;
  }): Promise<void>;
  /** The challenge when unexpired, unconsumed and with attempts left. */
  findChallenge(tokenHash: Uint8Array, now: Date): Promise<{ userId: string; deviceHash?: Uint8Array | undefined; firstFactorAmr: string[] } | undefined>;
  /** Counts a wrong code against the challenge. */
  failChallenge(tokenHash: Uint8Array): Promise<void>;
  /** Consumes the challenge (one atomic statement); false when it was already used or expired. */
  consumeChallenge(tokenHash: Uint8Array, now: Date): Promise<boolean>;
}
