import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import { expect } from "vitest";
import { verifyWebhookSignature } from "../../src/notify/webhook.js";
import { closeServer, listenLocal, readText } from "./local-http.js";
import { sleep } from "./timing.js";

// A local receiver of the service's security webhooks (Standard Webhooks):
// it listens on 127.0.0.1, checks every delivery's signature with its
// secret, keeps what arrived in order, and answers as the test says
// (204 unless told otherwise).

export const WEBHOOK_SECRET = "test-webhook-secret-9f8e7d6c5b4a";

export interface ReceivedWebhook {
  /** Date.now() when the whole body had arrived. */
  at: number;
  headers: IncomingHttpHeaders;
  /** The webhook-id, webhook-timestamp and webhook-signature headers ("" when absent). */
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  /** The body's event type ("<unparsable>" when it is not JSON) and data. */
  type: string;
  data: Record<string, unknown>;
  /** Whether the signature verifies with the receiver's secret. */
  verified: boolean;
}

/** What the suites compare of a delivery: its type, whether it verified, and its data. */
export function eventOf(w: ReceivedWebhook): Pick<ReceivedWebhook, "type" | "verified" | "data"> {
  return { type: w.type, verified: w.verified, data: w.data };
}

export interface WebhookReceiver {
  /** Where to deliver. */
  url: string;
  /** WEBHOOK_URL and WEBHOOK_SECRET, for a test server's environment. */
  env: Record<string, string>;
  /** Every delivery, in arrival order. */
  received: ReceivedWebhook[];
  /** The deliveries of `type` (about `userId`, its data.user_id, when given). */
  ofType(type: string, userId?: string): ReceivedWebhook[];
  /** Waits until `count` (default 1) such deliveries arrived and returns them; fails the test after `timeoutMs` (default 3 s). */
  waitFor(type: string, userId?: string, opts?: { count?: number; timeoutMs?: number }): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(
  opts: {
    secret?: string;
    /** Answers delivery number `index` (from 0); must end `res`. Default: 204. */
    respond?: (delivery: ReceivedWebhook, index: number, res: ServerResponse) => void;
  } = {},
): Promise<WebhookReceiver> {
  const secret = opts.secret ?? WEBHOOK_SECRET;
  const respond = opts.respond ?? ((_d, _i, res) => void res.writeHead(204).end());
  const received: ReceivedWebhook[] = [];
  const server = createServer((req, res) => {
    void readText(req).then((body) => {
      const header = (name: string) => String(req.headers[name] ?? "");
      const [id, timestamp, signature] = [header("webhook-id"), header("webhook-timestamp"), header("webhook-signature")];
      let parsed: { type?: string; data?: Record<string, unknown> } = {};
      try {
        parsed = JSON.parse(body);
      } catch {
        // kept as an unparsable delivery
      }
      const delivery: ReceivedWebhook = {
        at: Date.now(),
        headers: req.headers,
        id,
        timestamp,
        signature,
        body,
        type: parsed.type ?? "<unparsable>",
        data: parsed.data ?? {},
        verified: verifyWebhookSignature({ secret, id, timestamp, signature, body }),
      };
      received.push(delivery);
      respond(delivery, received.length - 1, res);
    });
  });
  const url = `${await listenLocal(server)}/hooks`;
  const ofType = (type: string, userId?: string) =>
    received.filter((w) => w.type === type && (userId === undefined || w.data.user_id === userId));
  return {
    url,
    env: { WEBHOOK_URL: url, WEBHOOK_SECRET: secret },
    received,
    ofType,
    async waitFor(type, userId, { count = 1, timeoutMs = 3_000 } = {}) {
      const deadline = performance.now() + timeoutMs;
      while (ofType(type, userId).length < count && performance.now() < deadline) await sleep(20);
      const matching = ofType(type, userId);
      const what = `${count} ${type} webhook(s)${userId === undefined ? "" : ` about ${userId}`} within ${timeoutMs} ms`;
      expect(matching.length, `${what}; received: ${received.map((w) => w.type).join(", ") || "none"}`).toBeGreaterThanOrEqual(count);
      return matching;
    },
    close: () => closeServer(server),
  };
}
