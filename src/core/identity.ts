import { createHash, randomBytes } from "node:crypto";
import { normalizeEmail, normalizeEmailForLookup } from "./email.js";
import { DomainError, invalidCredentials, isDomainError } from "./errors.js";
import { normalizePassword, type PasswordPolicy } from "./password-policy.js";
import type {
  AuditEvent,
  AuditLog,
  ClientInfo,
  Clock,
  PasswordHasher,
  Profile,
  RevocationListener,
  ProfilePatch,
  SessionStore,
  TokenIssuer,
  User,
  UserStore,
} from "./ports.js";
import { uuidv7 } from "./uuid.js";

export interface IdentityDeps {
  users: UserStore;
  sessions: SessionStore;
  audit: AuditLog;
  hasher: PasswordHasher;
  tokens: TokenIssuer;
  revocations: RevocationListener;
  policy: PasswordPolicy;
  clock: Clock;
  /** A hash of a random password, verified when the e-mail is unknown so both paths cost the same. */
  dummyHash: string;
  sessionIdleTtlMs: number;
  sessionAbsoluteTtlMs: number;
  /** Called after a password was re-hashed with the configured cost (logging). */
  onRehashError?(err: unknown): void;
}

/** Who is calling, as proved by a valid access token on an active session. */
export interface Principal {
  userId: string;
  sessionId: string;
}

/** Per-call facts the domain records (audit) but never trusts for decisions. */
export interface CallInfo {
  client: ClientInfo;
  requestId?: string | undefined;
}

export interface TokenPair {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  sessionId: string;
  userId: string;
}

export interface RegisterInput {
  email: string;
  password: string;
  profile: Profile;
}

export interface IdentityService {
  register(input: RegisterInput, call: CallInfo): Promise<User>;
  login(input: { email: string; password: string }, call: CallInfo): Promise<TokenPair>;
  refresh(refreshToken: string, call: CallInfo): Promise<TokenPair>;
  logout(principal: Principal, call: CallInfo): Promise<void>;
  /** Verifies an access token and that its session is still active. */
  authenticate(accessToken: string): Promise<Principal>;
  getProfile(principal: Principal): Promise<User>;
  updateProfile(principal: Principal, patch: ProfilePatch): Promise<User>;
  changePassword(
    principal: Principal,
    input: { oldPassword: string; newPassword: string; revokeOtherSessions: boolean },
    call: CallInfo,
  ): Promise<{ revokedSessions: number }>;
}

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

function tokenInvalid(): DomainError {
  return new DomainError("unauthenticated", "TOKEN_INVALID", "access token is invalid, expired or revoked");
}

export function createIdentityService(deps: IdentityDeps): IdentityService {
  const { users, sessions, audit, hasher, tokens, policy, clock, revocations } = deps;

  async function record(event: Omit<AuditEvent, "at" | "client" | "requestId">, call: CallInfo): Promise<void> {
    await audit.record({ ...event, client: call.client, requestId: call.requestId, at: clock.now() });
  }

  // Records the failure of an attempt with the error's reason, then rethrows.
  async function failed(
    type: AuditEvent["type"],
    err: unknown,
    call: CallInfo,
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

  async function startSession(userId: string, call: CallInfo): Promise<TokenPair> {
    const now = clock.now();
    const sessionId = uuidv7(now);
    const refresh = newRefreshToken();
    const absoluteExpiresAt = new Date(now.getTime() + deps.sessionAbsoluteTtlMs);
    const expiresAt = new Date(Math.min(now.getTime() + deps.sessionIdleTtlMs, absoluteExpiresAt.getTime()));
    await sessions.create({
      id: sessionId,
      userId,
      refreshTokenHash: refresh.hash,
      now,
      expiresAt,
      absoluteExpiresAt,
      client: call.client,
    });
    const access = await tokens.issueAccessToken({ userId, sessionId, now });
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
        policy.check(input.password, { email, name: input.profile.name });
        const passwordHash = await hasher.hash(normalizePassword(input.password));
        const now = clock.now();
        const user = await users.create({ id: uuidv7(now), email, passwordHash, profile: input.profile, now });
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
        // Same work whether or not the account exists: no timing oracle.
        const ok = await hasher.verify(credential?.passwordHash ?? deps.dummyHash, password);
        if (!credential || !ok) throw invalidCredentials();
        userId = credential.userId;
        await maybeRehash(credential.userId, credential.passwordHash, password);
        const pair = await startSession(credential.userId, call);
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
          idleTtlMs: deps.sessionIdleTtlMs,
          client: call.client,
        });
        if (result.kind === "reused") {
          ids = { userId: result.userId, sessionId: result.sessionId };
          revocations.sessionsRevoked([{ id: result.sessionId, userId: result.userId }]);
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
        const access = await tokens.issueAccessToken({ userId: session.userId, sessionId: session.id, now });
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
      const now = clock.now();
      const claims = await tokens.verifyAccessToken(accessToken, now);
      if (!claims) throw tokenInvalid();
      const session = await sessions.findActive(claims.sessionId, now);
      if (!session || session.userId !== claims.userId) throw tokenInvalid();
      return { userId: claims.userId, sessionId: claims.sessionId };
    },

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
        policy.checkSize(input.oldPassword);
        const user = await users.get(principal.userId);
        const credential = await users.findCredentialByUserId(principal.userId);
        if (!user || !credential) throw new DomainError("not_found", "ACCOUNT_NOT_FOUND", "account no longer exists");
        const oldPassword = normalizePassword(input.oldPassword);
        if (!(await hasher.verify(credential.passwordHash, oldPassword))) throw invalidCredentials();
        policy.check(input.newPassword, { email: user.email, name: user.profile.name });
        const newPassword = normalizePassword(input.newPassword);
        if (newPassword === oldPassword) {
          throw new DomainError("invalid_argument", "PASSWORD_UNCHANGED", "new password must differ from the current one");
        }
        const next = await hasher.hash(newPassword);
        const result = await users.replacePassword({
          userId: principal.userId,
          expected: credential.passwordHash,
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
        return { revokedSessions: result.revokedSessionIds.length };
      } catch (err) {
        return failed("password_change", err, call, ids);
      }
    },
  };
}

