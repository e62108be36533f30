import type { IdentityCollaborators } from "../../src/app/identity.js";
import { createMailSecrets } from "../../src/mail/mail-secrets.js";
import { createMailTokens } from "../../src/mail/mail-tokens.js";
import type { EmailToken, EmailTokenStore, NewEmailToken, OutboxEntry, OutboxStore } from "../../src/mail/ports.js";
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

export function memoryEmailTokens(): EmailTokenStore {
  const tokens = new Map<string, NewEmailToken & { failedCodes: number; usedAt?: Date }>();
  const live = (t: { usedAt?: Date; expiresAt: Date }, now: Date) => t.usedAt === undefined && t.expiresAt > now;
  const view = (t: NewEmailToken & { failedCodes: number }): EmailToken => ({ ...t });
  return {
    async issue(t, cap) {
      if (tokens.has(t.id)) return true;
      const since = cap && t.createdAt.getTime() - cap.windowMs;
      if (cap && [...tokens.values()].filter((o) => o.userId === t.userId && o.purpose === t.purpose && o.createdAt.getTime() >= since!).length >= cap.max) return false;
      for (const o of tokens.values()) if (o.userId === t.userId && o.purpose === t.purpose && o.usedAt === undefined && o.createdAt < t.createdAt) o.usedAt = t.createdAt;
      tokens.set(t.id, { ...t, failedCodes: 0 });
      return true;
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
    markVerified: async () => {},
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
