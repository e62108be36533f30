import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { BadRequest_FieldViolationSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { type IdentityService as IdentityServiceDesc } from "../../../gen/identity/v1/identity_service_pb.js";
import { DomainError } from "../../shared/errors.js";
import type { MyAccount } from "../../accounts/my-account.js";
import type { RegisterInput } from "../../accounts/register.js";
import type { User } from "../../accounts/ports.js";
import type { LoginInput } from "../../login/login.js";
import type { SecondFactorInput } from "../../login/second-factor.js";
import type { TotpEnrolment } from "../../mfa/enrolment.js";
import type { Authentication } from "../../sessions/authenticate.js";
import type { SessionControl } from "../../sessions/session-control.js";
import type { TokenPair } from "../../sessions/session-issuer.js";
import type { CallContext, Principal } from "../../shared/call.js";
import type { Clock } from "../../shared/clock.js";
import { toProfile, toProfilePatch } from "../../accounts/profile.js";
import { callContext as call, requirePrincipal as principal, REST_PROTOCOL } from "./context.js";
import { introspectionToProto, profileInputFromProto, sessionToProto, userToProto } from "./convert.js";
import { connectErrorOf } from "./errors.js";

// Thin handlers: decode, one use-case call, encode.

/** The use cases IdentityService's RPCs call, from every feature (wired in app/identity.ts). */
export interface IdentityService extends MyAccount, TotpEnrolment, SessionControl, Authentication {
  register(input: RegisterInput, call: CallContext): Promise<User>;
  login(input: LoginInput, call: CallContext): Promise<TokenPair>;
  /** The second step of a login that answered MFA_REQUIRED. */
  completeMfaLogin(input: SecondFactorInput & { challenge: string }, call: CallContext): Promise<TokenPair>;
  /** A fresh proof of identity on the caller's session: a new access token with a new auth_time. */
  reauthenticate(
    principal: Principal,
    input: SecondFactorInput & { password: string },
    call: CallContext,
  ): Promise<{ accessToken: string; accessTokenExpiresAt: Date }>;
  refresh(refreshToken: string, call: CallContext): Promise<TokenPair>;
}


// cookies_only asks for the tokens as cookies instead of in the body: only
// the REST gateway sets cookies, so anywhere else the caller would get no
// tokens at all. Checked before the call, so a refused request has no effect.
export function refuseCookiesOnlyOffRest(cookiesOnly: boolean | undefined, ctx: HandlerContext): void {
  if (!cookiesOnly || ctx.protocolName === REST_PROTOCOL) return;
  throw connectErrorOf(Code.InvalidArgument, "VALIDATION_FAILED", "cookies_only: only REST (browser) calls get cookies", { field: "cookies_only" }, [
    create(BadRequest_FieldViolationSchema, { field: "cookies_only", description: "only REST (browser) calls get cookies" }),
  ]);
}

export function tokenFields(pair: TokenPair, clock: Clock) {
  return {
    accessToken: pair.accessToken,
    refreshToken: pair.refreshToken,
    tokenType: "Bearer",
    expiresIn: Math.max(0, Math.round((pair.accessTokenExpiresAt.getTime() - clock.now().getTime()) / 1000)),
    refreshTokenExpireTime: timestampFromDate(pair.refreshTokenExpiresAt),
    sessionId: pair.sessionId,
  };
}

export function identityHandlers(identity: IdentityService, clock: Clock): ServiceImpl<typeof IdentityServiceDesc> {
  return {
    async register(req, ctx) {
      const account = req.account;
      if (!account) throw new DomainError("invalid_argument", "VALIDATION_FAILED", "account: value is required", { field: "account" });
      const user = await identity.register(
        {
          email: account.email,
          password: account.password,
          profile: toProfile(profileInputFromProto(req.infoUser), clock.now()),
          captchaToken: req.captchaToken,
        },
        call(ctx),
      );
      return { user: userToProto(user) };
    },

    async login(req, ctx) {
      refuseCookiesOnlyOffRest(req.cookiesOnly, ctx);
      const pair = await identity.login(
        {
          email: req.email,
          password: req.password,
          captchaToken: req.captchaToken,
          mfaCode: req.mfaCode,
          recoveryCode: req.recoveryCode,
          deviceId: req.deviceId,
        },
        call(ctx),
      );
      return { ...tokenFields(pair, clock), userId: pair.userId, deviceToken: pair.deviceToken ?? "" };
    },

    async logout(_req, ctx) {
      await identity.logout(principal(ctx), call(ctx));
      return {};
    },

    async refreshToken(req, ctx) {
      refuseCookiesOnlyOffRest(req.cookiesOnly, ctx);
      return tokenFields(await identity.refresh(req.refreshToken, call(ctx)), clock);
    },

    async getProfile(_req, ctx) {
      return { user: userToProto(await identity.getProfile(principal(ctx))) };
    },

    async updateProfile(req, ctx) {
      const patch = toProfilePatch(profileInputFromProto(req.infoUser), clock.now());
      return { user: userToProto(await identity.updateProfile(principal(ctx), patch)) };
    },

    async changePassword(req, ctx) {
      const result = await identity.changePassword(
        principal(ctx),
        { oldPassword: req.oldPassword, newPassword: req.newPassword, revokeOtherSessions: req.revokeOtherSessions ?? true },
        call(ctx),
      );
      return { revokedSessionCount: result.revokedSessions };
    },

    async listSessions(req, ctx) {
      const page = await identity.listSessions(principal(ctx), { pageSize: req.pageSize, pageToken: req.pageToken });
      return { sessions: page.sessions.map(sessionToProto), nextPageToken: page.nextPageToken };
    },

    async revokeSession(req, ctx) {
      const caller = principal(ctx);
      await identity.revokeSession(caller, req.sessionId, call(ctx));
      return { current: req.sessionId.toLowerCase() === caller.sessionId };
    },

    async revokeOtherSessions(_req, ctx) {
      const result = await identity.revokeOtherSessions(principal(ctx), call(ctx));
      return { revokedSessionCount: result.revokedSessions };
    },

    async completeMfaLogin(req, ctx) {
      refuseCookiesOnlyOffRest(req.cookiesOnly, ctx);
      const pair = await identity.completeMfaLogin(
        { challenge: req.mfaChallenge, mfaCode: req.mfaCode, recoveryCode: req.recoveryCode },
        call(ctx),
      );
      return { ...tokenFields(pair, clock), userId: pair.userId, deviceToken: pair.deviceToken ?? "" };
    },

    async reauthenticate(req, ctx) {
      const r = await identity.reauthenticate(
        principal(ctx),
        { password: req.password, mfaCode: req.mfaCode, recoveryCode: req.recoveryCode },
        call(ctx),
      );
      return {
        accessToken: r.accessToken,
        tokenType: "Bearer",
        expiresIn: Math.max(0, Math.round((r.accessTokenExpiresAt.getTime() - clock.now().getTime()) / 1000)),
      };
    },

    async startTotpEnrollment(req, ctx) {
      const r = await identity.startTotpEnrollment(principal(ctx), { password: req.password }, call(ctx));
      return { otpauthUri: r.uri, qrCodePngDataUrl: r.qrDataUrl, secret: r.secret, expireTime: timestampFromDate(r.expiresAt) };
    },

    async confirmTotpEnrollment(req, ctx) {
      return { recoveryCodes: await identity.confirmTotpEnrollment(principal(ctx), req.code, call(ctx)) };
    },

    async disableTotp(req, ctx) {
      await identity.disableTotp(principal(ctx), { password: req.password, code: req.code }, call(ctx));
      return {};
    },

    async regenerateRecoveryCodes(_req, ctx) {
      return { recoveryCodes: await identity.regenerateRecoveryCodes(principal(ctx), call(ctx)) };
    },

    async getMfaStatus(_req, ctx) {
      return await identity.mfaStatus(principal(ctx));
    },

    async verifyToken(req) {
      return introspectionToProto(await identity.verifyToken(req.accessToken));
    },
  };
}
