import type { LoginDefence } from "../abuse/login-defence.js";
import { loadAccount } from "../accounts/account.js";
import type { UserStore } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { CredentialEvents } from "../login/credential-change.js";
import type { PasswordCheck } from "../login/password.js";
import { mfaEnrollmentRequired } from "../login/steps/account-policy.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { RecentAuthGuard } from "../sessions/recent-auth.js";
import { mfaAlreadyEnabled, mfaNotEnabled, type MfaService } from "./mfa-service.js";

// The user's own second factor: enrol TOTP, confirm it, turn it off,
// regenerate recovery codes, read the status. Every change needs a recent
// login (with MFA when the account has it); enrolling and disabling need
// the password too, checked like a login.

export interface TotpEnrolment {
  startTotpEnrollment(
    principal: Principal,
    input: { password: string },
    call: CallContext,
  ): Promise<{ uri: string; qrDataUrl: string; secret: string; expiresAt: Date }>;
  confirmTotpEnrollment(principal: Principal, code: string, call: CallContext): Promise<string[]>;
  disableTotp(principal: Principal, input: { password: string; code: string }, call: CallContext): Promise<void>;
  regenerateRecoveryCodes(principal: Principal, call: CallContext): Promise<string[]>;
  mfaStatus(principal: Principal): Promise<{ totpEnabled: boolean; recoveryCodesRemaining: number }>;
}

export function createTotpEnrolment(deps: {
  mfa: MfaService;
  users: Pick<UserStore, "get" | "findCredentialByUserId">;
  checkPassword: PasswordCheck;
  defence: Pick<LoginDefence, "succeeded" | "failed">;
  requireRecentAuth: RecentAuthGuard;
  credentials: CredentialEvents;
  trail: Pick<AuditTrail, "failed">;
}): TotpEnrolment {
  const { mfa, trail } = deps;
  return {
    async startTotpEnrollment(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        // A stolen token must not be able to tie the account to the thief's
        // authenticator (and get the recovery codes): enrolment needs a
        // recent login and the password, whose guesses count like logins.
        await deps.requireRecentAuth(principal);
        const account = await loadAccount(deps.users, principal.userId);
        // Nothing to enrol: say so before a password check that would count.
        if (await mfa.enabled(account.user.id)) throw mfaAlreadyEnabled();
        await deps.defence.succeeded(await deps.checkPassword(account, input.password, call));
        const started = await mfa.startEnrolment(account.user.id, account.user.email, call);
        deps.credentials.alert("mfa_enrollment_started", principal, call);
        return started;
      } catch (err) {
        return trail.failed("mfa_enrol", err, call, ids);
      }
    },

    async confirmTotpEnrollment(principal, code, call) {
      await deps.requireRecentAuth(principal);
      const codes = await mfa.confirmEnrolment(principal.userId, code, call);
      await deps.credentials.changed("mfa_enabled", principal, call);
      return codes;
    },

    async disableTotp(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        await deps.requireRecentAuth(principal);
        const account = await loadAccount(deps.users, principal.userId);
        if (account.role === "admin") throw mfaEnrollmentRequired();
        // Nothing to turn off: say so before a password check that would count.
        if (!(await mfa.enabled(account.user.id))) throw mfaNotEnabled();
        const admission = await deps.checkPassword(account, input.password, call);
        try {
          await mfa.disable(account.user.id, input.code, call);
        } catch (err) {
          await deps.defence.failed(admission, { userId: account.user.id, factor: "mfa" }, call);
          throw err;
        }
        await deps.defence.succeeded(admission);
        await deps.credentials.changed("mfa_disabled", principal, call);
      } catch (err) {
        return trail.failed("mfa_disable", err, call, ids);
      }
    },

    async regenerateRecoveryCodes(principal, call) {
      await deps.requireRecentAuth(principal);
      const codes = await mfa.regenerateRecoveryCodes(principal.userId, call);
      await deps.credentials.changed("recovery_codes_regenerated", principal, call);
      return codes;
    },

    mfaStatus: (principal) => mfa.status(principal.userId),
  };
}
