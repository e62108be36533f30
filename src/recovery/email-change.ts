import { accountNotFound, refuseDisposable } from "../accounts/account.js";
import { maskEmail, normalizeEmail } from "../accounts/email.js";
import type { UserStore } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { Composer } from "../mail/dispatcher.js";
import { emailTokenInvalid, type MailTokens } from "../mail/mail-tokens.js";
import { mailEntry, requestFacts, type OnQueued } from "../mail/outbox.js";
import type { AlertSink } from "../notify/ports.js";
import type { RecentAuthGuard } from "../sessions/recent-auth.js";
import type { RevocationListener } from "../sessions/ports.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import type { RecoveryStore } from "./ports.js";
import { verificationMail } from "./verification.js";

// Changing the address: the new one must be verified before it becomes the
// account's, and the old one is told, with a link that undoes the change
// for 7 days (restoring the address and ending every session): the
// standard defence against a takeover that starts by changing the address.

export const REVERT_TTL_MS = 7 * 24 * 3_600_000;

export interface EmailChange {
  changeEmail(principal: Principal, input: { newEmail: string }, call: CallContext): Promise<void>;
  revertEmailChange(token: string, call: CallContext): Promise<{ email: string }>;
}

export function createEmailChange(deps: {
  users: Pick<UserStore, "get">;
  store: Pick<RecoveryStore, "startEmailChange" | "revertEmail">;
  requireRecentAuth: RecentAuthGuard;
  emailDomains?: { isDisposable(email: string): boolean } | undefined;
  tokens: MailTokens;
  revocations: RevocationListener;
  forgetTrustedDevices(userId: string): Promise<void>;
  /** A hash of a password nobody knows (the undo replaces the password with it). */
  unknownPasswordHash(): Promise<string>;
  alerts: AlertSink;
  trail: Pick<AuditTrail, "record" | "failed" | "sessionsEnded">;
  clock: Clock;
  onQueued: OnQueued;
}): EmailChange {
  return {
    async changeEmail(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        await deps.requireRecentAuth(principal);
        const email = normalizeEmail(input.newEmail);
        refuseDisposable(deps.emailDomains, email, "new_email");
        const user = await deps.users.get(principal.userId);
        if (!user) throw accountNotFound();
        if (email === user.email) throw new DomainError("invalid_argument", "VALIDATION_FAILED", "new_email: is the account's address already", { field: "new_email" });
        const now = deps.clock.now();
        await deps.store.startEmailChange({
          userId: user.id,
          newEmail: email,
          now,
          mails: [
            verificationMail(user.id, email, now),
            mailEntry("email_change_notice", now, { userId: user.id, address: user.email }, { new_email: maskEmail(email), ...requestFacts(call, now) }),
          ],
        });
        deps.onQueued();
        await deps.trail.record({ type: "email_change", outcome: "success", reason: "requested", ...ids }, call);
      } catch (err) {
        return deps.trail.failed("email_change", err, call, ids);
      }
    },

    async revertEmailChange(token, call) {
      let userId: string | undefined;
      try {
        const now = deps.clock.now();
        const t = await deps.tokens.redeem(token, "revert_email", now);
        userId = t.userId;
        // Whoever changed the address may know the password and may have
        // enrolled a second factor since: the password becomes one nobody
        // knows, those factors go, and the owner gets a reset link at once
        // (not counted against the hourly cap, which the changer could fill).
        const done = await deps.store.revertEmail({
          tokenId: t.id,
          userId: t.userId,
          email: t.email,
          now,
          since: t.createdAt,
          passwordHash: await deps.unknownPasswordHash(),
          mail: mailEntry("password_reset", now, { address: t.email }, { ...requestFacts(call, now), reason: "undo" }),
        });
        if (!done) throw emailTokenInvalid();
        deps.onQueued();
        if (done.revokedSessionIds.length > 0) {
          deps.revocations.sessionsRevoked(done.revokedSessionIds.map((id) => ({ id, userId: t.userId })));
          await deps.trail.sessionsEnded(t.userId, done.revokedSessionIds, "email_change_reverted", call);
        }
        await deps.forgetTrustedDevices(t.userId);
        deps.alerts.notify({ type: "email_change_reverted", at: now, userId: t.userId, details: { ip: call.client.ip ?? "" } });
        await deps.trail.record({ type: "email_change_revert", outcome: "success", userId }, call);
        return { email: t.email };
      } catch (err) {
        return deps.trail.failed("email_change_revert", err, call, { userId });
      }
    },
  };
}

/** The notice to the former address, with the link that undoes the change. */
export function emailChangeNoticeComposer(deps: { users: Pick<UserStore, "get">; tokens: MailTokens }): Composer {
  return async (message, now) => {
    const user = message.userId ? await deps.users.get(message.userId) : undefined;
    const address = message.address;
    if (!user || !address) return { drop: "no account" };
    const issued = await deps.tokens.issue(message, { userId: user.id, purpose: "revert_email", email: address, ttlMs: REVERT_TTL_MS }, now);
    if ("drop" in issued) return issued;
    return {
      to: address,
      locale: user.profile.locale,
      vars: { link: issued.link("/revert-email"), newEmail: message.params.new_email, ip: message.params.ip, at: message.params.at },
    };
  };
}
