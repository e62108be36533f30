import type { AuditTrail } from "../audit/trail.js";
import type { CallContext, Principal } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import { decodePageToken, encodePageToken } from "../shared/page-token.js";
import { isUuid } from "../shared/uuid.js";
import { tokenInvalid } from "./authenticate.js";
import type { RevocationListener, SessionInfo, SessionStore } from "./ports.js";
import type { RecentAuthGuard } from "./recent-auth.js";

// A user's own sessions: log out, list, end one, end every other.

export const MAX_SESSIONS_PAGE_SIZE = 100;

/** One of the user's sessions in a list; `current` marks the caller's own. */
export interface SessionView extends SessionInfo {
  current: boolean;
}

export interface SessionControl {
  logout(principal: Principal, call: CallContext): Promise<void>;
  /** The caller's active sessions, newest first; `pageSize` 0 or above the cap means the cap. */
  listSessions(principal: Principal, page: { pageSize: number; pageToken: string }): Promise<{ sessions: SessionView[]; nextPageToken: string }>;
  /** Ends one of the caller's active sessions; SESSION_NOT_FOUND for anything else. */
  revokeSession(principal: Principal, sessionId: string, call: CallContext): Promise<void>;
  /** Ends every active session of the caller except the current one. */
  revokeOtherSessions(principal: Principal, call: CallContext): Promise<{ revokedSessions: number }>;
}

function sessionNotFound(): DomainError {
  return new DomainError("not_found", "SESSION_NOT_FOUND", "no active session with that id belongs to you");
}

export function createSessionControl(deps: {
  sessions: Pick<SessionStore, "revoke" | "listActive" | "revokeOfUser" | "revokeOthersOfUser">;
  revocations: RevocationListener;
  requireRecentAuth: RecentAuthGuard;
  trail: AuditTrail;
  clock: Clock;
}): SessionControl {
  const { sessions, revocations, trail, clock } = deps;
  return {
    async logout(principal, call) {
      const ids = { userId: principal.userId, sessionId: principal.sessionId };
      try {
        const revoked = await sessions.revoke(principal.sessionId, clock.now(), "logout");
        if (!revoked) throw tokenInvalid();
        revocations.sessionsRevoked([{ id: principal.sessionId, userId: principal.userId }]);
        await trail.record({ type: "logout", outcome: "success", ...ids }, call);
      } catch (err) {
        return trail.failed("logout", err, call, ids);
      }
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
        await trail.record({ type: "session_revoke", outcome: "success", reason: "user_revoke", ...ids }, call);
      } catch (err) {
        return trail.failed("session_revoke", err, call, ids);
      }
    },

    async revokeOtherSessions(principal, call) {
      try {
        await deps.requireRecentAuth(principal);
        const revoked = await sessions.revokeOthersOfUser({
          userId: principal.userId,
          keepSessionId: principal.sessionId,
          now: clock.now(),
          reason: "user_revoke_others",
        });
        revocations.sessionsRevoked(revoked.map((id) => ({ id, userId: principal.userId })));
        await trail.sessionsEnded(principal.userId, revoked, "user_revoke_others", call);
        return { revokedSessions: revoked.length };
      } catch (err) {
        return trail.failed("session_revoke", err, call, { userId: principal.userId, sessionId: principal.sessionId });
      }
    },
  };
}
