import { createHash, timingSafeEqual } from "node:crypto";
import type { LoginDefence } from "../../abuse/login-defence.js";
import { maskEmail, normalizeEmailForLookup } from "../../accounts/email.js";
import type { PasswordCredential, UserStore } from "../../accounts/ports.js";
import type { AuditTrail } from "../../audit/trail.js";
import type { MailSecrets } from "../../mail/mail-secrets.js";
import { emailTokenInvalid, type MailTokens } from "../../mail/mail-tokens.js";
import type { EmailToken, EmailTokenStore } from "../../mail/ports.js";
import type { RecoveryStore } from "../../recovery/ports.js";
import type { RiskAssessor } from "../../risk/assessor.js";
import type { RevocationListener } from "../../sessions/ports.js";
import type { TokenPair } from "../../sessions/session-issuer.js";
import type { CallContext } from "../../shared/call.js";
import type { Clock } from "../../shared/clock.js";
import { DomainError, invalidCredentials } from "../../shared/errors.js";
import type { FirstFactorResult, LoginRequestExtras } from "../attempt.js";
import type { LoginPipeline } from "../pipeline.js";
import type { SecondFactorInput } from "../second-factor.js";
import { admitFirstFactor, NIL_UUID } from "../first-factor-admission.js";

// E-mail login, second half: a first factor for the login pipeline, like
// the password. The link's token proves the mailbox; opened on another
// client than the one that asked (a link someone sent you, or a phishing
// relay), it waits for the user to confirm the account it signs in to. The
// code is typed by a person where they asked for it; wrong codes count with
// the account's failed logins and void the mail after five. Both are single
// use, spent when the pipeline (risk, CAPTCHA, second factor) decides the
// login: before its session or its MFA challenge, never on a refusal.

export const MAX_WRONG_CODES = 5;

export interface CompleteEmailLoginInput extends SecondFactorInput {
  token?: string | undefined;
  email?: string | undefined;
  code?: string | undefined;
  /** The `attempt` StartEmailLogin gave this client. */
  attempt?: string | undefined;
  confirmOtherClient?: boolean | undefined;
  captchaToken?: string | undefined;
  deviceId?: string | undefined;
}

export function confirmationRequired(email: string): DomainError {
  return new DomainError(
    "failed_precondition",
    "EMAIL_LOGIN_CONFIRMATION_REQUIRED",
    "this link was asked for on another device or browser: confirm the account it signs in to, then retry with confirm_other_client",
    { email_hint: maskEmail(email) },
  );
}

function sameAttempt(attempt: string | undefined, bindingHash: Uint8Array | undefined): boolean {
  if (!attempt || !bindingHash) return false;
  const presented = createHash("sha256").update(attempt).digest();
  return presented.length === bindingHash.length && timingSafeEqual(presented, bindingHash);
}

export function createCompleteEmailLogin(deps: {
  users: Pick<UserStore, "findCredentialByEmail" | "findCredentialByUserId">;
  tokens: Pick<MailTokens, "redeem">;
  store: Pick<EmailTokenStore, "latest" | "consume" | "reserveCodeAttempt">;
  secrets: Pick<MailSecrets, "codeMatches">;
  recovery: Pick<RecoveryStore, "markVerified">;
  /** A hash of a password nobody knows (see markVerified). */
  unknownPasswordHash(): Promise<string>;
  revocations: RevocationListener;
  defence: Pick<LoginDefence, "admit" | "failed">;
  risk: Pick<RiskAssessor, "deviceHash" | "novelty">;
  pipeline: Pick<LoginPipeline, "complete">;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
}): (input: CompleteEmailLoginInput, call: CallContext) => Promise<TokenPair> {
  const admit = (canonicalEmail: string, credential: PasswordCredential | undefined, input: CompleteEmailLoginInput, call: CallContext) =>
    admitFirstFactor(deps, { canonicalEmail, userId: credential?.userId, deviceId: input.deviceId, captchaToken: input.captchaToken }, call);

  async function byLink(token: string, input: CompleteEmailLoginInput, call: CallContext, now: Date) {
    const t = await deps.tokens.redeem(token, "email_login", now);
    const credential = await deps.users.findCredentialByUserId(t.userId);
    if (!credential) throw emailTokenInvalid();
    if (!sameAttempt(input.attempt, t.bindingHash) && !input.confirmOtherClient) throw confirmationRequired(t.email);
    const admission = await admit(t.email, credential, input, call);
    return { t, credential, admission, spent: emailTokenInvalid };
  }

  async function byCode(rawEmail: string, code: string, input: CompleteEmailLoginInput, call: CallContext, now: Date) {
    const email = normalizeEmailForLookup(rawEmail);
    const credential = email === undefined ? undefined : await deps.users.findCredentialByEmail(email);
    const admission = await admit(email ?? rawEmail.trim().toLowerCase(), credential, input, call);
    // The same lookup with or without an account.
    const t: EmailToken | undefined = await deps.store.latest(credential?.userId ?? NIL_UUID, "email_login", now);
    // A try is taken before the code is compared, atomically: requests in
    // parallel get no more than MAX_WRONG_CODES between them.
    const tries = t === undefined ? undefined : await deps.store.reserveCodeAttempt(t.id, MAX_WRONG_CODES, now);
    if (!credential || !t || tries === undefined || !deps.secrets.codeMatches(t.id, code)) {
      // The last try gone wrong voids the whole mail, its link included.
      if (t && tries === MAX_WRONG_CODES) await deps.store.consume(t.id, now);
      await deps.defence.failed(admission, { userId: credential?.userId, factor: "email_code" }, call);
      throw invalidCredentials();
    }
    return { t, credential, admission, spent: invalidCredentials };
  }

  return async (input, call) => {
    let userId: string | undefined;
    try {
      const now = deps.clock.now();
      let proof;
      if (input.token) proof = await byLink(input.token, input, call, now);
      else if (input.email && input.code) proof = await byCode(input.email, input.code, input, call, now);
      else throw new DomainError("invalid_argument", "VALIDATION_FAILED", "give token, or email and code", { field: "token" });
      const { t, credential, admission, spent } = proof;
      userId = credential.userId;
      const first: FirstFactorResult = {
        userId: credential.userId,
        role: credential.role,
        admission,
        amr: ["email"],
        emailVerified: true,
        // Once the login is decided: a refusal (CAPTCHA, a mistyped second factor) leaves the mail usable.
        spend: async () => {
          if (!(await deps.store.consume(t.id, now))) throw spent();
          // Following the mail proved the mailbox. If nobody had proved it
          // before, whoever set the password did not: a password set and
          // sessions started by someone who registered the address ahead of
          // its owner (pre-hijacking) end here.
          const distrusted = await deps.recovery.markVerified({
            userId: credential.userId,
            email: t.email,
            now,
            distrustedPasswordHash: deps.unknownPasswordHash,
          });
          if (distrusted && distrusted.revokedSessionIds.length > 0) {
            deps.revocations.sessionsRevoked(distrusted.revokedSessionIds.map((id) => ({ id, userId: credential.userId })));
          }
        },
      };
      const extras: LoginRequestExtras = {
        secondFactor: { mfaCode: input.mfaCode, recoveryCode: input.recoveryCode },
        captchaToken: input.captchaToken,
        deviceToken: input.deviceId,
      };
      const pair = await deps.pipeline.complete(first, extras, call);
      await deps.trail.record({ type: "login", outcome: "success", reason: "email", userId, sessionId: pair.sessionId }, call);
      return pair;
    } catch (err) {
      return deps.trail.failed("login", err, call, { userId });
    }
  };
}
