import type { Admission, LoginDefence } from "../abuse/login-defence.js";
import type { AccountWithCredential } from "../accounts/account.js";
import { normalizeEmailForLookup } from "../accounts/email.js";
import { normalizePassword, type PasswordPolicy } from "../accounts/password-policy.js";
import type { UserStore } from "../accounts/ports.js";
import type { PasswordHasher } from "../hashing/ports.js";
import type { RiskAssessor } from "../risk/assessor.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { invalidCredentials } from "../shared/errors.js";
import type { FirstFactorResult } from "./attempt.js";
import { admitFirstFactor } from "./first-factor-admission.js";

// The password: the first factor of Login, and the check every sensitive
// operation repeats (Reauthenticate, enrolling or disabling TOTP, changing
// the password). Every check is claimed by the brute-force defence first and
// counts with the account's failed logins, so a stolen access token is not
// an unlimited password oracle.

/** The account's own password, counted with its failed logins; the admission to clear or fail later. */
export type PasswordCheck = (account: Pick<AccountWithCredential, "user" | "passwordHash">, password: string, call: CallContext) => Promise<Admission>;

export function createPasswordCheck(deps: {
  policy: Pick<PasswordPolicy, "checkSize">;
  defence: Pick<LoginDefence, "admit" | "failed">;
  hasher: Pick<PasswordHasher, "verify">;
}): PasswordCheck {
  return async ({ user, passwordHash }, password, call) => {
    deps.policy.checkSize(password);
    const admission = await deps.defence.admit({ canonicalEmail: user.email, knownDevice: true }, call);
    if (!(await deps.hasher.verify(passwordHash, normalizePassword(password)))) {
      await deps.defence.failed(admission, { userId: user.id, factor: "password" }, call);
      throw invalidCredentials();
    }
    return admission;
  };
}

export interface PasswordLoginInput {
  email: string;
  password: string;
  captchaToken?: string | undefined;
  deviceId?: string | undefined;
}


/**
 * Login's first factor: the account by e-mail, the attempt admitted by the
 * brute-force defence, then the password verified — against a dummy hash of
 * the same cost when the address has no account, so both answers take the
 * same time and are the same error.
 */
export function createPasswordFactor(deps: {
  users: Pick<UserStore, "findCredentialByEmail" | "rehashPassword">;
  policy: Pick<PasswordPolicy, "checkSize">;
  defence: Pick<LoginDefence, "admit" | "failed">;
  hasher: PasswordHasher;
  risk: Pick<RiskAssessor, "deviceHash" | "novelty">;
  /** The hash an unknown address is verified against (one per parameter set in use: login/dummy-hash.ts). */
  dummyHashFor(canonicalEmail: string): string;
  clock: Clock;
  /** A re-hash with the configured cost failed (the login itself succeeded). */
  onRehashError?(err: unknown): void;
}): (input: PasswordLoginInput, call: CallContext, onIdentified: (userId: string) => void) => Promise<FirstFactorResult> {
  async function maybeRehash(userId: string, stored: string, password: string): Promise<void> {
    if (!deps.hasher.needsRehash(stored)) return;
    try {
      const next = await deps.hasher.hash(password);
      await deps.users.rehashPassword(userId, stored, next, deps.clock.now());
    } catch (err) {
      // Retried at the next login.
      deps.onRehashError?.(err);
    }
  }

  return async (input, call, onIdentified) => {
    deps.policy.checkSize(input.password);
    const password = normalizePassword(input.password);
    const email = normalizeEmailForLookup(input.email);
    const credential = email === undefined ? undefined : await deps.users.findCredentialByEmail(email);
    // A device token this account issued: looked up the same way whether
    // or not the account exists.
    // Attempts on an address that cannot exist are counted too, under its
    // plain lower-cased spelling.
    const canonicalEmail = email ?? input.email.trim().toLowerCase();
    const admission = await admitFirstFactor(
      deps,
      { canonicalEmail, userId: credential?.userId, deviceId: input.deviceId, captchaToken: input.captchaToken },
      call,
    );
    // Same work whether or not the account exists: no timing oracle.
    const ok = await deps.hasher.verify(credential?.passwordHash ?? deps.dummyHashFor(canonicalEmail), password);
    // The trail names the account even when the password was wrong.
    if (credential) onIdentified(credential.userId);
    if (!credential || !ok) {
      await deps.defence.failed(admission, { password, userId: credential?.userId, factor: "password" }, call);
      throw invalidCredentials();
    }
    await maybeRehash(credential.userId, credential.passwordHash, password);
    return { userId: credential.userId, role: credential.role, admission, amr: ["pwd"], emailVerified: credential.emailVerified };
  };
}
