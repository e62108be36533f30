import { resolve } from "node:path";
import type { AuditEvent } from "../audit/ports.js";
import type { Config } from "../config/config.js";
import { createMailDispatcher, type Composer, type MailDispatcher } from "../mail/dispatcher.js";
import { createMailSecrets, type MailSecrets } from "../mail/mail-secrets.js";
import { createMailTokens, type MailTokens } from "../mail/mail-tokens.js";
import type { EmailTokenStore, MailKind, MailTransport, OutboxStore } from "../mail/ports.js";
import { createFileTransport, createSmtpTransport, SMTP_TIMEOUT_MS } from "../mail/transport.js";
import { createMailNotices } from "../notify/mail-notices.js";
import type { AlertSink } from "../notify/ports.js";
import type { RecoveryStore } from "../recovery/ports.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { Db } from "../storage/db.js";
import { createEmailTokenStore, pruneEmailTokens } from "../storage/email-token-store.js";
import { createOutboxStore } from "../storage/outbox-store.js";
import { createRecoveryStore } from "../storage/recovery-store.js";

// The e-mail channel: the outbox and token stores, the transport (SMTP, or
// .eml files without SMTP_URL), and the dispatcher every instance runs
// unless MAIL_DISPATCHER=false.

export interface MailChannel {
  outbox: OutboxStore;
  tokenStore: EmailTokenStore;
  tokens: MailTokens;
  secrets: MailSecrets;
  recovery: RecoveryStore;
  appUrl: string;
  /** Security alerts as mails to the user. */
  notices: AlertSink;
  onQueued(): void;
  /** Starts delivering with the features' composers (when there is somewhere to deliver to). */
  start(composers: Record<MailKind, Composer>): void;
  dispatcher(): MailDispatcher | undefined;
  /** Housekeeping: finished outbox rows past MAIL_RETENTION, tokens expired as long ago. */
  prune(now: Date): Promise<{ mails: number; tokens: number }>;
  close(): Promise<void>;
}

function chooseTransport(config: Config, logger: Logger): MailTransport | undefined {
  const { mail, database } = config;
  // A send must fail before its lease ends, or another instance would send it meanwhile.
  if (mail.smtpUrl) {
    return createSmtpTransport({
      url: mail.smtpUrl,
      from: mail.from,
      timeoutMs: Math.min(SMTP_TIMEOUT_MS, Math.floor(mail.leaseMs / 3)),
      deadlineMs: Math.floor(mail.leaseMs / 2),
    });
  }
  const embeddedDir = database.kind === "pglite" && !database.dataDir.startsWith("memory://") ? `${resolve(database.dataDir)}.mail` : undefined;
  const dir = mail.dir ?? embeddedDir;
  if (dir === undefined) {
    logger.warn("neither SMTP_URL nor MAIL_DIR is set: mails wait in the outbox until one is");
    return undefined;
  }
  // Links carry live tokens: logged only for the embedded single-user setup.
  const logLinks = database.kind === "pglite";
  logger.info({ dir }, "no SMTP_URL: mails are written as .eml files");
  return createFileTransport({ dir, from: mail.from, logger, logLinks });
}

export function openMailChannel(
  config: Config,
  deps: { db: Db; mailKey: Uint8Array; clock: Clock; logger: Logger; record(event: Omit<AuditEvent, "at">): Promise<void> },
): MailChannel {
  const { db, clock, logger } = deps;
  const outbox = createOutboxStore(db);
  const tokenStore = createEmailTokenStore(db);
  const secrets = createMailSecrets(deps.mailKey);
  const tokens = createMailTokens({ store: tokenStore, secrets, appUrl: config.mail.appUrl });
  const transport = config.mail.dispatcher ? chooseTransport(config, logger) : undefined;
  let dispatcher: MailDispatcher | undefined;
  const onQueued = () => dispatcher?.wake();
  return {
    outbox,
    tokenStore,
    tokens,
    secrets,
    recovery: createRecoveryStore(db),
    appUrl: config.mail.appUrl,
    notices: createMailNotices({ outbox, onQueued, onError: (err) => logger.warn({ err }, "writing a security notice to the outbox failed") }),
    onQueued,
    start(composers) {
      if (!transport || dispatcher) return;
      dispatcher = createMailDispatcher({
        outbox,
        transport,
        composers,
        appName: config.mail.appName,
        messageIdDomain: config.mail.messageIdDomain,
        maxAttempts: config.mail.maxAttempts,
        retryBaseMs: config.mail.retryBaseMs,
        leaseMs: config.mail.leaseMs,
        pollMs: config.mail.pollMs,
        clock,
        logger,
        record: (event) => deps.record({ ...event, client: {} }),
      });
      dispatcher.start();
    },
    dispatcher: () => dispatcher,
    async prune(now) {
      const before = new Date(now.getTime() - config.mail.retentionMs);
      const [mails, tokensPruned] = await Promise.all([outbox.prune(before), pruneEmailTokens(db, before)]);
      return { mails, tokens: tokensPruned };
    },
    async close() {
      await dispatcher?.stop();
      await transport?.close();
    },
  };
}
