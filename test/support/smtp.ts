import type { AddressInfo, Socket } from "node:net";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";

// A real SMTP server for the tests (smtp-server), reading what it receives
// with mailparser, as a mailbox provider would. It can refuse mail for a
// while (a temporary failure, 451, whose reply quotes the recipient as many
// servers' do), answer slowly, never answer at all (a sender that hangs
// mid-send), or stop listening, to test delivery when the mail server
// misbehaves.

export interface ReceivedMail {
  to: string;
  subject: string;
  text: string;
  html: string;
  messageId: string;
  /** The link in the mail (its first http(s) URL of APP_URL's). */
  links: string[];
  /** A 6-digit code in the text, if any. */
  code?: string | undefined;
  parsed: ParsedMail;
}

export interface TestSmtp {
  url: string;
  port: number;
  mails: ReceivedMail[];
  /** Refuse the next `n` messages with 451 (a temporary failure); the reply names the recipient. */
  refuseNext(n: number): void;
  /** How many messages were refused so far. */
  refused(): number;
  /** Wait this long before accepting each message. */
  delay(ms: number): void;
  /**
   * From now on, read each message to the end but never answer it (the
   * sender waits for the final reply until its own timeout, or until
   * stop()); such messages are listed in `held`, not in `mails`.
   */
  hang(): void;
  held: ReceivedMail[];
  /** The first mail to `to` (and matching `subject`, when given) that arrives; throws after `timeoutMs`. */
  waitFor(to: string, opts?: { subject?: RegExp; after?: number; timeoutMs?: number }): Promise<ReceivedMail>;
  /** Mails received so far to `to`. */
  to(address: string): ReceivedMail[];
  /** Stops listening and drops open connections (a sender's pooled ones included) at once. */
  stop(): Promise<void>;
  /** Starts again on the same port after stop(). */
  restart(): Promise<void>;
}

const LINK = /https?:\/\/[^\s"'<>]+/g;

export async function startTestSmtp(): Promise<TestSmtp> {
  const mails: ReceivedMail[] = [];
  const held: ReceivedMail[] = [];
  const sockets = new Set<Socket>();
  let refusals = 0;
  let refusedCount = 0;
  let hanging = false;
  let delayMs = 0;
  let waiters: (() => void)[] = [];

  const make = () =>
    new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const finish = async () => {
            if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
            if (refusals > 0) {
              refusals--;
              refusedCount++;
              const rcpt = session.envelope.rcptTo[0]?.address ?? "";
              const err = Object.assign(new Error(`4.2.0 <${rcpt}>: mailbox busy, try again later`), { responseCode: 451 });
              callback(err);
              return;
            }
            const mail = await parse(Buffer.concat(chunks));
            if (hanging) {
              // Never answered: the sender is left waiting for the final reply.
              held.push(mail);
              wakeWaiters();
              return;
            }
            mails.push(mail);
            callback();
            wakeWaiters();
          };
          finish().catch((err: unknown) => callback(err as Error));
        });
      },
    });

  const wakeWaiters = () => {
    const w = waiters;
    waiters = [];
    for (const wake of w) wake();
  };

  async function parse(raw: Buffer): Promise<ReceivedMail> {
    const parsed = await simpleParser(raw);
    const text = parsed.text ?? "";
    const to = Array.isArray(parsed.to) ? parsed.to[0]?.value[0]?.address : parsed.to?.value[0]?.address;
    return {
      to: (to ?? "").toLowerCase(),
      subject: parsed.subject ?? "",
      text,
      html: typeof parsed.html === "string" ? parsed.html : "",
      messageId: parsed.messageId ?? "",
      links: [...text.matchAll(LINK)].map((m) => m[0]),
      code: /^\s+(\d{6})\s*$/m.exec(text)?.[1],
      parsed,
    };
  }

  const listen = async (port: number) => {
    const server = make();
    server.server.on("connection", (socket: Socket) => {
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    return server;
  };

  let server = await listen(0);
  const port = (server.server.address() as AddressInfo).port;

  const matching = (to: string, subject: RegExp | undefined, after: number) =>
    mails.slice(after).find((m) => m.to === to.toLowerCase() && (!subject || subject.test(m.subject)));

  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    mails,
    held,
    refuseNext: (n) => void (refusals = n),
    refused: () => refusedCount,
    delay: (ms) => void (delayMs = ms),
    hang: () => void (hanging = true),
    to: (address) => mails.filter((m) => m.to === address.toLowerCase()),
    async waitFor(to, opts = {}) {
      const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
      for (;;) {
        const found = matching(to, opts.subject, opts.after ?? 0);
        if (found) return found;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no mail to ${to}${opts.subject ? ` matching ${opts.subject}` : ""} within the timeout (got ${mails.length} mails)`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 200));
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    async stop() {
      // smtp-server would let open connections go on for 30 s (closeTimeout).
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    async restart() {
      server = await listen(port);
    },
  };
}

/** The `token` query parameter of a mail's link. */
export function tokenOf(link: string | undefined): string {
  if (!link) throw new Error("the mail has no link");
  const token = new URL(link).searchParams.get("token");
  if (!token) throw new Error(`no token in ${link}`);
  return token;
}
