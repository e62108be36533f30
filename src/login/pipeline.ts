import type { LoginDefence } from "../abuse/login-defence.js";
import type { AuditTrail } from "../audit/trail.js";
import type { MfaChallenges } from "../mfa/challenge.js";
import type { AlertSink } from "../notify/ports.js";
import type { RiskAssessor } from "../risk/assessor.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import type { SessionIssuer, TokenPair } from "../sessions/session-issuer.js";
import { openAttempt, type FirstFactorResult, type LoginRequestExtras, type LoginStep } from "./attempt.js";
import type { SecondFactorCheck, SecondFactors } from "./second-factor.js";
import { accountPolicy } from "./steps/account-policy.js";
import { assessRisk } from "./steps/assess-risk.js";
import { captchaOnRisk } from "./steps/captcha.js";
import { createDecisionRecorder } from "./steps/decision.js";
import { denyOnRisk } from "./steps/deny.js";
import { issueSession } from "./steps/issue-session.js";
import { secondFactorStep } from "./steps/second-factor.js";
import { trustedDevice } from "./steps/trusted-device.js";
import { verifiedAddress } from "./steps/verified-address.js";

// What every login does after its first factor, in order:
//
//   verified address (REQUIRE_EMAIL_VERIFICATION) → assess risk → account policy (admins need MFA) → deny → CAPTCHA →
//   trusted device → second factor → issue the session
//
// A first factor (login/password.ts today) produces a FirstFactorResult and
// hands it to `complete`; a new first factor is a new use case calling the
// same pipeline, and a new second factor joins SecondFactors. Neither edits
// a step. Each step is unit-tested with fakes (test/unit/login/).

export interface LoginPipelineDeps {
  risk: Pick<RiskAssessor, "assess" | "newDeviceToken" | "remember">;
  factors: SecondFactors;
  checkSecondFactor: SecondFactorCheck;
  challenges: Pick<MfaChallenges, "issue">;
  defence: Pick<LoginDefence, "succeeded" | "failed" | "challengeCaptcha">;
  sessions: Pick<SessionIssuer, "start">;
  alerts: AlertSink;
  trail: Pick<AuditTrail, "record">;
  clock: Clock;
  /** How long after its last MFA login a device may skip the second factor. */
  trustedDeviceTtlMs: number;
  /** Accounts whose address is not verified do not log in (EMAIL_NOT_VERIFIED). */
  requireVerifiedEmail?: boolean | undefined;
}

export interface LoginPipeline {
  /** Runs every step after a first factor and issues the session. */
  complete(first: FirstFactorResult, extras: LoginRequestExtras, call: CallContext): Promise<TokenPair>;
}

export function createLoginPipeline(deps: LoginPipelineDeps): LoginPipeline {
  const decide = createDecisionRecorder(deps.trail);
  const steps: LoginStep[] = [
    verifiedAddress({ required: deps.requireVerifiedEmail ?? false }),
    assessRisk({ risk: deps.risk, factors: deps.factors }),
    accountPolicy({ defence: deps.defence, decide }),
    denyOnRisk({ defence: deps.defence, decide }),
    captchaOnRisk({ defence: deps.defence, decide }),
    trustedDevice({ trustedDeviceTtlMs: deps.trustedDeviceTtlMs }),
    secondFactorStep({ factors: deps.factors, check: deps.checkSecondFactor, challenges: deps.challenges, decide, trail: deps.trail }),
  ];
  const finish = issueSession({ defence: deps.defence, risk: deps.risk, alerts: deps.alerts, sessions: deps.sessions, decide });
  return {
    async complete(first, extras, call) {
      const attempt = openAttempt(first, extras, call, deps.clock.now());
      for (const step of steps) await step(attempt);
      return finish(attempt);
    },
  };
}
