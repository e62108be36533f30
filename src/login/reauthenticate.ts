import type { LoginDefence } from "../abuse/login-defence.js";
import { loadAccount } from "../accounts/account.js";
import type { UserStore } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { tokenInvalid } from "../sessions/authenticate.js";
import type { SessionStore } from "../sessions/ports.js";
import type { SessionIssuer } from "../sessions/session-issuer.js";
import type { PasswordCheck } from "./password.js";
import { amrOf, mfaRequired, secondFactorPresented, type SecondFactorCheck, type SecondFactorInput, type SecondFactors } from "./second-factor.js";

// Reauthenticate: a fresh proof of identity on the caller's session (the
// password, and the second factor when the account has one) gives a new
// access token with a new auth_time, for the operations that need a recent
// login.

export function createReauthenticate(deps: {
  users: Pick<UserStore, "get" | "findCredentialByUserId">;
  checkPassword: PasswordCheck;
  factors: SecondFactors;
  checkSecondFactor: SecondFactorCheck;
  defence: Pick<LoginDefence, "succeeded">;
  sessions: Pick<SessionStore, "reauthenticate">;
  issuer: Pick<SessionIssuer, "accessToken">;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
}): (
  principal: Principal,
  input: SecondFactorInput & { password: string },
  call: CallContext,
) => Promise<{ accessToken: string; accessTokenExpiresAt: Date }> {
  return async (principal, input, call) => {
    const ids = { userId: principal.userId, sessionId: principal.sessionId };
    try {
      const account = await loadAccount(deps.users, principal.userId);
      const admission = await deps.checkPassword(account, input.password, call);
      let factor: Awaited<ReturnType<SecondFactorCheck>> | undefined;
      if (await deps.factors.enabled(account.user.id)) {
        if (!secondFactorPresented(deps.factors, input)) throw mfaRequired(deps.factors);
        factor = await deps.checkSecondFactor(account.user.id, admission, input, call);
      }
      await deps.defence.succeeded(admission);
      const now = deps.clock.now();
      const amr = amrOf(["pwd"], factor);
      if (!(await deps.sessions.reauthenticate({ sessionId: principal.sessionId, userId: account.user.id, authTime: now, amr }))) throw tokenInvalid();
      const access = await deps.issuer.accessToken({ userId: account.user.id, sessionId: principal.sessionId, role: account.role, now, authTime: now, amr, emailVerified: account.user.emailVerified });
      await deps.trail.record({ type: "login", outcome: "success", reason: "reauthenticate", ...ids }, call);
      return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt };
    } catch (err) {
      return deps.trail.failed("login", err, call, ids);
    }
  };
}
