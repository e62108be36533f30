import { createHash, randomBytes } from "node:crypto";
import type { LoginDefence } from "../../abuse/login-defence.js";
import { normalizeEmail } from "../../accounts/email.js";
import type { UserStore } from "../../accounts/ports.js";
import type { AuditTrail } from "../../audit/trail.js";
import type { Composer } from "../../mail/dispatcher.js";
import type { MailTokens } from "../../mail/mail-tokens.js";
import { mailEntry, requestFacts, type OnQueued } from "../../mail/outbox.js";
import type { OutboxStore } from "../../mail/ports.js";
import type { CallContext } from "../../shared/call.js";
import type { Clock } from "../../shared/clock.js";

// E-mail login, first half: the request is written to the outbox whatever
// the address (same work, answer and time with an account or without), and
// the client gets an `attempt` secret that the mail's token is bound to.
// The dispatcher looks the address up when it sends: no account, no mail.

export const EMAIL_LOGIN_TTL_MS = 15 * 60_000;
/** Login mails per account and hour, whatever the number of requests. */
export const LOGIN_MAILS_PER_HOUR = 10;

const ATTEMPT_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** What is stored of an attempt: its SHA-256, hex. */
export function attemptHash(attempt: string): string | undefined {
  return ATTEMPT_SHAPE.test(attempt) ? createHash("sha256").update(attempt).digest("hex") : undefined;
}

export type StartEmailLogin = (input: { email: string; captchaToken?: string | undefined }, call: CallContext) => Promise<{ attempt: string }>;

export function createStartEmailLogin(deps: {
  outbox: Pick<OutboxStore, "enqueue">;
  defence: Pick<LoginDefence, "admitRegistration">;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
  onQueued: OnQueued;
}): StartEmailLogin {
  return async (input, call) => {
    try {
      const email = normalizeEmail(input.email);
      await deps.defence.admitRegistration(input.captchaToken, call);
      const attempt = randomBytes(32).toString("base64url");
      const now = deps.clock.now();
      await deps.outbox.enqueue(mailEntry("email_login", now, { address: email }, { binding: attemptHash(attempt)!, ...requestFacts(call, now) }));
      deps.onQueued();
      await deps.trail.record({ type: "email_login_start", outcome: "success" }, call);
      return { attempt };
    } catch (err) {
      return deps.trail.failed("email_login_start", err, call);
    }
  };
}

export function emailLoginComposer(deps: { users: Pick<UserStore, "findCredentialByEmail" | "get">; tokens: MailTokens }): Composer {
  return async (message, now) => {
    const address = message.address;
    const credential = address ? await deps.users.findCredentialByEmail(address) : undefined;
    if (!address || !credential) return { drop: "no account" };
    const binding = message.params.binding;
    const issued = await deps.tokens.issue(
      message,
      {
        userId: credential.userId,
        purpose: "email_login",
        email: address,
        ttlMs: EMAIL_LOGIN_TTL_MS,
        bindingHash: binding ? Buffer.from(binding, "hex") : undefined,
        perHour: LOGIN_MAILS_PER_HOUR,
      },
      now,
    );
    if ("drop" in issued) return issued;
    const user = await deps.users.get(credential.userId);
    return {
      to: address,
      locale: user?.profile.locale,
      vars: { link: issued.link("/magic-login"), code: issued.code, ip: message.params.ip, at: message.params.at },
    };
  };
}
