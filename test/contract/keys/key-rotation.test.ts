import { decodeProtectedHeader } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { describeRotation, rotateSigningKey } from "../../../src/cli/rotate-signing-key.js";
import { loadConfig } from "../../../src/config/config.js";
import type { Database } from "../../../src/storage/db.js";
import { createKeyStore } from "../../../src/storage/key-store.js";
import { signingKeys } from "../../../src/storage/schema.js";
import type { KeyStore } from "../../../src/keys/ports.js";
import { createJwtService, type JwtService } from "../../../src/tokens/jwt-service.js";
import { newSigningKey } from "../../../src/tokens/key-ring.js";
import { backends, openSharedTestDatabase } from "../../support/databases.js";
import { TEST_KEY_ENCRYPTION_KEYS, testBox } from "../../support/keys.js";

// KeyStore.rotate on the real databases, and two services sharing one store.
// Each backend gets a database of its own: rotation touches every key.

const T0 = new Date("2025-06-15T12:00:00.000Z");
const MINUTE = 60_000;
const LEAD = 10 * MINUTE;
const TTL = 15 * MINUTE;
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);
const U = "0190a1b2-0000-7000-8000-0000000000b1";
const S = "0190a1b2-0000-7000-8000-0000000000c1";

for (const backend of backends) {
  describe.skipIf(backend.skip)(`signing-key rotation: ${backend.name}`, () => {
    let database: Database;
    // PostgreSQL: a second pool on the same database, as another instance has.
    let second: Database | undefined;
    let destroy: (() => Promise<void>) | undefined;
    let keys: KeyStore;
    const clock = { t: T0 };
    const services: JwtService[] = [];

    function service(store: KeyStore = keys): JwtService {
      const svc = createJwtService({
        keys: store,
        issuer: "urn:test:identity",
        audience: "urn:test:platform",
        accessTokenTtlMs: TTL,
        publishLeadMs: LEAD,
        refreshIntervalMs: 0,
        now: () => clock.t,
      });
      services.push(svc);
      return svc;
    }

    beforeAll(async () => {
      ({ database, second, destroy } = await openSharedTestDatabase(backend.name, 4));
      keys = createKeyStore(database.db, testBox());
    });

    afterEach(async () => {
      for (const svc of services.splice(0)) svc.close();
      clock.t = T0;
      await database.db.delete(signingKeys);
    });

    afterAll(async () => {
      await destroy?.();
    });

    it("inserts the next key and retires the others no later than asked", async () => {
      const current = await newSigningKey(at(-MINUTE));
      const retiringSoon = { ...(await newSigningKey(at(-60 * MINUTE))), retiresAt: at(5 * MINUTE) };
      const retired = { ...(await newSigningKey(at(-120 * MINUTE))), retiresAt: at(-MINUTE) };
      for (const k of [current, retiringSoon, retired]) await keys.insert(k);
      const next = { ...(await newSigningKey(T0)), activatesAt: at(LEAD) };

      const result = await keys.rotate({ next, retireOthersAt: at(LEAD + TTL), now: T0, force: false });
      expect(result).toEqual({ rotated: true, retired: [{ kid: current.kid, retiresAt: at(LEAD + TTL) }] });
      const listed = await keys.listUsable(T0);
      expect(listed.map((k) => [k.kid, k.retiresAt])).toEqual([
        [next.kid, null],
        [current.kid, at(LEAD + TTL)],
        [retiringSoon.kid, at(5 * MINUTE)],
      ]);
      expect(listed[0]).toEqual(next);
    });

    it("does nothing while a key is pending, unless forced", async () => {
      const current = await newSigningKey(at(-MINUTE));
      const pending = { ...(await newSigningKey(T0)), activatesAt: at(LEAD) };
      await keys.insert(current);
      await keys.rotate({ next: pending, retireOthersAt: at(LEAD + TTL), now: T0, force: false });

      const another = { ...(await newSigningKey(at(MINUTE))), activatesAt: at(MINUTE + LEAD) };
      await expect(keys.rotate({ next: another, retireOthersAt: at(2 * LEAD), now: at(MINUTE), force: false })).resolves.toEqual({
        rotated: false,
        pending,
      });
      expect((await keys.listUsable(at(MINUTE))).map((k) => k.kid)).toEqual([pending.kid, current.kid]);

      const emergency = await newSigningKey(at(MINUTE));
      const forced = await keys.rotate({ next: emergency, retireOthersAt: at(MINUTE), now: at(MINUTE), force: true });
      expect(forced.rotated && forced.retired.map((r) => r.kid).sort()).toEqual([current.kid, pending.kid].sort());
      expect((await keys.listUsable(at(MINUTE))).map((k) => k.kid)).toEqual([emergency.kid]);
    });

    it("publishes exactly one new key when instances rotate at the same moment", async () => {
      const stores = [keys, createKeyStore((second ?? database).db, testBox()), keys, createKeyStore((second ?? database).db, testBox())];
      const instances = stores.map((s) => service(s));
      await instances[0]!.init();
      for (const svc of instances.slice(1)) await svc.init();
      const results = await Promise.all(instances.map((svc) => svc.rotate()));
      expect(results.filter((r) => r.rotated)).toHaveLength(1);
      expect(new Set(results.map((r) => r.kid)).size).toBe(1);
      expect(await keys.listUsable(T0)).toHaveLength(2);
    });

    it("carries a key rotated on one instance to another through the store", async () => {
      const a = service();
      await a.init();
      const b = service(second ? createKeyStore(second.db, testBox()) : keys);
      await b.init();
      const oldToken = (await b.issueAccessToken({ userId: U, sessionId: S, now: T0 })).token;
      const rotated = await a.rotate();

      await b.reload();
      expect(b.jwks().keys.map((k) => k.kid)).toContain(rotated.kid);
      clock.t = at(LEAD);
      const newToken = (await b.issueAccessToken({ userId: U, sessionId: S, now: clock.t })).token;
      expect(decodeProtectedHeader(newToken).kid).toBe(rotated.kid);
      await expect(a.verifyAccessToken(newToken, clock.t)).resolves.toMatchObject({ userId: U });
      await expect(a.verifyAccessToken(oldToken, at(TTL - MINUTE))).resolves.toMatchObject({ userId: U });
    });

    it("rotates from the operator command and prints the new kid and activation time", async () => {
      const config = loadConfig({ KEY_PUBLISH_LEAD: "15m", KEY_ENCRYPTION_KEYS: TEST_KEY_ENCRYPTION_KEYS });
      const result = await rotateSigningKey({ config, immediate: false, database, now: () => T0 });
      expect(result).toMatchObject({ rotated: true, activatesAt: at(15 * MINUTE) });
      // The first rotation of an empty store creates the first key, then the next one.
      expect(result.retired).toHaveLength(1);
      // Retired after the longest lifetime of any role's token.
      const longest = Math.max(...Object.values(config.lifetimes).map((l) => l.accessTokenTtlMs), config.jwt.accessTokenTtlMs);
      expect(result.retired[0]!.retiresAt).toEqual(at(15 * MINUTE + longest + 5_000));
      const text = describeRotation(result, false);
      expect(text).toContain(result.kid);
      expect(text).toContain(at(15 * MINUTE).toISOString());

      const again = await rotateSigningKey({ config, immediate: false, database, now: () => at(MINUTE) });
      expect(again).toMatchObject({ rotated: false, kid: result.kid });
      expect(describeRotation(again, false)).toMatch(/already pending/);

      const now = await rotateSigningKey({ config, immediate: true, database, now: () => at(2 * MINUTE) });
      expect(now).toMatchObject({ rotated: true, activatesAt: at(2 * MINUTE) });
      expect((await keys.listUsable(at(2 * MINUTE))).map((k) => k.kid)).toEqual([now.kid]);
    });
  });
}
