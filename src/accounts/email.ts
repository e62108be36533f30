import { DomainError } from "../shared/errors.js";

// E-mails are ASCII (internationalised domains arrive as punycode), trimmed
// and lower-cased as a whole. Refusing non-ASCII closes the Unicode
// case-folding tricks (dotless ı, Kelvin K, ſ) that let two spellings reach
// one mailbox; lower-casing the local part matches what every large mail
// provider does and what users expect.
const MAX_EMAIL_LENGTH = 254;
// The local part is an RFC 5322 dot-atom: runs of atext joined by single
// dots. Quoted strings are refused, not unquoted: "alice"@example.com is
// alice@example.com's mailbox (quoting does not change a local part, RFC
// 5321/5322), and would otherwise be a second account for it; comments and
// the other specials (< ( ; \ ,) have no place in an address either.
const ATEXT = "[a-z0-9!#$%&'*+/=?^_`{|}~-]";
const DOMAIN = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+";
const EMAIL_SHAPE = new RegExp(`^(?=[^@]{1,64}@)${ATEXT}+(?:\\.${ATEXT}+)*@${DOMAIN}$`);
// The shape accepted before the dot-atom rule: addresses registered then
// still log in (and can be unlocked or promoted); nothing new is registered
// in it.
const LEGACY_EMAIL_SHAPE = new RegExp(`^[\\x21-\\x3f\\x41-\\x7e]{1,64}@${DOMAIN}$`);

// Checked on the raw input: toLowerCase() itself folds some non-ASCII
// characters into ASCII (the Kelvin sign becomes "k").
 
const ASCII_ONLY = /^[\x00-\x7f]*$/;

function invalidEmail(): DomainError {
  return new DomainError("invalid_argument", "VALIDATION_FAILED", "email is not a valid address", { field: "email" });
}

export function normalizeEmail(raw: string): string {
  const email = raw.trim().toLowerCase();
  if (!ASCII_ONLY.test(raw) || email.length > MAX_EMAIL_LENGTH || !EMAIL_SHAPE.test(email)) throw invalidEmail();
  return email;
}

/** An address partly hidden for display to someone who may not own it ("al***@example.com"). */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  if (at < 0) return "***";
  const local = email.slice(0, at);
  const shown = local.length <= 2 ? local.slice(0, 1) : local.slice(0, 2);
  return `${shown}***${email.slice(at)}`;
}

/**
 * Like normalizeEmail, but for lookups: a malformed address simply matches
 * nobody. Addresses of the legacy shape are looked up as stored (lower-cased,
 * never unquoted), so they reach only an account registered with exactly
 * that spelling before the dot-atom rule.
 */
export function normalizeEmailForLookup(raw: string): string | undefined {
  const email = raw.trim().toLowerCase();
  if (!ASCII_ONLY.test(raw) || email.length > MAX_EMAIL_LENGTH) return undefined;
  return EMAIL_SHAPE.test(email) || LEGACY_EMAIL_SHAPE.test(email) ? email : undefined;
}
