import { accountNotFound } from "../accounts/account.js";
import type { User, UserStore } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { Composer } from "../mail/dispatcher.js";
import { emailTokenInvalid, type MailTokens } from "../mail/mail-tokens.js";
import { mailEntry, requestFacts, type OnQueued } from "../mail/outbox.js";
import { maskEmail } from "../accounts/email.js";
import type { OutboxEntry, OutboxStore } from "../mail/ports.js";
import type { AlertSink } from "../notify/ports.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import type { RecoveryStore } from "./ports.js";

// Verified addresses: a mail with a link proves who reads the mailbox.
// Registration sends one, SendVerificationEmail another, an address change
// one to the new address (which becomes the account's only when verified).

export const VERIFY_TTL_MS = 24 * 3_600_000;
/** Verification mails per account and hour, whatever the number of requests. */
export const MAILS_PER_HOUR = 5;

/** The verification mail of `address` (the account's, or its pending new one). */
export function verificationMail(userId: string, address: string, now: Date): OutboxEntry {
  return mailEntry("verify_email", now, { userId, address });
}

export interface Verification {
  verifyEmail(token: string, call: CallContext): Promise<{ email: string }>;
  sendVerificationEmail(principal: Principal, call: CallContext): Promise<void>;
}

export function createVerification(deps: {
  users: Pick<UserStore, "get">;
  store: Pick<RecoveryStore, "verifyAddress">;
  outbox: Pick<OutboxStore, "enqueue">;
  tokens: MailTokens;
  alerts: AlertSink;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
  onQueued: OnQueued;
}): Verification {
  return {
    async verifyEmail(token, call) {
      let userId: string | undefined;
      try {
        const now = deps.clock.now();
        const t = await deps.tokens.redeem(token, "verify_email", now);
        userId = t.userId;
        const { address: _address, ...changeNotice } = mailEntry(
          "email_change_notice",
          now,
          { userId: t.userId },
          { new_email: maskEmail(t.email), ...requestFacts(call, now) },
        );
        const outcome = await deps.store.verifyAddress({ tokenId: t.id, userId: t.userId, email: t.email, now, changeNotice });
        if (outcome.kind === "stale") throw emailTokenInvalid();
        if (outcome.kind === "changed") {
          deps.onQueued();
          deps.alerts.notify({ type: "email_changed", at: now, userId: t.userId, details: { ip: call.client.ip ?? "" } });
          await deps.trail.record({ type: "email_change", outcome: "success", reason: "verified", userId }, call);
        } else {
          await deps.trail.record({ type: "email_verify", outcome: "success", userId }, call);
        }
        return { email: outcome.email };
      } catch (err) {
        return deps.trail.failed("email_verify", err, call, { userId });
      }
    },

    async sendVerificationEmail(principal, call) {
      const user = await deps.users.get(principal.userId);
      if (!user) throw accountNotFound();
      const target = user.pendingEmail ?? (user.emailVerified ? undefined : user.email);
      if (!target) throw new DomainError("failed_precondition", "VALIDATION_FAILED", "the address is already verified and no change is pending");
      await deps.outbox.enqueue(verificationMail(user.id, target, deps.clock.now()));
      deps.onQueued();
      await deps.trail.record({ type: "email_verification_request", outcome: "success", userId: user.id, sessionId: principal.sessionId }, call);
    },
  };
}

/** Composers of the verification mail and of the "someone tried to register with your address" notice. */
export function verificationComposers(deps: { users: Pick<UserStore, "get" | "findCredentialByEmail">; tokens: MailTokens; appUrl: string }): {
  verify_email: Composer;
  registration_attempt: Composer;
} {
  const owner = async (userId: string | undefined): Promise<User | undefined> => (userId ? deps.users.get(userId) : undefined);
  return {
    async verify_email(message, now) {
      const user = await owner(message.userId);
      const address = message.address;
      if (!user || !address) return { drop: "no account" };
      if (address !== user.email && address !== user.pendingEmail) return { drop: "address no longer the account's" };
      if (address === user.email && user.emailVerified) return { drop: "already verified" };
      const issued = await deps.tokens.issue(message, { userId: user.id, purpose: "verify_email", email: address, ttlMs: VERIFY_TTL_MS, perHour: MAILS_PER_HOUR, perAddressPerHour: MAILS_PER_HOUR }, now);
      if ("drop" in issued) return issued;
      return { to: address, locale: user.profile.locale, vars: { link: issued.link("/verify-email") } };
    },
    // Written by a registration that found the address taken: the owner is
    // looked up now, so that the registration did the same work either way.
    async registration_attempt(message) {
      const userId = message.userId ?? (message.address ? (await deps.users.findCredentialByEmail(message.address))?.userId : undefined);
      const user = await owner(userId);
      if (!user) return { drop: "no account" };
      return { to: user.email, locale: user.profile.locale, vars: { link: `${deps.appUrl}/login` } };
    },
  };
}
