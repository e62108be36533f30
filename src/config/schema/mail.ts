import { z } from "zod";
import { bool, duration, durationWithin, int, MINUTE, SECOND } from "../fields.js";

// The e-mail channel: where mails go (an SMTP server, or .eml files), who
// they come from, the front end their links open, and how delivery retries.

const env = z.object({
  SMTP_URL: z
    .string()
    .regex(/^smtps?:\/\/[^\s]+$/, "must be an smtp:// or smtps:// URL (credentials as smtp://user:password@host:port)")
    .optional(),
  MAIL_FROM: z
    .string()
    .regex(/^[^\r\n]*@[^\r\n]*$/, "must be an address, optionally with a name: Shop <no-reply@shop.example>")
    .default("Identity <no-reply@localhost>"),
  APP_URL: z
    .string()
    .url()
    .regex(/^https?:\/\//, "must be an http:// or https:// URL")
    .default("http://localhost:3000"),
  APP_NAME: z.string().min(1).max(60).default("Identity"),
  MAIL_DIR: z.string().min(1).optional(),
  MAIL_DISPATCHER: bool.default(true),
  MAIL_MAX_ATTEMPTS: int(1, 100).default(10),
  MAIL_RETRY_BASE: durationWithin(100, 10 * MINUTE, "must be between 100ms and 10m").default(30 * SECOND),
  MAIL_LEASE: durationWithin(SECOND, 60 * MINUTE, "must be between 1s and 60m").default(2 * MINUTE),
  MAIL_POLL_INTERVAL: durationWithin(50, 5 * MINUTE, "must be between 50ms and 5m").default(2 * SECOND),
  MAIL_RETENTION: duration.default(30 * 24 * 60 * MINUTE),
  REQUIRE_EMAIL_VERIFICATION: bool.default(false),
});

/** The domain of MAIL_FROM's address: Message-IDs are <row id@domain>. */
function domainOf(from: string): string {
  const m = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from);
  return m?.[1] ?? "localhost";
}

export const mailSchema = env.transform((e) => ({
  mail: {
    smtpUrl: e.SMTP_URL,
    from: e.MAIL_FROM,
    messageIdDomain: domainOf(e.MAIL_FROM),
    appUrl: e.APP_URL.replace(/\/+$/, ""),
    appName: e.APP_NAME,
    dir: e.MAIL_DIR,
    dispatcher: e.MAIL_DISPATCHER,
    maxAttempts: e.MAIL_MAX_ATTEMPTS,
    retryBaseMs: e.MAIL_RETRY_BASE,
    leaseMs: e.MAIL_LEASE,
    pollMs: e.MAIL_POLL_INTERVAL,
    retentionMs: e.MAIL_RETENTION,
  },
  requireEmailVerification: e.REQUIRE_EMAIL_VERIFICATION,
}));
