import { errors as joseErrors, jwtVerify, type JWTHeaderParameters, type JWTPayload } from "jose";
import type { Redis } from "ioredis";
import { VerificationError } from "./errors.js";
import { createKeySet, type KeySetStats } from "./key-set.js";
import { createLru } from "./lru.js";
import { REVOCATION_CHANNEL, REVOCATION_KEY_PREFIX, isValidSessionId } from "./protocol.js";
import { createRevocationFeed, type RevocationFeed, type RevocationFeedStats } from "./revocation-feed.js";

export const ACCESS_TOKEN_ALG = "EdDSA";
export const ACCESS_TOKEN_TYP = "at+jwt";

export interface RevocationOptions {
  /** A Redis connection to copy settings from (we open our own two), or a redis:// URL. */
  redis: Redis | string;
  channel?: string;
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
const TOKEN_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
// Headers that name a key or where to fetch one. We never use them, and a
// token of ours never carries them, so their presence alone is refused.
const KEY_LOCATING_HEADERS = ["jku", "jwk", "x5u", "x5c"] as const;
const REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "jti", "iat", "exp"];

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

function mapJoseError(err: unknown): VerificationError {
  if (err instanceof VerificationError) return err;
  if (err instanceof joseErrors.JWTExpired) return new VerificationError("TOKEN_EXPIRED", { cause: err });
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) {
    return new VerificationError("TOKEN_MALFORMED", { cause: err });
  }
  // Bad signature, algorithm not allowed, claim mismatch, unsupported crit,
  // and anything unexpected: refuse without saying which.
  return new VerificationError("TOKEN_INVALID", { cause: err });
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
  const feed: RevocationFeed | undefined = rev
    ? createRevocationFeed({
        redis: rev.redis,
        channel: rev.channel ?? REVOCATION_CHANNEL,
        keyPrefix: rev.keyPrefix ?? REVOCATION_KEY_PREFIX,
        now,
        retainSec: tolerance,
        heartbeatMs: positive("revocation.heartbeatMs", rev.heartbeatMs ?? 5_000),
      })
    : undefined;

  const verifyOptions = {
    algorithms: [ACCESS_TOKEN_ALG],
    issuer: options.issuer,
    audience: options.audience,
    typ: ACCESS_TOKEN_TYP,
    requiredClaims: REQUIRED_CLAIMS,
    clockTolerance: tolerance,
  };

  let closed = false;
  let hits = 0;
  let misses = 0;

  function resolveKey(header: JWTHeaderParameters) {
    for (const name of KEY_LOCATING_HEADERS) if (name in header) throw new VerificationError("TOKEN_INVALID");
    const { kid } = header;
    if (typeof kid !== "string" || kid === "") throw new VerificationError("TOKEN_INVALID");
    return keys.get(kid);
  }

  async function verifySigned(token: string, nowMs: number): Promise<Entry> {
    if (!TOKEN_SHAPE.test(token)) throw new VerificationError("TOKEN_MALFORMED");
    let payload: JWTPayload;
    let kid: string;
    try {
      const result = await jwtVerify(token, resolveKey, { ...verifyOptions, currentDate: new Date(nowMs) });
      payload = result.payload;
      kid = result.protectedHeader.kid as string;
    } catch (err) {
      throw mapJoseError(err);
    }
    const { sub, sid, jti, iat, exp } = payload;
    if (typeof sub !== "string" || sub === "" || typeof jti !== "string" || jti === "" || !isValidSessionId(sid)) {
      throw new VerificationError("TOKEN_INVALID");
    }
    // jose has checked that iat and exp are numbers; a token "issued" in the
    // future is still not one of ours.
    if (typeof iat !== "number" || typeof exp !== "number" || iat > nowMs / 1000 + tolerance) {
      throw new VerificationError("TOKEN_INVALID");
    }
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
