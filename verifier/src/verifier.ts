import { verify as cryptoVerify } from "node:crypto";
import type { JWTPayload } from "jose";
import type { Redis } from "ioredis";
import { VerificationError } from "./errors.js";
import { createKeySet, type KeySetStats } from "./key-set.js";
import { createLru } from "./lru.js";
import { isValidRedisPrefix, isValidSessionId, revocationFeedNames } from "./protocol.js";
import { createRevocationFeed, type RevocationFeed, type RevocationFeedStats } from "./revocation-feed.js";

export const ACCESS_TOKEN_ALG = "EdDSA";
export const ACCESS_TOKEN_TYP = "at+jwt";

export interface RevocationOptions {
  /** A Redis connection to copy settings from (we open our own two), or a redis:// URL. */
  redis: Redis | string;
  /**
   * The service's REDIS_PREFIX (default "identity:"): the feed is the
   * channel `<prefix>revocations` and the keys `<prefix>revoked:*`.
   */
  prefix?: string;
  /** Overrides the channel the prefix names. */
  channel?: string;
  /** Overrides the denylist key prefix the prefix names. */
  keyPrefix?: string;
  /**
   * While the feed is not up: "serve" keeps using the last known set (a
   * revocation published meanwhile is learnt at reconnect, by SCAN);
   * "refuse" fails every verification with REVOCATION_UNAVAILABLE.
   */
  onFeedDown?: "serve" | "refuse";
  /** Subscriber liveness probe interval (ms). */
  heartbeatMs?: number;
}

export interface VerifierOptions {
  /** The service's `<base>/.well-known/jwks.json`. The only source of keys. */
  jwksUrl: string | URL;
  issuer: string;
  audience: string;
  /** Leeway for exp, nbf and iat, in seconds. */
  clockToleranceSec?: number;
  revocation?: RevocationOptions;
  /** Verified tokens kept for repeat calls (entries). 0 disables the cache. */
  cacheSize?: number;
  /** Minimum gap between JWKS fetches caused by unknown kids. */
  unknownKidRefetchIntervalMs?: number;
  /** A JWKS older than this is refreshed in the background. */
  jwksMaxAgeMs?: number;
  jwksTimeoutMs?: number;
  /** How long ready() waits for the keys and the first feed sync. */
  readyTimeoutMs?: number;
  fetch?: typeof globalThis.fetch;
  /** Epoch milliseconds; tests pass a fake clock. */
  now?: () => number;
}

export interface VerifiedToken {
  /** `sub` */
  userId: string;
  /** `sid` */
  sessionId: string;
  /** `jti` */
  tokenId: string;
  issuedAt: Date;
  expiresAt: Date;
  /** Every claim of the token, deep-frozen; the same object on repeat calls. */
  claims: Readonly<JWTPayload>;
}

export interface VerifierStats {
  cache: { size: number; capacity: number; hits: number; misses: number };
  keys: KeySetStats;
  /** null when no revocation feed is configured. */
  revocation: (RevocationFeedStats & { onFeedDown: "serve" | "refuse" }) | null;
}

export interface Verifier {
  /** Resolves with the token's identity or throws a VerificationError. */
  verify(token: string): Promise<VerifiedToken>;
  /** Loads the keys and waits for the first revocation sync; rejects with KEYS_UNAVAILABLE or REVOCATION_UNAVAILABLE. */
  ready(): Promise<void>;
  /** Closes the feed's connections. Idempotent. */
  close(): Promise<void>;
  stats(): VerifierStats;
}

interface Entry {
  kid: string;
  sub: string;
  sid: string;
  jti: string;
  iat: number;
  exp: number;
  claims: Readonly<JWTPayload>;
}

// Ours are ~400 characters; the bound keeps hostile input cheap to reject.
const MAX_TOKEN_LENGTH = 8_192;
// Compact JWS: exactly three parts, base64url alphabet only (no padding, no
// whitespace); header and payload non-empty. An empty signature is a
// well-formed token with a bad signature (TOKEN_INVALID), as with jose.
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
// Headers that name a key or where to fetch one. We never use them, and a
// token of ours never carries them, so their presence alone is refused.
const KEY_LOCATING_HEADERS = ["jku", "jwk", "x5u", "x5c"] as const;
// Checked for presence (own property) in this order, as jose did.
const REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti", "sid", "sub"] as const;
const ED25519_SIGNATURE_BYTES = 64;
// typ is compared as a media type (RFC 9068 / RFC 7515 4.1.9): case-
// insensitively, with the "application/" prefix optional.
const EXPECTED_TYP = normalizeTyp(ACCESS_TOKEN_TYP);
// UTF-8 with no replacement characters; strips a leading BOM, as jose's did.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new TypeError(`${name} must be a non-negative number`);
  return value;
}

function positive(name: string, value: number): number {
  if (!(nonNegative(name, value) > 0)) throw new TypeError(`${name} must be a positive number`);
  return value;
}

function normalizeTyp(value: string): string {
  const lower = value.toLowerCase();
  return lower.includes("/") ? lower : `application/${lower}`;
}

function fail(code: "TOKEN_MALFORMED" | "TOKEN_INVALID" | "TOKEN_EXPIRED", reason: string): VerificationError {
  // The reason is for logs only (err.cause); the message stays fixed per code.
  return new VerificationError(code, { cause: new Error(reason) });
}

// Value of each base64url character, or -1.
const B64URL = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64URL["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".charCodeAt(i)] = i;
// 64 bytes take 86 characters, the last of which carries 4 unused bits.
const SIGNATURE_CHARS = 86;

/**
 * Whether the unused low bits of the last character are zero (TOKEN_SHAPE has
 * already restricted the part to the base64url alphabet, and the length is
 * not 1 mod 4). Base64url decoders ignore those bits, so without this check
 * one part has up to 16 spellings and a signed token many distinct strings;
 * only the canonical one is accepted, in every part.
 */
function canonicalTail(part: string): boolean {
  const rest = part.length & 3;
  if (rest === 0) return true;
  // 2 characters carry 1 byte (4 spare bits), 3 carry 2 bytes (2 spare bits).
  return (B64URL[part.charCodeAt(part.length - 1)]! & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/**
 * Decodes the header or payload. A length of 1 mod 4 is not base64url at
 * all, and another spelling of the same bytes is not ours either (the service
 * refuses both, with the same test vectors: conformance/token-vectors.json).
 */
function decodePart(part: string, what: string): Buffer {
  if ((part.length & 3) === 1) throw fail("TOKEN_MALFORMED", `${what} is not base64url`);
  if (!canonicalTail(part)) throw fail("TOKEN_MALFORMED", `${what} is not canonical base64url`);
  return Buffer.from(part, "base64url");
}

/** The 64-byte Ed25519 signature, canonically spelt. Any other length or spelling is a bad signature. */
function decodeSignature(part: string): Buffer {
  if ((part.length & 3) === 1) throw fail("TOKEN_MALFORMED", "signature is not base64url");
  if (part.length !== SIGNATURE_CHARS) throw fail("TOKEN_INVALID", "signature length");
  if (!canonicalTail(part)) throw fail("TOKEN_INVALID", "signature not canonical base64url");
  const signature = Buffer.from(part, "base64url");
  if (signature.length !== ED25519_SIGNATURE_BYTES) throw fail("TOKEN_INVALID", "signature length");
  return signature;
}

/** A JSON object from a decoded part, or TOKEN_MALFORMED. */
function parseObject(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(bytes));
  } catch (cause) {
    throw new VerificationError("TOKEN_MALFORMED", { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw fail("TOKEN_MALFORMED", `${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

export function createVerifier(options: VerifierOptions): Verifier {
  const jwksUrl = new URL(options.jwksUrl);
  if (jwksUrl.protocol !== "https:" && jwksUrl.protocol !== "http:") throw new TypeError("jwksUrl must be an http(s) URL");
  if (!options.issuer) throw new TypeError("issuer is required");
  if (!options.audience) throw new TypeError("audience is required");
  const now = options.now ?? Date.now;
  const tolerance = nonNegative("clockToleranceSec", options.clockToleranceSec ?? 5);
  const readyTimeoutMs = nonNegative("readyTimeoutMs", options.readyTimeoutMs ?? 10_000);
  const cache = createLru<Entry>(options.cacheSize ?? 10_000);
  const keys = createKeySet({
    url: jwksUrl,
    fetch: options.fetch ?? globalThis.fetch,
    now,
    refetchIntervalMs: nonNegative("unknownKidRefetchIntervalMs", options.unknownKidRefetchIntervalMs ?? 60_000),
    maxAgeMs: nonNegative("jwksMaxAgeMs", options.jwksMaxAgeMs ?? 5 * 60_000),
    timeoutMs: nonNegative("jwksTimeoutMs", options.jwksTimeoutMs ?? 5_000),
  });

  const rev = options.revocation;
  const onFeedDown = rev?.onFeedDown ?? "serve";
  if (onFeedDown !== "serve" && onFeedDown !== "refuse") throw new TypeError('revocation.onFeedDown must be "serve" or "refuse"');
  if (rev?.prefix !== undefined && !isValidRedisPrefix(rev.prefix)) {
    throw new TypeError("revocation.prefix must be 1-64 printable ASCII characters without spaces or braces");
  }
  const names = revocationFeedNames(rev?.prefix);
  const feed: RevocationFeed | undefined = rev
    ? createRevocationFeed({
        redis: rev.redis,
        channel: rev.channel ?? names.channel,
        keyPrefix: rev.keyPrefix ?? names.keyPrefix,
        now,
        retainSec: tolerance,
        heartbeatMs: positive("revocation.heartbeatMs", rev.heartbeatMs ?? 5_000),
      })
    : undefined;

  let closed = false;
  let hits = 0;
  let misses = 0;

  // The checks jose's jwtVerify made, in the same order (so every input gets
  // the code it got before), with the signature checked by node:crypto's
  // synchronous Ed25519 verify against a KeyObject made once per JWKS key.
  async function verifySigned(token: string, nowMs: number): Promise<Entry> {
    if (!TOKEN_SHAPE.test(token)) throw fail("TOKEN_MALFORMED", "not a compact JWS");
    const dot1 = token.indexOf(".");
    const dot2 = token.indexOf(".", dot1 + 1);

    // Protected header.
    const header = parseObject(decodePart(token.slice(0, dot1), "header"), "header");
    if (header.crit !== undefined) {
      // Checked as jose did (for the same codes): a list of names, none but
      // its one known extension, b64, which must then be a boolean.
      const { crit } = header;
      if (!Array.isArray(crit) || crit.length === 0 || crit.some((p) => typeof p !== "string" || p === "")) {
        throw fail("TOKEN_MALFORMED", "crit is not a list of names");
      }
      for (const name of crit) {
        if (name !== "b64") throw fail("TOKEN_INVALID", "unknown critical header parameter");
        if (typeof header.b64 !== "boolean") throw fail("TOKEN_MALFORMED", "crit b64 without a boolean b64");
      }
    }
    const { alg, kid } = header;
    if (typeof alg !== "string" || alg === "") throw fail("TOKEN_MALFORMED", "alg missing");
    if (alg !== ACCESS_TOKEN_ALG) throw fail("TOKEN_INVALID", "alg not allowed");
    // Our tokens use no extension, not even b64 (which jose would have
    // honoured), so a token that requires one is refused.
    if (header.crit !== undefined) throw fail("TOKEN_INVALID", "critical header parameter");
    for (const name of KEY_LOCATING_HEADERS) if (Object.hasOwn(header, name)) throw fail("TOKEN_INVALID", "key-locating header");
    if (typeof kid !== "string" || kid === "") throw fail("TOKEN_INVALID", "kid missing");
    // Only a kid we do not know can wait (for a rate-limited JWKS fetch).
    const found = keys.get(kid);
    const key = found instanceof Promise ? await found : found;

    // Signature over the ASCII bytes of "header.payload".
    const signature = decodeSignature(token.slice(dot2 + 1));
    let valid: boolean;
    try {
      valid = cryptoVerify(null, Buffer.from(token.slice(0, dot2), "latin1"), key, signature);
    } catch (cause) {
      throw new VerificationError("TOKEN_INVALID", { cause });
    }
    if (!valid) throw fail("TOKEN_INVALID", "signature");

    // Claims.
    const payload = parseObject(decodePart(token.slice(dot1 + 1, dot2), "payload"), "payload") as JWTPayload;
    if (typeof header.typ !== "string" || normalizeTyp(header.typ) !== EXPECTED_TYP) throw fail("TOKEN_INVALID", "typ");
    for (const claim of REQUIRED_CLAIMS) if (!Object.hasOwn(payload, claim)) throw fail("TOKEN_INVALID", `${claim} missing`);
    const { iss, aud, sub, sid, jti, iat, nbf, exp } = payload;
    if (iss !== options.issuer) throw fail("TOKEN_INVALID", "iss");
    if (typeof aud === "string" ? aud !== options.audience : !Array.isArray(aud) || !aud.includes(options.audience)) {
      throw fail("TOKEN_INVALID", "aud");
    }
    const nowSec = Math.floor(nowMs / 1000);
    if (typeof iat !== "number") throw fail("TOKEN_INVALID", "iat type");
    if (nbf !== undefined && (typeof nbf !== "number" || nbf > nowSec + tolerance)) throw fail("TOKEN_INVALID", "nbf");
    if (typeof exp !== "number") throw fail("TOKEN_INVALID", "exp type");
    if (exp <= nowSec - tolerance) throw fail("TOKEN_EXPIRED", "exp");
    if (typeof sub !== "string" || sub === "" || typeof jti !== "string" || jti === "" || !isValidSessionId(sid)) {
      throw fail("TOKEN_INVALID", "sub, jti or sid");
    }
    // A token "issued" in the future is not one of ours.
    if (iat > nowMs / 1000 + tolerance) throw fail("TOKEN_INVALID", "iat in the future");
    return { kid, sub, sid, jti, iat, exp, claims: deepFreeze(payload) };
  }

  // Checks that can change after a token was verified: run on every call,
  // cached or not. None touches the network.
  function admit(entry: Entry, nowSec: number): VerifiedToken {
    if (entry.exp <= nowSec - tolerance) throw new VerificationError("TOKEN_EXPIRED");
    if (feed) {
      if (feed.isRevoked(entry.sid, nowSec)) throw new VerificationError("TOKEN_REVOKED");
      if (onFeedDown === "refuse" && feed.state !== "up") throw new VerificationError("REVOCATION_UNAVAILABLE");
    }
    return {
      userId: entry.sub,
      sessionId: entry.sid,
      tokenId: entry.jti,
      issuedAt: new Date(entry.iat * 1000),
      expiresAt: new Date(entry.exp * 1000),
      claims: entry.claims,
    };
  }

  return {
    async verify(token) {
      if (closed) throw new Error("verifier is closed");
      if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) throw new VerificationError("TOKEN_MALFORMED");
      const nowMs = now();
      const nowSec = Math.floor(nowMs / 1000);
      keys.refreshIfStale();
      const hit = cache.get(token);
      // A key withdrawn from the JWKS takes its cached tokens with it.
      if (hit && keys.has(hit.kid)) {
        hits++;
        try {
          return admit(hit, nowSec);
        } catch (err) {
          if ((err as VerificationError).code === "TOKEN_EXPIRED") cache.delete(token);
          throw err;
        }
      }
      if (hit) cache.delete(token);
      misses++;
      const entry = await verifySigned(token, nowMs);
      const verified = admit(entry, nowSec);
      cache.set(token, entry);
      return verified;
    },

    async ready() {
      await Promise.all([keys.ensureLoaded(), feed?.ready(readyTimeoutMs)]);
    },

    async close() {
      if (closed) return;
      closed = true;
      await feed?.close();
    },

    stats() {
      return {
        cache: { size: cache.size, capacity: cache.capacity, hits, misses },
        keys: keys.stats(),
        revocation: feed ? { ...feed.stats(), onFeedDown } : null,
      };
    },
  };
}
