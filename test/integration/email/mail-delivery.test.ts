import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { and, eq, inArray } from "drizzle-orm";
import { simpleParser } from "mailparser";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { outbox } from "../../../src/storage/schema.js";
import { auditRows } from "../../support/audit.js";
import { rest } from "../../support/clients.js";
import { backends, postgresAvailable } from "../../support/databases.js";
import { startTestServer, type TestServer } from "../../support/server.js";
import { startTestSmtp, tokenOf, type TestSmtp } from "../../support/smtp.js";
import { expectEventually, sleep } from "../../support/timing.js";
import { registerUser, type SeededUser } from "../../support/users.js";

// Delivery when the mail server misbehaves, against a real SMTP server:
// it refuses for a while, is down, is slow, never answers (the sending
// instance dies mid-send), or two instances deliver from one database.
// Every mail arrives, and arrives once: counted by Message-ID, which is
// <outbox row id@MAIL_FROM's domain> on every attempt. Registration's
// verification mail is the mail under test.

const FAST = { MAIL_POLL_INTERVAL: "100ms", MAIL_RETRY_BASE: "200ms", APP_URL: "https://shop.example" };
/** MAIL_FROM's domain in the test servers (the default MAIL_FROM). */
const DOMAIN = "localhost";
const DELIVERY_TIMEOUT_MS = 20_000;

type OutboxRow = typeof outbox.$inferSelect;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  // Servers before the SMTP servers they talk to; last started, first stopped.
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function smtpServer(): Promise<TestSmtp> {
  const smtp = await startTestSmtp();
  cleanups.push(() => smtp.stop().catch(() => {}));
  return smtp;
}

async function server(backend: "pglite" | "postgres", env: Record<string, string>, shareDatabaseWith?: TestServer): Promise<TestServer> {
  const s = await startTestServer(backend, { env: { ...FAST, ...env }, ...(shareDatabaseWith ? { shareDatabaseWith } : {}) });
  cleanups.push(() => s.destroy());
  return s;
}

/** Registers `n` users (a few at a time), each of whom is owed a verification mail. */
async function registerMany(targets: TestServer[], n: number): Promise<SeededUser[]> {
  const users: SeededUser[] = [];
  for (let i = 0; i < n; i += 8) {
    const batch = Array.from({ length: Math.min(8, n - i) }, (_, j) => registerUser(targets[(i + j) % targets.length]!));
    users.push(...(await Promise.all(batch)));
  }
  return users;
}

/** The verification mails' outbox rows of `users` (written with the account, in one transaction). */
async function verificationRows(s: TestServer, users: readonly SeededUser[]): Promise<OutboxRow[]> {
  const rows = await s.app.database.db
    .select()
    .from(outbox)
    .where(and(eq(outbox.kind, "verify_email"), inArray(outbox.userId, users.map((u) => u.userId))));
  expect(rows).toHaveLength(users.length);
  return rows;
}

async function rowsById(s: TestServer, ids: readonly string[]): Promise<OutboxRow[]> {
  return s.app.database.db.select().from(outbox).where(inArray(outbox.id, [...ids]));
}

const messageIdOf = (rowId: string) => `<${rowId}@${DOMAIN}>`;

/**
 * Waits until every row is sent, then (after a few more polls, time for a
 * duplicate to show) asserts that the SMTP server received each of them
 * exactly once, to its user, and nothing else since mail number `since`.
 */
async function expectDeliveredOnce(s: TestServer, smtp: TestSmtp, rows: readonly OutboxRow[], users: readonly SeededUser[], since = 0): Promise<void> {
  const ids = rows.map((r) => r.id);
  await expectEventually(
    `all ${ids.length} mails sent`,
    async () => (await rowsById(s, ids)).every((r) => r.status === "sent") && smtp.mails.length - since >= ids.length,
    { timeoutMs: DELIVERY_TIMEOUT_MS, intervalMs: 50 },
  );
  await sleep(500);
  const received = smtp.mails.slice(since);
  const counts = new Map<string, number>();
  for (const m of received) counts.set(m.messageId, (counts.get(m.messageId) ?? 0) + 1);
  expect(Object.fromEntries(counts)).toEqual(Object.fromEntries(ids.map((id) => [messageIdOf(id), 1])));
  const emailOf = new Map(users.map((u) => [u.userId, u.email]));
  for (const row of rows) {
    const mail = received.find((m) => m.messageId === messageIdOf(row.id))!;
    expect(mail.to).toBe(emailOf.get(row.userId!));
    expect(mail.subject).toBe("Confirm your e-mail address");
  }
}

/** The audit rows of `type` about any of `users`. */
async function auditOfUsers(s: TestServer, type: string, users: readonly SeededUser[]) {
  return (await Promise.all(users.map((u) => auditRows(s, type, { userId: u.userId })))).flat();
}

for (const { name, skip } of backends) {
  describe.skipIf(skip)(`mail delivery against a misbehaving SMTP server (${name})`, () => {
    // One server and one SMTP server for the scenarios that need no other settings
    // (an embedded server takes seconds to start); each scenario looks at its own mails.
    let smtp: TestSmtp;
    let s: TestServer;
    let since = 0;
    beforeAll(async () => {
      smtp = await startTestSmtp();
      s = await startTestServer(name, { env: { ...FAST, SMTP_URL: smtp.url } });
    });
    afterAll(async () => {
      await s?.destroy();
      await smtp?.stop();
    });
    beforeEach(() => {
      smtp.refuseNext(0);
      smtp.delay(0);
      since = smtp.mails.length;
    });

    it("refusing the first messages (451) then accepting: every mail delivered exactly once", async () => {
      const refusedBefore = smtp.refused();
      smtp.refuseNext(3);
      const users = await registerMany([s], 5);
      const rows = await verificationRows(s, users);
      await expectDeliveredOnce(s, smtp, rows, users, since);
      expect(smtp.refused() - refusedBefore).toBe(3);
      // Each refusal was one failed attempt, audited; the retries used the same Message-ID.
      expect(await auditOfUsers(s, "mail_delivery_failed", users)).toHaveLength(3);
      const attempts = (await rowsById(s, rows.map((r) => r.id))).map((r) => r.attempts);
      expect(attempts.reduce((a, b) => a + b, 0)).toBe(5 + 3);
    });

    it("SMTP down while mails are written, then back: each delivered once", async () => {
      // A first mail (re)opens the dispatcher's pooled connection: stop() must end it too.
      const [warm] = await registerMany([s], 1);
      await smtp.waitFor(warm!.email, { after: since });
      await smtp.stop();
      const users = await registerMany([s], 4);
      const rows = await verificationRows(s, users);
      const ids = rows.map((r) => r.id);
      // Delivery was tried, and failed, while the server was down.
      await expectEventually(
        "every mail tried twice while SMTP is down",
        async () => (await rowsById(s, ids)).every((r) => r.status === "pending" && r.attempts >= 2 && r.lastError !== null),
        { timeoutMs: DELIVERY_TIMEOUT_MS, intervalMs: 50 },
      );
      expect(smtp.mails.length - since).toBe(1);
      await smtp.restart();
      await expectDeliveredOnce(s, smtp, [...(await verificationRows(s, [warm!])), ...rows], [warm!, ...users], since);
    });

    it("a slow SMTP server (1 s per message): each mail delivered once, at the first attempt", async () => {
      smtp.delay(1_000);
      const users = await registerMany([s], 3);
      const rows = await verificationRows(s, users);
      await expectDeliveredOnce(s, smtp, rows, users, since);
      expect((await rowsById(s, rows.map((r) => r.id))).map((r) => r.attempts)).toEqual([1, 1, 1]);
      expect(await auditOfUsers(s, "mail_delivery_failed", users)).toEqual([]);
    });

    it("MAIL_MAX_ATTEMPTS=3 against a server that always refuses: a dead letter, audited, with no address in its error", async () => {
      const smtp = await smtpServer();
      smtp.refuseNext(1_000_000);
      const s = await server(name, { SMTP_URL: smtp.url, MAIL_MAX_ATTEMPTS: "3" });
      const [user] = await registerMany([s], 1);
      const [row] = await verificationRows(s, [user!]);
      await expectEventually("the mail is dead-lettered", async () => (await rowsById(s, [row!.id]))[0]?.status === "dead", { timeoutMs: DELIVERY_TIMEOUT_MS, intervalMs: 50 });
      // No further attempt after the dead letter.
      await sleep(600);
      expect(smtp.refused()).toBe(3);
      expect(smtp.mails).toEqual([]);
      const [dead] = await rowsById(s, [row!.id]);
      expect(dead).toMatchObject({ status: "dead", attempts: 3, address: null });
      // The server's reply quoted the recipient; the row keeps the reply without it.
      expect(dead!.lastError).toMatch(/451/);
      expect(dead!.lastError).toContain("<address>");
      expect(dead!.lastError).not.toContain("@");

      const failed = await auditRows(s, "mail_delivery_failed", { userId: user!.userId });
      const lettered = await auditRows(s, "mail_dead_lettered", { userId: user!.userId });
      expect(failed.map((a) => a.details?.attempt)).toEqual([1, 2]);
      expect(lettered.map((a) => a.details?.attempt)).toEqual([3]);
      for (const a of [...failed, ...lettered]) {
        expect(a).toMatchObject({ outcome: "failure", details: { mail_id: row!.id, kind: "verify_email" } });
        expect(JSON.stringify(a.details)).not.toContain("@");
      }
      await expect(s.app.mail.outbox.backlog()).resolves.toEqual({ pending: 0, dead: 1 });
    });
  });
}

describe.skipIf(!postgresAvailable)("mail delivery with several instances (postgres)", () => {
  it("an instance killed mid-send: another delivers the mail with the same Message-ID and the same link token", async () => {
    const hung = await smtpServer();
    hung.hang();
    const healthy = await smtpServer();
    const a = await server("postgres", { SMTP_URL: hung.url, MAIL_LEASE: "2s" });
    const [user] = await registerMany([a], 1);
    const [row] = await verificationRows(a, [user!]);
    // A's dispatcher sent the whole message and now waits for the reply that never comes.
    await expectEventually("A's send to reach the SMTP server", () => hung.held.length === 1, { timeoutMs: DELIVERY_TIMEOUT_MS });
    const attempted = hung.held[0]!;
    expect(attempted.messageId).toBe(messageIdOf(row!.id));
    // A goes away without finishing the send (its stop waits for it: not awaited here).
    const stoppingA = a.stop();
    const b = await server("postgres", { SMTP_URL: healthy.url, MAIL_LEASE: "2s" }, a);

    const delivered = await healthy.waitFor(user!.email, { timeoutMs: DELIVERY_TIMEOUT_MS });
    expect(delivered.messageId).toBe(attempted.messageId);
    expect(delivered.links).toEqual(attempted.links);
    expect(tokenOf(delivered.links[0])).toBe(tokenOf(attempted.links[0]));
    await expectEventually("B marks it sent", async () => (await rowsById(b, [row!.id]))[0]?.status === "sent", { timeoutMs: DELIVERY_TIMEOUT_MS });
    expect((await rowsById(b, [row!.id]))[0]).toMatchObject({ status: "sent", attempts: 2 });

    // A's hung connection finally breaks: its late report changes nothing.
    await hung.stop();
    await stoppingA;
    await sleep(300);
    expect((await rowsById(b, [row!.id]))[0]).toMatchObject({ status: "sent", attempts: 2 });
    expect(healthy.mails).toHaveLength(1);
    // The link works (B renders the token A's mail carried).
    const verified = await rest(b.baseUrl, "POST", "/email/verify", { body: { token: tokenOf(delivered.links[0]) } });
    expect(verified.status, verified.text).toBe(200);
    expect(verified.body.email).toBe(user!.email);
  });

  it("two instances dispatching from one database: 40 mails, each Message-ID received exactly once", async () => {
    const smtp = await smtpServer();
    const a = await server("postgres", { SMTP_URL: smtp.url });
    const b = await server("postgres", { SMTP_URL: smtp.url }, a);
    const users = await registerMany([a, b], 40);
    const rows = await verificationRows(a, users);
    await expectDeliveredOnce(a, smtp, rows, users);
    expect(smtp.mails).toHaveLength(40);
    const [statsA, statsB] = [a.app.mail.dispatcher()!.stats(), b.app.mail.dispatcher()!.stats()];
    expect(statsA.sent + statsB.sent, JSON.stringify({ statsA, statsB })).toBe(40);
    // Both took part.
    expect(statsA.sent).toBeGreaterThan(0);
    expect(statsB.sent).toBeGreaterThan(0);
    expect(statsA.failed + statsB.failed).toBe(0);
  });
});

describe("mail without SMTP_URL (embedded PGlite)", () => {
  it("a registration writes its verification mail as an .eml file under <DATA_DIR>.mail/", async () => {
    const s = await server("pglite", {});
    const config = s.config.database;
    if (config.kind !== "pglite") throw new Error("expected an embedded database");
    const dataDir = config.dataDir;
    // After the server is gone (cleanups run last first): the temporary directory, mails included.
    cleanups.unshift(async () => rmSync(dirname(resolve(dataDir)), { recursive: true, force: true }));
    const mailDir = `${resolve(dataDir)}.mail`;
    const [user] = await registerMany([s], 1);
    const [row] = await verificationRows(s, [user!]);
    const emls = () => {
      try {
        return readdirSync(mailDir).filter((f) => f.endsWith(".eml"));
      } catch {
        return [];
      }
    };
    await expectEventually("an .eml file in the mail directory", () => emls().length === 1, { timeoutMs: DELIVERY_TIMEOUT_MS });
    const [file] = emls();
    const path = join(mailDir, file!);
    const mail = await simpleParser(readFileSync(path));
    expect(mail.messageId).toBe(messageIdOf(row!.id));
    expect(mail.subject).toBe("Confirm your e-mail address");
    const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
    expect(to?.value[0]?.address).toBe(user!.email);
    expect(mail.from?.value[0]?.address).toBe("no-reply@localhost");
    const link = /https:\/\/shop\.example\/verify-email\?token=[A-Za-z0-9_-]{43}/.exec(mail.text ?? "")?.[0];
    expect(link).toBeDefined();
    expect(typeof mail.html === "string" && mail.html.includes(link!)).toBe(true);
    // Private to the service's user: the links in it log in / verify.
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(mailDir).mode & 0o777).toBe(0o700);
    await expectEventually("the row is marked sent", async () => (await rowsById(s, [row!.id]))[0]?.status === "sent", { timeoutMs: DELIVERY_TIMEOUT_MS });
    const verified = await rest(s.baseUrl, "POST", "/email/verify", { body: { token: tokenOf(link) } });
    expect(verified.status, verified.text).toBe(200);
    expect(verified.body.email).toBe(user!.email);
  });
});
