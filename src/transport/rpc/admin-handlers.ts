import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { AuditEventSchema, type AdminService as AdminServiceDesc } from "../../../gen/identity/v1/admin_service_pb.js";
import type { AdminService } from "../../admin/admin-service.js";
import type { StoredAuditEvent } from "../../audit/ports.js";
import { callContext as call, requirePrincipal as principal } from "./context.js";

// Thin handlers for the operator RPCs: decode, one core call, encode.


export function auditEventToProto(e: StoredAuditEvent) {
  return create(AuditEventSchema, {
    id: e.id,
    seq: e.seq ?? "",
    eventType: e.type,
    outcome: e.outcome,
    reason: e.reason ?? "",
    userId: e.userId ?? "",
    actorUserId: e.actorUserId ?? "",
    sessionId: e.sessionId ?? "",
    ip: e.client.ip ?? "",
    userAgent: e.client.userAgent ?? "",
    requestId: e.requestId ?? "",
    occurTime: timestampFromDate(e.at),
    details: e.details ? (JSON.parse(JSON.stringify(e.details)) as JsonObject) : undefined,
    hash: e.hash ? Buffer.from(e.hash).toString("hex") : "",
  });
}

export function adminHandlers(admin: AdminService): ServiceImpl<typeof AdminServiceDesc> {
  return {
    async listAuditEvents(req) {
      const page = await admin.listAuditEvents({ pageSize: req.pageSize, pageToken: req.pageToken, filter: req.filter });
      return { auditEvents: page.events.map(auditEventToProto), nextPageToken: page.nextPageToken };
    },

    async verifyAuditChain(_req, ctx) {
      const r = await admin.verifyAuditChain(principal(ctx), call(ctx));
      return {
        ok: r.ok,
        checkedCount: BigInt(r.checked),
        unchainedCount: BigInt(r.unchained),
        headSeq: r.headSeq,
        firstBrokenSeq: r.firstBrokenSeq ?? "",
        problem: r.problem ?? "",
        headHash: r.headHash ? Buffer.from(r.headHash).toString("hex") : "",
      };
    },

    async unlockAccount(req, ctx) {
      const r = await admin.unlockAccount(principal(ctx), req.email, call(ctx));
      return { clearedFailures: r.clearedFailures, wasLocked: r.wasLocked };
    },
  };
}
