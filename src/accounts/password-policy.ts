import { DomainError } from "../shared/errors.js";

// NIST SP 800-63B §3.1.1.2 / ASVS 6.2: length, not composition; a blocklist of
// common passwords; context words. Lengths count Unicode code points of the
// NFC form, so "é" typed either way counts once and verifies the same.

export interface PasswordPolicyOptions {
  minLength: number;
  maxLength: number;
  /** Checked first, before any other work: a 1 MB password costs nothing. */
  maxBytes: number;
  blocklist: ReadonlySet<string>;
}

export interface PasswordContext {
  email?: string | undefined;
  name?: string | undefined;
}

export interface PasswordPolicy {
  /** Throws a DomainError with the reason of the first rule the password breaks. */
  check(password: string, context: PasswordContext): void;
  /** Only the cheap byte cap: for passwords being verified, not chosen. */
  checkSize(password: string): void;
  readonly options: PasswordPolicyOptions;
}

const encoder = new TextEncoder();

export function normalizePassword(password: string): string {
  return password.normalize("NFC");
}

export function createPasswordPolicy(options: PasswordPolicyOptions): PasswordPolicy {
  function checkSize(password: string): void {
    // A JS string's UTF-8 length is at most 3 bytes per UTF-16 unit: a quick
    // bound avoids encoding a huge string at all.
    if (password.length > options.maxBytes || encoder.encode(password).byteLength > options.maxBytes) {
      throw new DomainError("invalid_argument", "PASSWORD_TOO_LONG", `password must be at most ${options.maxBytes} bytes`, {
        max_bytes: String(options.maxBytes),
      });
    }
  }

  function check(raw: string, context: PasswordContext): void {
    checkSize(raw);
    const password = normalizePassword(raw);
    const length = [...password].length;
    if (length < options.minLength) {
      throw new DomainError("invalid_argument", "PASSWORD_TOO_SHORT", `password must be at least ${options.minLength} characters`, {
        min_length: String(options.minLength),
      });
    }
    if (length > options.maxLength) {
      throw new DomainError("invalid_argument", "PASSWORD_TOO_LONG", `password must be at most ${options.maxLength} characters`, {
        max_length: String(options.maxLength),
      });
    }
    const folded = password.toLowerCase();
    if (options.blocklist.has(folded)) {
      throw new DomainError("invalid_argument", "PASSWORD_TOO_COMMON", "password is too common; choose another");
    }
    for (const word of contextWords(context)) {
      if (folded.includes(word)) {
        throw new DomainError(
          "invalid_argument",
          "PASSWORD_CONTAINS_CONTEXT",
          "password must not contain your e-mail address or name",
        );
      }
    }
  }

  return { check, checkSize, options };
}

// Words at least 4 characters long: shorter ones ("an", "le") would reject
// good passwords by accident.
function contextWords(context: PasswordContext): string[] {
  const words = new Set<string>();
  const local = context.email?.split("@")[0]?.toLowerCase();
  if (local) {
    words.add(local);
    for (const part of local.split(/[._+-]+/)) words.add(part);
  }
  if (context.name) {
    const name = context.name.normalize("NFC").toLowerCase();
    words.add(name.replace(/\s+/g, ""));
    for (const part of name.split(/[\s._-]+/)) words.add(part);
  }
  return [...words].filter((w) => [...w].length >= 4);
}
