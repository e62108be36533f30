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
}

export function wireIdentity(c: IdentityCollaborators): IdentityService {
  const { users, clock, defence, risk } = c;
  const trail = createAuditTrail({ audit: c.audit, clock });
  const factors = totpSecondFactors(c.mfa);
  const checkSecondFactor = createSecondFactorCheck({ factors, defence });
  const checkPassword = createPasswordCheck({ policy: c.policy, defence, hasher: c.hasher });
  const requireRecentAuth = createRecentAuthGuard({ clock, maxAgeMs: c.recentAuthMaxAgeMs, secondFactorEnabled: factors.enabled });
  const credentials = createCredentialEvents({ forgetTrustedDevices: (userId) => risk.forgetMfa(userId), alerts: c.alerts, clock });
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

  return {
    register: createRegister({ users, policy: c.policy, hasher: c.hasher, defence, emailDomains: c.emailDomains, trail, clock }),
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
}
