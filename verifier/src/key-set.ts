import { createPublicKey, type KeyObject } from "node:crypto";
import { VerificationError } from "./errors.js";

// The verification keys, fetched from the service's JWKS and cached.
//
// Only Ed25519 public keys for EdDSA are taken from the set; anything else in
// it is skipped. Keys are looked up by `kid` alone: nothing in a token's
// header (jku, jwk, x5u, x5c) ever leads to a key or a URL.
//
// Network policy: at most one fetch in flight; an unknown kid may start a
// fetch only if the previous attempt (successful or not) is at least
// `refetchIntervalMs` old, so a flood of made-up kids costs one request per
// interval. Until a set has been loaded once, the gap is at most 1 s so a
// verifier that booted during a JWKS outage recovers quickly. A set older
// than `maxAgeMs` is refreshed in the background while the old one keeps
// serving, which is how a key withdrawn from the JWKS stops verifying.

// A node:crypto KeyObject, created once per JWKS key: verification is then a
// synchronous crypto.verify on the calling thread (no WebCrypto promise, no
// libuv threadpool round trip per token).
export type VerifyKey = KeyObject;

export interface KeySetOptions {
  url: URL;
  fetch: typeof globalThis.fetch;
  now: () => number;
  refetchIntervalMs: number;
  maxAgeMs: number;
  timeoutMs: number;
}

export interface KeySetStats {
  keys: number;
  fetches: number;
  fetchFailures: number;
  /** Epoch ms of the last fetch attempt, or null. */
  lastFetchAt: number | null;
  /** Epoch ms of the last successful fetch, or null. */
  loadedAt: number | null;
}

export interface KeySet {
  /** The key for `kid`, or a VerificationError (TOKEN_INVALID / KEYS_UNAVAILABLE). */
  get(kid: string): VerifyKey | Promise<VerifyKey>;
  /** Whether `kid` is in the current set (no network). */
  has(kid: string): boolean;
  /** Loads the set if it never was; throws KEYS_UNAVAILABLE on failure. */
  ensureLoaded(): Promise<void>;
  /** Starts a background refresh when the set is older than maxAgeMs. */
  refreshIfStale(): void;
  stats(): KeySetStats;
}

const MAX_JWKS_BYTES = 256 * 1024;
const MAX_KID_LENGTH = 256;
const FIRST_LOAD_RETRY_MS = 1_000;
const ED25519_X = /^[A-Za-z0-9_-]{43}$/;

interface Entry {
  x: string;
  key: VerifyKey;
}

export function createKeySet(opts: KeySetOptions): KeySet {
  let keys = new Map<string, Entry>();
  let loadedAt: number | null = null;
  let lastAttemptAt = Number.NEGATIVE_INFINITY;
  let lastAttemptFailed = false;
  let pending: Promise<void> | undefined;
  let fetches = 0;
  let fetchFailures = 0;

  const minGap = () => (loadedAt === null ? Math.min(opts.refetchIntervalMs, FIRST_LOAD_RETRY_MS) : opts.refetchIntervalMs);

  function fetchNow(): Promise<void> {
    if (pending) return pending;
    lastAttemptAt = opts.now();
    fetches++;
    const attempt = (async () => {
      try {
        const body = await download(opts);
        keys = parseKeySet(body, keys);
        loadedAt = opts.now();
        lastAttemptFailed = false;
      } catch (cause) {
        fetchFailures++;
        lastAttemptFailed = true;
        throw new VerificationError("KEYS_UNAVAILABLE", { cause });
      } finally {
        pending = undefined;
      }
    })();
    pending = attempt;
    return attempt;
  }

  async function fetchFor(kid: string): Promise<VerifyKey> {
    if (kid.length <= MAX_KID_LENGTH && (pending || opts.now() - lastAttemptAt >= minGap())) {
      await fetchNow().catch(() => {});
    }
    const entry = keys.get(kid);
    if (entry) return entry.key;
    if (loadedAt === null || lastAttemptFailed) throw new VerificationError("KEYS_UNAVAILABLE");
    throw new VerificationError("TOKEN_INVALID");
  }

  return {
    get(kid) {
      const entry = keys.get(kid);
      return entry ? entry.key : fetchFor(kid);
    },
    has(kid) {
      return keys.has(kid);
    },
    async ensureLoaded() {
      if (loadedAt === null) await fetchNow();
    },
    refreshIfStale() {
      if (loadedAt === null || pending) return;
      const now = opts.now();
      if (now - loadedAt >= opts.maxAgeMs && now - lastAttemptAt >= minGap()) fetchNow().catch(() => {});
    },
    stats() {
      return {
        keys: keys.size,
        fetches,
        fetchFailures,
        lastFetchAt: Number.isFinite(lastAttemptAt) ? lastAttemptAt : null,
        loadedAt,
      };
    },
  };
}

async function download(opts: KeySetOptions): Promise<unknown> {
  const res = await opts.fetch(opts.url, {
    headers: { accept: "application/jwk-set+json, application/json" },
    // The configured URL is the only place keys come from: no redirects.
    redirect: "error",
    signal: AbortSignal.timeout(opts.timeoutMs),
  });
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`JWKS answered HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get("content-length"));
  if (declared > MAX_JWKS_BYTES) {
    await res.body?.cancel().catch(() => {});
    throw new Error("JWKS response too large");
  }
  let text = "";
  if (res.body) {
    const decoder = new TextDecoder();
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.byteLength;
      if (size > MAX_JWKS_BYTES) throw new Error("JWKS response too large");
      text += decoder.decode(chunk, { stream: true });
    }
    text += decoder.decode();
  }
  return JSON.parse(text) as unknown;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The usable keys of a JWKS document; throws if there are none. */
function parseKeySet(body: unknown, previous: Map<string, Entry>): Map<string, Entry> {
  if (!isPlainObject(body) || !Array.isArray(body.keys)) throw new Error("JWKS is not a key set");
  const next = new Map<string, Entry>();
  const ambiguous = new Set<string>();
  for (const jwk of body.keys as unknown[]) {
    if (!isUsable(jwk)) continue;
    const { kid, x } = jwk;
    const seen = next.get(kid);
    if (seen && seen.x !== x) ambiguous.add(kid);
    if (seen) continue;
    const prev = previous.get(kid);
    const key = prev && prev.x === x ? prev.key : createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
    next.set(kid, { x, key });
  }
  // Two different keys under one kid: trust neither.
  for (const kid of ambiguous) next.delete(kid);
  // A set with no usable key is a broken response, not a revocation of every
  // key: keep serving the previous set.
  if (next.size === 0) throw new Error("JWKS has no usable Ed25519 key");
  return next;
}

function isUsable(jwk: unknown): jwk is { kid: string; x: string } {
  if (!isPlainObject(jwk)) return false;
  const { kty, crv, x, kid, alg, use, key_ops: ops } = jwk;
  return (
    kty === "OKP" &&
    crv === "Ed25519" &&
    typeof x === "string" &&
    ED25519_X.test(x) &&
    typeof kid === "string" &&
    kid.length > 0 &&
    kid.length <= MAX_KID_LENGTH &&
    (alg === undefined || alg === "EdDSA") &&
    (use === undefined || use === "sig") &&
    (ops === undefined || (Array.isArray(ops) && ops.includes("verify"))) &&
    // A private key in a public set is someone's mistake; do not touch it.
    jwk.d === undefined
  );
}
