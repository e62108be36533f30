import { afterEach, describe, expect, it, vi } from "vitest";
import type { AuditEvent } from "../../../src/audit/ports.js";
import { createMailDispatcher, scrubError, type Composer, type DispatcherOptions, type MailDispatcher } from "../../../src/mail/dispatcher.js";
import { mailEntry } from "../../../src/mail/outbox.js";
import type { Mail, MailKind, MailTransport, OutboxEntry } from "../../../src/mail/ports.js";
import { renderMail } from "../../../src/mail/templates/layout.js";
import { createLogger } from "../../../src/shared/logger.js";
import { memoryDispatchOutbox } from "../../support/mail-fakes.js";
import { expectEventually, sleep } from "../../support/timing.js";

// The dispatcher on the memory outbox (held to the SQL store's contract in
// test/contract/mail/outbox-store.test.ts) and a fake transport: outcomes,
// retries and their backoff, dead letters and their audit trail, what
// reaches logs and rows of an error, and the polling loop.

const T0 = new Date("2026-02-01T09:00:00.000Z");
const ADDRESS = "ngoc.phu@example.com";
const USER_ID = "0193a0b4-7a8e-7c3e-9f00-000000000001";

type Audit = Omit<AuditEvent, "at" | "client">;

/** A transport that records what it is given; `fail` decides, per call, whether (and how) it throws. */
function fakeTransport(fail: (mail: Mail, call: number) => Error | undefined = () => undefined) {
  const calls: Mail[] = [];
  const sent: Mail[] = [];
  let gate: Promise<void> | undefined;
  const transport: MailTransport & { calls: Mail[]; sent: Mail[]; hold(): () => void } = {
    kind: "smtp",
    calls,
    sent,
    async send(mail) {
      calls.push(mail);
      if (gate) await gate;
      const err = fail(mail, calls.length);
      if (err) throw err;
      sent.push(mail);
    },
    async close() {},
    /** Sends wait until the returned release is called. */
    hold() {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
  return transport;
}

const verifyComposer: Composer = async (message) => ({ to: message.address ?? ADDRESS, vars: { link: `https://shop.example/verify-email?token=t-${message.id}` } });

function setup(opts: { fail?: (mail: Mail, call: number) => Error | undefined; composers?: Partial<Record<MailKind, Composer>>; options?: Partial<DispatcherOptions> } = {}) {
  let now = T0;
  const clock = { now: () => now };
  const outbox = memoryDispatchOutbox();
  const transport = fakeTransport(opts.fail);
  const audit: Audit[] = [];
  const lines: string[] = [];
  const logger = createLogger("debug", { write: (line: string) => void lines.push(line) });
  const dispatcher = createMailDispatcher({
    outbox,
    transport,
    composers: opts.composers ?? { verify_email: verifyComposer },
    appName: "Shop",
    messageIdDomain: "shop.example",
    maxAttempts: 4,
    retryBaseMs: 1_000,
    leaseMs: 60_000,
    pollMs: 60_000,
    clock,
    logger,
    record: async (event) => void audit.push(event),
    ...opts.options,
  });
  return {
    outbox,
    transport,
    audit,
    lines,
    dispatcher,
    now: () => now,
    setNow: (d: Date) => void (now = d),
    advance: (ms: number) => void (now = new Date(now.getTime() + ms)),
    async enqueue(entry: OutboxEntry = mailEntry("verify_email", now, { userId: USER_ID, address: ADDRESS })): Promise<OutboxEntry> {
      await outbox.enqueue(entry);
      return entry;
    },
  };
}

const running: MailDispatcher[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of running.splice(0)) await d.stop();
});

describe("delivery outcomes", () => {
  it("renders and sends a due mail with Message-ID <id@domain>, then marks it sent", async () => {
    const t = setup();
    const entry = await t.enqueue();
    await expect(t.dispatcher.runOnce()).resolves.toBe(1);
    const rendered = renderMail("verify_email", "en", { appName: "Shop", link: `https://shop.example/verify-email?token=t-${entry.id}` });
    expect(t.transport.sent).toEqual([{ messageId: `<${entry.id}@shop.example>`, to: ADDRESS, ...rendered }]);
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sent", sentAt: T0, attempts: 1, address: undefined });
    expect(t.dispatcher.stats()).toEqual({ sent: 1, failed: 0, deadLettered: 0, dropped: 0 });
    expect(t.audit).toEqual([]);
    // Nothing left to do.
    await expect(t.dispatcher.runOnce()).resolves.toBe(0);
    expect(t.transport.calls).toHaveLength(1);
  });

  it("a sent mail that cannot be marked sent is not a failure: no retry, no audit; its lease brings it back, the same mail", async () => {
    const t = setup();
    const entry = await t.enqueue();
    const markSent = vi.spyOn(t.outbox, "markSent").mockRejectedValueOnce(new Error("connection terminated"));
    await t.dispatcher.runOnce();
    expect(markSent).toHaveBeenCalledTimes(1);
    expect(t.transport.sent).toHaveLength(1);
    expect(t.audit).toEqual([]);
    expect(t.dispatcher.stats()).toMatchObject({ sent: 1, failed: 0 });
    // Still leased as sending: nothing happens until the lease ends, then it goes again with the same Message-ID.
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sending", attempts: 1 });
    await expect(t.dispatcher.runOnce()).resolves.toBe(0);
    t.advance(60_001);
    await expect(t.dispatcher.runOnce()).resolves.toBe(1);
    expect(t.transport.sent.map((m) => m.messageId)).toEqual([`<${entry.id}@shop.example>`, `<${entry.id}@shop.example>`]);
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sent", attempts: 2 });
  });

  it("a late outcome of a lease taken over changes nothing: the new holder's counts", async () => {
    const t = setup({ fail: (_m, call) => (call === 1 ? new Error("451 try again later") : undefined) });
    const entry = await t.enqueue();
    const release = t.transport.hold();
    const first = t.dispatcher.runOnce();
    await expectEventually("the first send is in flight", async () => t.transport.calls.length === 1, { timeoutMs: 5_000 });
    // The lease ends while the first send hangs; another dispatcher (the same store) takes the row.
    t.advance(60_001);
    const otherTransport = fakeTransport();
    const releaseOther = otherTransport.hold();
    const other = createMailDispatcher({
      outbox: t.outbox,
      transport: otherTransport,
      composers: { verify_email: verifyComposer },
      appName: "Shop",
      messageIdDomain: "shop.example",
      maxAttempts: 4,
      retryBaseMs: 1_000,
      leaseMs: 60_000,
      pollMs: 60_000,
      clock: { now: t.now },
      logger: createLogger("silent"),
      record: async () => {},
    });
    const second = other.runOnce();
    await expectEventually("the second send is in flight", async () => otherTransport.calls.length === 1, { timeoutMs: 5_000 });
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sending", attempts: 2 });
    // The first dispatcher's send fails late: its retry must not take the row from the second.
    release();
    await first;
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sending", attempts: 2 });
    releaseOther();
    await expect(second).resolves.toBe(1);
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sent", attempts: 2 });
  });

  it("renders in the locale the composer chose", async () => {
    const t = setup({ composers: { verify_email: async (m) => ({ to: ADDRESS, locale: "vi-VN", vars: { link: `https://shop.example/v?token=${m.id}` } }) } });
    await t.enqueue();
    await t.dispatcher.runOnce();
    expect(t.transport.sent[0]?.subject).toBe(renderMail("verify_email", "vi", { appName: "Shop" }).subject);
    expect(t.transport.sent[0]?.subject).not.toBe(renderMail("verify_email", "en", { appName: "Shop" }).subject);
  });

  it("marks a mail its composer drops as dropped, with the reason, and sends nothing", async () => {
    const t = setup({ composers: { password_reset: async () => ({ drop: "no account" }) } });
    const entry = await t.enqueue(mailEntry("password_reset", T0, { address: "nobody@example.com" }));
    await expect(t.dispatcher.runOnce()).resolves.toBe(1);
    expect(t.transport.calls).toEqual([]);
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "dropped", lastError: "no account", address: undefined });
    expect(t.dispatcher.stats()).toEqual({ sent: 0, failed: 0, deadLettered: 0, dropped: 1 });
    expect(t.audit).toEqual([]);
  });

  it("only handles due mails, and leaves the others to a later pass", async () => {
    const t = setup();
    await t.enqueue(mailEntry("verify_email", new Date(T0.getTime() + 5_000), { userId: USER_ID, address: ADDRESS }));
    await expect(t.dispatcher.runOnce()).resolves.toBe(0);
    t.advance(5_000);
    await expect(t.dispatcher.runOnce()).resolves.toBe(1);
    expect(t.transport.sent).toHaveLength(1);
  });
});

describe("failures", () => {
  const refusal = (mail: Mail) => Object.assign(new Error(`451 4.3.0 <${mail.to}>: mailbox busy, try again later`), { responseCode: 451 });

  it("retries with a growing backoff, then dead-letters after maxAttempts, auditing every failure and the dead letter", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.5);
    const t = setup({ fail: refusal });
    const entry = await t.enqueue();
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      await expect(t.dispatcher.runOnce()).resolves.toBe(1);
      const row = t.outbox.rows.get(entry.id)!;
      expect(row).toMatchObject({ status: "pending", attempts: attempt });
      const delay = row.nextAttemptAt.getTime() - t.now().getTime();
      delays.push(delay);
      // Not before it is due...
      t.advance(delay - 1);
      await expect(t.dispatcher.runOnce()).resolves.toBe(0);
      // ...and then it is.
      t.advance(1);
    }
    // 1 s base, doubling per attempt; the jitter (fixed here) keeps it in the upper half.
    expect(delays).toEqual([750, 1_500, 3_000]);
    await expect(t.dispatcher.runOnce()).resolves.toBe(1);
    const row = t.outbox.rows.get(entry.id)!;
    expect(row).toMatchObject({ status: "dead", attempts: 4, address: undefined });
    expect(row.lastError).toBe("451 4.3.0 <<address>>: mailbox busy, try again later");
    await expect(t.outbox.backlog()).resolves.toEqual({ pending: 0, dead: 1 });
    // Dead letters are not tried again.
    t.advance(24 * 3_600_000);
    await expect(t.dispatcher.runOnce()).resolves.toBe(0);
    expect(t.transport.calls).toHaveLength(4);
    expect(t.dispatcher.stats()).toEqual({ sent: 0, failed: 4, deadLettered: 1, dropped: 0 });

    const details = (attempt: number) => ({ mail_id: entry.id, kind: "verify_email", attempt, error: "451 4.3.0 <<address>>: mailbox busy, try again later" });
    expect(t.audit).toEqual([
      { type: "mail_delivery_failed", outcome: "failure", userId: USER_ID, details: details(1) },
      { type: "mail_delivery_failed", outcome: "failure", userId: USER_ID, details: details(2) },
      { type: "mail_delivery_failed", outcome: "failure", userId: USER_ID, details: details(3) },
      { type: "mail_dead_lettered", outcome: "failure", userId: USER_ID, details: details(4) },
    ]);
    // No address in the logs either.
    expect(t.lines.join("\n")).not.toContain(ADDRESS);
    expect(t.lines.filter((l) => l.includes("dead-lettered"))).toHaveLength(1);
  });

  it("keeps every delay within [base·2^(n-1)/2, base·2^(n-1)], capped at retryMaxMs", async () => {
    for (const random of [0, 0.3, 0.999_999]) {
      vi.spyOn(Math, "random").mockReturnValue(random);
      const t = setup({ fail: refusal, options: { maxAttempts: 10, retryBaseMs: 1_000, retryMaxMs: 5_000 } });
      const entry = await t.enqueue();
      for (let attempt = 1; attempt <= 6; attempt++) {
        await t.dispatcher.runOnce();
        const row = t.outbox.rows.get(entry.id)!;
        const delay = row.nextAttemptAt.getTime() - t.now().getTime();
        const exp = Math.min(5_000, 1_000 * 2 ** (attempt - 1));
        expect(delay, `attempt ${attempt}, random ${random}`).toBeGreaterThanOrEqual(exp / 2);
        expect(delay, `attempt ${attempt}, random ${random}`).toBeLessThanOrEqual(exp);
        t.advance(delay);
      }
    }
  });

  it("sends every attempt of a mail with the same Message-ID and content", async () => {
    const t = setup({ fail: (_m, call) => (call < 3 ? new Error("connect ECONNREFUSED 127.0.0.1:25") : undefined) });
    const entry = await t.enqueue();
    for (let i = 0; i < 3; i++) {
      await t.dispatcher.runOnce();
      t.advance(60_000);
    }
    expect(t.transport.calls).toHaveLength(3);
    expect(new Set(t.transport.calls.map((m) => m.messageId))).toEqual(new Set([`<${entry.id}@shop.example>`]));
    expect(new Set(t.transport.calls.map((m) => JSON.stringify(m))).size).toBe(1);
    expect(t.transport.sent).toHaveLength(1);
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sent", attempts: 3 });
    expect(t.audit.map((a) => a.type)).toEqual(["mail_delivery_failed", "mail_delivery_failed"]);
  });

  it("with maxAttempts 1, the first failure is the dead letter", async () => {
    const t = setup({ fail: refusal, options: { maxAttempts: 1 } });
    const entry = await t.enqueue();
    await t.dispatcher.runOnce();
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "dead", attempts: 1 });
    expect(t.audit.map((a) => a.type)).toEqual(["mail_dead_lettered"]);
  });

  it("a composer that throws (or a kind without a composer) fails the attempt, scrubbed, and it is retried", async () => {
    const t = setup({
      composers: {
        verify_email: async () => {
          throw new Error(`lookup of ${ADDRESS} failed`);
        },
      },
    });
    const a = await t.enqueue();
    const b = await t.enqueue(mailEntry("email_login", T0, { userId: USER_ID, address: ADDRESS }));
    await expect(t.dispatcher.runOnce()).resolves.toBe(2);
    expect(t.outbox.rows.get(a.id)).toMatchObject({ status: "pending", lastError: "lookup of <address> failed" });
    expect(t.outbox.rows.get(b.id)).toMatchObject({ status: "pending", lastError: "no composer for mail kind email_login" });
    expect(t.transport.calls).toEqual([]);
  });

  it("a lease that expired mid-send counts as an attempt: the mail is sent again, the same one", async () => {
    const t = setup({ options: { leaseMs: 10_000 } });
    const entry = await t.enqueue();
    // Another dispatcher leased it and died.
    await t.outbox.claim(T0, 10, 10_000);
    await expect(t.dispatcher.runOnce()).resolves.toBe(0);
    t.advance(10_001);
    await expect(t.dispatcher.runOnce()).resolves.toBe(1);
    expect(t.transport.sent.map((m) => m.messageId)).toEqual([`<${entry.id}@shop.example>`]);
    expect(t.outbox.rows.get(entry.id)).toMatchObject({ status: "sent", attempts: 2 });
  });
});

describe("scrubError", () => {
  it.each([
    ["550 5.1.1 <john.doe+tag@example.com>: Recipient address rejected", "550 5.1.1 <<address>>: Recipient address rejected"],
    ["Can't send mail - all recipients were rejected: 550 a@b.example, c@d.example", "Can't send mail - all recipients were rejected: 550 <address>, <address>"],
    ["RCPT TO:Ngoc.Phu@Example.COM failed", "RCPT TO:<address> failed"],
    ['mailbox "x_y@sub.example.co.uk" unavailable', 'mailbox "<address>" unavailable'],
    ["connect ECONNREFUSED 127.0.0.1:587", "connect ECONNREFUSED 127.0.0.1:587"],
  ])("%s", (message, scrubbed) => {
    expect(scrubError(new Error(message))).toBe(scrubbed);
  });

  it("takes non-Error values and bounds the length", () => {
    expect(scrubError("greylisted: someone@example.com")).toBe("greylisted: <address>");
    expect(scrubError(451)).toBe("451");
    const long = scrubError(new Error(`${"x".repeat(290)} someone@example.com ${"y".repeat(100)}`));
    expect(long).toHaveLength(300);
    expect(long).not.toContain("@");
  });
});

describe("the polling loop", () => {
  it("wake() sends a mail written after start at once, not at the next poll", async () => {
    const t = setup({ options: { pollMs: 60_000, clock: { now: () => new Date() } } });
    running.push(t.dispatcher);
    t.dispatcher.start();
    await sleep(20);
    await t.enqueue(mailEntry("verify_email", new Date(), { userId: USER_ID, address: ADDRESS }));
    t.dispatcher.wake();
    await expectEventually("the mail is sent after wake()", () => t.transport.sent.length === 1, { timeoutMs: 5_000 });
  });

  it("a wake() that comes while a pass is under way is not lost", async () => {
    const t = setup({ options: { pollMs: 60_000, clock: { now: () => new Date() } } });
    running.push(t.dispatcher);
    await t.enqueue(mailEntry("verify_email", new Date(), { userId: USER_ID, address: ADDRESS }));
    const release = t.transport.hold();
    t.dispatcher.start();
    await expectEventually("the first send to start", () => t.transport.calls.length === 1, { timeoutMs: 5_000 });
    // A second mail is written (and the dispatcher told) while the first is being sent.
    await t.enqueue(mailEntry("verify_email", new Date(), { userId: USER_ID, address: "second@example.com" }));
    t.dispatcher.wake();
    release();
    await expectEventually("the second mail is sent without waiting for the next poll", () => t.transport.sent.length === 2, { timeoutMs: 5_000 });
  });

  it("goes on at once while passes come back full", async () => {
    const t = setup({ options: { pollMs: 60_000, batchSize: 2, clock: { now: () => new Date() } } });
    running.push(t.dispatcher);
    for (let i = 0; i < 5; i++) await t.enqueue(mailEntry("verify_email", new Date(Date.now() - 1_000), { userId: USER_ID, address: `u${i}@example.com` }));
    t.dispatcher.start();
    await expectEventually("all five mails are sent in one go", () => t.transport.sent.length === 5, { timeoutMs: 5_000 });
  });

  it("survives a pass that fails (database unreachable) and tries again at the next poll", async () => {
    const t = setup({ options: { pollMs: 50, clock: { now: () => new Date() } } });
    running.push(t.dispatcher);
    const claim = t.outbox.claim.bind(t.outbox);
    let failures = 0;
    t.outbox.claim = async (...args) => {
      if (failures++ < 2) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
      return claim(...args);
    };
    await t.enqueue(mailEntry("verify_email", new Date(), { userId: USER_ID, address: ADDRESS }));
    t.dispatcher.start();
    await expectEventually("the mail is sent once the database answers", () => t.transport.sent.length === 1, { timeoutMs: 5_000 });
    expect(failures).toBeGreaterThanOrEqual(3);
    expect(t.lines.some((l) => l.includes("mail dispatcher pass failed"))).toBe(true);
  });

  it("stop() waits for the mail in hand, and nothing is claimed afterwards", async () => {
    const t = setup({ options: { pollMs: 50, clock: { now: () => new Date() } } });
    await t.enqueue(mailEntry("verify_email", new Date(), { userId: USER_ID, address: ADDRESS }));
    const release = t.transport.hold();
    t.dispatcher.start();
    await expectEventually("the send to start", () => t.transport.calls.length === 1, { timeoutMs: 5_000 });
    let stopped = false;
    const stopping = t.dispatcher.stop().then(() => void (stopped = true));
    await sleep(50);
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(t.transport.sent).toHaveLength(1);
    expect([...t.outbox.rows.values()][0]).toMatchObject({ status: "sent" });
    await t.enqueue(mailEntry("verify_email", new Date(), { userId: USER_ID, address: "later@example.com" }));
    t.dispatcher.wake();
    await sleep(200);
    expect(t.transport.calls).toHaveLength(1);
  });
});
