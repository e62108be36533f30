import type { LoginDefence } from "../../abuse/login-defence.js";
import type { AlertSink } from "../../notify/ports.js";
import type { RiskAssessor } from "../../risk/assessor.js";
import type { SessionIssuer, TokenPair } from "../../sessions/session-issuer.js";
import { riskOf, type LoginAttempt } from "../attempt.js";
import { amrOf } from "../second-factor.js";
import type { RecordDecision } from "./decision.js";

/**
 * The end of a successful login: the first factor's proof is spent, the
 * brute-force count starts again, the
 * decision is recorded, the device becomes known (a known device keeps its
 * token, any other gets a new one), a new device is alerted, and the session
 * starts with the amr of the factors that passed.
 */
export function issueSession(deps: {
  defence: Pick<LoginDefence, "succeeded">;
  risk: Pick<RiskAssessor, "newDeviceToken" | "remember">;
  alerts: AlertSink;
  sessions: Pick<SessionIssuer, "start">;
  decide: RecordDecision;
}): (attempt: LoginAttempt) => Promise<TokenPair> {
  return async (attempt) => {
    const risk = riskOf(attempt);
    const { userId, call, now } = attempt;
    // Decided: the first factor's single-use proof is spent (once, whoever races).
    await attempt.spend?.();
    const device =
      risk.history.device && attempt.deviceToken ? { token: attempt.deviceToken, hash: risk.deviceHash! } : deps.risk.newDeviceToken();
    const outcome = attempt.needSecondFactor ? "mfa_passed" : attempt.stepUp && !attempt.secondFactorOn ? "allow_no_second_factor" : "allow";
    // Independent writes: one round trip of latency instead of three.
    await Promise.all([
      deps.defence.succeeded(attempt.admission),
      deps.decide(attempt, "success", outcome),
      deps.risk.remember({ userId, deviceHash: device.hash, ip: call.client.ip, at: now, mfa: attempt.secondFactorUsed !== undefined }),
    ]);
    if (risk.signals.newDevice && !risk.signals.firstLogin) {
      deps.alerts.notify({ type: "new_device_login", at: now, userId, details: { ip: call.client.ip ?? "", reasons: [...risk.assessment.reasons] } });
    }
    const pair = await deps.sessions.start(userId, attempt.role, { authTime: now, amr: amrOf(attempt.amr, attempt.secondFactorUsed), emailVerified: attempt.emailVerified }, call);
    return { ...pair, deviceToken: device.token };
  };
}
