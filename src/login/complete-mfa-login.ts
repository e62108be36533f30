import type { LoginDefence } from "../abuse/login-defence.js";
import { loadAccount } from "../accounts/account.js";
import type { UserStore } from "../accounts/ports.js";
import type { AuditTrail } from "../audit/trail.js";
import type { MfaChallenges } from "../mfa/challenge.js";
import type { AlertSink } from "../notify/ports.js";
import type { RiskAssessor } from "../risk/assessor.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import type { SessionIssuer, TokenPair } from "../sessions/session-issuer.js";
import { amrOf, type SecondFactorCheck, type SecondFactorInput, type SecondFactorMethod } from "./second-factor.js";

// CompleteMfaLogin: the second step after MFA_REQUIRED. The challenge stands
// for the first factor (it was issued only after it passed); the second
// factor is checked against the account's counter (the device's own when
// the first step came with its token), the challenge is consumed once, and
// the session starts.

export function createCompleteMfaLogin(deps: {
  users: Pick<UserStore, "get" | "findCredentialByUserId">;
  challenges: Pick<MfaChallenges, "open" | "fail" | "consume">;
  checkSecondFactor: SecondFactorCheck;
  risk: Pick<RiskAssessor, "novelty" | "newDeviceToken" | "remember">;
  defence: Pick<LoginDefence, "admit" | "succeeded">;
  sessions: Pick<SessionIssuer, "start">;
  alerts: AlertSink;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
}): (input: SecondFactorInput & { challenge: string }, call: CallContext) => Promise<TokenPair> {
  return async (input, call) => {
    let userId: string | undefined;
    try {
      const challenge = await deps.challenges.open(input.challenge);
      userId = challenge.userId;
      const { user, role } = await loadAccount(deps.users, challenge.userId);
      const novelty = await deps.risk.novelty(user.id, challenge.deviceHash);
      const admission = await deps.defence.admit(
        { canonicalEmail: user.email, knownDevice: true, trustedDevice: novelty.newDevice ? undefined : challenge.deviceHash, userId: user.id },
        call,
      );
      let factor: SecondFactorMethod;
      try {
        factor = await deps.checkSecondFactor(user.id, admission, input, call);
      } catch (err) {
        await deps.challenges.fail(challenge.tokenHash);
        throw err;
      }
      // Single use: of two concurrent completions only one gets past this.
      await deps.challenges.consume(challenge.tokenHash);
      await deps.defence.succeeded(admission);
      const now = deps.clock.now();
      // The challenge keeps only the presented token's hash: this device
      // gets a new token, trusted for MFA from now on.
      const device = deps.risk.newDeviceToken();
      await deps.risk.remember({ userId: user.id, deviceHash: device.hash, ip: call.client.ip, at: now, mfa: true });
      if (novelty.newDevice && !novelty.firstLogin) {
        deps.alerts.notify({ type: "new_device_login", at: now, userId: user.id, details: { ip: call.client.ip ?? "", reasons: ["new_device"] } });
      }
      const pair = await deps.sessions.start(user.id, role, { authTime: now, amr: amrOf(challenge.firstFactorAmr, factor), emailVerified: user.emailVerified }, call);
      await deps.trail.record({ type: "login", outcome: "success", reason: "mfa_challenge", userId, sessionId: pair.sessionId }, call);
      return { ...pair, deviceToken: device.token };
    } catch (err) {
      return deps.trail.failed("login", err, call, { userId });
    }
  };
}
