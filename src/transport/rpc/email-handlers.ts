import type { ServiceImpl } from "@connectrpc/connect";
import type { EmailService as EmailServiceDesc } from "../../../gen/identity/v1/email_service_pb.js";
import type { CompleteEmailLoginInput } from "../../login/email/complete.js";
import type { StartEmailLogin } from "../../login/email/start.js";
import type { EmailChange } from "../../recovery/email-change.js";
import type { PasswordReset } from "../../recovery/password-reset.js";
import type { Verification } from "../../recovery/verification.js";
import type { TokenPair } from "../../sessions/session-issuer.js";
import type { CallContext } from "../../shared/call.js";
import type { Clock } from "../../shared/clock.js";
import { callContext as call, requirePrincipal as principal } from "./context.js";
import { refuseCookiesOnlyOffRest, tokenFields } from "./identity-handlers.js";

// Thin handlers of EmailService: decode, one use-case call, encode.

/** The use cases EmailService's RPCs call (wired in app/identity.ts). */
export interface EmailFlows extends Verification, PasswordReset, EmailChange {
  startEmailLogin: StartEmailLogin;
  completeEmailLogin(input: CompleteEmailLoginInput, call: CallContext): Promise<TokenPair>;
}

export function emailHandlers(flows: EmailFlows, clock: Clock): ServiceImpl<typeof EmailServiceDesc> {
  return {
    async verifyEmail(req, ctx) {
      return flows.verifyEmail(req.token, call(ctx));
    },

    async sendVerificationEmail(_req, ctx) {
      await flows.sendVerificationEmail(principal(ctx), call(ctx));
      return {};
    },

    async forgotPassword(req, ctx) {
      await flows.forgotPassword({ email: req.email, captchaToken: req.captchaToken }, call(ctx));
      return {};
    },

    async resetPassword(req, ctx) {
      await flows.resetPassword({ token: req.token, newPassword: req.newPassword, mfaCode: req.mfaCode, recoveryCode: req.recoveryCode }, call(ctx));
      return {};
    },

    async startEmailLogin(req, ctx) {
      return flows.startEmailLogin({ email: req.email, captchaToken: req.captchaToken }, call(ctx));
    },

    async completeEmailLogin(req, ctx) {
      refuseCookiesOnlyOffRest(req.cookiesOnly, ctx);
      const pair = await flows.completeEmailLogin(
        {
          token: req.token,
          email: req.email,
          code: req.code,
          attempt: req.attempt,
          confirmOtherClient: req.confirmOtherClient,
          mfaCode: req.mfaCode,
          recoveryCode: req.recoveryCode,
          captchaToken: req.captchaToken,
          deviceId: req.deviceId,
        },
        call(ctx),
      );
      return { ...tokenFields(pair, clock), userId: pair.userId, deviceToken: pair.deviceToken ?? "" };
    },

    async changeEmail(req, ctx) {
      await flows.changeEmail(principal(ctx), { newEmail: req.newEmail }, call(ctx));
      return {};
    },

    async revertEmailChange(req, ctx) {
      return flows.revertEmailChange(req.token, call(ctx));
    },
  };
}
