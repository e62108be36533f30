import { createHmac, randomBytes } from "node:crypto";

// Crockford base32: no I, L, O or U, so a code read aloud or copied by hand
// survives the usual confusions, which normalisation maps back.
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_BYTES = 10; // 80 bits = 16 characters of 5 bits
const CODE_CHARS = 16;
const GROUP = 4;
const MIN_KEY_BYTES = 32;
const CANONICAL = /^[0-9A-HJKMNP-TV-Z]{16}$/;

/** Ten codes of 80 random bits each, written as 16 Crockford base32 characters in groups of 4 ("ABCD-EFGH-JKMN-PQRS"). */
export function generateRecoveryCodes(count = 10): string[] {
  if (!Number.isSafeInteger(count) || count < 1 || count > 100) throw new RangeError("recovery codes: count must be an integer from 1 to 100");
  const codes = new Set<string>();
  // A repeat is astronomically unlikely at 80 bits, but the set makes "count distinct codes" a guarantee.
  while (codes.size < count) codes.add(formatCode(randomBytes(CODE_BYTES)));
  return [...codes];
}

/** Canonical form for hashing: upper-case, hyphens/spaces removed, Crockford confusables mapped (O→0, I/L→1); undefined when it cannot be a recovery code (wrong length or alphabet). */
export function normalizeRecoveryCode(input: string): string | undefined {
  // Bound the work on hostile input before touching it.
  if (input.length > 64) return undefined;
  const compact = input.replace(/[\s-]/g, "");
  // ASCII letters and digits only: toUpperCase would fold some non-ASCII letters (ı → I) into the alphabet.
  if (!/^[0-9A-Za-z]{16}$/.test(compact)) return undefined;
  const canonical = compact.toUpperCase().replace(/O/g, "0").replace(/[IL]/g, "1");
  return CANONICAL.test(canonical) ? canonical : undefined;
}

/** HMAC-SHA-256 of the normalised code under `key` (80-bit random codes need no slow hash; the key — a server secret — makes a leaked table useless offline). */
export function hashRecoveryCode(normalized: string, key: Uint8Array): Uint8Array {
  // A raw input hashed by mistake would never match at redemption: fail loudly instead.
  if (!CANONICAL.test(normalized)) throw new Error("recovery codes: hash the normalised form (normalizeRecoveryCode)");
  if (key.length < MIN_KEY_BYTES) throw new Error(`recovery codes: the hash key must be at least ${MIN_KEY_BYTES} bytes`);
  return new Uint8Array(createHmac("sha256", key).update(normalized, "ascii").digest());
}

function formatCode(bytes: Uint8Array): string {
  let raw = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xfff; // at most 12 bits are ever pending
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      raw += ALPHABET[(buffer >>> bits) & 31];
    }
  }
  const groups: string[] = [];
  for (let i = 0; i < CODE_CHARS; i += GROUP) groups.push(raw.slice(i, i + GROUP));
  return groups.join("-");
}
