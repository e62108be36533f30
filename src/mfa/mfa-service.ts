import { createHash, randomBytes } from "node:crypto";
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from "./recovery-codes.js";
import type { SecretBox } from "../keys/secret-box.js";
import type { Totp } from "./totp.js";
import { DomainError } from "../shared/errors.js";
import type { AuditEvent } from "../audit/ports.js";
import type { Clock } from "../shared/clock.js";
import type { CallContext } from "../shared/call.js";

// Second factors: TOTP (RFC 6238) with replay protection, single-use
// recovery codes, and the short-lived challenge of a two-step login.
// Secrets are sealed (AES-256-GCM, bound to the user id) before they reach
// the store; codes are stored as keyed hashes.

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
  createChallenge(input: { tokenHash: Uint8Array; userId: string; now: Date; expiresAt: Date; deviceHash?: Uint8Array | undefined }): Promise<void>;
  /** The challenge when unexpired, unconsumed and with attempts left. */
  findChallenge(tokenHash: Uint8Array, now: Date): Promise<{ userId: string; deviceHash?: Uint8Array | undefined } | undefined>;
  /** Counts a wrong code against the challenge. */
  failChallenge(tokenHash: Uint8Array): Promise<void>;
  /** Consumes the challenge (one atomic statement); false when it was already used or expired. */
  consumeChallenge(tokenHash: Uint8Array, now: Date): Promise<boolean>;
}

export type SecondFactor = "totp" | "recovery_code";

export interface MfaDeps {
  store: MfaStore;
  box: SecretBox;
  totp: Totp;
  clock: Clock;
  /** Key of the recovery-code hashes (a shared server secret). */
  recoveryKey: Uint8Array;
  issuer: string;
  record(event: Omit<AuditEvent, "at">): Promise<void>;
  enrolmentTtlMs: number;
  challengeTtlMs: number;
}

export const RECOVERY_CODE_COUNT = 10;
const CHALLENGE_BYTES = 32;
const CHALLENGE_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export function mfaCodeInvalid(): DomainError {
  return new DomainError("unauthenticated", "MFA_CODE_INVALID", "the code is wrong, expired or already used");
}

export function mfaAlreadyEnabled(): DomainError {
  return new DomainError("failed_precondition", "MFA_ALREADY_ENABLED", "TOTP is already on; disable it first to enrol another authenticator");
}

export function challengeInvalid(): DomainError {
  return new DomainError("unauthenticated", "MFA_CHALLENGE_INVALID", "the MFA challenge is unknown, expired or used; log in again");
}

export function hashChallenge(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

export interface MfaService {
  /** Whether TOTP is confirmed for the user. */
  enabled(userId: string): Promise<boolean>;
  startEnrolment(userId: string, email: string, call: CallContext): Promise<{ uri: string; qrDataUrl: string; secret: string; expiresAt: Date }>;
  confirmEnrolment(userId: string, code: string, call: CallContext): Promise<string[]>;
  /** Checks a TOTP code (replay-safe) or a recovery code (single use); throws MFA_CODE_INVALID. */
  verify(userId: string, input: { mfaCode?: string | undefined; recoveryCode?: string | undefined }, call: CallContext): Promise<SecondFactor>;
  /** Turns TOTP off after a current code; the caller has checked the password and recent login. */
  disable(userId: string, code: string, call: CallContext): Promise<void>;
  regenerateRecoveryCodes(userId: string, call: CallContext): Promise<string[]>;
  status(userId: string): Promise<{ totpEnabled: boolean; recoveryCodesRemaining: number }>;
  issueChallenge(userId: string, deviceHash: Uint8Array | undefined): Promise<{ token: string; expiresAt: Date }>;
  /** The challenge's user; throws MFA_CHALLENGE_INVALID. */
  openChallenge(token: string): Promise<{ userId: string; deviceHash?: Uint8Array | undefined; tokenHash: Uint8Array }>;
  failChallenge(tokenHash: Uint8Array): Promise<void>;
  consumeChallenge(tokenHash: Uint8Array): Promise<void>;
}

export function createMfaService(deps: MfaDeps): MfaService {
  const { store, box, totp, clock } = deps;
  const secretOf = (userId: string, sealed: Uint8Array) => Buffer.from(box.open(sealed, userId)).toString("utf8");

  async function newRecoveryCodes(): Promise<{ codes: string[]; hashes: Uint8Array[] }> {
    const codes = generateRecoveryCodes(RECOVERY_CODE_COUNT);
    const hashes = codes.map((c) => hashRecoveryCode(normalizeRecoveryCode(c)!, deps.recoveryKey));
    return { codes, hashes };
  }

  async function verifyTotp(userId: string, record: TotpRecord, code: string): Promise<boolean> {
    const now = clock.now();
    const step = await totp.verify({ secret: secretOf(userId, record.sealedSecret), code, now, afterStep: record.lastUsedStep });
    if (step === undefined) return false;
    // The database decides: two instances checking the same code at once
    // cannot both record its step.
    if (!(await store.useTotpStep(userId, step))) return false;
    if (box.needsReseal(record.sealedSecret)) {
      const next = box.seal(Buffer.from(secretOf(userId, record.sealedSecret)), userId);
      await store.resealTotp(userId, record.sealedSecret, next);
    }
    return true;
  }

  async function confirmed(userId: string): Promise<TotpRecord | undefined> {
    const record = await store.getTotp(userId);
    return record?.confirmedAt ? record : undefined;
  }

  return {
    async enabled(userId) {
      return (await confirmed(userId)) !== undefined;
    },

    async startEnrolment(userId, email, call) {
      const now = clock.now();
      const secret = totp.generateSecret();
      const expiresAt = new Date(now.getTime() + deps.enrolmentTtlMs);
      const started = await store.startTotp({ userId, sealedSecret: box.seal(Buffer.from(secret), userId), now, expiresAt });
      if (!started) throw mfaAlreadyEnabled();
      const uri = totp.uri({ secret, account: email, issuer: deps.issuer });
      await deps.record({ type: "mfa_enrol", outcome: "success", reason: "started", userId, ...call });
      return { uri, qrDataUrl: await totp.qrDataUrl(uri), secret, expiresAt };
    },

    async confirmEnrolment(userId, code, call) {
      const now = clock.now();
      const record = await store.getTotp(userId);
      if (record?.confirmedAt) {
        throw new DomainError("failed_precondition", "MFA_ALREADY_ENABLED", "TOTP is already on");
      }
      if (!record || (record.pendingExpiresAt && record.pendingExpiresAt <= now)) {
        throw new DomainError("failed_precondition", "MFA_NOT_ENABLED", "no TOTP enrolment in progress; start one first");
      }
      const step = await totp.verify({ secret: secretOf(userId, record.sealedSecret), code, now });
      if (step === undefined) {
        await deps.record({ type: "mfa_confirm", outcome: "failure", reason: "MFA_CODE_INVALID", userId, ...call });
        throw mfaCodeInvalid();
      }
      const { codes, hashes } = await newRecoveryCodes();
      // The confirming code's step is recorded as used: it cannot log in.
      if (!(await store.confirmTotp({ userId, sealedSecret: record.sealedSecret, step, now, codeHashes: hashes }))) {
        throw new DomainError("failed_precondition", "MFA_NOT_ENABLED", "the enrolment changed meanwhile; start again");
      }
      await deps.record({ type: "mfa_confirm", outcome: "success", userId, ...call });
      return codes;
    },

    async verify(userId, input, call) {
      const record = await confirmed(userId);
      if (!record) throw mfaCodeInvalid();
      if (input.mfaCode !== undefined && input.mfaCode !== "") {
        if (await verifyTotp(userId, record, input.mfaCode.trim())) return "totp";
        throw mfaCodeInvalid();
      }
      const normalized = input.recoveryCode === undefined ? undefined : normalizeRecoveryCode(input.recoveryCode);
      if (normalized !== undefined) {
        const used = await store.useRecoveryCode(userId, hashRecoveryCode(normalized, deps.recoveryKey), clock.now());
        await deps.record({
          type: "recovery_code_use",
          outcome: used ? "success" : "failure",
          reason: used ? undefined : "MFA_CODE_INVALID",
          userId,
          ...call,
          details: used ? { remaining: await store.remainingRecoveryCodes(userId) } : undefined,
        });
        if (used) return "recovery_code";
      }
      throw mfaCodeInvalid();
    },

    async disable(userId, code, call) {
      const record = await confirmed(userId);
      if (!record) throw new DomainError("failed_precondition", "MFA_NOT_ENABLED", "TOTP is not on");
      if (!(await verifyTotp(userId, record, code.trim()))) throw mfaCodeInvalid();
      await store.disableTotp(userId);
      await deps.record({ type: "mfa_disable", outcome: "success", userId, ...call });
    },

    async regenerateRecoveryCodes(userId, call) {
      if (!(await confirmed(userId))) throw new DomainError("failed_precondition", "MFA_NOT_ENABLED", "TOTP is not on");
      const { codes, hashes } = await newRecoveryCodes();
      await store.replaceRecoveryCodes(userId, hashes, clock.now());
      await deps.record({ type: "recovery_codes_regenerate", outcome: "success", userId, ...call });
      return codes;
    },

    async status(userId) {
      const on = (await confirmed(userId)) !== undefined;
      return { totpEnabled: on, recoveryCodesRemaining: on ? await store.remainingRecoveryCodes(userId) : 0 };
    },

    async issueChallenge(userId, deviceHash) {
      const now = clock.now();
      const token = randomBytes(CHALLENGE_BYTES).toString("base64url");
      const expiresAt = new Date(now.getTime() + deps.challengeTtlMs);
      await store.createChallenge({ tokenHash: hashChallenge(token), userId, now, expiresAt, deviceHash });
      return { token, expiresAt };
    },

    async openChallenge(token) {
      if (!CHALLENGE_SHAPE.test(token)) throw challengeInvalid();
      const tokenHash = hashChallenge(token);
      const found = await store.findChallenge(tokenHash, clock.now());
      if (!found) throw challengeInvalid();
      return { ...found, tokenHash };
    },

    failChallenge: (tokenHash) => store.failChallenge(tokenHash),

    async consumeChallenge(tokenHash) {
      if (!(await store.consumeChallenge(tokenHash, clock.now()))) throw challengeInvalid();
    },
  };
}
