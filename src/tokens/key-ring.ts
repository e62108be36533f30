import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { KeyStore, StoredKey } from "../keys/ports.js";

// The signing keys as this instance holds them: loaded from the KeyStore
// port, reloaded on a timer and when a token names a kid we do not know, the
// public halves published as the JWKS, and rotation. What a token says and
// how it is checked is access-token.ts.

/** The one algorithm our keys sign with (Ed25519). */
export const SIGNING_KEY_ALG = "EdDSA";
// Clock skew tolerated between instances (and internal verifiers): tokens are
// accepted that long after exp, so a key is kept published that long too.
export const CLOCK_TOLERANCE_S = 5;

export type SigningKeyHandle = Awaited<ReturnType<typeof importJWK>>;

export interface KeyRingOptions {
  keys: KeyStore;
  /**
   * The longest lifetime of any access token signed with these keys (every
   * role's); a rotated-out key stays published until all of them expired.
   */
  maxAccessTokenTtlMs: number;
  now?: () => Date;
  /** Unknown kids make the ring reload keys at most this often. */
  reloadIntervalMs?: number;
  /**
   * Keys are reloaded from the store this often (0 = never), so a key that
   * another instance rotated in is signed with once it activates. Default 60 s.
   */
  refreshIntervalMs?: number;
  /** A periodic reload failed (the loaded keys keep serving). */
  onRefreshError?(err: unknown): void;
  /**
   * How long a rotated-in key is published before it signs. Must exceed how
   * long verifiers cache the JWKS (max-age 300 s) plus their refetch interval,
   * so every verifier knows the key before its first token. Default 10 min.
   */
  publishLeadMs?: number;
}

export interface RotatedKey {
  /** False when an earlier rotation's key is still pending: that key is returned. */
  rotated: boolean;
  kid: string;
  activatesAt: Date;
  /** Keys whose retirement this rotation set, with when they leave the JWKS. */
  retired: { kid: string; retiresAt: Date }[];
}

export interface KeyRing {
  /** Loads the keys, creating the first one if the store has none, and starts the periodic reload. */
  init(): Promise<void>;
  /** The public JWKS document: every key not retired, the next one included. */
  jwks(): { keys: JWK[] };
  /**
   * Creates the next signing key. Normally it is published now, signs from
   * now + publishLeadMs, and the current key retires once every token it can
   * still sign has expired. `immediate` (a leaked key): the new key signs at
   * once and every other key retires at once, so every token they signed is
   * refused from now on (on other instances after their next reload).
   */
  rotate(opts?: { immediate?: boolean }): Promise<RotatedKey>;
  /** Reloads the keys from the store now. */
  reload(): Promise<void>;
  /** Stops the periodic reload. */
  close(): void;
  /** The newest key active at `at`; throws when there is none. */
  signingKey(at: Date): { kid: string; privateKey: SigningKeyHandle };
  /**
   * The public key named `kid` if it is usable at `at`. A kid we do not know
   * may be a key another instance just created: it triggers a reload, at most
   * once per reloadIntervalMs.
   */
  verificationKey(kid: string, at: Date): Promise<SigningKeyHandle | undefined>;
  /** Whether `kid` is loaded and not retired at `at` (no reload). */
  isUsable(kid: string, at: Date): boolean;
}

interface LoadedKey {
  kid: string;
  activatesAt: Date;
  retiresAt: Date | null;
  publicJwk: JWK;
  publicKey: SigningKeyHandle;
  privateKey: SigningKeyHandle;
}

export async function newSigningKey(now: Date): Promise<StoredKey> {
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_KEY_ALG, { crv: "Ed25519", extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = await exportJWK(privateKey);
  return {
    kid,
    alg: SIGNING_KEY_ALG,
    publicJwk: { ...publicJwk, kid, alg: SIGNING_KEY_ALG, use: "sig" },
    privateJwk,
    createdAt: now,
    activatesAt: now,
    retiresAt: null,
  };
}

const usable = (k: LoadedKey, at: Date) => !k.retiresAt || k.retiresAt > at;

/** The stored keys of our algorithm, imported; `known` ones (same kid, so the same key) are reused. */
async function importKeys(stored: StoredKey[], known: Map<string, LoadedKey>): Promise<Map<string, LoadedKey>> {
  const next = new Map<string, LoadedKey>();
  for (const k of stored) {
    if (k.alg !== SIGNING_KEY_ALG) continue;
    // A kid is the thumbprint of its public key: a known one needs no re-import.
    const prior = known.get(k.kid);
    next.set(k.kid, {
      kid: k.kid,
      activatesAt: k.activatesAt,
      retiresAt: k.retiresAt,
      publicJwk: k.publicJwk,
      publicKey: prior?.publicKey ?? (await importJWK(k.publicJwk, SIGNING_KEY_ALG)),
      privateKey: prior?.privateKey ?? (await importJWK(k.privateJwk, SIGNING_KEY_ALG)),
    });
  }
  return next;
}

/** The newest key that has activated and not retired at `at`. */
function activeKey(keys: Iterable<LoadedKey>, at: Date): LoadedKey {
  let best: LoadedKey | undefined;
  for (const k of keys) {
    if (k.activatesAt > at || (k.retiresAt && k.retiresAt <= at)) continue;
    if (!best || k.activatesAt > best.activatesAt) best = k;
  }
  if (!best) throw new Error("no active signing key");
  return best;
}

export function createKeyRing(opts: KeyRingOptions): KeyRing {
  const now = opts.now ?? (() => new Date());
  // Short enough that a key another instance just created is found quickly,
  // long enough that a flood of made-up kids costs one query per interval.
  const reloadIntervalMs = opts.reloadIntervalMs ?? 5_000;
  const refreshIntervalMs = opts.refreshIntervalMs ?? 60_000;
  const publishLeadMs = opts.publishLeadMs ?? 10 * 60_000;
  let refreshTimer: NodeJS.Timeout | undefined;
  let keys = new Map<string, LoadedKey>();
  let lastReload = 0;
  let loads = 0;
  let applied = 0;

  async function load(): Promise<void> {
    const generation = ++loads;
    const next = await importKeys(await opts.keys.listUsable(now()), keys);
    // Overlapping loads (periodic, unknown kid, rotate): an older read never replaces a newer one.
    if (generation < applied) return;
    applied = generation;
    keys = next;
    lastReload = Date.now();
  }

  return {
    async init() {
      await load();
      if (keys.size === 0) {
        await opts.keys.insert(await newSigningKey(now()));
        await load();
      }
      if (refreshIntervalMs > 0 && !refreshTimer) {
        refreshTimer = setInterval(() => {
          load().catch((err: unknown) => opts.onRefreshError?.(err));
        }, refreshIntervalMs);
        refreshTimer.unref();
      }
    },

    jwks() {
      const at = now();
      return { keys: [...keys.values()].filter((k) => usable(k, at)).map((k) => k.publicJwk) };
    },

    async rotate({ immediate = false } = {}) {
      const at = now();
      const next = await newSigningKey(at);
      next.activatesAt = immediate ? at : new Date(at.getTime() + publishLeadMs);
      // The old key signs until the new one activates; its last token expires
      // maxAccessTokenTtlMs later, and a verifier's clock may run a little behind.
      const retireOthersAt = immediate
        ? at
        : new Date(next.activatesAt.getTime() + opts.maxAccessTokenTtlMs + CLOCK_TOLERANCE_S * 1000);
      const result = await opts.keys.rotate({ next, retireOthersAt, now: at, force: immediate });
      await load();
      if (!result.rotated) {
        return { rotated: false, kid: result.pending.kid, activatesAt: result.pending.activatesAt, retired: [] };
      }
      return { rotated: true, kid: next.kid, activatesAt: next.activatesAt, retired: result.retired };
    },

    reload: load,

    close() {
      clearInterval(refreshTimer);
      refreshTimer = undefined;
    },

    signingKey(at) {
      const key = activeKey(keys.values(), at);
      return { kid: key.kid, privateKey: key.privateKey };
    },

    async verificationKey(kid, at) {
      let key = keys.get(kid);
      if (!key && Date.now() - lastReload >= reloadIntervalMs) {
        await load();
        key = keys.get(kid);
      }
      // A retired key verifies nothing, even before the next reload.
      return key && usable(key, at) ? key.publicKey : undefined;
    },

    isUsable(kid, at) {
      const key = keys.get(kid);
      return key !== undefined && usable(key, at);
    },
  };
}
