import type { Redis } from "ioredis";

// The revocation feed: how the identity service tells every verifier that a
// session's access tokens must stop working. The service imports this file
// too, so both sides share one definition.
//
// Publish side (one MULTI, so a reader sees the key and the message together
// or neither), with the default prefix "identity:" (see revocationFeedNames):
//   SET      identity:revoked:<sid> <until>
//   EXPIREAT identity:revoked:<sid> <until + REVOCATION_KEY_GRACE_SEC>
//   PUBLISH  identity:revocations {"sid":"<sid>","until":<until>}
//
// Meaning: every access token of session <sid> issued so far is revoked.
// `until` (unix seconds) is the latest `exp` any of those tokens can carry;
// after it the entry says nothing a verifier's `exp` check does not, and may
// be forgotten. Sessions are never revived, so "issued so far" and "all" are
// the same to a verifier.
//
// Read side: subscribe to the channel first, then SCAN MATCH
// identity:revoked:* and GET each key, on every (re)connect. Subscribing
// before the scan leaves no gap: a revocation is either in the scan or
// delivered on the channel (or both; merging is idempotent).

/**
 * The Redis prefix of one deployment (the service's REDIS_PREFIX): every key
 * and channel it uses starts with it, so deployments sharing a Redis never
 * hear each other. The channel and keys above are those of the default.
 */
export const DEFAULT_REDIS_PREFIX = "identity:";
export const REVOCATION_CHANNEL = `${DEFAULT_REDIS_PREFIX}revocations`;
export const REVOCATION_KEY_PREFIX = `${DEFAULT_REDIS_PREFIX}revoked:`;

// Printable ASCII without spaces (a key or channel name must survive logs and
// redis-cli), and without braces: the service places its own Redis Cluster
// hash tags after the prefix, and a brace in the prefix would move them.
const REDIS_PREFIX = /^[\x21-\x7a\x7c\x7e]{1,64}$/;

export function isValidRedisPrefix(prefix: unknown): prefix is string {
  return typeof prefix === "string" && REDIS_PREFIX.test(prefix);
}

/** The revocation channel and denylist key prefix of the deployment with this Redis prefix. */
export function revocationFeedNames(prefix: string = DEFAULT_REDIS_PREFIX): Required<RevocationFeedNames> {
  if (!isValidRedisPrefix(prefix)) throw new TypeError("a Redis prefix is 1-64 printable ASCII characters without spaces or braces");
  return { channel: `${prefix}revocations`, keyPrefix: `${prefix}revoked:` };
}

/**
 * The denylist key outlives `until` by this much. Verifiers accept a token up
 * to their clock tolerance past `exp`, and the Redis clock need not match the
 * service's, so a key that vanished exactly at `until` could be missed by a
 * verifier that reconnects in that window.
 */
export const REVOCATION_KEY_GRACE_SEC = 60;

/** Upper bound on a feed message (characters); anything longer is not ours. */
export const REVOCATION_MESSAGE_MAX_LENGTH = 512;

// Session ids are UUIDs today; accept any printable ASCII without spaces so
// the id is safe in a Redis key and a log line, and bound its length.
const SESSION_ID = /^[\x21-\x7e]{1,128}$/;
const UNTIL = /^[1-9][0-9]{0,15}$/;

export interface Revocation {
  /** Session id (the `sid` claim). */
  sid: string;
  /** Unix seconds: the latest `exp` of any token of the session. */
  until: number;
}

export interface RevocationFeedNames {
  channel?: string;
  keyPrefix?: string;
}

export function isValidSessionId(sid: unknown): sid is string {
  return typeof sid === "string" && SESSION_ID.test(sid);
}

function isValidUntil(until: unknown): until is number {
  return typeof until === "number" && Number.isSafeInteger(until) && until > 0;
}

export function encodeRevocation(revocation: Revocation): string {
  if (!isValidSessionId(revocation.sid)) throw new TypeError("revocation sid must be 1-128 printable ASCII characters");
  if (!isValidUntil(revocation.until)) throw new TypeError("revocation until must be a positive integer (unix seconds)");
  return JSON.stringify({ sid: revocation.sid, until: revocation.until });
}

/**
 * Parses a feed message; `undefined` for anything that is not a well-formed
 * revocation. Unknown extra fields are ignored on purpose: if a later version
 * adds one, an older verifier still honours the revocation (over-refusing)
 * instead of dropping it (under-refusing).
 */
export function decodeRevocation(message: string | Buffer): Revocation | undefined {
  if (message.length > REVOCATION_MESSAGE_MAX_LENGTH) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(typeof message === "string" ? message : message.toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const { sid, until } = value as Record<string, unknown>;
  if (!isValidSessionId(sid) || !isValidUntil(until)) return undefined;
  return { sid, until };
}

/** Parses the value stored under a denylist key (decimal unix seconds). */
export function decodeRevocationUntil(value: string | null | undefined): number | undefined {
  if (typeof value !== "string" || !UNTIL.test(value)) return undefined;
  const until = Number(value);
  return Number.isSafeInteger(until) ? until : undefined;
}

export function revocationKey(sid: string, keyPrefix: string = REVOCATION_KEY_PREFIX): string {
  return keyPrefix + sid;
}

/**
 * Service side: records and announces a revocation atomically. Resolves to
 * the number of subscribers that received the message (verifiers that were
 * disconnected pick the key up when they reconnect).
 */
export async function publishRevocation(
  redis: Pick<Redis, "multi">,
  sid: string,
  until: number,
  names: RevocationFeedNames = {},
): Promise<number> {
  const message = encodeRevocation({ sid, until });
  const key = revocationKey(sid, names.keyPrefix ?? REVOCATION_KEY_PREFIX);
  const results = await redis
    .multi()
    .set(key, String(until))
    .expireat(key, until + REVOCATION_KEY_GRACE_SEC)
    .publish(names.channel ?? REVOCATION_CHANNEL, message)
    .exec();
  if (!results) throw new Error("revocation transaction was aborted");
  for (const [err] of results) if (err) throw err;
  const receivers = results[2]?.[1];
  return typeof receivers === "number" ? receivers : 0;
}
