import { DomainError } from "./errors.js";

// E-mails are ASCII (internationalised domains arrive as punycode), trimmed
// and lower-cased as a whole. Refusing non-ASCII closes the Unicode
// case-folding tricks (dotless ı, Kelvin K, ſ) that let two spellings reach
// one mailbox; lower-casing the local part matches what every large mail
// provider does and what users expect.
const MAX_EMAIL_LENGTH = 254;
// Deliberately simple: one @, no spaces or control characters, a dotted domain.
const EMAIL_SHAPE = /^[\x21-\x3f\x41-\x7e]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

// Checked on the raw input: toLowerCase() itself folds some non-ASCII
// characters into ASCII (the Kelvin sign becomes "k").
 
const ASCII_ONLY = /^[\x00-\x7f]*$/;

export function normalizeEmail(raw: string): string {
  const email = raw.trim().toLowerCase();
  if (!ASCII_ONLY.test(raw) || email.length > MAX_EMAIL_LENGTH || !EMAIL_SHAPE.test(email)) {
    throw new DomainError("invalid_argument", "VALIDATION_FAILED", "email is not a valid address", { field: "email" });
  }
  return email;
}

/** Like normalizeEmail, but for lookups: a malformed address simply matches nobody. */
export function normalizeEmailForLookup(raw: string): string | undefined {
  try {
    return normalizeEmail(raw);
  } catch {
    return undefined;
  }
}
