import type { Admission, LoginDefence } from "../abuse/login-defence.js";
import type { RiskAssessor } from "../risk/assessor.js";
import type { CallContext } from "../shared/call.js";

// Every first factor (the password, an e-mail link or code) is admitted the
// same way before it is checked: the device token the request presents, if
// this account issued it, makes the attempt a known device's (counted apart,
// no CAPTCHA under attack); then the brute-force claim. Looked up the same
// way whether or not the account exists.

/** Nobody's id: a device lookup for an unknown address matches nothing. */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

export async function admitFirstFactor(
  deps: { risk: Pick<RiskAssessor, "deviceHash" | "novelty">; defence: Pick<LoginDefence, "admit"> },
  input: { canonicalEmail: string; userId: string | undefined; deviceId?: string | undefined; captchaToken?: string | undefined },
  call: CallContext,
): Promise<Admission> {
  const presented = deps.risk.deviceHash(input.deviceId);
  const knownDevice = presented !== undefined && !(await deps.risk.novelty(input.userId ?? NIL_UUID, presented)).newDevice;
  return deps.defence.admit(
    { canonicalEmail: input.canonicalEmail, captchaToken: input.captchaToken, knownDevice, trustedDevice: knownDevice ? presented : undefined, userId: input.userId },
    call,
  );
}
