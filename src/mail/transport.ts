import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createTransport } from "nodemailer";
import type { Logger } from "../shared/logger.js";
import type { Mail, MailTransport } from "./ports.js";

// Where mails go: an SMTP server (SMTP_URL, through nodemailer's pool), or,
// without one, .eml files in MAIL_DIR, so that a service started with no
// setup at all lets a person follow every flow (the embedded database also
// logs the links; with PostgreSQL nothing secret reaches the log).

/** Each SMTP phase's timeout, at most (the channel lowers it below half of MAIL_LEASE). */
export const SMTP_TIMEOUT_MS = 15_000;

const message = (mail: Mail, from: string) => ({ from, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html, messageId: mail.messageId });

export function createSmtpTransport(opts: {
  url: string;
  from: string;
  timeoutMs?: number;
  /** A hard deadline for one send, queueing in the pool included (below the lease: a send never outlives it). */
  deadlineMs?: number;
}): MailTransport {
  const timeoutMs = opts.timeoutMs ?? SMTP_TIMEOUT_MS;
  const transporter = createTransport({
    url: opts.url,
    pool: true,
    maxConnections: 4,
    // A stalled server must fail the attempt (it is retried), not hang the dispatcher.
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    // nodemailer logs nothing of its own; the dispatcher logs outcomes without addresses.
    logger: false,
  });
  return {
    kind: "smtp",
    async send(mail) {
      // The phase timeouts only fire after silence; a server that answers
      // slowly, or a queue in the pool, must not outlive the lease either.
      await transporter.sendMail({ ...message(mail, opts.from), ...(opts.deadlineMs ? { signal: AbortSignal.timeout(opts.deadlineMs) } : {}) });
    },
    async close() {
      transporter.close();
    },
  };
}

export function createFileTransport(opts: { dir: string; from: string; logger: Logger; logLinks: boolean }): MailTransport {
  const composer = createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  let ready: Promise<unknown> | undefined;
  return {
    kind: "file",
    async send(mail) {
      // A failed mkdir is tried again at the next mail, not remembered.
      ready ??= mkdir(opts.dir, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
        ready = undefined;
        throw err;
      });
      await ready;
      const info = await composer.sendMail(message(mail, opts.from));
      // One file per mail, named after the message: a resend overwrites it.
      const name = `${mail.messageId.replace(/[^A-Za-z0-9.-]/g, "_")}.eml`;
      const path = join(opts.dir, name);
      await writeFile(`${path}.tmp`, info.message as Buffer, { mode: 0o600 });
      await rename(`${path}.tmp`, path);
      if (opts.logLinks) opts.logger.info({ file: path, subject: mail.subject, links: mail.links }, "mail written (embedded mode: follow the link to continue)");
      else opts.logger.info({ file: path }, "mail written");
    },
    async close() {
      composer.close();
    },
  };
}
