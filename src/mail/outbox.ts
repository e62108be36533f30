import type { CallContext } from "../shared/call.js";
import { uuidv7 } from "../shared/uuid.js";
import type { MailKind, OutboxEntry } from "./ports.js";

// Building outbox entries: one id per mail (uuidv7, so rows are written in
// time order), and the request's facts a mail may quote (where and when it
// was asked for), never a secret.

export function mailEntry(kind: MailKind, now: Date, to: { userId?: string | undefined; address?: string | undefined }, params: Record<string, string> = {}): OutboxEntry {
  return { id: uuidv7(now), kind, userId: to.userId, address: to.address, params, createdAt: now };
}

/** Where and when a request came from, as a mail may say it. */
export function requestFacts(call: CallContext, now: Date): Record<string, string> {
  return { ...(call.client.ip ? { ip: call.client.ip } : {}), at: now.toISOString() };
}

/** Told when a mail was written, so a local dispatcher sends it now rather than at its next poll. */
export type OnQueued = () => void;
