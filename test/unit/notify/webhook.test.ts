import { createHmac } from "node:crypto";
import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../src/shared/logger.js";
import {
  createWebhookNotifier,
  nullNotifier,
  verifyWebhookSignature,
  type SecurityAlert,
} from "../../../src/notify/webhook.js";
import { expectNear, timed } from "../../support/timing.js";
import { startWebhookReceiver, type ReceivedWebhook, type WebhookReceiver } from "../../support/webhook-receiver.js";

// A real receiver on 127.0.0.1 per test; its `respond` decides each answer.

const KEY_BYTES = Buffer.from("0123456789abcdef0123456789abcdef");
const WHSEC = `whsec_${KEY_BYTES.toString("base64")}`;
const PLAIN_SECRET = "plain shared secret, not base64";

type Hit = ReceivedWebhook;
const receivers: WebhookReceiver[] = [];

afterEach(async () => {
  for (const rx of receivers.splice(0)) await rx.close();
});

async function receiver(respond: (hit: Hit, index: number, res: ServerResponse) => void): Promise<WebhookReceiver> {
  const rx = await startWebhookReceiver({ secret: WHSEC, respond });
  receivers.push(rx);
  return rx;
}

function reply(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, headers);
  res.end();
}

function captureLogs() {
  const lines: string[] = [];
  const logger = createLogger("debug", { write: (line: string) => void lines.push(line) });
  return { logger, lines, entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function alert(overrides: Partial<SecurityAlert> = {}): SecurityAlert {
  return {
    type: "account_locked",
    at: new Date("2026-03-04T05:06:07.000Z"),
    userId: "0193a0b4-7a8e-7c3e-9f00-000000000001",
    details: { failed_attempts: 10, source_ip: "203.0.113.9" },
    ...overrides,
  };
}

function header(hit: Hit | undefined, name: string): string {
  const value = hit?.headers[name];
  if (typeof value !== "string") throw new Error(`missing header ${name}`);
  return value;
}

function verifies(hit: Hit | undefined, secret: string): boolean {
  return verifyWebhookSignature({
    secret,
    id: header(hit, "webhook-id"),
    timestamp: header(hit, "webhook-timestamp"),
    signature: header(hit, "webhook-signature"),
    body: hit?.body ?? "",
  });
}

describe("createWebhookNotifier", () => {
  it("posts a signed Standard Webhooks request that verifies with a whsec_ secret", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 204));
    const { logger } = captureLogs();
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger });
    notifier.notify(alert());
    await notifier.close(2_000);

    expect(rx.received).toHaveLength(1);
    const hit = rx.received[0];
    expect(header(hit, "content-type")).toBe("application/json");
    expect(header(hit, "user-agent")).toBe("identity-service-webhooks");
    expect(header(hit, "webhook-id")).toMatch(/^msg_[\w-]+$/);
    expect(Math.abs(Number(header(hit, "webhook-timestamp")) - Date.now() / 1000)).toBeLessThan(60);
    expect(JSON.parse(hit?.body ?? "")).toEqual({
      type: "account_locked",
      timestamp: "2026-03-04T05:06:07.000Z",
      data: { user_id: "0193a0b4-7a8e-7c3e-9f00-000000000001", failed_attempts: 10, source_ip: "203.0.113.9" },
    });
    expect(verifies(hit, WHSEC)).toBe(true);
    // The whsec_ form signs with the decoded bytes, not the string itself.
    const expected = createHmac("sha256", KEY_BYTES)
      .update(`${header(hit, "webhook-id")}.${header(hit, "webhook-timestamp")}.${hit?.body}`)
      .digest("base64");
    expect(header(hit, "webhook-signature")).toBe(`v1,${expected}`);
    expect(verifies(hit, PLAIN_SECRET)).toBe(false);
  });

  it("signs with the UTF-8 bytes of a secret without the whsec_ prefix", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 200));
    const notifier = createWebhookNotifier({ url: rx.url, secret: PLAIN_SECRET, logger: captureLogs().logger });
    notifier.notify(alert({ type: "new_device_login", userId: undefined, details: { device: "Firefox on Linux", countries: ["DE", "FR"] } }));
    await notifier.close(2_000);

    const hit = rx.received[0];
    expect(verifies(hit, PLAIN_SECRET)).toBe(true);
    const expected = createHmac("sha256", Buffer.from(PLAIN_SECRET, "utf8"))
      .update(`${header(hit, "webhook-id")}.${header(hit, "webhook-timestamp")}.${hit?.body}`)
      .digest("base64");
    expect(header(hit, "webhook-signature")).toBe(`v1,${expected}`);
    expect(JSON.parse(hit?.body ?? "").data).toEqual({ device: "Firefox on Linux", countries: ["DE", "FR"] });
  });

  it("keeps user_id authoritative over a detail of the same name", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 200));
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: captureLogs().logger });
    notifier.notify(alert({ userId: "real", details: JSON.parse('{"user_id":"spoofed","__proto__":"x"}') as SecurityAlert["details"] }));
    await notifier.close(2_000);
    const data = JSON.parse(rx.received[0]?.body ?? "").data;
    expect(data.user_id).toBe("real");
    expect(Object.getOwnPropertyDescriptor(data, "__proto__")?.value).toBe("x");
  });

  it("retries 503 and delivers the third attempt under the same webhook-id", async () => {
    const rx = await receiver((_hit, i, res) => reply(res, i < 2 ? 503 : 200));
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: captureLogs().logger, baseDelayMs: 5 });
    notifier.notify(alert());
    await notifier.close(5_000);

    expect(rx.received).toHaveLength(3);
    const ids = new Set(rx.received.map((h) => header(h, "webhook-id")));
    expect(ids.size).toBe(1);
    for (const hit of rx.received) expect(verifies(hit, WHSEC)).toBe(true);
    expect(new Set(rx.received.map((h) => h.body)).size).toBe(1);
  });

  it("retries 408, 429 and other 5xx, and a request that times out", async () => {
    const statuses = [408, 429, 500, 502];
    const rx = await receiver((_hit, i, res) => {
      if (i < statuses.length) return reply(res, statuses[i] as number);
      if (i === statuses.length) return; // hangs: the per-attempt timeout ends it
      reply(res, 200);
    });
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: captureLogs().logger, baseDelayMs: 2, timeoutMs: 100 });
    notifier.notify(alert());
    await notifier.close(5_000);
    expect(rx.received).toHaveLength(6);
    expect(new Set(rx.received.map((h) => header(h, "webhook-id"))).size).toBe(1);
  });

  it("does not retry a 400 and logs a warning", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 400));
    const logs = captureLogs();
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: logs.logger, baseDelayMs: 1 });
    notifier.notify(alert());
    await notifier.close(2_000);

    expect(rx.received).toHaveLength(1);
    const warning = logs.entries().find((e) => e.level === 40);
    expect(warning).toMatchObject({ alertType: "account_locked", webhookId: header(rx.received[0], "webhook-id"), status: 400 });
  });

  it("does not follow a redirect", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 307, { location: "/elsewhere" }));
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: captureLogs().logger, baseDelayMs: 1 });
    notifier.notify(alert());
    await notifier.close(2_000);
    expect(rx.received).toHaveLength(1);
  });

  it("honours Retry-After seconds over its own back-off", async () => {
    const rx = await receiver((_hit, i, res) => (i === 0 ? reply(res, 429, { "retry-after": "1" }) : reply(res, 200)));
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: captureLogs().logger, baseDelayMs: 1 });
    notifier.notify(alert());
    await notifier.close(5_000);

    expect(rx.received).toHaveLength(2);
    const [first, second] = rx.received as [Hit, Hit];
    // With a 1 ms base the back-off alone would retry at once. A plain timer
    // waits the second out; `at` is in whole milliseconds (Date.now()).
    expectNear(second.at - first.at, 1_000, { what: "retry after Retry-After: 1" });
  });

  it("gives up after maxAttempts and logs type and id, never the secret, signature or details", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 503));
    const logs = captureLogs();
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: logs.logger, baseDelayMs: 1, maxAttempts: 3 });
    notifier.notify(alert());
    await notifier.close(5_000);

    expect(rx.received).toHaveLength(3);
    const giveUp = logs.entries().filter((e) => e.level === 40);
    expect(giveUp).toHaveLength(1);
    expect(giveUp[0]).toMatchObject({ alertType: "account_locked", webhookId: header(rx.received[0], "webhook-id"), attempts: 3, status: 503 });
    const all = logs.lines.join("\n");
    for (const secretish of [WHSEC, KEY_BYTES.toString("base64"), header(rx.received[0], "webhook-signature").slice(3), "203.0.113.9"]) {
      expect(all).not.toContain(secretish);
    }
  });

  it("drops the oldest waiting alert when the queue overflows", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const rx = await receiver((_hit, _i, res) => void gate.then(() => reply(res, 200)));
    const logs = captureLogs();
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: logs.logger, concurrency: 1, maxQueue: 2 });
    // The first goes in flight at once; the second and third wait; the fourth pushes the second out.
    for (const n of [1, 2, 3, 4]) notifier.notify(alert({ details: { n } }));
    const dropped = logs.entries().filter((e) => e.level === 40);
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({ alertType: "account_locked", maxQueue: 2 });
    open();
    await notifier.close(5_000);

    expect(rx.received.map((h) => JSON.parse(h.body).data.n)).toEqual([1, 3, 4]);
  });

  it("close() gives up on a receiver that hangs, and later alerts are dropped", async () => {
    const rx = await receiver(() => {}); // never answers
    const logs = captureLogs();
    const notifier = createWebhookNotifier({ url: rx.url, secret: WHSEC, logger: logs.logger, timeoutMs: 30_000 });
    notifier.notify(alert());
    notifier.notify(alert({ type: "password_spray" }));
    // close() waits its own timeout out (a plain timer), not the 30 s request timeout.
    const { ms } = await timed(() => notifier.close(200));
    expectNear(ms, 200, { what: "close() giving up" });
    expect(logs.entries().some((e) => e.level === 40 && e.undelivered === 2)).toBe(true);

    expect(() => notifier.notify(alert())).not.toThrow();
    await notifier.close(200);
    expect(rx.received.length).toBeLessThanOrEqual(2);
  });

  it("notify() returns at once and never throws, even when the receiver is down", async () => {
    const rx = await receiver((_hit, _i, res) => reply(res, 200));
    const down = rx.url.replace(/:\d+\//, ":1/");
    const logs = captureLogs();
    const notifier = createWebhookNotifier({ url: down, secret: WHSEC, logger: logs.logger, baseDelayMs: 1, maxAttempts: 2 });
    expect(notifier.notify(alert({ at: new Date(Number.NaN) }))).toBeUndefined();
    expect(() => notifier.notify(null as unknown as SecurityAlert)).not.toThrow();
    await notifier.close(2_000);
    // The null alert is logged as an error; the other (sent with the current time) is tried twice against nothing, then given up.
    expect(logs.entries().filter((e) => e.level === 50)).toHaveLength(1);
    expect(logs.entries().filter((e) => e.level === 40)).toEqual([expect.objectContaining({ alertType: "account_locked", attempts: 2, error: "network-error" })]);
    expect(rx.received).toEqual([]);
  });

  it("refuses a bad configuration at construction", () => {
    const logger = captureLogs().logger;
    expect(() => createWebhookNotifier({ url: "http://127.0.0.1:1/", secret: "", logger })).toThrow();
    expect(() => createWebhookNotifier({ url: "http://127.0.0.1:1/", secret: "whsec_", logger })).toThrow();
    expect(() => createWebhookNotifier({ url: "ftp://127.0.0.1/", secret: WHSEC, logger })).toThrow();
    expect(() => createWebhookNotifier({ url: "http://127.0.0.1:1/", secret: WHSEC, logger, maxAttempts: 0 })).toThrow();
  });

  it("nullNotifier accepts alerts and closes", async () => {
    expect(() => nullNotifier.notify(alert())).not.toThrow();
    await expect(nullNotifier.close()).resolves.toBeUndefined();
  });
});

describe("verifyWebhookSignature", () => {
  const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
  const nowSec = 1_800_000_000;
  const timestamp = String(nowSec);
  const body = '{"type":"account_locked","timestamp":"2026-03-04T05:06:07.000Z","data":{"user_id":"u1"}}';
  const sig = (secret: Buffer, ts = timestamp, b = body, i = id) =>
    `v1,${createHmac("sha256", secret).update(`${i}.${ts}.${b}`).digest("base64")}`;
  const good = sig(KEY_BYTES);

  it("accepts a correct signature and refuses tampering", () => {
    const base = { secret: WHSEC, id, timestamp, signature: good, body, nowSec };
    expect(verifyWebhookSignature(base)).toBe(true);
    expect(verifyWebhookSignature({ ...base, body: body.replace("u1", "u2") })).toBe(false);
    expect(verifyWebhookSignature({ ...base, timestamp: String(nowSec + 1) })).toBe(false);
    expect(verifyWebhookSignature({ ...base, id: "msg_other" })).toBe(false);
    expect(verifyWebhookSignature({ ...base, secret: `whsec_${Buffer.from("another key of 32 bytes........").toString("base64")}` })).toBe(false);
    expect(verifyWebhookSignature({ ...base, signature: good.replace("v1,", "v2,") })).toBe(false);
    expect(verifyWebhookSignature({ ...base, signature: good.slice(0, -2) })).toBe(false);
    expect(verifyWebhookSignature({ ...base, signature: "" })).toBe(false);
  });

  it("refuses a timestamp outside the tolerance either way", () => {
    const at = (offset: number, toleranceSec?: number) => {
      const ts = String(nowSec + offset);
      return verifyWebhookSignature({ secret: WHSEC, id, timestamp: ts, signature: sig(KEY_BYTES, ts), body, nowSec, ...(toleranceSec === undefined ? {} : { toleranceSec }) });
    };
    expect(at(-300)).toBe(true);
    expect(at(-301)).toBe(false);
    expect(at(301)).toBe(false);
    expect(at(-3_600, 7_200)).toBe(true);
    expect(verifyWebhookSignature({ secret: WHSEC, id, timestamp: "17e8", signature: good, body, nowSec })).toBe(false);
  });

  it("accepts any matching entry of a rotated signature list", () => {
    const old = sig(Buffer.from("the previous key, now rotated out"));
    expect(verifyWebhookSignature({ secret: WHSEC, id, timestamp, signature: `${old} ${good}`, body, nowSec })).toBe(true);
    expect(verifyWebhookSignature({ secret: WHSEC, id, timestamp, signature: `${good} ${old}`, body, nowSec })).toBe(true);
    expect(verifyWebhookSignature({ secret: WHSEC, id, timestamp, signature: old, body, nowSec })).toBe(false);
  });

  it("matches the Standard Webhooks reference test vector", () => {
    expect(
      verifyWebhookSignature({
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: "1614265330",
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        body: '{"test": 2432232314}',
        nowSec: 1614265330,
      }),
    ).toBe(true);
  });
});
