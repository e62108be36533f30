import { decodeProtectedHeader } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { KeyStore } from "../../../src/keys/ports.js";
import { createJwtService, type JwtService } from "../../../src/tokens/jwt-service.js";
import { memoryKeyStore, type MemoryKeyStore } from "../../support/memory-key-store.js";

// Signing-key rotation with a clock the test moves: the next key is published
// before it signs, the old one stays until its last token has expired, and
// instances sharing the store converge on the same keys.

const T0 = new Date("2025-06-15T12:00:00.000Z");
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const TTL = 15 * MINUTE;
const ADMIN_TTL = 20 * MINUTE; // longer than the default, to see the max used
const LEAD = 10 * MINUTE;
const TOLERANCE = 5 * SECOND;
const U = "0190a1b2-0000-7000-8000-0000000000b1";
const S = "0190a1b2-0000-7000-8000-0000000000c1";

const clock = { t: T0 };
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);
const services: JwtService[] = [];

function instance(keys: KeyStore, opts: { refreshIntervalMs?: number; reloadIntervalMs?: number } = {}): JwtService {
  const svc = createJwtService({
    keys,
    issuer: "urn:test:identity",
    audience: "urn:test:platform",
    accessTokenTtlMs: TTL,
    maxAccessTokenTtlMs: ADMIN_TTL,
    publishLeadMs: LEAD,
    now: () => clock.t,
    refreshIntervalMs: 0,
    ...opts,
  });
  services.push(svc);
  return svc;
}

async function started(keys: MemoryKeyStore = memoryKeyStore(), opts: Parameters<typeof instance>[1] = {}) {
  const svc = instance(keys, opts);
  await svc.init();
  return { svc, keys };
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;
const jwksKids = (svc: JwtService) => svc.jwks().keys.map((k) => k.kid);

async function issue(svc: JwtService, now: Date, ttlMs?: number) {
  return (await svc.issueAccessToken({ userId: U, sessionId: S, now, ttlMs })).token;
}

afterEach(() => {
  for (const svc of services.splice(0)) svc.close();
  clock.t = T0;
  vi.useRealTimers();
});

describe("signing-key rotation", () => {
  it("publishes the next key at once but keeps signing with the current one until it activates", async () => {
    const { svc } = await started();
    const [oldKid] = jwksKids(svc);
    const rotated = await svc.rotate();
    expect(rotated).toMatchObject({ rotated: true, activatesAt: at(LEAD) });
    expect(rotated.kid).not.toBe(oldKid);
    expect(jwksKids(svc).sort()).toEqual([oldKid, rotated.kid].sort());

    expect(kidOf(await issue(svc, T0))).toBe(oldKid);
    expect(kidOf(await issue(svc, at(LEAD - 1)))).toBe(oldKid);
    expect(kidOf(await issue(svc, at(LEAD)))).toBe(rotated.kid);
    expect(kidOf(await issue(svc, at(LEAD + TTL)))).toBe(rotated.kid);
  });

  it("retires the old key after the longest token lifetime past activation, plus clock tolerance", async () => {
    const { svc } = await started();
    const [oldKid] = jwksKids(svc);
    const rotated = await svc.rotate();
    const retiresAt = at(LEAD + ADMIN_TTL + TOLERANCE);
    expect(rotated.retired).toEqual([{ kid: oldKid, retiresAt }]);

    // The old key's last token, with the longest lifetime, signed just before activation.
    clock.t = at(LEAD - 1);
    const last = await issue(svc, clock.t, ADMIN_TTL);
    expect(kidOf(last)).toBe(oldKid);
    const lastExpiry = at(LEAD - 1 + ADMIN_TTL);
    for (const when of [at(LEAD), at(LEAD + TTL), new Date(lastExpiry.getTime() - SECOND)]) {
      clock.t = when;
      await expect(svc.verifyAccessToken(last, when)).resolves.toMatchObject({ userId: U, sessionId: S });
      expect(jwksKids(svc)).toContain(oldKid);
    }

    clock.t = new Date(retiresAt.getTime() - 1);
    expect(jwksKids(svc)).toContain(oldKid);
    clock.t = retiresAt;
    expect(jwksKids(svc)).toEqual([rotated.kid]);
    await expect(svc.verifyAccessToken(last, retiresAt)).resolves.toBeUndefined();
  });

  it("refuses a second rotation while one is pending, and allows the next after activation", async () => {
    const { svc, keys } = await started();
    const first = await svc.rotate();
    clock.t = at(LEAD / 2);
    const again = await svc.rotate();
    expect(again).toEqual({ rotated: false, kid: first.kid, activatesAt: first.activatesAt, retired: [] });
    expect(keys.rows).toHaveLength(2);

    clock.t = at(LEAD);
    const second = await svc.rotate();
    expect(second.rotated).toBe(true);
    // Only the key that was signing gets a retirement; the first one keeps its date.
    expect(second.retired).toEqual([{ kid: first.kid, retiresAt: at(2 * LEAD + ADMIN_TTL + TOLERANCE) }]);
    expect(jwksKids(svc)).toHaveLength(3);
  });

  it("creates one key when two instances rotate at the same moment", async () => {
    const keys = memoryKeyStore();
    const a = await started(keys);
    const b = await started(keys);
    const [ra, rb] = await Promise.all([a.svc.rotate(), b.svc.rotate()]);
    expect([ra.rotated, rb.rotated].sort()).toEqual([false, true]);
    expect(ra.kid).toBe(rb.kid);
    expect(keys.rows).toHaveLength(2);
  });

  it("lets a second instance sharing the store learn the new key on its periodic reload", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const keys = memoryKeyStore();
    const a = await started(keys);
    const b = await started(keys, { refreshIntervalMs: MINUTE });
    const rotated = await a.svc.rotate();
    expect(jwksKids(b.svc)).not.toContain(rotated.kid);

    const reads = keys.lists;
    vi.advanceTimersByTime(MINUTE);
    expect(keys.lists).toBe(reads + 1);
    await vi.waitFor(() => expect(jwksKids(b.svc)).toContain(rotated.kid));

    // B signs with the new key from its activation, and A verifies those tokens.
    const fromB = await issue(b.svc, at(LEAD));
    expect(kidOf(fromB)).toBe(rotated.kid);
    await expect(a.svc.verifyAccessToken(fromB, at(LEAD))).resolves.toMatchObject({ userId: U });
  });

  it("verifies a token signed with a key another instance rotated in before its own reload (unknown kid)", async () => {
    const keys = memoryKeyStore();
    const a = await started(keys);
    const b = await started(keys, { reloadIntervalMs: 0 });
    const rotated = await a.svc.rotate({ immediate: true });
    const token = await issue(a.svc, T0);
    expect(kidOf(token)).toBe(rotated.kid);
    await expect(b.svc.verifyAccessToken(token, T0)).resolves.toMatchObject({ userId: U });
  });

  it("stops the periodic reload on close()", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const { svc, keys } = await started(memoryKeyStore(), { refreshIntervalMs: MINUTE });
    svc.close();
    const reads = keys.lists;
    vi.advanceTimersByTime(10 * MINUTE);
    expect(keys.lists).toBe(reads);
  });

  it("keeps serving the loaded keys when a periodic reload fails, and reports it", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const keys = memoryKeyStore();
    const errors: unknown[] = [];
    const svc = createJwtService({
      keys,
      issuer: "urn:test:identity",
      audience: "urn:test:platform",
      accessTokenTtlMs: TTL,
      now: () => clock.t,
      refreshIntervalMs: MINUTE,
      onRefreshError: (err) => errors.push(err),
    });
    services.push(svc);
    await svc.init();
    const kids = jwksKids(svc);
    keys.listUsable = () => Promise.reject(new Error("database down"));
    vi.advanceTimersByTime(MINUTE);
    await vi.waitFor(() => expect(errors).toHaveLength(1));
    expect(jwksKids(svc)).toEqual(kids);
    await expect(issue(svc, T0)).resolves.toBeTypeOf("string");
  });

  describe("immediate rotation (a leaked key)", () => {
    it("signs with the new key at once and refuses every token of the old one at once", async () => {
      const { svc } = await started();
      const [oldKid] = jwksKids(svc);
      const old = await issue(svc, T0);
      await expect(svc.verifyAccessToken(old, T0)).resolves.toBeDefined(); // control (and now in the verified cache)

      clock.t = at(SECOND);
      const rotated = await svc.rotate({ immediate: true });
      expect(rotated).toMatchObject({ rotated: true, activatesAt: at(SECOND), retired: [{ kid: oldKid, retiresAt: at(SECOND) }] });
      expect(jwksKids(svc)).toEqual([rotated.kid]);
      await expect(svc.verifyAccessToken(old, clock.t)).resolves.toBeUndefined();
      expect(kidOf(await issue(svc, clock.t))).toBe(rotated.kid);
    });

    it("replaces a pending key too, and other instances refuse the old tokens after their reload", async () => {
      const keys = memoryKeyStore();
      const a = await started(keys);
      const b = await started(keys);
      const old = await issue(b.svc, T0);
      const pending = await a.svc.rotate();
      const emergency = await a.svc.rotate({ immediate: true });
      expect(emergency.rotated).toBe(true);
      expect(emergency.retired.map((r) => r.kid)).toContain(pending.kid);
      expect(jwksKids(a.svc)).toEqual([emergency.kid]);

      await expect(b.svc.verifyAccessToken(old, T0)).resolves.toBeDefined(); // B has not reloaded yet
      await b.svc.reload();
      await expect(b.svc.verifyAccessToken(old, T0)).resolves.toBeUndefined();
      expect(kidOf(await issue(b.svc, T0))).toBe(emergency.kid);
    });
  });
});
