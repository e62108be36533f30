import { createHash, createHmac, timingSafeEqual } from "node:crypto";

// A mail's token and code are derived from its outbox id with a key only the
// service holds (a sealed server secret): nothing secret sits in the
// outbox, a resend after a crash carries the same link and code, and only
// the token's SHA-256 is stored (email_tokens).

export interface MailSecrets {
  /** The link token of mail `messageId`: 256 bits, base64url (43 characters). */
  token(messageId: string): string;
  /** The 6-digit code of mail `messageId`. */
  code(messageId: string): string;
  /** Whether `candidate` is mail `messageId`'s code (constant time). */
  codeMatches(messageId: string, candidate: string): boolean;
}

/** What is stored of a token: its SHA-256 (the token has 256 bits of entropy, so no salt or stretching is needed). */
export function hashMailToken(token: string): Uint8Array {
  return createHash("sha256").update(token, "utf8").digest();
}

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** Whether `token` could be one of ours (checked before any lookup). */
export function isMailTokenShape(token: string): boolean {
  return TOKEN_SHAPE.test(token);
}

export function createMailSecrets(key: Uint8Array): MailSecrets {
  if (key.length < 32) throw new Error("mail token key must be at least 32 bytes");
  const mac = (label: string, messageId: string) => createHmac("sha256", key).update(`${label}\0${messageId}`, "utf8").digest();
  const code = (messageId: string) => {
    // 48 bits reduced mod 10^6: the bias is below 2^-28.
    const n = mac("code", messageId).readUIntBE(0, 6) % 1_000_000;
    return n.toString().padStart(6, "0");
  };
  return {
    token: (messageId) => mac("token", messageId).toString("base64url"),
    code,
    codeMatches(messageId, candidate) {
      const expected = Buffer.from(code(messageId));
      const given = Buffer.from(candidate.replace(/[\s-]/g, ""));
      return given.length === expected.length && timingSafeEqual(given, expected);
    },
  };
}
