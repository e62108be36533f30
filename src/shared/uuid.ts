import { randomBytes } from "node:crypto";

// UUIDv7 (RFC 9562): time-ordered, so new rows land at the right edge of the
// primary-key index instead of scattering writes over 50 M rows.
export function uuidv7(now: Date = new Date()): string {
  const bytes = randomBytes(16);
  const ms = BigInt(now.getTime());
  for (let i = 0; i < 6; i++) bytes[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_ANY_CASE = new RegExp(UUID.source, "i");

/** Whether `value` is a UUID in the lower-case spelling we issue (or in any case, if asked). */
export function isUuid(value: string, opts: { anyCase?: boolean } = {}): boolean {
  return (opts.anyCase ? UUID_ANY_CASE : UUID).test(value);
}
