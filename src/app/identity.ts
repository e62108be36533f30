import { randomBytes } from "node:crypto";
import type { LoginDefence } from "../abuse/login-defence.js";
import { createMyAccount } from "../accounts/my-account.js";
import type { PasswordPolicy } from "../accounts/password-policy.js";
import type { UserStore } from "../accounts/ports.js";
import { createRegister } from "../accounts/register.js";
import type { AuditLog } from "../audit/ports.js";
import { createAuditTrail } from "../audit/trail.js";
import type { PasswordHasher } from "../hashing/ports.js";
import { createCompleteMfaLogin } from "../login/complete-mfa-login.js";
import { createCredentialEvents } from "../login/credential-change.js";
import { createLogin } from "../login/login.js";
import { createPasswordCheck, createPasswordFactor } from "../login/password.js";
import { createLoginPipeline } from "../login/pipeline.js";
import { createReauthenticate } from "../login/reauthenticate.js";
import { createSecondFactorCheck } from "../login/second-factor.js";
import type { MfaChallenges } from "../mfa/challenge.js";
import { createTotpEnrolment } from "../mfa/enrolment.js";
import type { MfaService } from "../mfa/mfa-service.js";
import { totpSecondFactors } from "../mfa/second-factors.js";
import type { AlertSink } from "../notify/ports.js";
import type { RiskAssessor } from "../risk/assessor.js";
import { createAuthentication } from "../sessions/authenticate.js";
import type { RevocationListener, RoleLifetimes, SessionStore } from "../sessions/ports.js";
import { createRecentAuthGuard } from "../sessions/recent-auth.js";
import { createRefresh } from "../sessions/refresh.js";
import { createSessionControl } from "../sessions/session-control.js";
import { createSessionIssuer } from "../sessions/session-issuer.js";
import type { Clock } from "../shared/clock.js";
import type { TokenIssuer } from "../tokens/ports.js";
import type { IdentityService } from "../transport/rpc/identity-handlers.js";
import { createCompleteEmailLogin } from "../login/email/complete.js";
import { createStartEmailLogin, emailLoginComposer } from "../login/email/start.js";
import type { Composer } from "../mail/dispatcher.js";
import type { MailKind } from "../mail/ports.js";
import { securityNoticeComposer } from "../notify/mail-notices.js";
import { createEmailChange, emailChangeNoticeComposer } from "../recovery/email-change.js";
import { createPasswordReset, passwordResetComposer } from "../recovery/password-reset.js";
import { createVerification, verificationComposers } from "../recovery/verification.js";
import type { EmailFlows } from "../transport/rpc/email-handlers.js";
import type { MailChannel } from "./mail.js";

// Wires the use cases of every feature into the one service the RPC
// handlers call. Each feature gets only the collaborators it needs; this is
// the only place that knows them all.

export interface IdentityCollaborators {
  users: UserStore;
  sessions: SessionStore;
  audit: AuditLog;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  revocations: RevocationListener;
  policy: PasswordPolicy;
  clock: Clock;
  /** The hash an unknown address is verified against (login/dummy-hash.ts). */
  dummyHashFor(canonicalEmail: string): string;
  lifetimes: RoleLifetimes;
  maxSessionsPerUser: number;
  refreshReuseGraceMs: number;
  defence: LoginDefence;
  alerts: AlertSink;
  mfa: MfaService;
  challenges: MfaChallenges;
  risk: RiskAssessor;
  recentAuthMaxAgeMs: number;
  trustedDeviceTtlMs: number;
  emailDomains?: { isDisposable(email: string): boolean } | undefined;
  onRehashError?(err: unknown): void;
  /** The e-mail channel (app/mail.ts). */
  mail: Pick<MailChannel, "outbox" | "tokenStore" | "tokens" | "secrets" | "recovery" | "appUrl" | "onQueued">;
  /** REQUIRE_EMAIL_VERIFICATION. */
  requireEmailVerification: boolean;
}

export interface WiredIdentity {
  identity: IdentityService;
  email: EmailFlows;
  /** Who gets each kind of mail, with what (the dispatcher's composers). */
  composers: Record<MailKind, Composer>;
}

export function wireIdentity(c: IdentityCollaborators): WiredIdentity {
  const { users, clock, defence, risk, mail } = c;
  const trail = createAuditTrail({ audit: c.audit, clock });
  const factors = totpSecondFactors(c.mfa);
  const checkSecondFactor = createSecondFactorCheck({ factors, defence });
  const checkPassword = createPasswordCheck({ policy: c.policy, defence, hasher: c.hasher });
  const requireRecentAuth = createRecentAuthGuard({ clock, maxAgeMs: c.recentAuthMaxAgeMs, secondFactorEnabled: factors.enabled });
  const forgetTrustedDevices = (userId: string) => risk.forgetMfa(userId);
  const credentials = createCredentialEvents({ forgetTrustedDevices, alerts: c.alerts, clock });
  const issuer = createSessionIssuer({
    sessions: c.sessions,
    tokens: c.tokens,
    lifetimes: c.lifetimes,
    maxSessionsPerUser: c.maxSessionsPerUser,
    revocations: c.revocations,
    trail,
    clock,
  });
  const pipeline = createLoginPipeline({
    risk,
    factors,
    checkSecondFactor,
    challenges: c.challenges,
    defence,
    sessions: issuer,
    alerts: c.alerts,
    trail,
    clock,
    trustedDeviceTtlMs: c.trustedDeviceTtlMs,
    requireVerifiedEmail: c.requireEmailVerification,
  });
  const passwordFactor = createPasswordFactor({
    users,
    policy: c.policy,
    defence,
    hasher: c.hasher,
    risk,
    dummyHashFor: c.dummyHashFor,
    clock,
    onRehashError: c.onRehashError,
  });

  // A password nobody knows, for accounts whose password can no longer be trusted.
  const unknownPasswordHash = () => c.hasher.hash(randomBytes(32).toString("base64url"));
  const identity: IdentityService = {
    register: createRegister({
      users,
      outbox: mail.outbox,
      policy: c.policy,
      hasher: c.hasher,
      defence,
      emailDomains: c.emailDomains,
      enumerationSafe: c.requireEmailVerification,
      trail,
      clock,
      onQueued: mail.onQueued,
    }),
    login: createLogin({ passwordFactor, pipeline, trail }),
    completeMfaLogin: createCompleteMfaLogin({
      users,
      challenges: c.challenges,
      checkSecondFactor,
      risk,
      defence,
      sessions: issuer,
      alerts: c.alerts,
      trail,
      clock,
    }),
    reauthenticate: createReauthenticate({ users, checkPassword, factors, checkSecondFactor, defence, sessions: c.sessions, issuer, trail, clock }),
    refresh: createRefresh({
      sessions: c.sessions,
      issuer,
      lifetimes: c.lifetimes,
      refreshReuseGraceMs: c.refreshReuseGraceMs,
      revocations: c.revocations,
      alerts: c.alerts,
      trail,
      clock,
    }),
    ...createAuthentication({ tokens: c.tokens, sessions: c.sessions, clock }),
    ...createSessionControl({ sessions: c.sessions, revocations: c.revocations, requireRecentAuth, trail, clock }),
    ...createMyAccount({
      users,
      policy: c.policy,
      hasher: c.hasher,
      checkPassword,
      defence,
      requireRecentAuth,
      revocations: c.revocations,
      credentials,
      trail,
      clock,
    }),
    ...createTotpEnrolment({ mfa: c.mfa, users, checkPassword, defence, requireRecentAuth, credentials, trail }),
  };

  const common = { tokens: mail.tokens, alerts: c.alerts, trail, clock, onQueued: mail.onQueued };
  const email: EmailFlows = {
    ...createVerification({ ...common, users, store: mail.recovery, outbox: mail.outbox }),
    ...createPasswordReset({
      ...common,
      users,
      store: mail.recovery,
      outbox: mail.outbox,
      defence,
      factors,
      tokenStore: mail.tokenStore,
      policy: c.policy,
      hasher: c.hasher,
      revocations: c.revocations,
      forgetTrustedDevices,
    }),
    ...createEmailChange({
      ...common,
      users,
      store: mail.recovery,
      requireRecentAuth,
      emailDomains: c.emailDomains,
      revocations: c.revocations,
      forgetTrustedDevices,
      unknownPasswordHash,
    }),
    startEmailLogin: createStartEmailLogin({ outbox: mail.outbox, defence, trail, clock, onQueued: mail.onQueued }),
    completeEmailLogin: createCompleteEmailLogin({
      users,
      tokens: mail.tokens,
      store: mail.tokenStore,
      secrets: mail.secrets,
      recovery: mail.recovery,
      unknownPasswordHash,
      revocations: c.revocations,
      defence,
      risk,
      pipeline,
      trail,
      clock,
    }),
  };
  const composers: Record<MailKind, Composer> = {
    ...verificationComposers({ users, tokens: mail.tokens, appUrl: mail.appUrl }),
    password_reset: passwordResetComposer({ users, tokens: mail.tokens }),
    email_login: emailLoginComposer({ users, tokens: mail.tokens }),
    email_change_notice: emailChangeNoticeComposer({ users, tokens: mail.tokens }),
    security_notice: securityNoticeComposer({ users }),
  };
  return { identity, email, composers };
}
