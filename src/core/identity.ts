import { createHash, randomBytes } from "node:crypto";
import { normalizeEmail, normalizeEmailForLookup } from "../accounts/email.js";
import { DomainError, invalidCredentials, isDomainError } from "../shared/errors.js";
import type { Admission, LoginDefence } from "../abuse/login-defence.js";
import type { AlertSink, SecurityAlertType } from "../notify/ports.js";
import { mfaAlreadyEnabled, type MfaService, type SecondFactor } from "../mfa/mfa-service.js";
import type { RiskAssessor } from "../risk/assessor.js";
import { decodePageToken, encodePageToken } from "../shared/page-token.js";
import { normalizePassword, type PasswordPolicy } from "../accounts/password-policy.js";
import type { AccessClaims, TokenIssuer } from "../tokens/ports.js";
import type { AuditEvent, AuditLog } from "../audit/ports.js";
import type { Clock } from "../shared/clock.js";
import type { PasswordHasher } from "../hashing/ports.js";
import type { Profile, ProfilePatch, Role, User, UserStore } from "../accounts/ports.js";
import type { RevocationListener, RoleLifetimes, SessionInfo, SessionStore } from "../sessions/ports.js";
import { isAccessTokenShape } from "../tokens/token-shape.js";
import { isUuid, uuidv7 } from "../shared/uuid.js";
import type { CallContext, Principal } from "../shared/call.js";

export interface IdentityDeps {
  users: UserStore;
  sessions: SessionStore;
  audit: AuditLog;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  revocations: RevocationListener;
  policy: PasswordPolicy;
  clock: Clock;
  /**
   * A hash of a random password, verified when the e-mail is unknown so both
   * paths cost the same: one per parameter set in use (core/dummy-hash.ts).
   */
  dummyHashFor(canonicalEmail: string): string;
  /** Access-token, idle and absolute lifetimes of each role. */
  lifetimes: RoleLifetimes;
  /** Active sessions a user may have; a login beyond it ends the least recently used. */
  maxSessionsPerUser: number;
  /**
   * How long after its rotation a refresh token presented again, while its
   * successor is unused, counts as a concurrent refresh (REFRESH_TOKEN_SUPERSEDED,
   * session kept) rather than reuse (session revoked). 0 disables it.
   */
  refreshReuseGraceMs: number;
  /** Brute-force, spray and CAPTCHA defences of logins and registrations. */
  defence: LoginDefence;
  /** Security alerts (refresh-token reuse, new-device logins). */
  alerts: AlertSink;
  mfa: MfaService;
  risk: RiskAssessor;
  /** Sensitive operations need a login or re-authentication at most this old. */
  recentAuthMaxAgeMs: number;
  /** How long after its last MFA login a device may skip the second factor. */
  trustedDeviceTtlMs: number;
  /** Refuses registrations from disposable-mail domains; undefined = any domain. */
  emailDomains?: { isDisposable(email: string): boolean } | undefined;
  /** Called after a password was re-hashed with the configured cost (logging). */
  onRehashError?(err: unknown): void;
}

export interface TokenPair {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  sessionId: string;
  userId: string;
  /** The device's token for later logins (see LoginInput.deviceId). */
  deviceToken?: string | undefined;
}

export interface RegisterInput {
  email: string;
  password: string;
  profile: Profile;
  captchaToken?: string | undefined;
}

export interface SecondFactorInput {
  mfaCode?: string | undefined;
  recoveryCode?: string | undefined;
}

export interface LoginInput extends SecondFactorInput {
  email: string;
  password: string;
  captchaToken?: string | undefined;
  deviceId?: string | undefined;
}

/** One of the user's sessions in a list; `current` marks the caller's own. */
export interface SessionView extends SessionInfo {
  current: boolean;
}

/** What VerifyToken tells a resource server (RFC 7662 style): nothing unless active. */
export type TokenIntrospection = { active: false } | ({ active: true } & AccessClaims);

export interface IdentityService {
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
  startTotpEnrollment(
    principal: Principal,
    input: { password: string },
    call: CallContext,
  ): Promise<{ uri: string; qrDataUrl: string; secret: string; expiresAt: Date }>;
  confirmTotpEnrollment(principal: Principal, code: string, call: CallContext): Promise<string[]>;
  disableTotp(principal: Principal, input: { password: string; code: string }, call: CallContext): Promise<void>;
  regenerateRecoveryCodes(principal: Principal, call: CallContext): Promise<string[]>;
  mfaStatus(principal: Principal): Promise<{ totpEnabled: boolean; recoveryCodesRemaining: number }>;
  refresh(refreshToken: string, call: CallContext): Promise<TokenPair>;
  logout(principal: Principal, call: CallContext): Promise<void>;
  /** Verifies an access token and that its session is still active. */
  authenticate(accessToken: string): Promise<Principal>;
  getProfile(principal: Principal): Promise<User>;
  updateProfile(principal: Principal, patch: ProfilePatch): Promise<User>;
  changePassword(
    principal: Principal,
    input: { oldPassword: string; newPassword: string; revokeOtherSessions: boolean },
    call: CallContext,
  ): Promise<{ revokedSessions: number }>;
  /** The caller's active sessions, newest first; `pageSize` 0 or above the cap means the cap. */
  listSessions(
    principal: Principal,
    page: { pageSize: number; pageToken: string },
  ): Promise<{ sessions: SessionView[]; nextPageToken: string }>;
  /** Ends one of the caller's active sessions; SESSION_NOT_FOUND for anything else. */
  revokeSession(principal: Principal, sessionId: string, call: CallContext): Promise<void>;
  /** Ends every active session of the caller except the current one. */
  revokeOtherSessions(principal: Principal, call: CallContext): Promise<{ revokedSessions: number }>;
  /** Introspection: never throws for a bad token, only when the check itself cannot run. */
  verifyToken(accessToken: string): Promise<TokenIntrospection>;
}

export const MAX_SESSIONS_PAGE_SIZE = 100;

// 256 bits, base64url: far above the 128 bits ASVS 7.2.3 asks for.
const REFRESH_TOKEN_BYTES = 32;
// The shape every refresh token has; anything else is refused before any I/O.
const REFRESH_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export function hashRefreshToken(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

function newRefreshToken(): { token: string; hash: Uint8Array } {
  const token = randomBytes(REFRESH_TOKEN_BYTES).toString("base64url");
  return { token, hash: hashRefreshToken(token) };
}

export function tokenInvalid(): DomainError {
  return new DomainError("unauthenticated", "TOKEN_INVALID", "access token is invalid, expired or revoked");
}

function sessionNotFound(): DomainError {
  return new DomainError("not_found", "SESSION_NOT_FOUND", "no active session with that id belongs to you");
}

function amrOf(factor: SecondFactor | undefined): string[] {
  // RFC 8176: "otp" for TOTP; a recovery code is a one-time look-up secret.
  if (factor === "totp") return ["pwd", "otp", "mfa"];
  if (factor === "recovery_code") return ["pwd", "kba", "mfa"];
  return ["pwd"];
}

export function recentAuthRequired(maxAgeMs: number, acr?: "aal2"): DomainError {
  return new DomainError("unauthenticated", "RECENT_AUTH_REQUIRED", "this operation needs a recent login; call Reauthenticate first", {
    max_age_seconds: String(Math.round(maxAgeMs / 1000)),
    ...(acr ? { acr } : {}),
  });
}

const NIL_UUID = "00000000-0000-0000-0000-000000000000";

function mfaEnrollmentRequired(): DomainError {
  return new DomainError("permission_denied", "MFA_ENROLLMENT_REQUIRED", "administrators must have TOTP on");
}

export function createIdentityService(deps: IdentityDeps): IdentityService {
  const { users, sessions, audit, hasher, tokens, policy, clock, revocations, defence, mfa } = deps;

  async function record(event: Omit<AuditEvent, "at" | "client" | "requestId" | "clientRequestId">, call: CallContext): Promise<void> {
    await audit.record({ ...event, client: call.client, requestId: call.requestId, clientRequestId: call.clientRequestId, at: clock.now() });
  }

  // Records the failure of an attempt with the error's reason, then rethrows.
  async function failed(
    type: AuditEvent["type"],
    err: unknown,
    call: CallContext,
    ids: { userId?: string | undefined; sessionId?: string | undefined } = {},
  ): Promise<never> {
    const reason = isDomainError(err) ? err.reason : "INTERNAL_ERROR";
    try {
      await record({ type, outcome: "failure", reason, ...ids }, call);
    } catch {
      // The original failure is what the caller must see; the audit store
      // being down surfaces on the next successful write.
    }
    throw err;
  }

  // Every ended session gets its own audit row, so "how did session S end?"
  // has an answer; the listener has been told before (after the commit).
  async function recordRevocations(userId: string, sessionIds: string[], reason: string, call: CallContext): Promise<void> {
    await Promise.all(sessionIds.map((sessionId) => record({ type: "session_revoke", outcome: "success", reason, userId, sessionId }, call)));
  }

  async function activeClaims(accessToken: string, now: Date): Promise<AccessClaims | undefined> {
    const claims = await tokens.verifyAccessToken(accessToken, now);
    if (!claims) return undefined;
    const session = await sessions.findActive(claims.sessionId, now);
    if (!session || session.userId !== claims.userId) return undefined;
    return claims;
  }

  // The user hears of what was done to their credentials, and from where.
  function alertUser(type: SecurityAlertType, principal: Principal, call: CallContext): void {
    deps.alerts.notify({
      type,
      at: clock.now(),
      userId: principal.userId,
      details: { session_id: principal.sessionId, ip: call.client.ip ?? "" },
    });
  }

  // Credentials changed: no device skips MFA on the strength of the old
  // ones, and the user hears of it.
  async function factorChanged(
    type: "mfa_enabled" | "mfa_disabled" | "recovery_codes_regenerated" | "password_changed",
    principal: Principal,
    call: CallContext,
  ): Promise<void> {
    await deps.risk.forgetMfa(principal.userId);
    alertUser(type, principal, call);
  }

  // Recent, and with the second factor when the account has one: a device
  // that skipped MFA at login does not get to change credentials.
  async function requireRecentAuth(principal: Principal): Promise<void> {
    const at = principal.authTime?.getTime();
    if (at === undefined || clock.now().getTime() - at > deps.recentAuthMaxAgeMs) throw recentAuthRequired(deps.recentAuthMaxAgeMs);
    if (!principal.amr?.includes("mfa") && (await mfa.enabled(principal.userId))) throw recentAuthRequired(deps.recentAuthMaxAgeMs, "aal2");
  }

  async function account(userId: string): Promise<{ user: User; passwordHash: string; role: Role }> {
    const [user, credential] = await Promise.all([users.get(userId), users.findCredentialByUserId(userId)]);
    if (!user || !credential) throw new DomainError("not_found", "ACCOUNT_NOT_FOUND", "account no longer exists");
    return { user, passwordHash: credential.passwordHash, role: credential.role };
  }

  // A password check that counts with the account's failed logins.
  async function checkPassword(user: User, passwordHash: string, password: string, call: CallContext): Promise<Admission> {
    policy.checkSize(password);
    const admission = await defence.admit({ canonicalEmail: user.email, knownDevice: true }, call);
    if (!(await hasher.verify(passwordHash, normalizePassword(password)))) {
      await defence.failed(admission, { userId: user.id, factor: "password" }, call);
      throw invalidCredentials();
    }
    return admission;
  }

  // A second factor whose failure counts with the account's failed logins.
  async function checkSecondFactor(userId: string, admission: Admission, input: SecondFactorInput, call: CallContext): Promise<SecondFactor> {
    try {
      return await mfa.verify(userId, input, call);
    } catch (err) {
      await defence.failed(admission, { userId, factor: "mfa" }, call);
      throw err;
    }
  }

  // After the password: risk, the admin rule, the second factor, then the session.
  async function completeLogin(
    input: { userId: string; role: Role; admission: Admission; deviceId?: string | undefined; captchaToken?: string | undefined } & SecondFactorInput,
    call: CallContext,
  ): Promise<TokenPair> {
    const { userId, role, admission } = input;
    const now = clock.now();
    const [risk, mfaOn] = await Promise.all([
      deps.risk.assess({ userId, deviceId: input.deviceId, ip: call.client.ip, failuresBefore: admission.failuresBefore, now }),
      mfa.enabled(userId),
    ]);
    const { assessment } = risk;
    const details = {
      score: assessment.score,
      decision: assessment.decision,
      reasons: [...assessment.reasons],
      mfa_enabled: mfaOn,
      ...(risk.point?.country ? { country: risk.point.country } : {}),
      ...(risk.signals.impossibleTravel ? { travel_kmh: Math.round(Math.min(risk.signals.impossibleTravel.speedKmh, 1e6)) } : {}),
    };
    const decide = (outcome: "success" | "failure", reason: string) =>
      record({ type: "risk_decision", outcome, reason, userId, details }, call);
    if (role === "admin" && !mfaOn) {
      await defence.succeeded(admission);
      await decide("failure", "MFA_ENROLLMENT_REQUIRED");
      throw mfaEnrollmentRequired();
    }
    if (assessment.decision === "deny") {
      await decide("failure", "deny");
      await defence.failed(admission, { userId, factor: "password" }, call);
      // The same answer as a wrong password: nothing to learn from.
      throw invalidCredentials();
    }
    let stepUp = assessment.decision !== "allow";
    if (assessment.decision === "require_captcha") {
      // Solved already at admission, or now; without a CAPTCHA provider the
      // second factor is the step-up.
      try {
        stepUp = !(admission.captchaPassed || (await defence.challengeCaptcha(input.captchaToken, call)));
      } catch (err) {
        await decide("failure", isDomainError(err) ? err.reason : "INTERNAL_ERROR");
        throw err;
      }
    }
    // A device that passed MFA lately skips it unless the risk says
    // otherwise; administrators never skip it.
    const mfaAt = risk.history.device?.mfaAt?.getTime();
    const trusted = role !== "admin" && mfaAt !== undefined && now.getTime() - mfaAt < deps.trustedDeviceTtlMs;
    const needMfa = mfaOn && (stepUp || !trusted);
    let factor: SecondFactor | undefined;
    if (needMfa) {
      if ((input.mfaCode ?? "") === "" && (input.recoveryCode ?? "") === "") {
        const challenge = await mfa.issueChallenge(userId, risk.deviceHash);
        await decide("success", "mfa_required");
        await record({ type: "mfa_challenge", outcome: "success", userId }, call);
        // The attempt stays counted until the second step succeeds.
        throw new DomainError("unauthenticated", "MFA_REQUIRED", "the account has MFA on: send a TOTP or recovery code", {
          mfa_challenge: challenge.token,
          methods: "totp,recovery_code",
          expires_in_seconds: String(Math.round((challenge.expiresAt.getTime() - now.getTime()) / 1000)),
        });
      }
      factor = await checkSecondFactor(userId, admission, input, call);
    }
    // A known device keeps its token; anything else gets a new one.
    const device = risk.history.device && input.deviceId ? { token: input.deviceId, hash: risk.deviceHash! } : deps.risk.newDeviceToken();
    // Independent writes: one round trip of latency instead of three.
    await Promise.all([
      defence.succeeded(admission),
      decide("success", needMfa ? "mfa_passed" : stepUp && !mfaOn ? "allow_no_second_factor" : "allow"),
      deps.risk.remember({ userId, deviceHash: device.hash, ip: call.client.ip, at: now, mfa: factor !== undefined }),
    ]);
    if (risk.signals.newDevice && !risk.signals.firstLogin) {
      deps.alerts.notify({ type: "new_device_login", at: now, userId, details: { ip: call.client.ip ?? "", reasons: [...assessment.reasons] } });
    }
    return { ...(await startSession(userId, role, call, { authTime: now, amr: amrOf(factor) })), deviceToken: device.token };
  }

  async function startSession(userId: string, role: Role, call: CallContext, auth: { authTime: Date; amr: string[] }): Promise<TokenPair> {
    const now = clock.now();
    const lifetime = deps.lifetimes[role];
    const sessionId = uuidv7(now);
    const refresh = newRefreshToken();
    const absoluteExpiresAt = new Date(now.getTime() + lifetime.absoluteTtlMs);
    const expiresAt = new Date(Math.min(now.getTime() + lifetime.idleTtlMs, absoluteExpiresAt.getTime()));
    const { evictedSessionIds } = await sessions.create({
      id: sessionId,
      userId,
      refreshTokenHash: refresh.hash,
      now,
      expiresAt,
      absoluteExpiresAt,
      client: call.client,
      authTime: auth.authTime,
      amr: auth.amr,
      maxActiveSessions: deps.maxSessionsPerUser,
    });
    if (evictedSessionIds.length > 0) {
      revocations.sessionsRevoked(evictedSessionIds.map((id) => ({ id, userId })));
      await recordRevocations(userId, evictedSessionIds, "session_limit", call);
    }
    const access = await tokens.issueAccessToken({ userId, sessionId, now, role, ttlMs: lifetime.accessTokenTtlMs, ...auth });
    return {
      accessToken: access.token,
      accessTokenExpiresAt: access.expiresAt,
      refreshToken: refresh.token,
      refreshTokenExpiresAt: expiresAt,
      sessionId,
      userId,
    };
  }

  async function maybeRehash(userId: string, stored: string, password: string): Promise<void> {
    if (!hasher.needsRehash(stored)) return;
    try {
      const next = await hasher.hash(password);
      await users.rehashPassword(userId, stored, next, clock.now());
    } catch (err) {
      // The login itself succeeded; a failed upgrade is retried next time.
      deps.onRehashError?.(err);
    }
  }

  return {
    async register(input, call) {
      let email: string | undefined;
      try {
        email = normalizeEmail(input.email);
        if (deps.emailDomains?.isDisposable(email)) {
          throw new DomainError("invalid_argument", "EMAIL_DOMAIN_NOT_ALLOWED", "e-mail addresses of disposable-mail services are not accepted", {
            field: "account.email",
          });
        }
        policy.check(input.password, { email, name: input.profile.name });
        await defence.admitRegistration(input.captchaToken, call);
        const passwordHash = await hasher.hash(normalizePassword(input.password));
        const now = clock.now();
        // Failures on the address before it had an owner (a lock included) are not the owner's.
        const user = await users.create({ id: uuidv7(now), email, passwordHash, profile: input.profile, now, throttleKey: defence.accountKey(email) });
        await record({ type: "register", outcome: "success", userId: user.id }, call);
        return user;
      } catch (err) {
        return failed("register", err, call);
      }
    },

    async login(input, call) {
      let userId: string | undefined;
      try {
        policy.checkSize(input.password);
        const password = normalizePassword(input.password);
        const email = normalizeEmailForLookup(input.email);
        const credential = email === undefined ? undefined : await users.findCredentialByEmail(email);
        // A device token this account issued: looked up the same way whether
        // or not the account exists (the nil id matches nothing).
        const presented = deps.risk.deviceHash(input.deviceId);
        const knownDevice = presented !== undefined && !(await deps.risk.novelty(credential?.userId ?? NIL_UUID, presented)).newDevice;
        // Attempts on an address that cannot exist are counted too, under
        // its plain lower-cased spelling.
        const canonicalEmail = email ?? input.email.trim().toLowerCase();
        const admission = await defence.admit(
          {
            canonicalEmail,
            captchaToken: input.captchaToken,
            knownDevice,
            trustedDevice: knownDevice ? presented : undefined,
            userId: credential?.userId,
          },
          call,
        );
        // Same work whether or not the account exists: no timing oracle.
        const ok = await hasher.verify(credential?.passwordHash ?? deps.dummyHashFor(canonicalEmail), password);
        // The trail names the account even when the password was wrong.
        userId = credential?.userId;
        if (!credential || !ok) {
          await defence.failed(admission, { password, userId: credential?.userId, factor: "password" }, call);
          throw invalidCredentials();
        }
        await maybeRehash(credential.userId, credential.passwordHash, password);
        const pair = await completeLogin({ ...input, userId: credential.userId, role: credential.role, admission }, call);
        await record({ type: "login", outcome: "success", userId, sessionId: pair.sessionId }, call);
        return pair;
      } catch (err) {
        return failed("login", err, call, { userId });
      }
    },

    async refresh(refreshToken, call) {
      let ids: { userId?: string; sessionId?: string } = {};
      try {
        if (!REFRESH_TOKEN_SHAPE.test(refreshToken)) {
          throw new DomainError("unauthenticated", "REFRESH_TOKEN_INVALID", "refresh token is invalid, expired or revoked");
        }
        const now = clock.now();
        const next = newRefreshToken();
        const result = await sessions.rotate({
          presented: hashRefreshToken(refreshToken),
          next: next.hash,
          now,
          lifetimes: deps.lifetimes,
          reuseGraceMs: deps.refreshReuseGraceMs,
          client: call.client,
        });
        if (result.kind === "superseded") {
          // The "none" variant of the grace window: only hashes are stored,
          // so the successor cannot be handed out again. The session lives
          // on; the client uses the pair the concurrent refresh returned.
          ids = { userId: result.userId, sessionId: result.sessionId };
          throw new DomainError(
            "unauthenticated",
            "REFRESH_TOKEN_SUPERSEDED",
            "refresh token was just replaced by a concurrent refresh; use the newer token",
          );
        }
        if (result.kind === "reused") {
          ids = { userId: result.userId, sessionId: result.sessionId };
          revocations.sessionsRevoked([{ id: result.sessionId, userId: result.userId }]);
          deps.alerts.notify({
            type: "refresh_token_reuse",
            at: now,
            userId: result.userId,
            details: { session_id: result.sessionId, ip: call.client.ip ?? "" },
          });
          throw new DomainError(
            "unauthenticated",
            "REFRESH_TOKEN_REUSED",
            "refresh token was already used; the session has been ended",
          );
        }
        if (result.kind === "invalid") {
          throw new DomainError("unauthenticated", "REFRESH_TOKEN_INVALID", "refresh token is invalid, expired or revoked");
        }
        const { session } = result;
        ids = { userId: session.userId, sessionId: session.id };
        const access = await tokens.issueAccessToken({
          userId: session.userId,
          sessionId: session.id,
          now,
          role: session.role,
          ttlMs: deps.lifetimes[session.role].accessTokenTtlMs,
          authTime: session.authTime,
          amr: session.amr,
        });
        await record({ type: "refresh", outcome: "success", ...ids }, call);
        return {
          accessToken: access.token,
          accessTokenExpiresAt: access.expiresAt,
          refreshToken: next.token,
          refreshTokenExpiresAt: session.expiresAt,
          sessionId: session.id,
          userId: session.userId,
        };
      } catch (err) {
        return failed("refresh", err, call, ids);
      }
    },

    async logout(principal, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        const revoked = await sessions.revoke(principal.sessionId, clock.now(), "logout");
        if (!revoked) throw tokenInvalid();
        revocations.sessionsRevoked([{ id: principal.sessionId, userId: principal.userId }]);
        await record({ type: "logout", outcome: "success", ...ids }, call);
      } catch (err) {
        return failed("logout", err, call, ids);
      }
    },

    async authenticate(accessToken) {
      const claims = await activeClaims(accessToken, clock.now());
      if (!claims) throw tokenInvalid();
      return { userId: claims.userId, sessionId: claims.sessionId, authTime: claims.authTime, amr: claims.amr };
    },

    async verifyToken(accessToken) {
      if (!isAccessTokenShape(accessToken)) return { active: false };
      const claims = await activeClaims(accessToken, clock.now());
      return claims ? { active: true, ...claims } : { active: false };
    },

    async listSessions(principal, page) {
      const limit = page.pageSize <= 0 || page.pageSize > MAX_SESSIONS_PAGE_SIZE ? MAX_SESSIONS_PAGE_SIZE : page.pageSize;
      let before: string | undefined;
      if (page.pageToken !== "") {
        before = decodePageToken(page.pageToken);
        if (before === undefined) {
          throw new DomainError("invalid_argument", "VALIDATION_FAILED", "page_token: not a token from a previous page", { field: "page_token" });
        }
      }
      // One more than asked tells whether another page follows.
      const rows = await sessions.listActive(principal.userId, clock.now(), { limit: limit + 1, before });
      const pageRows = rows.slice(0, limit);
      const last = pageRows[pageRows.length - 1];
      return {
        sessions: pageRows.map((s) => ({ ...s, current: s.id === principal.sessionId })),
        nextPageToken: rows.length > limit && last ? encodePageToken(last.id) : "",
      };
    },

    async revokeSession(principal, sessionId, call) {
      // Lower-cased: caches, the revocation feed and tokens all use that spelling.
      const id = sessionId.toLowerCase();
      const ids = { userId: principal.userId, sessionId: isUuid(id, { anyCase: true }) ? id : undefined };
      try {
        if (!isUuid(id, { anyCase: true })) throw sessionNotFound();
        // Scoped to the caller in the query itself: another user's session
        // is indistinguishable from one that never existed.
        const revoked = await sessions.revokeOfUser({ userId: principal.userId, sessionId: id, now: clock.now(), reason: "user_revoke" });
        if (!revoked) throw sessionNotFound();
        revocations.sessionsRevoked([{ id, userId: principal.userId }]);
        await record({ type: "session_revoke", outcome: "success", reason: "user_revoke", ...ids }, call);
      } catch (err) {
        return failed("session_revoke", err, call, ids);
      }
    },

    async revokeOtherSessions(principal, call) {
      try {
        await requireRecentAuth(principal);
        const revoked = await sessions.revokeOthersOfUser({
          userId: principal.userId,
          keepSessionId: principal.sessionId,
          now: clock.now(),
          reason: "user_revoke_others",
        });
        revocations.sessionsRevoked(revoked.map((id) => ({ id, userId: principal.userId })));
        await recordRevocations(principal.userId, revoked, "user_revoke_others", call);
        return { revokedSessions: revoked.length };
      } catch (err) {
        return failed("session_revoke", err, call, { userId: principal.userId, sessionId: principal.sessionId });
      }
    },

    async completeMfaLogin(input, call) {
      let userId: string | undefined;
      try {
        const challenge = await mfa.openChallenge(input.challenge);
        userId = challenge.userId;
        const { user, role } = await account(challenge.userId);
        // The device's own counter when the first step came with its token.
        const novelty = await deps.risk.novelty(user.id, challenge.deviceHash);
        const admission = await defence.admit(
          { canonicalEmail: user.email, knownDevice: true, trustedDevice: novelty.newDevice ? undefined : challenge.deviceHash, userId: user.id },
          call,
        );
        let factor: SecondFactor;
        try {
          factor = await checkSecondFactor(user.id, admission, input, call);
        } catch (err) {
          await mfa.failChallenge(challenge.tokenHash);
          throw err;
        }
        // Single use: of two concurrent completions only one gets here.
        await mfa.consumeChallenge(challenge.tokenHash);
        await defence.succeeded(admission);
        const now = clock.now();
        // The challenge keeps only the presented token's hash: this device
        // gets a new token, trusted for MFA from now on.
        const device = deps.risk.newDeviceToken();
        await deps.risk.remember({ userId: user.id, deviceHash: device.hash, ip: call.client.ip, at: now, mfa: true });
        if (novelty.newDevice && !novelty.firstLogin) {
          deps.alerts.notify({ type: "new_device_login", at: now, userId: user.id, details: { ip: call.client.ip ?? "", reasons: ["new_device"] } });
        }
        const pair = await startSession(user.id, role, call, { authTime: now, amr: amrOf(factor) });
        await record({ type: "login", outcome: "success", reason: "mfa_challenge", userId, sessionId: pair.sessionId }, call);
        return { ...pair, deviceToken: device.token };
      } catch (err) {
        return failed("login", err, call, { userId });
      }
    },

    async reauthenticate(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        const { user, passwordHash, role } = await account(principal.userId);
        const admission = await checkPassword(user, passwordHash, input.password, call);
        let factor: SecondFactor | undefined;
        if (await mfa.enabled(user.id)) {
          if ((input.mfaCode ?? "") === "" && (input.recoveryCode ?? "") === "") {
            throw new DomainError("unauthenticated", "MFA_REQUIRED", "the account has MFA on: send a TOTP or recovery code", {
              methods: "totp,recovery_code",
            });
          }
          factor = await checkSecondFactor(user.id, admission, input, call);
        }
        await defence.succeeded(admission);
        const now = clock.now();
        const amr = amrOf(factor);
        if (!(await sessions.reauthenticate({ sessionId: principal.sessionId, userId: user.id, authTime: now, amr }))) throw tokenInvalid();
        const access = await tokens.issueAccessToken({
          userId: user.id,
          sessionId: principal.sessionId,
          now,
          role,
          ttlMs: deps.lifetimes[role].accessTokenTtlMs,
          authTime: now,
          amr,
        });
        await record({ type: "login", outcome: "success", reason: "reauthenticate", ...ids }, call);
        return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt };
      } catch (err) {
        return failed("login", err, call, ids);
      }
    },

    async startTotpEnrollment(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        // A stolen token must not be able to tie the account to the thief's
        // authenticator (and get the recovery codes): enrolment needs a
        // recent login and the password, whose guesses count like logins.
        await requireRecentAuth(principal);
        const { user, passwordHash } = await account(principal.userId);
        // Nothing to enrol: say so before a password check that would count.
        if (await mfa.enabled(user.id)) throw mfaAlreadyEnabled();
        await defence.succeeded(await checkPassword(user, passwordHash, input.password, call));
        const started = await mfa.startEnrolment(user.id, user.email, call);
        alertUser("mfa_enrollment_started", principal, call);
        return started;
      } catch (err) {
        return failed("mfa_enrol", err, call, ids);
      }
    },

    async confirmTotpEnrollment(principal, code, call) {
      await requireRecentAuth(principal);
      const codes = await mfa.confirmEnrolment(principal.userId, code, call);
      await factorChanged("mfa_enabled", principal, call);
      return codes;
    },

    async disableTotp(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        await requireRecentAuth(principal);
        const { user, passwordHash, role } = await account(principal.userId);
        if (role === "admin") throw mfaEnrollmentRequired();
        // Nothing to turn off: say so before a password check that would count.
        if (!(await mfa.enabled(user.id))) throw new DomainError("failed_precondition", "MFA_NOT_ENABLED", "TOTP is not on");
        const admission = await checkPassword(user, passwordHash, input.password, call);
        try {
          await mfa.disable(user.id, input.code, call);
        } catch (err) {
          await defence.failed(admission, { userId: user.id, factor: "mfa" }, call);
          throw err;
        }
        await defence.succeeded(admission);
        await factorChanged("mfa_disabled", principal, call);
      } catch (err) {
        return failed("mfa_disable", err, call, ids);
      }
    },

    async regenerateRecoveryCodes(principal, call) {
      await requireRecentAuth(principal);
      const codes = await mfa.regenerateRecoveryCodes(principal.userId, call);
      await factorChanged("recovery_codes_regenerated", principal, call);
      return codes;
    },

    mfaStatus: (principal) => mfa.status(principal.userId),

    async getProfile(principal) {
      const user = await users.get(principal.userId);
      if (!user) throw new DomainError("not_found", "ACCOUNT_NOT_FOUND", "account no longer exists");
      return user;
    },

    async updateProfile(principal, patch) {
      const user = await users.updateProfile(principal.userId, patch, clock.now());
      if (!user) throw new DomainError("not_found", "ACCOUNT_NOT_FOUND", "account no longer exists");
      return user;
    },

    async changePassword(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        await requireRecentAuth(principal);
        policy.checkSize(input.oldPassword);
        const { user, passwordHash } = await account(principal.userId);
        // A stolen access token must not become an unlimited password
        // oracle: guesses here count with the account's login failures.
        await defence.succeeded(await checkPassword(user, passwordHash, input.oldPassword, call));
        const oldPassword = normalizePassword(input.oldPassword);
        policy.check(input.newPassword, { email: user.email, name: user.profile.name });
        const newPassword = normalizePassword(input.newPassword);
        if (newPassword === oldPassword) {
          throw new DomainError("invalid_argument", "PASSWORD_UNCHANGED", "new password must differ from the current one");
        }
        const next = await hasher.hash(newPassword);
        const result = await users.replacePassword({
          userId: principal.userId,
          expected: passwordHash,
          next,
          now: clock.now(),
          revokeSessions: input.revokeOtherSessions,
          keepSessionId: principal.sessionId,
        });
        // Someone changed it between our read and write: they knew the old
        // password too, so treat ours as stale rather than overwrite theirs.
        if (!result.replaced) throw invalidCredentials();
        revocations.sessionsRevoked(result.revokedSessionIds.map((id) => ({ id, userId: principal.userId })));
        await record({ type: "password_change", outcome: "success", ...ids }, call);
        await factorChanged("password_changed", principal, call);
        return { revokedSessions: result.revokedSessionIds.length };
      } catch (err) {
        return failed("password_change", err, call, ids);
      }
    },
  };
}

