import { DomainError } from "../shared/errors.js";
import { hashMailToken, isMailTokenShape, type MailSecrets } from "./mail-secrets.js";
import type { EmailToken, EmailTokenStore, OutboxMessage, TokenPurpose } from "./ports.js";

// The tokens mails carry, for the features that send them: issued when the
// mail is composed (derived from the mail's id, so a resend is the same
// mail), redeemed by the RPC that follows the link.

export function emailTokenInvalid(): DomainError {
  return new DomainError("invalid_argument", "EMAIL_TOKEN_INVALID", "the link or code is unknown, used, expired or replaced by a newer mail; ask for a new one", {
    field: "token",
  });
}

export interface IssuedMailToken {
  token: string;
  code: string;
  /** `${APP_URL}${path}?token=…` */
  link(path: string): string;
  expiresAt: Date;
}

export interface MailTokens {
  /**
   * The token of `message` (stored by hash, older unused ones of the user
   * and purpose void); a drop when it expired before it could be sent, when
   * a newer mail of the user and purpose was composed first, or
   * when `perHour` tokens of the user and purpose were issued within an hour
   * of it (a mailbox cap, whatever the number of requests).
   */
  issue(
    message: OutboxMessage,
    input: {
      userId: string;
      purpose: TokenPurpose;
      email: string;
      ttlMs: number;
      bindingHash?: Uint8Array | undefined;
      perHour?: number | undefined;
      /** Also at most this many to `email` in the hour, whichever account asked (a mailbox someone else names). */
      perAddressPerHour?: number | undefined;
    },
    now: Date,
  ): Promise<IssuedMailToken | { drop: "expired before delivery" | "capped" | "superseded by a newer mail" }>;
  /** The live token a link carried; EMAIL_TOKEN_INVALID otherwise. */
  redeem(token: string, purpose: TokenPurpose, now: Date): Promise<EmailToken>;
}

const HOUR_MS = 3_600_000;

export function createMailTokens(deps: { store: EmailTokenStore; secrets: MailSecrets; appUrl: string }): MailTokens {
  return {
    async issue(message, input, now) {
      const createdAt = message.createdAt;
      const expiresAt = new Date(createdAt.getTime() + input.ttlMs);
      if (expiresAt <= now) return { drop: "expired before delivery" };
      const token = deps.secrets.token(message.id);
      const stored = await deps.store.issue(
        {
          id: message.id,
          userId: input.userId,
          purpose: input.purpose,
          tokenHash: hashMailToken(token),
          email: input.email,
          bindingHash: input.bindingHash,
          createdAt,
          expiresAt,
        },
        input.perHour === undefined ? undefined : { max: input.perHour, windowMs: HOUR_MS, maxToAddress: input.perAddressPerHour },
      );
      if (stored === "capped") return { drop: "capped" };
      // Its link would be dead on arrival: a newer mail of the same kind carries the live one.
      if (stored === "superseded") return { drop: "superseded by a newer mail" };
      return {
        token,
        code: deps.secrets.code(message.id),
        link: (path) => `${deps.appUrl}${path}?token=${token}`,
        expiresAt,
      };
    },
    async redeem(token, purpose, now) {
      if (!isMailTokenShape(token)) throw emailTokenInvalid();
      const found = await deps.store.find(hashMailToken(token), purpose, now);
      if (!found) throw emailTokenInvalid();
      return found;
    },
  };
}
