import { randomUUID } from "node:crypto";
import {
  calculateJwkThumbprint,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  type JWK,
  type JWTHeaderParameters,
} from "jose";
import { LRUCache } from "lru-cache";
import { isRole } from "../accounts/ports.js";
import { type AccessClaims, type TokenIssuer } from "./ports.js";
import { isAccessTokenShape } from "./token-shape.js";
import type { KeyStore, StoredKey } from "../keys/ports.js";
import { isUuid } from "../shared/uuid.js";

// Access tokens: JWT (RFC 9068 profile, typ "at+jwt"), EdDSA over Ed25519,
// one algorithm accepted and nothing else. Verification never follows a
// header to find a key (jku, jwk, x5u are ignored): keys come only from our
// own key store, looked up by kid.

export const ACCESS_TOKEN_ALG = "EdDSA";
export const ACCESS_TOKEN_TYP = "at+jwt";
// Clock skew tolerated between instances (and internal verifiers).
const CLOCK_TOLERANCE_S = 5;

export interface JwtServiceOptions {
  /** Verified tokens remembered (a repeated token skips the signature check). */
  verifiedCacheSize?: number;
  keys: KeyStore;
  issuer: string;
  audience: string;
  accessTokenTtlMs: number;
  now?: () => Date;
  /** Unknown kids make the service reload keys at most this often. */
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
  /**
   * The longest lifetime of any access token this service issues (every
   * role's); a rotated-out key stays published until all of them expired.
   * Default accessTokenTtlMs.
   */
  maxAccessTokenTtlMs?: number;
}

export interface RotatedKey {
  /** False when an earlier rotation's key is still pending: that key is returned. */
  rotated: boolean;
  kid: string;
  activatesAt: Date;
  /** Keys whose retirement this rotation set, with when they leave the JWKS. */
  retired: { kid: string; retiresAt: Date }[];
}

export interface JwtService extends TokenIssuer {
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
}

type Key = Awaited<ReturnType<typeof importJWK>>;

interface LoadedKey {
  kid: string;
  activatesAt: Date;
  retiresAt: Date | null;
  publicJwk: JWK;
  publicKey: Key;
  privateKey: Key;
}

export async function newSigningKey(now: Date): Promise<StoredKey> {
  const { publicKey, privateKey } = await generateKeyPair(ACCESS_TOKEN_ALG, { crv: "Ed25519", extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = await exportJWK(privateKey);
  return {
    kid,
    alg: ACCESS_TOKEN_ALG,
    publicJwk: { ...publicJwk, kid, alg: ACCESS_TOKEN_ALG, use: "sig" },
    privateJwk,
    createdAt: now,
    activatesAt: now,
    retiresAt: null,
  };
}

export function createJwtService(opts: JwtServiceOptions): JwtService {
  const now = opts.now ?? (() => new Date());
  // Short enough that a key another instance just created is found quickly,
  // long enough that a flood of made-up kids costs one query per interval.
  const reloadIntervalMs = opts.reloadIntervalMs ?? 5_000;
  const refreshIntervalMs = opts.refreshIntervalMs ?? 60_000;
  const publishLeadMs = opts.publishLeadMs ?? 10 * 60_000;
  const maxAccessTokenTtlMs = Math.max(opts.accessTokenTtlMs, opts.maxAccessTokenTtlMs ?? 0);
  let refreshTimer: NodeJS.Timeout | undefined;
  let keys = new Map<string, LoadedKey>();
  // The same token string verified once verifies the same way again, as long
  // as its key is still usable and it has not expired: skip the signature.
  const verified = new LRUCache<string, { claims: AccessClaims; kid: string }>({ max: opts.verifiedCacheSize ?? 10_000 });
  let lastReload = 0;
  let loads = 0;
  let applied = 0;

  async function load(): Promise<void> {
    const generation = ++loads;
    const stored = await opts.keys.listUsable(now());
    const next = new Map<string, LoadedKey>();
    for (const k of stored) {
      if (k.alg !== ACCESS_TOKEN_ALG) continue;
      // A kid is the thumbprint of its public key: a known one needs no re-import.
      const known = keys.get(k.kid);
      next.set(k.kid, {
        kid: k.kid,
        activatesAt: k.activatesAt,
        retiresAt: k.retiresAt,
        publicJwk: k.publicJwk,
        publicKey: known?.publicKey ?? (await importJWK(k.publicJwk, ACCESS_TOKEN_ALG)),
        privateKey: known?.privateKey ?? (await importJWK(k.privateJwk, ACCESS_TOKEN_ALG)),
      });
    }
    // Overlapping loads (periodic, unknown kid, rotate): an older read never replaces a newer one.
    if (generation < applied) return;
    applied = generation;
    keys = next;
    lastReload = Date.now();
  }

  function signingKey(at: Date): LoadedKey {
    let best: LoadedKey | undefined;
    for (const k of keys.values()) {
      if (k.activatesAt > at || (k.retiresAt && k.retiresAt <= at)) continue;
      if (!best || k.activatesAt > best.activatesAt) best = k;
    }
    if (!best) throw new Error("no active signing key");
    return best;
  }

  const usable = (k: LoadedKey, at: Date) => !k.retiresAt || k.retiresAt > at;

  async function keyFor(header: JWTHeaderParameters, at: Date): Promise<Key> {
    if (header.alg !== ACCESS_TOKEN_ALG || typeof header.kid !== "string") throw new joseErrors.JWSInvalid("unacceptable header");
    let key = keys.get(header.kid);
    // A kid we do not know may be a key another instance just created.
    if (!key && Date.now() - lastReload >= reloadIntervalMs) {
      await load();
      key = keys.get(header.kid);
    }
    // A retired key verifies nothing, even before the next reload.
    if (!key || !usable(key, at)) throw new joseErrors.JWKSNoMatchingKey();
    return key.publicKey;
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
        : new Date(next.activatesAt.getTime() + maxAccessTokenTtlMs + CLOCK_TOLERANCE_S * 1000);
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

    async issueAccessToken({ userId, sessionId, now: at, role, ttlMs, authTime, amr }) {
      const key = signingKey(at);
      const iat = Math.floor(at.getTime() / 1000);
      const exp = iat + Math.floor((ttlMs ?? opts.accessTokenTtlMs) / 1000);
      const claims: Record<string, unknown> = { sid: sessionId };
      if (role) claims.role = role;
      if (authTime) claims.auth_time = Math.floor(authTime.getTime() / 1000);
      if (amr && amr.length > 0) {
        claims.amr = [...amr];
        claims.acr = amr.includes("mfa") ? "aal2" : "aal1";
      }
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg: ACCESS_TOKEN_ALG, kid: key.kid, typ: ACCESS_TOKEN_TYP })
        .setIssuer(opts.issuer)
        .setAudience(opts.audience)
        .setSubject(userId)
        .setJti(randomUUID())
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(key.privateKey);
      return { token, expiresAt: new Date(exp * 1000) };
    },

    async verifyAccessToken(token, at): Promise<AccessClaims | undefined> {
      // jose decodes base64url leniently: only the canonical spelling of a
      // token is one, whoever calls.
      if (!isAccessTokenShape(token)) return undefined;
      const hit = verified.get(token);
      if (hit) {
        const key = keys.get(hit.kid);
        if (key && usable(key, at) && hit.claims.expiresAt.getTime() + CLOCK_TOLERANCE_S * 1000 > at.getTime()) return hit.claims;
        verified.delete(token);
        return undefined;
      }
      try {
        const { payload, protectedHeader } = await jwtVerify(token, (header) => keyFor(header, at), {
          algorithms: [ACCESS_TOKEN_ALG],
          issuer: opts.issuer,
          audience: opts.audience,
          typ: ACCESS_TOKEN_TYP,
          requiredClaims: ["exp", "iat", "sub", "jti", "sid"],
          clockTolerance: CLOCK_TOLERANCE_S,
          currentDate: at,
        });
        const { sub, sid, jti, iat, exp } = payload;
        // Ids we issue are UUIDs; anything else never reaches a query.
        if (typeof sub !== "string" || typeof sid !== "string" || typeof jti !== "string") return undefined;
        if (!isUuid(sub) || !isUuid(sid)) return undefined;
        if (typeof iat !== "number" || typeof exp !== "number") return undefined;
        // Only our key signs, but a token "issued" in the future is still wrong.
        if (iat * 1000 > at.getTime() + CLOCK_TOLERANCE_S * 1000) return undefined;
        const claims: AccessClaims = { userId: sub, sessionId: sid, tokenId: jti, issuedAt: new Date(iat * 1000), expiresAt: new Date(exp * 1000) };
        if (isRole(payload.role)) claims.role = payload.role;
        if (typeof payload.auth_time === "number" && Number.isFinite(payload.auth_time)) claims.authTime = new Date(payload.auth_time * 1000);
        if (Array.isArray(payload.amr) && payload.amr.every((v) => typeof v === "string")) claims.amr = payload.amr as string[];
        if (typeof payload.acr === "string") claims.acr = payload.acr;
        verified.set(token, { claims, kid: protectedHeader.kid! });
        return claims;
      } catch (err) {
        if (err instanceof joseErrors.JOSEError) return undefined;
        throw err;
      }
    },
  };
}
