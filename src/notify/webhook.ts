import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { AlertSink, SecurityAlert, SecurityAlertType } from "./ports.js";
import type { Logger } from "../shared/logger.js";

// Security alerts as Standard Webhooks (https://www.standardwebhooks.com):
// `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, the
// signature being base64 HMAC-SHA256 over "<id>.<timestamp>.<body>".

export type { SecurityAlert, SecurityAlertType } from "./ports.js";

export interface Notifier extends AlertSink {
  /** Never throws and never blocks the caller; delivery happens in the background. */
  notify(alert: SecurityAlert): void;
  /** Waits up to timeoutMs for queued deliveries, then gives up. */
  close(timeoutMs?: number): Promise<void>;
}

export const nullNotifier: Notifier = Object.freeze({
  notify() {},
  async close() {},
});

const SECRET_PREFIX = "whsec_";
const MAX_DELAY_MS = 60_000;
const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
const USER_AGENT = "identity-service-webhooks";

interface Delivery {
  readonly id: string;
  readonly type: SecurityAlertType;
  readonly body: string;
}

type Outcome =
  | { kind: "delivered" }
  | { kind: "rejected"; status: number }
  | { kind: "retry"; status?: number; error?: string; retryAfterMs?: number };

export function createWebhookNotifier(opts: {
  url: string;
  secret: string;
  logger: Logger;
  /** Default 6. */
  maxAttempts?: number;
  /** Default 500; exponential with full jitter, capped at 60 s. */
  baseDelayMs?: number;
  /** Per attempt, default 5000. */
  timeoutMs?: number;
  /** Undelivered alerts waiting for a slot, default 1000; beyond it the oldest is dropped. */
  maxQueue?: number;
  /** Deliveries in flight at once, default 4. */
  concurrency?: number;
}): Notifier {
  const { logger } = opts;
  const url = new URL(opts.url);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("webhook URL must be http or https");
  const key = signingKey(opts.secret);
  if (key.length === 0) throw new Error("webhook secret must not be empty");
  const maxAttempts = positiveInt(opts.maxAttempts ?? 6, "maxAttempts");
  const baseDelayMs = Math.max(0, opts.baseDelayMs ?? 500);
  const timeoutMs = positiveInt(opts.timeoutMs ?? 5_000, "timeoutMs");
  const maxQueue = positiveInt(opts.maxQueue ?? 1_000, "maxQueue");
  const concurrency = positiveInt(opts.concurrency ?? 4, "concurrency");

  const queue: Delivery[] = [];
  let inFlight = 0;
  let closed = false;
  // Aborted when close() runs out of time: cuts requests and back-off sleeps short.
  const stop = new AbortController();
  let idleWaiters: (() => void)[] = [];

  function settleIfIdle(): void {
    if (inFlight > 0 || queue.length > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function pump(): void {
    while (inFlight < concurrency && queue.length > 0 && !stop.signal.aborted) {
      const delivery = queue.shift() as Delivery;
      inFlight++;
      deliver(delivery)
        .catch((err: unknown) => {
          logger.error({ alertType: delivery.type, webhookId: delivery.id, errName: errorName(err) }, "security webhook delivery failed unexpectedly");
        })
        .finally(() => {
          inFlight--;
          pump();
          settleIfIdle();
        });
    }
  }

  async function attempt(delivery: Delivery): Promise<Outcome> {
    const timestamp = Math.floor(Date.now() / 1000).toString();
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": USER_AGENT,
          "webhook-id": delivery.id,
          "webhook-timestamp": timestamp,
          "webhook-signature": `v1,${sign(key, delivery.id, timestamp, delivery.body)}`,
        },
        body: delivery.body,
        // A redirect is treated as a failure rather than re-posting the alert elsewhere.
        redirect: "manual",
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), stop.signal]),
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { kind: "delivered" };
      if (res.status === 408 || res.status === 429 || res.status >= 500) {
        const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"));
        return { kind: "retry", status: res.status, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
      }
      return { kind: "rejected", status: res.status };
    } catch (err) {
      // The error's message may quote the URL, which can itself hold a token.
      const name = errorName(err);
      return { kind: "retry", error: name === "TimeoutError" || name === "AbortError" ? "timeout" : "network-error" };
    }
  }

  async function deliver(delivery: Delivery): Promise<void> {
    let last: Outcome | undefined;
    for (let n = 1; n <= maxAttempts; n++) {
      if (stop.signal.aborted) return;
      last = await attempt(delivery);
      if (last.kind === "delivered") {
        logger.debug({ alertType: delivery.type, webhookId: delivery.id, attempts: n }, "security webhook delivered");
        return;
      }
      if (last.kind === "rejected") {
        logger.warn({ alertType: delivery.type, webhookId: delivery.id, status: last.status, attempts: n }, "security webhook rejected by the receiver; not retried");
        return;
      }
      if (n === maxAttempts || stop.signal.aborted) break;
      const backoff = Math.random() * Math.min(MAX_DELAY_MS, baseDelayMs * 2 ** (n - 1));
      try {
        await sleep(last.retryAfterMs ?? backoff, undefined, { signal: stop.signal, ref: false });
      } catch {
        return; // close() gave up; it reports what was left undelivered
      }
    }
    if (stop.signal.aborted) return;
    const status = last && last.kind === "retry" ? last.status : undefined;
    const error = last && last.kind === "retry" ? last.error : undefined;
    logger.warn({ alertType: delivery.type, webhookId: delivery.id, attempts: maxAttempts, status, error }, "security webhook given up after retries");
  }

  return {
    notify(alert) {
      try {
        if (closed) {
          logger.warn({ alertType: alert.type }, "security webhook notifier is closed; alert dropped");
          return;
        }
        queue.push({ id: `msg_${randomUUID()}`, type: alert.type, body: alertBody(alert) });
        if (queue.length > maxQueue) {
          const dropped = queue.shift() as Delivery;
          logger.warn({ alertType: dropped.type, webhookId: dropped.id, maxQueue }, "security webhook queue full; oldest alert dropped");
        }
        pump();
      } catch (err) {
        logger.error({ alertType: alert?.type, errName: errorName(err) }, "security webhook could not be queued");
      }
    },

    async close(closeTimeoutMs = DEFAULT_CLOSE_TIMEOUT_MS) {
      closed = true;
      if (inFlight === 0 && queue.length === 0) return;
      const idle = new Promise<void>((resolve) => idleWaiters.push(resolve));
      const timer = new AbortController();
      const timedOut = sleep(closeTimeoutMs, true, { signal: timer.signal }).catch(() => false);
      const gaveUp = await Promise.race([idle.then(() => false), timedOut]);
      timer.abort();
      if (!gaveUp) return;
      logger.warn({ undelivered: queue.length + inFlight }, "security webhooks still pending at close; abandoned");
      queue.length = 0;
      stop.abort();
    },
  };
}

/** Verifies a Standard Webhooks signature (used by tests and documented for receivers). Rejects timestamps older/newer than toleranceSec (default 300). */
export function verifyWebhookSignature(input: {
  secret: string;
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  nowSec?: number;
  toleranceSec?: number;
}): boolean {
  if (!/^\d{1,15}$/.test(input.timestamp)) return false;
  const nowSec = input.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(nowSec - Number(input.timestamp)) > (input.toleranceSec ?? 300)) return false;
  const key = signingKey(input.secret);
  if (key.length === 0) return false;
  const expected = Buffer.from(sign(key, input.id, input.timestamp, input.body));
  // Several space-separated entries during secret rotation: any may match.
  let matched = false;
  for (const entry of input.signature.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const given = Buffer.from(entry.slice(comma + 1));
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true;
  }
  return matched;
}

function signingKey(secret: string): Buffer {
  return secret.startsWith(SECRET_PREFIX)
    ? Buffer.from(secret.slice(SECRET_PREFIX.length), "base64")
    : Buffer.from(secret, "utf8");
}

function sign(key: Buffer, id: string, timestamp: string, body: string): string {
  return createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
}

function alertBody(alert: SecurityAlert): string {
  // An invalid Date must not cost the alert.
  const at = Number.isNaN(alert.at.getTime()) ? new Date() : alert.at;
  const details = Object.entries(alert.details).filter(([k]) => alert.userId === undefined || k !== "user_id");
  // fromEntries defines own properties, so a "__proto__" key stays plain data.
  const data = Object.fromEntries(alert.userId === undefined ? details : [["user_id", alert.userId], ...details]);
  return JSON.stringify({ type: alert.type, timestamp: at.toISOString(), data });
}

function parseRetryAfter(header: string | null): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Math.min(Number(value) * 1000, MAX_DELAY_MS);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.min(Math.max(date - Date.now(), 0), MAX_DELAY_MS);
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`webhook ${name} must be a positive integer`);
  return value;
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}
