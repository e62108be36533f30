import type { LoginDefence } from "../abuse/login-defence.js";
import { loadAccount } from "../accounts/account.js";
import { normalizeEmail } from "../accounts/email.js";
import { normalizePassword, type PasswordPolicy } from "../accounts/password-policy.js";
import type { UserStore } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { PasswordHasher } from "../hashing/ports.js";
import { mfaRequired, type SecondFactorInput, type SecondFactors } from "../login/second-factor.js";
import type { Composer } from "../mail/dispatcher.js";
import { emailTokenInvalid, type MailTokens } from "../mail/mail-tokens.js";
import { mailEntry, requestFacts, type OnQueued } from "../mail/outbox.js";
import type { EmailTokenStore, OutboxStore } from "../mail/ports.js";
import type { AlertSink } from "../notify/ports.js";
import type { RevocationListener } from "../sessions/ports.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import type { RecoveryStore } from "./ports.js";

// Password reset. ForgotPassword writes the request to the outbox whatever
// the address: the same work, answer and time for an address with an
// account and one without. The dispatcher looks the address up when it
// sends: no account, no mail. The link's token is single use, lives 30
// minutes, and dies with a newer reset mail, a login or a password change.
// A reset never bypasses the second factor, ends every session, clears a
// brute-force lock and is announced by mail.

export const RESET_TTL_MS = 30 * 60_000;
/** Wrong second factors a reset link takes before it is void. */
export const MAX_SECOND_FACTOR_TRIES = 5;
/** Reset mails per account and hour, whatever the number of requests (no mail bombing). */
export const RESET_MAILS_PER_HOUR = 5;

export interface ResetPasswordInput extends SecondFactorInput {
  token: string;
  newPassword: string;
}

export interface PasswordReset {
  forgotPassword(input: { email: string; captchaToken?: string | undefined }, call: CallContext): Promise<void>;
  resetPassword(input: ResetPasswordInput, call: CallContext): Promise<void>;
}

export function createPasswordReset(deps: {
  users: Pick<UserStore, "get" | "findCredentialByUserId">;
  store: Pick<RecoveryStore, "resetPassword">;
  outbox: Pick<OutboxStore, "enqueue">;
  tokens: MailTokens;
  defence: Pick<LoginDefence, "admitRegistration" | "accountKey">;
  factors: Pick<SecondFactors, "enabled" | "methods">;
  tokenStore: Pick<EmailTokenStore, "reserveCodeAttempt" | "consume">;
  policy: Pick<PasswordPolicy, "check">;
  hasher: Pick<PasswordHasher, "hash">;
  revocations: RevocationListener;
  /** No device skips MFA on the strength of the old password. */
  forgetTrustedDevices(userId: string): Promise<void>;
  alerts: AlertSink;
  trail: Pick<AuditTrail, "record" | "failed" | "sessionsEnded">;
  clock: Clock;
  onQueued: OnQueued;
}): PasswordReset {
  return {
    async forgotPassword(input, call) {
      try {
        const email = normalizeEmail(input.email);
        await deps.defence.admitRegistration(input.captchaToken, call);
        const now = deps.clock.now();
        await deps.outbox.enqueue(mailEntry("password_reset", now, { address: email }, requestFacts(call, now)));
        deps.onQueued();
        // Whether the address has an account is not known here, on purpose.
        await deps.trail.record({ type: "password_forgot", outcome: "success" }, call);
      } catch (err) {
        return deps.trail.failed("password_forgot", err, call);
      }
    },

    async resetPassword(input, call) {
      let userId: string | undefined;
      try {
        const now = deps.clock.now();
        const token = await deps.tokens.redeem(input.token, "reset_password", now);
        userId = token.userId;
        const { user } = await loadAccount(deps.users, token.userId);
        deps.policy.check(input.newPassword, { email: user.email, name: user.profile.name });
        if (await deps.factors.enabled(user.id)) {
          // Counted on the link, not on the login throttle: a lock run up by
          // someone guessing passwords must not keep the owner from resetting.
          const method = deps.factors.methods.find((m) => m.presented(input));
          if (!method) throw mfaRequired(deps.factors as SecondFactors);
          const tries = await deps.tokenStore.reserveCodeAttempt(token.id, MAX_SECOND_FACTOR_TRIES, now);
          if (tries === undefined) throw emailTokenInvalid();
          try {
            await method.verify(user.id, input, call);
          } catch (err) {
            // The last try gone wrong voids the link.
            if (tries === MAX_SECOND_FACTOR_TRIES) await deps.tokenStore.consume(token.id, now);
            throw err;
          }
        }
        const passwordHash = await deps.hasher.hash(normalizePassword(input.newPassword));
        const done = await deps.store.resetPassword({
          tokenId: token.id,
          userId: user.id,
          email: token.email,
          passwordHash,
          throttleKey: deps.defence.accountKey(user.email),
          now,
          mail: mailEntry("security_notice", now, { userId: user.id }, { event: "password_reset", ...requestFacts(call, now) }),
        });
        if (!done) throw emailTokenInvalid();
        deps.onQueued();
        if (done.revokedSessionIds.length > 0) {
          deps.revocations.sessionsRevoked(done.revokedSessionIds.map((id) => ({ id, userId: user.id })));
          await deps.trail.sessionsEnded(user.id, done.revokedSessionIds, "password_reset", call);
        }
        await deps.forgetTrustedDevices(user.id);
        deps.alerts.notify({ type: "password_reset", at: now, userId: user.id, details: { ip: call.client.ip ?? "" } });
        await deps.trail.record({ type: "password_reset", outcome: "success", userId: user.id }, call);
      } catch (err) {
        return deps.trail.failed("password_reset", err, call, { userId });
      }
    },
  };
}

export function passwordResetComposer(deps: { users: Pick<UserStore, "findCredentialByEmail" | "get">; tokens: MailTokens }): Composer {
  return async (message, now) => {
    const address = message.address;
    const credential = address ? await deps.users.findCredentialByEmail(address) : undefined;
    if (!address || !credential) return { drop: "no account" };
    const issued = await deps.tokens.issue(
      message,
      {
        userId: credential.userId,
        purpose: "reset_password",
        email: address,
        ttlMs: RESET_TTL_MS,
        // The reset an undo sends is not capped: whoever made the change could fill the cap.
        perHour: message.params.reason === "undo" ? undefined : RESET_MAILS_PER_HOUR,
      },
      now,
    );
    if ("drop" in issued) return issued;
    const user = await deps.users.get(credential.userId);
    return { to: address, locale: user?.profile.locale, vars: { link: issued.link("/reset-password"), ip: message.params.ip, at: message.params.at } };
  };
}
