import type { Admission, LoginDefence } from "../abuse/login-defence.js";
import type { CallContext } from "../shared/call.js";
import { DomainError } from "../shared/errors.js";

// The second factor of a login, as the login pipeline sees it: a list of
// methods (TOTP, recovery codes; later passkeys…), each saying whether the
// request carries it and checking it. A new method implements
// SecondFactorMethod and joins the list where the app wires it; nothing in
// the pipeline changes.

export interface SecondFactorInput {
  mfaCode?: string | undefined;
  recoveryCode?: string | undefined;
}

export interface SecondFactorMethod {
  /** Its name in MFA_REQUIRED's `methods` metadata. */
  readonly name: string;
  /** RFC 8176 amr values a success adds (besides "mfa"). */
  readonly amr: readonly string[];
  /** Whether the request carries this factor. */
  presented(input: SecondFactorInput): boolean;
  /** Throws MFA_CODE_INVALID when the factor is wrong, used or expired. */
  verify(userId: string, input: SecondFactorInput, call: CallContext): Promise<void>;
}

export interface SecondFactors {
  /** Whether the account has a second factor (then every login needs one, unless its device is trusted). */
  enabled(userId: string): Promise<boolean>;
  /** Tried in this order: the first one the request carries decides. */
  readonly methods: readonly SecondFactorMethod[];
}

export function mfaCodeInvalid(): DomainError {
  return new DomainError("unauthenticated", "MFA_CODE_INVALID", "the code is wrong, expired or already used");
}

/** The account has a second factor and the request carries none. */
export function mfaRequired(factors: SecondFactors, metadata: Record<string, string> = {}): DomainError {
  return new DomainError("unauthenticated", "MFA_REQUIRED", "the account has MFA on: send a TOTP or recovery code", {
    ...metadata,
    methods: factors.methods.map((m) => m.name).join(","),
  });
}

export function secondFactorPresented(factors: SecondFactors, input: SecondFactorInput): boolean {
  return factors.methods.some((m) => m.presented(input));
}

/** How the user proved who they are (RFC 8176): the first factor's values, then the second's and "mfa". */
export function amrOf(firstFactor: readonly string[], second: SecondFactorMethod | undefined): string[] {
  return second ? [...firstFactor, ...second.amr, "mfa"] : [...firstFactor];
}

/** Checks the second factor the request carries; a failure counts with the account's failed logins. */
export type SecondFactorCheck = (userId: string, admission: Admission, input: SecondFactorInput, call: CallContext) => Promise<SecondFactorMethod>;

export function createSecondFactorCheck(deps: { factors: SecondFactors; defence: Pick<LoginDefence, "failed"> }): SecondFactorCheck {
  return async (userId, admission, input, call) => {
    try {
      const method = deps.factors.methods.find((m) => m.presented(input));
      if (!method) throw mfaCodeInvalid();
      await method.verify(userId, input, call);
      return method;
    } catch (err) {
      await deps.defence.failed(admission, { userId, factor: "mfa" }, call);
      throw err;
    }
  };
}
