import type { AuditTrail } from "../audit/trail.js";
import type { CallContext } from "../shared/call.js";
import type { TokenPair } from "../sessions/session-issuer.js";
import type { PasswordLoginInput } from "./password.js";
import type { FirstFactorResult, LoginRequestExtras } from "./attempt.js";
import type { LoginPipeline } from "./pipeline.js";
import type { SecondFactorInput } from "./second-factor.js";

// Login: e-mail and password, then the pipeline; the second factor may come
// in the same request (one-shot) or after MFA_REQUIRED (CompleteMfaLogin).

export interface LoginInput extends PasswordLoginInput, SecondFactorInput {}

export function createLogin(deps: {
  passwordFactor(input: PasswordLoginInput, call: CallContext, onIdentified: (userId: string) => void): Promise<FirstFactorResult>;
  pipeline: Pick<LoginPipeline, "complete">;
  trail: Pick<AuditTrail, "record" | "failed">;
}): (input: LoginInput, call: CallContext) => Promise<TokenPair> {
  return async (input, call) => {
    let userId: string | undefined;
    try {
      const first = await deps.passwordFactor(input, call, (id) => (userId = id));
      const extras: LoginRequestExtras = {
        secondFactor: { mfaCode: input.mfaCode, recoveryCode: input.recoveryCode },
        captchaToken: input.captchaToken,
        deviceToken: input.deviceId,
      };
      const pair = await deps.pipeline.complete(first, extras, call);
      await deps.trail.record({ type: "login", outcome: "success", userId, sessionId: pair.sessionId }, call);
      return pair;
    } catch (err) {
      return deps.trail.failed("login", err, call, { userId });
    }
  };
}
