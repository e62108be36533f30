import { exportJWK } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { createKeyRing, newSigningKey, type KeyRing } from "../../../src/tokens/key-ring.js";
import { memoryKeyStore, type MemoryKeyStore } from "../../support/memory-key-store.js";

// The key ring on its own, as the rotate-signing-key command uses it: no
// token is signed here (jwt.test.ts and key-rotation.test.ts check the keys
// through the tokens they sign and verify).

const NOW = new Date("2025-06-15T12:00:00.000Z");
const HOUR = 3_600_000;
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs);
const rings: KeyRing[] = [];

function ring(store: MemoryKeyStore, opts: { reloadIntervalMs?: number } = {}): KeyRing {
  const r = createKeyRing({ keys: store, maxAccessTokenTtlMs: 15 * 60_000, refreshIntervalMs: 0, now: () => NOW, ...opts });
  rings.push(r);
  return r;
}

afterEach(() => {
  for (const r of rings.splice(0)) r.close();
});

describe("key ring", () => {
  it("signs with the newest key that has activated, and has none before any activates", async () => {
    const old = await newSigningKey(at(-2 * HOUR));
    const current = await newSigningKey(at(-HOUR));
    const next = { ...(await newSigningKey(NOW)), activatesAt: at(HOUR) };
    const r = ring(memoryKeyStore([old, current, next]));
    await r.init();
    expect(r.signingKey(NOW).kid).toBe(current.kid);
    expect(r.signingKey(at(2 * HOUR)).kid).toBe(next.kid);
    expect(() => r.signingKey(at(-3 * HOUR))).toThrow("no active signing key");
  });

  it("gives the public key of a usable kid only, and never a private part", async () => {
    const retiring = { ...(await newSigningKey(at(-2 * HOUR))), retiresAt: at(HOUR) };
    const current = await newSigningKey(at(-HOUR));
    const r = ring(memoryKeyStore([retiring, current]));
    await r.init();
    const key = await r.verificationKey(current.kid, NOW);
    expect(key && (await exportJWK(key))).toEqual({ kty: "OKP", crv: "Ed25519", x: current.publicJwk.x });
    expect(r.isUsable(retiring.kid, NOW)).toBe(true);
    // Past its retiresAt the loaded key verifies nothing, before any reload.
    expect(r.isUsable(retiring.kid, at(2 * HOUR))).toBe(false);
    await expect(r.verificationKey(retiring.kid, at(2 * HOUR))).resolves.toBeUndefined();
    expect(r.isUsable("unknown", NOW)).toBe(false);
  });

  it("reloads for an unknown kid at most once per reloadIntervalMs, and finds a key created elsewhere", async () => {
    const store = memoryKeyStore();
    const throttled = ring(store, { reloadIntervalMs: 60_000 });
    const eager = ring(store, { reloadIntervalMs: 0 });
    await throttled.init();
    await eager.init();
    const added = await newSigningKey(NOW);
    await store.insert(added);

    const before = store.lists;
    await expect(throttled.verificationKey(added.kid, NOW)).resolves.toBeUndefined();
    expect(store.lists).toBe(before);
    await expect(eager.verificationKey(added.kid, NOW)).resolves.toBeDefined();
    expect(store.lists).toBe(before + 1);
  });

  it("rotate() publishes the next key and retires the current one after the longest token lifetime and the clock tolerance", async () => {
    const store = memoryKeyStore();
    const r = createKeyRing({ keys: store, maxAccessTokenTtlMs: 20 * 60_000, publishLeadMs: 10 * 60_000, refreshIntervalMs: 0, now: () => NOW });
    rings.push(r);
    await r.init();
    const first = r.signingKey(NOW).kid;
    const rotated = await r.rotate();
    expect(rotated).toEqual({
      rotated: true,
      kid: expect.any(String),
      activatesAt: at(10 * 60_000),
      retired: [{ kid: first, retiresAt: at(10 * 60_000 + 20 * 60_000 + 5_000) }],
    });
    expect(r.jwks().keys.map((k) => k.kid).sort()).toEqual([first, rotated.kid].sort());
    expect(r.signingKey(NOW).kid).toBe(first);
  });
});
