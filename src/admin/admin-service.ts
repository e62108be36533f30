import { createHash } from "node:crypto";
import { parseAuditFilter } from "../audit/audit-filter.js";
import { normalizeEmailForLookup } from "../accounts/email.js";
import { DomainError } from "../shared/errors.js";
import { type CallContext, type Principal } from "../shared/call.js";
import type { LoginDefence } from "../abuse/login-defence.js";
import type { AuditChainReport, AuditEvent, AuditLog, StoredAuditEvent } from "../audit/ports.js";
import { createAuditTrail } from "../audit/trail.js";
import type { Clock } from "../shared/clock.js";
import type { UserStore } from "../accounts/ports.js";

// Operator RPCs. Who may call them is their access policy in the proto
// (ACCESS_ADMIN with AAL2), enforced at the edge before any of these runs:
// the role is read from the database on every call, so a demotion applies
// at once, and the session must have passed a second factor.

export interface AdminDeps {
  users: Pick<UserStore, "findCredentialByEmail">;
  audit: AuditLog;
  defence: Pick<LoginDefence, "unlock">;
  clock: Clock;
}

export interface AdminService {
  listAuditEvents(page: { pageSize: number; pageToken: string; filter: string }): Promise<{ events: StoredAuditEvent[]; nextPageToken: string }>;
  verifyAuditChain(principal: Principal, call: CallContext): Promise<AuditChainReport>;
  unlockAccount(principal: Principal, email: string, call: CallContext): Promise<{ clearedFailures: number; wasLocked: boolean }>;
}

export const MAX_AUDIT_PAGE_SIZE = 500;
const MAX_BIGINT = 2n ** 63n - 1n;

function badToken(): DomainError {
  return new DomainError("invalid_argument", "VALIDATION_FAILED", "page_token: not a token from a previous page with this filter", {
    field: "page_token",
  });
}

// The token binds the filter it was made for (AIP-158: a token is only
// valid with the request that produced it).
function filterTag(filter: string): string {
  return createHash("sha256").update(filter).digest("base64url").slice(0, 8);
}

function encodeToken(beforeId: string, filter: string): string {
  return Buffer.from(`${beforeId}.${filterTag(filter)}`).toString("base64url");
}

function decodeToken(token: string, filter: string): string {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(token)) throw badToken();
  const [id, tag, ...rest] = Buffer.from(token, "base64url").toString().split(".");
  // A bigint id: anything beyond 2^63 − 1 would overflow the query's cast.
  if (!id || !/^[1-9][0-9]{0,18}$/.test(id) || BigInt(id) > MAX_BIGINT || tag !== filterTag(filter) || rest.length > 0) throw badToken();
  return id;
}

export function createAdminService(deps: AdminDeps): AdminService {
  const { users, audit, clock } = deps;

  const { record } = createAuditTrail({ audit, clock });

  return {
    async listAuditEvents(page) {
      const filter = parseAuditFilter(page.filter);
      const beforeId = page.pageToken === "" ? undefined : decodeToken(page.pageToken, page.filter);
      const limit = page.pageSize <= 0 || page.pageSize > MAX_AUDIT_PAGE_SIZE ? MAX_AUDIT_PAGE_SIZE : page.pageSize;
      const rows = await audit.list(
        {
          userId: filter.userId,
          types: filter.type === undefined ? undefined : [filter.type as AuditEvent["type"]],
          outcome: filter.outcome,
          ip: filter.ip,
          since: filter.since,
          until: filter.until,
        },
        { limit: limit + 1, beforeId },
      );
      const events = rows.slice(0, limit);
      const last = events[events.length - 1];
      return { events, nextPageToken: rows.length > limit && last ? encodeToken(last.id, page.filter) : "" };
    },

    async verifyAuditChain(principal, call) {
      const report = await audit.verifyChain();
      await record(
        {
          type: "audit_verify",
          outcome: report.ok ? "success" : "failure",
          reason: report.problem,
          userId: principal.userId,
          sessionId: principal.sessionId,
          details: {
            checked: report.checked,
            unchained: report.unchained,
            head_seq: report.headSeq,
            ...(report.headHash ? { head_hash: Buffer.from(report.headHash).toString("hex") } : {}),
            ...(report.firstBrokenSeq ? { first_broken_seq: report.firstBrokenSeq } : {}),
          },
        },
        call,
      );
      return report;
    },

    async unlockAccount(principal, rawEmail, call) {
      const email = normalizeEmailForLookup(rawEmail) ?? rawEmail.trim().toLowerCase();
      const subject = await users.findCredentialByEmail(email);
      const result = await deps.defence.unlock(email);
      await record(
        {
          type: "account_unlock",
          outcome: "success",
          userId: subject?.userId,
          actorUserId: principal.userId,
          sessionId: principal.sessionId,
          details: { cleared_failures: result.clearedFailures, was_locked: result.wasLocked },
        },
        call,
      );
      return result;
    },
  };
}
