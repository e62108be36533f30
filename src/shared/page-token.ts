import { isUuid } from "./uuid.js";

// AIP-158 page tokens for lists ordered by a UUID (newest first): the token
// is the last id of the previous page, base64url-encoded so clients treat it
// as opaque. It carries no secret and grants nothing: the list it continues
// is still filtered to the caller.

const TOKEN = /^[A-Za-z0-9_-]{22}$/;

export function encodePageToken(id: string): string {
  if (!isUuid(id, { anyCase: true })) throw new Error("page tokens encode UUIDs");
  return Buffer.from(id.replaceAll("-", ""), "hex").toString("base64url");
}

/** The id a page token continues after, or undefined when it is not one of ours. */
export function decodePageToken(token: string): string | undefined {
  if (!TOKEN.test(token)) return undefined;
  const bytes = Buffer.from(token, "base64url");
  // 22 characters hold 132 bits; the 4 spare ones are zero in our tokens.
  if (bytes.length !== 16 || bytes.toString("base64url") !== token) return undefined;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
