import type { AuditEvent } from "../audit/ports.js";
import type { SecretBox } from "../keys/secret-box.js";
import { mfaCodeInvalid } from "../login/second-factor.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import type { MfaStore, TotpRecord } from "./ports.js";
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from "./recovery-codes.js";
import type { Totp } from "./totp.js";

// TOTP (RFC 6238) with replay protection, and single-use recovery codes.
// Secrets are sealed (AES-256-GCM, bound to the user id) before they reach
// the store; codes are stored as keyed hashes.

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
}

export const RECOVERY_CODE_COUNT = 10;

export function mfaAlreadyEnabled(): DomainError {
  return new DomainError("failed_precondition", "MFA_ALREADY_ENABLED", "TOTP is already on; disable it first to enrol another authenticator");
}

export function mfaNotEnabled(message = "TOTP is not on"): DomainError {
  return new DomainError("failed_precondition", "MFA_NOT_ENABLED", message);
}

export interface MfaService {
  /** Whether TOTP is confirmed for the user. */
  enabled(userId: string): Promise<boolean>;
  startEnrolment(userId: string, email: string, call: CallContext): Promise<{ uri: string; qrDataUrl: string; secret: string; expiresAt: Date }>;
  confirmEnrolment(userId: string, code: string, call: CallContext): Promise<string[]>;
  /** Whether `code` is a current TOTP code of the user's confirmed secret; its step is then used up (across instances). */
  checkTotp(userId: string, code: string): Promise<boolean>;
  /** Uses a recovery code of a user with TOTP on (single use under concurrency); audited either way. */
  useRecoveryCode(userId: string, code: string, call: CallContext): Promise<boolean>;
  /** Turns TOTP off after a current code; the caller has checked the password and recent login. */
  disable(userId: string, code: string, call: CallContext): Promise<void>;
  regenerateRecoveryCodes(userId: string, call: CallContext): Promise<string[]>;
  status(userId: string): Promise<{ totpEnabled: boolean; recoveryCodesRemaining: number }>;
}

export function createMfaService(deps: MfaDeps): MfaService {
  const { store, box, totp, clock } = deps;
  const secretOf = (userId: string, sealed: Uint8Array) => Buffer.from(box.open(sealed, userId)).toString("utf8");

  function newRecoveryCodes(): { codes: string[]; hashes: Uint8Array[] } {
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
        throw mfaNotEnabled("no TOTP enrolment in progress; start one first");
      }
      const step = await totp.verify({ secret: secretOf(userId, record.sealedSecret), code, now });
      if (step === undefined) {
        await deps.record({ type: "mfa_confirm", outcome: "failure", reason: "MFA_CODE_INVALID", userId, ...call });
        throw mfaCodeInvalid();
      }
      const { codes, hashes } = newRecoveryCodes();
      // The confirming code's step is recorded as used: it cannot log in.
      if (!(await store.confirmTotp({ userId, sealedSecret: record.sealedSecret, step, now, codeHashes: hashes }))) {
        throw mfaNotEnabled("the enrolment changed meanwhile; start again");
      }
      await deps.record({ type: "mfa_confirm", outcome: "success", userId, ...call });
      return codes;
    },

    async checkTotp(userId, code) {
      const record = await confirmed(userId);
      return record !== undefined && (await verifyTotp(userId, record, code.trim()));
    },

    async useRecoveryCode(userId, code, call) {
      if (!(await confirmed(userId))) return false;
      const normalized = normalizeRecoveryCode(code);
      if (normalized === undefined) return false;
      const used = await store.useRecoveryCode(userId, hashRecoveryCode(normalized, deps.recoveryKey), clock.now());
      await deps.record({
        type: "recovery_code_use",
        outcome: used ? "success" : "failure",
        reason: used ? undefined : "MFA_CODE_INVALID",
        userId,
        ...call,
        details: used ? { remaining: await store.remainingRecoveryCodes(userId) } : undefined,
      });
      return used;
    },

    async disable(userId, code, call) {
      const record = await confirmed(userId);
      if (!record) throw mfaNotEnabled();
      if (!(await verifyTotp(userId, record, code.trim()))) throw mfaCodeInvalid();
      await store.disableTotp(userId);
      await deps.record({ type: "mfa_disable", outcome: "success", userId, ...call });
    },

    async regenerateRecoveryCodes(userId, call) {
      if (!(await confirmed(userId))) throw mfaNotEnabled();
      const { codes, hashes } = newRecoveryCodes();
      await store.replaceRecoveryCodes(userId, hashes, clock.now());
      await deps.record({ type: "recovery_codes_regenerate", outcome: "success", userId, ...call });
      return codes;
    },

    async status(userId) {
      const on = (await confirmed(userId)) !== undefined;
      return { totpEnabled: on, recoveryCodesRemaining: on ? await store.remainingRecoveryCodes(userId) : 0 };
    },
  };
}
