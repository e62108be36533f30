import { randomBytes } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import type { AuditLog } from "../../../src/audit/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { auditEvents } from "../../../src/storage/schema.js";
import { backends } from "../../support/databases.js";
import { T0, useStores } from "../../support/stores.js";

// The audit log's rows, run against every backend (the hash chain over
// them: audit-chain.test.ts).

for (const backend of backends) {
  describe.skipIf(backend.skip)(`audit log contract: ${backend.name}`, () => {
    let database: Database;
    let audit: AuditLog;
    useStores(backend.name, (stores) => ({ database, audit } = stores));

    async function recorded(requestId: string) {
      return database.db.select().from(auditEvents).where(eq(auditEvents.requestId, requestId));
    }

    it("inserts one row per event with every field", async () => {
      const requestId = `req-${randomBytes(6).toString("hex")}`;
      const userId = uuidv7(T0);
      const sessionId = uuidv7(T0);
      await audit.record({
        type: "login",
        outcome: "failure",
        reason: "INVALID_CREDENTIALS",
        userId,
        sessionId,
        client: { ip: "203.0.113.7", userAgent: "audit-test" },
        requestId,
        at: T0,
      });
      const rows = await recorded(requestId);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        occurredAt: T0,
        eventType: "login",
        outcome: "failure",
        reason: "INVALID_CREDENTIALS",
        userId,
        sessionId,
        ip: "203.0.113.7",
        userAgent: "audit-test",
        requestId,
      });
    });

    it("stores absent optional fields as null, for a user that does not exist (no foreign key)", async () => {
      const requestId = `req-${randomBytes(6).toString("hex")}`;
      await audit.record({ type: "register", outcome: "success", client: {}, requestId, at: T0 });
      await audit.record({ type: "register", outcome: "success", userId: uuidv7(T0), client: {}, requestId, at: T0 });
      const rows = await recorded(requestId);
      expect(rows).toHaveLength(2);
      expect(rows[0]).toMatchObject({ reason: null, ip: null, userAgent: null });
    });

    it("refuses UPDATE, DELETE and TRUNCATE: the trail is append-only", async () => {
      const requestId = `req-${randomBytes(6).toString("hex")}`;
      await audit.record({ type: "logout", outcome: "success", client: {}, requestId, at: T0 });
      const db = database.db;
      await expect(db.update(auditEvents).set({ outcome: "failure" }).where(eq(auditEvents.requestId, requestId))).rejects.toThrow();
      await expect(db.delete(auditEvents).where(eq(auditEvents.requestId, requestId))).rejects.toThrow();
      await expect(db.execute(sql`truncate table audit_events`)).rejects.toThrow();
      const rows = await recorded(requestId);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.outcome).toBe("success");
    });
  });
}
