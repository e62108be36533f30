import type { AuditTrail } from "../audit/trail.js";
import type { PasswordHasher } from "../hashing/ports.js";
import type { CredentialEvents } from "../login/credential-change.js";
import type { PasswordCheck } from "../login/password.js";
import type { LoginDefence } from "../abuse/login-defence.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError, invalidCredentials } from "../shared/errors.js";
import type { RevocationListener } from "../sessions/ports.js";
import type { RecentAuthGuard } from "../sessions/recent-auth.js";
import { accountNotFound, loadAccount } from "./account.js";
import { normalizePassword, type PasswordPolicy } from "./password-policy.js";
import type { ProfilePatch, User, UserStore } from "./ports.js";

// The caller's own account: read and update the profile, change the password.

export interface MyAccount {
  getProfile(principal: Principal): Promise<User>;
  updateProfile(principal: Principal, patch: ProfilePatch): Promise<User>;
  changePassword(
    principal: Principal,
    input: { oldPassword: string; newPassword: string; revokeOtherSessions: boolean },
    call: CallContext,
  ): Promise<{ revokedSessions: number }>;
}

export function createMyAccount(deps: {
  users: Pick<UserStore, "get" | "findCredentialByUserId" | "updateProfile" | "replacePassword">;
  policy: Pick<PasswordPolicy, "check" | "checkSize">;
  hasher: Pick<PasswordHasher, "hash">;
  checkPassword: PasswordCheck;
  defence: Pick<LoginDefence, "succeeded">;
  requireRecentAuth: RecentAuthGuard;
  revocations: RevocationListener;
  credentials: Pick<CredentialEvents, "changed">;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
}): MyAccount {
  const { users, clock } = deps;
  return {
    async getProfile(principal) {
      const user = await users.get(principal.userId);
      if (!user) throw accountNotFound();
      return user;
    },

    async updateProfile(principal, patch) {
      const user = await users.updateProfile(principal.userId, patch, clock.now());
      if (!user) throw accountNotFound();
      return user;
    },

    async changePassword(principal, input, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        await deps.requireRecentAuth(principal);
        deps.policy.checkSize(input.oldPassword);
        const account = await loadAccount(users, principal.userId);
        // A stolen access token must not become an unlimited password
        // oracle: guesses here count with the account's login failures.
        await deps.defence.succeeded(await deps.checkPassword(account, input.oldPassword, call));
        const oldPassword = normalizePassword(input.oldPassword);
        deps.policy.check(input.newPassword, { email: account.user.email, name: account.user.profile.name });
        const newPassword = normalizePassword(input.newPassword);
        if (newPassword === oldPassword) {
          throw new DomainError("invalid_argument", "PASSWORD_UNCHANGED", "new password must differ from the current one");
        }
        const next = await deps.hasher.hash(newPassword);
        const result = await users.replacePassword({
          userId: principal.userId,
          expected: account.passwordHash,
          next,
          now: clock.now(),
          revokeSessions: input.revokeOtherSessions,
          keepSessionId: principal.sessionId,
        });
        // Someone changed it between our read and write: they knew the old
        // password too, so treat ours as stale rather than overwrite theirs.
        if (!result.replaced) throw invalidCredentials();
        deps.revocations.sessionsRevoked(result.revokedSessionIds.map((id) => ({ id, userId: principal.userId })));
        await deps.trail.record({ type: "password_change", outcome: "success", ...ids }, call);
        await deps.credentials.changed("password_changed", principal, call);
        return { revokedSessions: result.revokedSessionIds.length };
      } catch (err) {
        return deps.trail.failed("password_change", err, call, ids);
      }
    },
  };
}
