import { createPrivateKey, randomUUID } from "node:crypto";
import { eq, isNotNull } from "drizzle-orm";
import { decodeProtectedHeader, SignJWT, type JWK } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { KeyStore, StoredKey } from "../../../src/keys/ports.js";
import { sealedKeyId } from "../../../src/keys/secret-box.js";
import type { Database } from "../../../src/storage/db.js";
import { createKeyStore } from "../../../src/storage/key-store.js";
import { signingKeys } from "../../../src/storage/schema.js";
import { createJwtService, type JwtService } from "../../../src/tokens/jwt-service.js";
import { newSigningKey } from "../../../src/tokens/key-ring.js";
import { backends, openSharedTestDatabase } from "../../support/databases.js";
import { randomKek, testBox } from "../../support/keys.js";
import { memoryKeyStore } from "../../support/memory-key-store.js";

// The private signing keys at rest: sealed under the key-encryption keys
// (KEKs), so whoever reads the database cannot sign a token the service
// accepts, and a database opened with other KEKs loads nothing.

const T0 = new Date("2025-06-15T12:00:00.000Z");
const HOUR = 3_600_000;
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);
const U = "0190a1b2-0000-7000-8000-0000000000b1";
const S = "0190a1b2-0000-7000-8000-0000000000c1";
const ISSUER = "urn:test:identity";
const AUDIENCE = "urn:test:platform";
const K1 = randomKek("k1");
const K2 = randomKek("k2");
const materialOf = (kek: string) => kek.slice(kek.indexOf(":") + 1);

/**
 * A token exactly as the service would issue it, signed with `privateJwk`.
 * Node derives the public half from `d` (x is not checked), so any 32 bytes make a key.
 */
async function forge(privateJwk: JWK, kid: string): Promise<string> {
  const iat = Math.floor(T0.getTime() / 1000);
  return new SignJWT({ sid: S })
    .setProtectedHeader({ alg: "EdDSA", kid, typ: "at+jwt" })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(U)
    .setJti(randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(iat + 900)
    .sign(createPrivateKey({ key: privateJwk as never, format: "jwk" }));
}

/** Every 32 consecutive bytes, and every 43 consecutive base64url characters (a JWK's `d` as text), as a base64url scalar. */
function scalarCandidates(bytes: Buffer): string[] {
  const out = new Set<string>();
  for (let i = 0; i + 32 <= bytes.length; i++) out.add(bytes.subarray(i, i + 32).toString("base64url"));
  for (const run of bytes.toString("latin1").match(/[A-Za-z0-9_-]{43,}/g) ?? []) {
    for (let i = 0; i + 43 <= run.length; i++) out.add(run.slice(i, i + 43));
  }
  return [...out];
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`signing keys at rest: ${backend.name}`, () => {
    let database: Database;
    // PostgreSQL: a second pool on the same database, as another instance has.
    let second: Database | undefined;
    let destroy: (() => Promise<void>) | undefined;
    const services: JwtService[] = [];

    function service(keys: KeyStore): JwtService {
      const svc = createJwtService({ keys, issuer: ISSUER, audience: AUDIENCE, accessTokenTtlMs: 15 * 60_000, refreshIntervalMs: 0, now: () => T0 });
      services.push(svc);
      return svc;
    }
    const store = (kek: string, db: Database = database) => createKeyStore(db.db, testBox(kek));
    const rowOf = async (kid: string) => (await database.db.select().from(signingKeys).where(eq(signingKeys.kid, kid)))[0]!;
    /** The one key a store lists, private JWK in clear (memory only). */
    const onlyKey = async (keys: KeyStore): Promise<StoredKey> => {
      const listed = await keys.listUsable(T0);
      expect(listed).toHaveLength(1);
      return listed[0]!;
    };

    beforeAll(async () => {
      ({ database, second, destroy } = await openSharedTestDatabase(backend.name, 4));
    });
    afterEach(async () => {
      for (const svc of services.splice(0)) svc.close();
      await database.db.delete(signingKeys);
    });
    afterAll(async () => {
      await destroy?.();
    });

    it("after init the row holds no private key in clear: private_jwk is empty and the sealed bytes hold no trace of d", async () => {
      await service(store(K1)).init();
      const key = await onlyKey(store(K1));
      const d = key.privateJwk.d!;
      const row = await rowOf(key.kid);
      expect(row.privateJwk).toBeNull();
      expect(sealedKeyId(row.sealedPrivateJwk!)).toBe("k1");
      const sealed = Buffer.from(row.sealedPrivateJwk!);
      expect(sealed.includes(Buffer.from(d, "base64url"))).toBe(false);
      expect(sealed.includes(Buffer.from(d, "utf8"))).toBe(false);
      expect(JSON.stringify(row)).not.toContain(d);
      expect(await database.db.select({ kid: signingKeys.kid }).from(signingKeys).where(isNotNull(signingKeys.privateJwk))).toEqual([]);
    });

    it("nothing the row holds signs a token the service accepts; only the real private key does", async () => {
      const svc = service(store(K1));
      await svc.init();
      const key = await onlyKey(store(K1));
      const row = await rowOf(key.kid);
      // The control: the forging code makes accepted tokens when it has the key.
      await expect(svc.verifyAccessToken(await forge(key.privateJwk, key.kid), T0)).resolves.toMatchObject({ userId: U, sessionId: S });
      // The public JWK is no private key.
      await expect(forge(row.publicJwk as JWK, key.kid)).rejects.toThrow();
      // Everything in the sealed value that could be the private scalar, tried as one.
      const candidates = scalarCandidates(Buffer.from(row.sealedPrivateJwk!));
      expect(candidates.length).toBeGreaterThan(80);
      for (const d of candidates) {
        await expect(svc.verifyAccessToken(await forge({ ...(row.publicJwk as JWK), d }, key.kid), T0)).resolves.toBeUndefined();
      }
    });

    it("a database opened with other key-encryption keys loads no key: the error names the kid and the key id, never a key", async () => {
      await service(store(K1)).init();
      const key = await onlyKey(store(K1));
      for (const [kek, message] of [
        [K2, `signing key ${key.kid} is sealed with key-encryption key "k1", which is not configured`],
        // The same id with other bytes: a changed key, or tampering.
        [randomKek("k1"), `signing key ${key.kid} does not open with key-encryption key "k1"`],
      ] as const) {
        const err = await service(store(kek)).init().then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(err?.message).toContain(message);
        for (const secret of [materialOf(K1), materialOf(K2), materialOf(kek), key.privateJwk.d!]) expect(err!.message).not.toContain(secret);
      }
      // The failed instances created no key of their own.
      expect((await database.db.select().from(signingKeys)).map((r) => r.kid)).toEqual([key.kid]);
    });

    it("sealed bytes moved to another key's row do not open there (bound to the kid)", async () => {
      const a = await newSigningKey(at(-HOUR));
      const b = await newSigningKey(at(-2 * HOUR));
      for (const k of [a, b]) await store(K1).insert(k);
      const rowA = await rowOf(a.kid);
      await database.db.update(signingKeys).set({ sealedPrivateJwk: rowA.sealedPrivateJwk }).where(eq(signingKeys.kid, b.kid));
      await expect(store(K1).listUsable(T0)).rejects.toThrow(`signing key ${b.kid} does not open with key-encryption key "k1"`);
    });

    it("KEK rotation: the new first key re-seals every usable key on load, after which the old one can go", async () => {
      const a = service(store(K1));
      await a.init();
      const token = (await a.issueAccessToken({ userId: U, sessionId: S, now: T0 })).token;
      const kid = decodeProtectedHeader(token).kid!;

      await service(store(`${K2},${K1}`)).init();
      expect(sealedKeyId((await rowOf(kid)).sealedPrivateJwk!)).toBe("k2");

      const b = service(store(K2));
      await b.init();
      await expect(b.verifyAccessToken(token, T0)).resolves.toMatchObject({ userId: U });
      expect(decodeProtectedHeader((await b.issueAccessToken({ userId: U, sessionId: S, now: T0 })).token).kid).toBe(kid);
    });

    it("clear-text rows (written before sealing) are sealed on load, once, by instances loading at once, and keep verifying old tokens", async () => {
      const legacy = await newSigningKey(at(-HOUR));
      const retired = { ...(await newSigningKey(at(-2 * HOUR))), retiresAt: at(-HOUR) };
      // The layout the earlier version wrote: the private JWK as JSON.
      for (const k of [legacy, retired]) await database.db.insert(signingKeys).values({ ...k, privateJwk: k.privateJwk, sealedPrivateJwk: null });
      // A token the earlier version signed with it.
      const old = service(memoryKeyStore([legacy]));
      await old.init();
      const oldToken = (await old.issueAccessToken({ userId: U, sessionId: S, now: T0 })).token;

      const pools = second ? [database, second, database, second] : [database, database];
      const listed = await Promise.all(pools.map((db) => store(K1, db).listUsable(T0)));
      for (const keys of listed) expect(keys).toEqual([legacy]);
      for (const k of [legacy, retired]) {
        const row = await rowOf(k.kid);
        expect(row.privateJwk).toBeNull();
        expect(Buffer.from(row.sealedPrivateJwk!).includes(Buffer.from(k.privateJwk.d!, "base64url"))).toBe(false);
      }

      const svc = service(store(K1));
      await svc.init();
      await expect(svc.verifyAccessToken(oldToken, T0)).resolves.toMatchObject({ userId: U });
      expect(svc.jwks().keys.map((k) => k.kid)).toEqual([legacy.kid]);
      expect(decodeProtectedHeader((await svc.issueAccessToken({ userId: U, sessionId: S, now: T0 })).token).kid).toBe(legacy.kid);
    });
  });
}
