import type { IdentityCollaborators } from "../../src/app/identity.js";
import { createMailSecrets } from "../../src/mail/mail-secrets.js";
import { createMailTokens } from "../../src/mail/mail-tokens.js";
import type { EmailToken, EmailTokenStore, NewEmailToken, OutboxEntry, OutboxMessage, OutboxStore } from "../../src/mail/ports.js";
import type { RecoveryStore } from "../../src/recovery/ports.js";

// In-memory stand-ins for the e-mail channel, for unit tests of features
// that only write mails. The real stores have contract tests of their own.

export function memoryOutbox(): OutboxStore & { entries: OutboxEntry[] } {
  const entries: OutboxEntry[] = [];
  const unused = () => Promise.reject(new Error("not used by unit tests"));
  return {
    entries,
    async enqueue(entry) {
      entries.push(entry);
    },
    claim: unused,
    markSent: unused,
    markDropped: unused,
    retry: unused,
    markDead: unused,
    backlog: unused,
    prune: unused,
  };
}

/** An outbox row as the dispatcher's store keeps it (the columns of storage/schema.ts outbox). */
export interface OutboxRow {
  id: string;
  kind: OutboxEntry["kind"];
  userId: string | undefined;
  address: string | undefined;
  params: Record<string, string>;
  status: "pending" | "sending" | "sent" | "dead" | "dropped";
  attempts: number;
  nextAttemptAt: Date;
  leaseUntil: Date | undefined;
  lastError: string | undefined;
  createdAt: Date;
  sentAt: Date | undefined;
}

/**
 * The whole OutboxStore in memory, leases included, for unit tests of the
 * dispatcher. test/contract/mail/outbox-store.test.ts runs it through the
 * same contract as the SQL store, so what the unit tests prove holds there.
 */
export function memoryDispatchOutbox(): OutboxStore & { rows: Map<string, OutboxRow> } {
  const rows = new Map<string, OutboxRow>();
  const message = (r: OutboxRow): OutboxMessage => ({
    id: r.id,
    kind: r.kind,
    userId: r.userId,
    address: r.address,
    params: { ...r.params },
    createdAt: r.createdAt,
    attempts: r.attempts,
  });
  const leased = (id: string, attempt: number | undefined) => {
    const r = rows.get(id);
    return r && r.status === "sending" && (attempt === undefined || r.attempts === attempt) ? r : undefined;
  };
  const finish = (id: string, attempt: number | undefined, status: "sent" | "dead" | "dropped", now: Date, lastError: string | undefined) => {
    const r = leased(id, attempt);
    if (!r) return;
    Object.assign(r, { status, sentAt: now, lastError, leaseUntil: undefined, address: undefined });
  };
  return {
    rows,
    async enqueue(entry) {
      if (rows.has(entry.id)) throw new Error(`duplicate outbox id ${entry.id}`);
      rows.set(entry.id, {
        id: entry.id,
        kind: entry.kind,
        userId: entry.userId,
        address: entry.address,
        params: { ...entry.params },
        status: "pending",
        attempts: 0,
        nextAttemptAt: entry.createdAt,
        leaseUntil: undefined,
        lastError: undefined,
        createdAt: entry.createdAt,
        sentAt: undefined,
      });
    },
    async claim(now, limit, leaseMs) {
      const due = [...rows.values()]
        .filter((r) => r.nextAttemptAt <= now && (r.status === "pending" || (r.status === "sending" && r.leaseUntil !== undefined && r.leaseUntil < now)))
        .sort((a, b) => +a.nextAttemptAt - +b.nextAttemptAt)
        .slice(0, limit);
      for (const r of due) Object.assign(r, { status: "sending", leaseUntil: new Date(now.getTime() + leaseMs), attempts: r.attempts + 1 });
      return due.map(message);
    },
    async markSent(id, now, attempt) {
      finish(id, attempt, "sent", now, undefined);
    },
    async markDropped(id, now, reason, attempt) {
      finish(id, attempt, "dropped", now, reason);
    },
    async retry(id, nextAttemptAt, error, attempt) {
      const r = leased(id, attempt);
      if (!r) return;
      Object.assign(r, { status: "pending", nextAttemptAt, leaseUntil: undefined, lastError: error });
    },
    async markDead(id, now, error, attempt) {
      finish(id, attempt, "dead", now, error);
    },
    async backlog() {
      const all = [...rows.values()];
      return { pending: all.filter((r) => r.status === "pending" || r.status === "sending").length, dead: all.filter((r) => r.status === "dead").length };
    },
    async prune(before) {
      let n = 0;
      for (const r of [...rows.values()]) {
        if ((r.status === "sent" || r.status === "dropped" || r.status === "dead") && r.createdAt < before) {
          rows.delete(r.id);
          n++;
        }
      }
      return n;
    },
  };
}

export function memoryEmailTokens(): EmailTokenStore {
  const tokens = new Map<string, NewEmailToken & { failedCodes: number; usedAt?: Date }>();
  const live = (t: { usedAt?: Date; expiresAt: Date }, now: Date) => t.usedAt === undefined && t.expiresAt > now;
  const view = (t: NewEmailToken & { failedCodes: number }): EmailToken => ({ ...t });
  return {
    async issue(t, cap) {
      const resend = tokens.get(t.id);
      if (resend) return resend.usedAt === undefined ? "issued" : "superseded";
      const same = [...tokens.values()].filter((o) => o.userId === t.userId && o.purpose === t.purpose);
      if (cap && same.filter((o) => o.createdAt.getTime() >= t.createdAt.getTime() - cap.windowMs).length >= cap.max) return "capped";
      const toAddress = [...tokens.values()].filter((o) => o.email === t.email && o.purpose === t.purpose && o.createdAt.getTime() >= t.createdAt.getTime() - (cap?.windowMs ?? 0));
      if (cap?.maxToAddress !== undefined && toAddress.length >= cap.maxToAddress) return "capped";
      if (t.purpose !== "revert_email" && same.some((o) => o.createdAt > t.createdAt)) {
        tokens.set(t.id, { ...t, failedCodes: 0, usedAt: t.createdAt });
        return "superseded";
      }
      if (t.purpose !== "revert_email") for (const o of same) if (o.usedAt === undefined && o.createdAt < t.createdAt) o.usedAt = t.createdAt;
      tokens.set(t.id, { ...t, failedCodes: 0 });
      return "issued";
    },
    async find(hash, purpose, now) {
      const t = [...tokens.values()].find((o) => Buffer.from(o.tokenHash).equals(Buffer.from(hash)) && o.purpose === purpose && live(o, now));
      return t && view(t);
    },
    async latest(userId, purpose, now) {
      const t = [...tokens.values()].filter((o) => o.userId === userId && o.purpose === purpose && live(o, now)).sort((a, b) => +b.createdAt - +a.createdAt)[0];
      return t && view(t);
    },
    async consume(id, now) {
      const t = tokens.get(id);
      if (!t || !live(t, now)) return false;
      t.usedAt = now;
      return true;
    },
    async reserveCodeAttempt(id, max, now) {
      const t = tokens.get(id);
      if (!t || !live(t, now) || t.failedCodes >= max) return undefined;
      t.failedCodes++;
      return t.failedCodes;
    },
    async failCode(id, max, now) {
      const t = tokens.get(id);
      if (!t || t.usedAt) return;
      t.failedCodes++;
      if (t.failedCodes >= max) t.usedAt = now;
    },
    async countIssued(userId, purpose, since, before) {
      return [...tokens.values()].filter((o) => o.userId === userId && o.purpose === purpose && o.createdAt >= since && o.createdAt < before).length;
    },
  };
}

/** The mail collaborators of wireIdentity, in memory; recovery operations are not available. */
export function memoryMail(): IdentityCollaborators["mail"] & { outbox: ReturnType<typeof memoryOutbox> } {
  const secrets = createMailSecrets(new Uint8Array(32).fill(7));
  const tokenStore = memoryEmailTokens();
  const unavailable = () => Promise.reject(new Error("recovery store not available in unit tests"));
  const recovery: RecoveryStore = {
    verifyAddress: unavailable,
    markVerified: async () => undefined,
    reserved: async () => false,
    resetPassword: unavailable,
    startEmailChange: unavailable,
    revertEmail: unavailable,
  };
  return {
    outbox: memoryOutbox(),
    tokenStore,
    tokens: createMailTokens({ store: tokenStore, secrets, appUrl: "https://shop.example" }),
    secrets,
    recovery,
    appUrl: "https://shop.example",
    onQueued: () => {},
  };
}
