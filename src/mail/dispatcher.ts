import type { AuditEvent } from "../audit/ports.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { MailVars } from "./templates/catalogue.js";
import { renderMail } from "./templates/layout.js";
import type { MailKind, MailTransport, OutboxMessage, OutboxStore } from "./ports.js";

// The dispatcher: leases due rows of the outbox, has each one's feature
// compose it (recipient, locale, token), renders and sends it, and records
// the outcome. Every instance may run one: a lease is taken with SKIP
// LOCKED, so no two dispatchers hold the same row, and a dispatcher that
// dies mid-send leaves a lease that expires, after which the row is sent
// again with the same Message-ID and the same token (at worst a duplicate
// the receiving side can recognise, never a lost mail).

/** What a feature decides about one of its mails when it is sent. */
export type Composed =
  | { to: string; locale?: string | undefined; vars: Omit<MailVars, "appName"> }
  /** Nothing to send: the address has no account, the mail was capped or expired before delivery. */
  | { drop: string };

export type Composer = (message: OutboxMessage, now: Date) => Promise<Composed>;

export interface DispatcherOptions {
  outbox: OutboxStore;
  transport: MailTransport;
  composers: Readonly<Partial<Record<MailKind, Composer>>>;
  appName: string;
  /** The domain of Message-IDs (MAIL_FROM's). */
  messageIdDomain: string;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs?: number;
  leaseMs: number;
  pollMs: number;
  batchSize?: number;
  /** After a wake, how long to wait for more mails before a pass (default 25 ms, at most pollMs). */
  gatherMs?: number;
  clock: Clock;
  logger: Logger;
  record(event: Omit<AuditEvent, "at" | "client">): Promise<void>;
}

export interface DispatcherStats {
  sent: number;
  failed: number;
  deadLettered: number;
  dropped: number;
}

export interface MailDispatcher {
  /** Runs until stop(); polls every pollMs and at once after wake(). */
  start(): void;
  /** Waits for the mails in hand; leases of unsent rows expire on their own. */
  stop(): Promise<void>;
  /** A mail was just written: look now instead of at the next poll. */
  wake(): void;
  /** One pass over due mails; how many were handled. */
  runOnce(): Promise<number>;
  stats(): DispatcherStats;
}

// SMTP replies often quote the recipient: no address goes to the log or the row.
const ADDRESS = /[^\s<>"'(),;:]+@[^\s<>"'(),;:]+/g;
export function scrubError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(ADDRESS, "<address>").slice(0, 300);
}

export function createMailDispatcher(opts: DispatcherOptions): MailDispatcher {
  const { outbox, clock, logger } = opts;
  const batchSize = opts.batchSize ?? 20;
  const gatherMs = Math.min(opts.gatherMs ?? 25, opts.pollMs);
  let stopping = false;
  const retryMaxMs = opts.retryMaxMs ?? 3_600_000;
  const stats: DispatcherStats = { sent: 0, failed: 0, deadLettered: 0, dropped: 0 };
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  let wakeNow: (() => void) | undefined;
  // Set by a wake() that came during a pass (the mail may have been written after its claim).
  let woken = false;
  let loop: Promise<void> | undefined;

  function backoff(attempts: number): number {
    const exp = Math.min(retryMaxMs, opts.retryBaseMs * 2 ** Math.max(0, attempts - 1));
    // Full jitter on the upper half: instances retrying one outage spread out.
    return Math.round(exp / 2 + (Math.random() * exp) / 2);
  }

  async function deliver(message: OutboxMessage): Promise<void> {
    const now = clock.now();
    const lease = message.attempts;
    try {
      const composer = opts.composers[message.kind];
      if (!composer) throw new Error(`no composer for mail kind ${message.kind}`);
      const composed = await composer(message, now);
      if ("drop" in composed) {
        await outbox.markDropped(message.id, clock.now(), composed.drop, lease);
        stats.dropped++;
        return;
      }
      const rendered = renderMail(message.kind, composed.locale ?? "en", { appName: opts.appName, ...composed.vars });
      await opts.transport.send({ messageId: `<${message.id}@${opts.messageIdDomain}>`, to: composed.to, ...rendered });
    } catch (err) {
      await failed(message, err);
      return;
    }
    stats.sent++;
    try {
      await outbox.markSent(message.id, clock.now(), lease);
    } catch (err) {
      // Sent, but not recorded: the lease expires and the mail goes again,
      // with the same Message-ID and link. Not a delivery failure.
      logger.warn({ err, mail_id: message.id }, "a sent mail could not be marked sent; it will be sent again when its lease expires");
    }
  }

  /** A failed attempt: retried with backoff, or dead-lettered after the last one; logged and audited either way. */
  async function failed(message: OutboxMessage, err: unknown): Promise<void> {
    const lease = message.attempts;
    const error = scrubError(err);
    stats.failed++;
    const details = { mail_id: message.id, kind: message.kind, attempt: message.attempts, error };
    const noted = (e: unknown) => logger.warn({ err: e }, "outbox update failed");
    if (message.attempts >= opts.maxAttempts) {
      stats.deadLettered++;
      logger.error(details, "mail dead-lettered after its last attempt");
      await outbox.markDead(message.id, clock.now(), error, lease).catch(noted);
      await opts.record({ type: "mail_dead_lettered", outcome: "failure", userId: message.userId, details }).catch(() => {});
      return;
    }
    const next = new Date(clock.now().getTime() + backoff(message.attempts));
    logger.warn({ ...details, next_attempt: next.toISOString() }, "mail delivery failed; will retry");
    await outbox.retry(message.id, next, error, lease).catch(noted);
    await opts.record({ type: "mail_delivery_failed", outcome: "failure", userId: message.userId, details }).catch(() => {});
  }

  async function runOnce(): Promise<number> {
    const claimed = await outbox.claim(clock.now(), batchSize, opts.leaseMs);
    await Promise.all(claimed.map(deliver));
    return claimed.length;
  }

  // Until `ms` pass or a mail is written; then a moment more (gatherMs), so
  // that mails written together (a burst of registrations) go in one pass
  // rather than one pass, one lease query, each.
  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        wakeNow = undefined;
        resolve();
      };
      wakeNow = () => {
        clearTimeout(timer);
        wakeNow = stopping ? undefined : () => {};
        if (stopping) return resolve();
        timer = setTimeout(done, gatherMs);
        timer.unref?.();
      };
      timer = setTimeout(done, ms);
      timer.unref?.();
    });
  }

  async function run(): Promise<void> {
    while (running) {
      woken = false;
      let handled = 0;
      try {
        handled = await runOnce();
      } catch (err) {
        logger.warn({ err }, "mail dispatcher pass failed (database unreachable?)");
      }
      if (!running) break;
      // A full batch means more are due, a wake() during the pass a mail its claim may have missed: go on at once.
      if (handled < batchSize && !woken) await sleep(opts.pollMs);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      stopping = false;
      loop = run();
    },
    async stop() {
      running = false;
      stopping = true;
      wakeNow?.();
      await loop;
    },
    wake() {
      woken = true;
      wakeNow?.();
    },
    runOnce,
    stats: () => ({ ...stats }),
  };
}
