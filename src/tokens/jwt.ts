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
import type { AccessClaims, TokenIssuer } from "../core/ports.js";

// Access tokens: JWT (RFC 9068 profile, typ "at+jwt"), EdDSA over Ed25519,
// one algorithm accepted and nothing else. Verification never follows a
// header to find a key (jku, jwk, x5u are ignored): keys come only from our
// own key store, looked up by kid.

export const ACCESS_TOKEN_ALG = "EdDSA";
export const ACCESS_TOKEN_TYP = "at+jwt";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Clock skew tolerated between instances (and internal verifiers).
const CLOCK_TOLERANCE_S = 5;

export interface StoredKey {
  kid: string;
  alg: string;
  publicJwk: JWK;
  privateJwk: JWK;
  createdAt: Date;
  activatesAt: Date;
  retiresAt: Date | null;
}

export interface KeyStore {
  /** Keys not yet retired at `now`, newest first. */
  listUsable(now: Date): Promise<StoredKey[]>;
  insert(key: StoredKey): Promise<void>;
}

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
}

export interface JwtService extends TokenIssuer {
  /** Loads the keys, creating the first one if the store has none. */
  init(): Promise<void>;
  /** The public JWKS document. */
  jwks(): { keys: JWK[] };
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
  let keys = new Map<string, LoadedKey>();
  // The same token string verified once verifies the same way again, as long
  // as its key is still usable and it has not expired: skip the signature.
  const verified = new LRUCache<string, { claims: AccessClaims; kid: string }>({ max: opts.verifiedCacheSize ?? 10_000 });
  let lastReload = 0;

  async function load(): Promise<void> {
    const stored = await opts.keys.listUsable(now());
    const next = new Map<string, LoadedKey>();
    for (const k of stored) {
      if (k.alg !== ACCESS_TOKEN_ALG) continue;
      next.set(k.kid, {
        kid: k.kid,
        activatesAt: k.activatesAt,
        retiresAt: k.retiresAt,
        publicJwk: k.publicJwk,
        publicKey: await importJWK(k.publicJwk, ACCESS_TOKEN_ALG),
        privateKey: await importJWK(k.privateJwk, ACCESS_TOKEN_ALG),
      });
    }
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
    },

    jwks() {
      const at = now();
      return { keys: [...keys.values()].filter((k) => usable(k, at)).map((k) => k.publicJwk) };
    },

    async issueAccessToken({ userId, sessionId, now: at }) {
      const key = signingKey(at);
      const iat = Math.floor(at.getTime() / 1000);
      const exp = iat + Math.floor(opts.accessTokenTtlMs / 1000);
      const token = await new SignJWT({ sid: sessionId })
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
        if (!UUID.test(sub) || !UUID.test(sid)) return undefined;
        if (typeof iat !== "number" || typeof exp !== "number") return undefined;
        // Only our key signs, but a token "issued" in the future is still wrong.
        if (iat * 1000 > at.getTime() + CLOCK_TOLERANCE_S * 1000) return undefined;
        const claims = { userId: sub, sessionId: sid, tokenId: jti, issuedAt: new Date(iat * 1000), expiresAt: new Date(exp * 1000) };
        verified.set(token, { claims, kid: protectedHeader.kid! });
        return claims;
      } catch (err) {
        if (err instanceof joseErrors.JOSEError) return undefined;
        throw err;
      }
    },
  };
}
