import type { Admission } from "../abuse/login-defence.js";
import type { Role } from "../accounts/ports.js";
import type { RiskContext } from "../risk/assessor.js";
import type { CallContext } from "../shared/call.js";
import type { SecondFactorInput, SecondFactorMethod } from "./second-factor.js";

// A login in progress, as zitadel models a session that accumulates checks:
// a first factor (password today; e-mail code, passkey, social later) names
// the account and opens the attempt, then the pipeline's steps (login/
// pipeline.ts) each read what the earlier ones decided and add their own.

/** What a first factor proved: whose account, how (RFC 8176 amr), and the brute-force admission to clear or fail. */
export interface FirstFactorResult {
  userId: string;
  role: Role;
  admission: Admission;
  amr: readonly string[];
  /** The account's address is verified (the `email_verified` claim). */
  emailVerified?: boolean | undefined;
  /**
   * Spends the first factor's single-use proof (a mail's link or code) once
   * the login is decided: before its session or its MFA challenge is
   * issued, never on a refusal, so a CAPTCHA demand or a mistyped second
   * factor does not cost the user the mail. Throws when a concurrent use
   * spent it first.
   */
  spend?: (() => Promise<void>) | undefined;
}

/** What the request carried beyond the first factor. */
export interface LoginRequestExtras {
  secondFactor: SecondFactorInput;
  captchaToken?: string | undefined;
  /** The device token an earlier login returned (proves a known device). */
  deviceToken?: string | undefined;
}

export interface LoginAttempt extends FirstFactorResult, LoginRequestExtras {
  readonly call: CallContext;
  readonly now: Date;
  /** The risk engine's view (assess-risk step). */
  risk?: RiskContext | undefined;
  /** The account has a second factor. */
  secondFactorOn: boolean;
  /** The risk asks for more than the first factor. */
  stepUp: boolean;
  /** This login must pass the second factor (trusted-device step). */
  needSecondFactor: boolean;
  /** The second factor that passed (second-factor step). */
  secondFactorUsed?: SecondFactorMethod | undefined;
}

export function openAttempt(first: FirstFactorResult, extras: LoginRequestExtras, call: CallContext, now: Date): LoginAttempt {
  return { ...first, ...extras, call, now, secondFactorOn: false, stepUp: false, needSecondFactor: false };
}

/** One step of the pipeline: reads and updates the attempt, or throws to end it. */
export type LoginStep = (attempt: LoginAttempt) => Promise<void>;

/** The risk step must have run before the steps that read it. */
export function riskOf(attempt: LoginAttempt): RiskContext {
  if (!attempt.risk) throw new Error("login pipeline: the risk step must run before this one");
  return attempt.risk;
}
