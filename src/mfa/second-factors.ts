import { mfaCodeInvalid, type SecondFactors } from "../login/second-factor.js";
import type { MfaService } from "./mfa-service.js";

// TOTP and recovery codes as the login pipeline's second-factor methods.
// TOTP goes first: a request carrying a TOTP code is judged by it alone.
export function totpSecondFactors(mfa: MfaService): SecondFactors {
  const given = (v: string | undefined) => v !== undefined && v !== "";
  return {
    enabled: (userId) => mfa.enabled(userId),
    methods: [
      {
        name: "totp",
        // RFC 8176: "otp", a one-time password.
        amr: ["otp"],
        presented: (input) => given(input.mfaCode),
        async verify(userId, input) {
          if (!(await mfa.checkTotp(userId, input.mfaCode ?? ""))) throw mfaCodeInvalid();
        },
      },
      {
        name: "recovery_code",
        // RFC 8176: "kba", a one-time look-up secret the user keeps.
        amr: ["kba"],
        presented: (input) => given(input.recoveryCode),
        async verify(userId, input, call) {
          if (!(await mfa.useRecoveryCode(userId, input.recoveryCode ?? "", call))) throw mfaCodeInvalid();
        },
      },
    ],
  };
}
