import { and, asc, eq } from "drizzle-orm";
import { auditEvents } from "../../src/storage/schema.js";
import type { TestServer } from "./server.js";

// The audit trail as the suites check it: a grey-box read of the test
// server's database (never written behind the service's back).

export type AuditRow = typeof auditEvents.$inferSelect;

/** Audit rows of `type` (of one user, session or address, when given), oldest first. */
export async function auditRows(s: TestServer, type: string, where: { userId?: string; sessionId?: string; ip?: string } = {}): Promise<AuditRow[]> {
  const conditions = [
    eq(auditEvents.eventType, type),
    ...(where.userId === undefined ? [] : [eq(auditEvents.userId, where.userId)]),
    ...(where.sessionId === undefined ? [] : [eq(auditEvents.sessionId, where.sessionId)]),
    ...(where.ip === undefined ? [] : [eq(auditEvents.ip, where.ip)]),
  ];
  return s.app.database.db
    .select()
    .from(auditEvents)
    .where(and(...conditions))
    .orderBy(asc(auditEvents.id));
}

/** A user's audit rows of one type, oldest first. */
export const auditOf = (s: TestServer, userId: string, type: string): Promise<AuditRow[]> => auditRows(s, type, { userId });
