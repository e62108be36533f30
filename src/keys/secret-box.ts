import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

// Sealed layout (all lengths in bytes):
//
//   version (1) = 0x01
//   key id length (1) = n, 1..16
//   key id (n), ASCII [A-Za-z0-9_-]
//   nonce (12), random per seal
//   ciphertext (same length as the plaintext)
//   tag (16)
//
// The GCM additional data is the header (version, length, key id) followed by
// the caller's `aad` in UTF-8: the key id cannot be swapped and the ciphertext
// only opens for the owner it was sealed for. The header is self-delimiting,
// so the concatenation is unambiguous.
//
// Random 96-bit nonces are safe for about 2^32 seals per key, far more than
// there will ever be TOTP secrets; rotate keys long before that anyway.

const VERSION = 0x01;
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9_-]{1,16}$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

export interface SecretBox {
  /** Encrypts with the current key; the result embeds the key id, a random 96-bit nonce and the tag. `aad` binds the ciphertext to its owner (pass the user id) so a ciphertext copied to another row does not decrypt. */
  seal(plaintext: Uint8Array, aad: string): Uint8Array;
  /** Decrypts with whichever configured key the ciphertext names; throws on an unknown key id, tampering or wrong aad. */
  open(sealed: Uint8Array, aad: string): Uint8Array;
  /** True when `sealed` was made with a key other than the current one (re-seal it on next use). */
  needsReseal(sealed: Uint8Array): boolean;
  readonly currentKeyId: string;
}

export type SecretBoxErrorReason =
  /** Not something this box produced (truncated, unknown version, bad header). */
  | "MALFORMED"
  /** Sealed with a key that is no longer configured: a key was retired too early. */
  | "UNKNOWN_KEY"
  /** Authentication failed: tampered bytes, or the aad names another owner. */
  | "DECRYPT_FAILED";

/** The one error `open`/`needsReseal` throw; `reason` tells a configuration problem from tampering. */
export class SecretBoxError extends Error {
  override readonly name = "SecretBoxError";
  constructor(
    readonly reason: SecretBoxErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** keys: "id:base64key,id2:base64key2" style parsed elsewhere; here a list; the first is current. Each key must be exactly 32 bytes. */
export function createSecretBox(keys: readonly { id: string; key: Uint8Array }[]): SecretBox {
  const first = keys[0];
  if (first === undefined) throw new Error("secret box: at least one key is required");
  const byId = new Map<string, Buffer>();
  for (const { id, key } of keys) {
    checkKeyId(id);
    if (byId.has(id)) throw new Error(`secret box: duplicate key id "${id}"`);
    if (key.length !== KEY_BYTES) throw new Error(`secret box: key "${id}" must be ${KEY_BYTES} bytes, got ${key.length}`);
    // A private copy: later changes to the caller's array must not change the key.
    byId.set(id, Buffer.from(key));
  }
  const currentKeyId = first.id;
  const currentKey = byId.get(currentKeyId) as Buffer;
  const currentHeader = header(currentKeyId);

  return {
    currentKeyId,

    seal(plaintext, aad) {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv("aes-256-gcm", currentKey, nonce, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.concat([currentHeader, Buffer.from(aad, "utf8")]));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return new Uint8Array(Buffer.concat([currentHeader, nonce, body, cipher.getAuthTag()]));
    },

    open(sealed, aad) {
      const { keyId, headerLength } = parseHeader(sealed);
      const key = byId.get(keyId);
      if (key === undefined) throw new SecretBoxError("UNKNOWN_KEY", `secret box: no configured key "${keyId}"`);
      const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
      const nonce = bytes.subarray(headerLength, headerLength + NONCE_BYTES);
      const body = bytes.subarray(headerLength + NONCE_BYTES, bytes.length - TAG_BYTES);
      const tag = bytes.subarray(bytes.length - TAG_BYTES);
      const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.concat([bytes.subarray(0, headerLength), Buffer.from(aad, "utf8")]));
      decipher.setAuthTag(tag);
      try {
        return new Uint8Array(Buffer.concat([decipher.update(body), decipher.final()]));
      } catch {
        throw new SecretBoxError("DECRYPT_FAILED", "secret box: authentication failed");
      }
    },

    needsReseal(sealed) {
      return parseHeader(sealed).keyId !== currentKeyId;
    },
  };
}

/** The id of the key `sealed` was sealed with (not secret: it names a configured key), for error messages. */
export function sealedKeyId(sealed: Uint8Array): string {
  return parseHeader(sealed).keyId;
}

/** Parses "k2:BASE64,k1:BASE64" (first = current; ids [A-Za-z0-9_-]{1,16}; keys base64/base64url of 32 bytes); throws an Error with a clear message otherwise. */
export function parseSecretBoxKeys(value: string): { id: string; key: Uint8Array }[] {
  const entries = value.split(",").map((entry) => entry.trim());
  if (entries.length === 1 && entries[0] === "") throw new Error("secret box keys: empty; expected id:base64key[,id:base64key...]");
  const seen = new Set<string>();
  return entries.map((entry, index) => {
    const colon = entry.indexOf(":");
    // Messages name the entry and id, never the key material.
    if (colon < 0) throw new Error(`secret box keys: entry ${index + 1} is not id:base64key`);
    const id = entry.slice(0, colon);
    const encoded = entry.slice(colon + 1);
    if (!KEY_ID.test(id)) throw new Error(`secret box keys: entry ${index + 1} has an invalid id (expected [A-Za-z0-9_-]{1,16})`);
    if (seen.has(id)) throw new Error(`secret box keys: duplicate id "${id}"`);
    seen.add(id);
    if (!BASE64.test(encoded)) throw new Error(`secret box keys: key "${id}" is not base64 or base64url`);
    const key = new Uint8Array(Buffer.from(encoded, "base64"));
    if (key.length !== KEY_BYTES) throw new Error(`secret box keys: key "${id}" decodes to ${key.length} bytes, expected ${KEY_BYTES}`);
    return { id, key };
  });
}

function checkKeyId(id: string): void {
  if (!KEY_ID.test(id)) throw new Error(`secret box: invalid key id (expected [A-Za-z0-9_-]{1,16})`);
}

function header(keyId: string): Buffer {
  const id = Buffer.from(keyId, "ascii");
  return Buffer.concat([Buffer.from([VERSION, id.length]), id]);
}

function parseHeader(sealed: Uint8Array): { keyId: string; headerLength: number } {
  if (sealed[0] !== VERSION) throw new SecretBoxError("MALFORMED", "secret box: unknown format version");
  const idLength = sealed[1] ?? 0;
  const headerLength = 2 + idLength;
  if (idLength < 1 || idLength > 16 || sealed.length < headerLength + NONCE_BYTES + TAG_BYTES) {
    throw new SecretBoxError("MALFORMED", "secret box: truncated or malformed");
  }
  const keyId = Buffer.from(sealed.buffer, sealed.byteOffset + 2, idLength).toString("latin1");
  if (!KEY_ID.test(keyId)) throw new SecretBoxError("MALFORMED", "secret box: malformed key id");
  return { keyId, headerLength };
}
