import { randomBytes } from "node:crypto";
import { count, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MfaStore } from "../../../src/mfa/ports.js";
import type { LoginHistoryStore } from "../../../src/risk/assessor.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import type { Database } from "../../../src/storage/db.js";
import { createLoginHistoryStore } from "../../../src/storage/login-history-store.js";
import { createMfaStore, MAX_CHALLENGE_ATTEMPTS, pruneExpiredChallenges } from "../../../src/storage/mfa-store.js";
import { knownDevices, knownNetworks, lastLogins, mfaChallenges, mfaTotp, recoveryCodes, users as usersTable } from "../../../src/storage/schema.js";
import { createUserStore } from "../../../src/storage/user-store.js";
import { backends, openTestDatabase } from "../../support/databases.js";

// The second-factor and login-history stores, run against every backend.
// Each test makes its own users, so tests share a database without sharing data.

const T0 = new Date("2025-06-15T12:00:00.000Z");
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);
const STEP = 58_340_000; // a plausible TOTP time step

function hash(): Uint8Array {
  return new Uint8Array(randomBytes(32));
}

function hashes(n: number): Uint8Array[] {
  return Array.from({ length: n }, hash);
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`MFA and login-history storage contract: ${backend.name}`, () => {
    let database: Database;
    let destroy: (() => Promise<void>) | undefined;
    let mfa: MfaStore;
    let history: LoginHistoryStore;

    beforeAll(async () => {
      const opened = await openTestDatabase(backend.name);
      database = opened.database;
      destroy = opened.destroy;
      mfa = createMfaStore(database.db);
      history = createLoginHistoryStore(database.db);
    });

    afterAll(async () => {
      await destroy?.();
    });

    async function aUser(): Promise<string> {
      const id = uuidv7(T0);
      await createUserStore(database.db).create({
        id,
        email: `mfa-${randomBytes(6).toString("hex")}@example.com`,
        passwordHash: "$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$aGFzaA",
        profile: {},
        now: T0,
      });
      return id;
    }

    /** A user with confirmed TOTP (last used step STEP) and the given recovery codes. */
    async function userWithTotp(codes: Uint8Array[] = hashes(3)): Promise<{ userId: string; secret: Uint8Array; codes: Uint8Array[] }> {
      const userId = await aUser();
      const secret = hash();
      expect(await mfa.startTotp({ userId, sealedSecret: secret, now: T0, expiresAt: at(10 * MINUTE) })).toBe(true);
      expect(await mfa.confirmTotp({ userId, sealedSecret: secret, step: STEP, now: at(MINUTE), codeHashes: codes })).toBe(true);
      return { userId, secret, codes };
    }

    describe("TOTP enrolment", () => {
      it("has no record for a user who never enrolled", async () => {
        const userId = await aUser();
        await expect(mfa.getTotp(userId)).resolves.toBeUndefined();
        await expect(mfa.getTotp(uuidv7(T0))).resolves.toBeUndefined();
      });

      it("starts a pending enrolment, and a new start replaces it with a fresh secret and expiry", async () => {
        const userId = await aUser();
        const first = hash();
        await expect(mfa.startTotp({ userId, sealedSecret: first, now: T0, expiresAt: at(10 * MINUTE) })).resolves.toBe(true);
        await expect(mfa.getTotp(userId)).resolves.toEqual({
          sealedSecret: first,
          confirmedAt: undefined,
          lastUsedStep: undefined,
          pendingExpiresAt: at(10 * MINUTE),
        });
        const second = hash();
        await expect(mfa.startTotp({ userId, sealedSecret: second, now: at(MINUTE), expiresAt: at(11 * MINUTE) })).resolves.toBe(true);
        await expect(mfa.getTotp(userId)).resolves.toEqual({
          sealedSecret: second,
          confirmedAt: undefined,
          lastUsedStep: undefined,
          pendingExpiresAt: at(11 * MINUTE),
        });
        const [row] = await database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, userId));
        expect(row!.createdAt).toEqual(at(MINUTE));
        // The first secret can no longer be confirmed.
        await expect(mfa.confirmTotp({ userId, sealedSecret: first, step: STEP, now: at(2 * MINUTE), codeHashes: hashes(2) })).resolves.toBe(false);
      });

      it("never replaces a confirmed authenticator", async () => {
        const { userId, secret, codes } = await userWithTotp();
        await expect(mfa.startTotp({ userId, sealedSecret: hash(), now: at(HOUR), expiresAt: at(2 * HOUR) })).resolves.toBe(false);
        await expect(mfa.getTotp(userId)).resolves.toEqual({
          sealedSecret: secret,
          confirmedAt: at(MINUTE),
          lastUsedStep: STEP,
          pendingExpiresAt: undefined,
        });
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(codes.length);
      });

      it("confirms: records the step as used and replaces any earlier recovery codes", async () => {
        const userId = await aUser();
        const stale = hashes(2);
        await mfa.replaceRecoveryCodes(userId, stale, T0);
        const secret = hash();
        await mfa.startTotp({ userId, sealedSecret: secret, now: T0, expiresAt: at(10 * MINUTE) });
        const codes = hashes(10);
        await expect(mfa.confirmTotp({ userId, sealedSecret: secret, step: STEP, now: at(MINUTE), codeHashes: codes })).resolves.toBe(true);
        await expect(mfa.getTotp(userId)).resolves.toEqual({
          sealedSecret: secret,
          confirmedAt: at(MINUTE),
          lastUsedStep: STEP,
          pendingExpiresAt: undefined,
        });
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(10);
        await expect(mfa.useRecoveryCode(userId, stale[0]!, at(2 * MINUTE))).resolves.toBe(false);
        await expect(mfa.useRecoveryCode(userId, codes[9]!, at(2 * MINUTE))).resolves.toBe(true);
        // The confirming code's step cannot be used again.
        await expect(mfa.useTotpStep(userId, STEP)).resolves.toBe(false);
        // Confirming twice does nothing.
        await expect(mfa.confirmTotp({ userId, sealedSecret: secret, step: STEP + 5, now: at(3 * MINUTE), codeHashes: hashes(10) })).resolves.toBe(false);
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(9);
        expect((await mfa.getTotp(userId))!.lastUsedStep).toBe(STEP);
      });

      it("refuses a stale secret and changes nothing", async () => {
        const userId = await aUser();
        const secret = hash();
        await mfa.startTotp({ userId, sealedSecret: secret, now: T0, expiresAt: at(10 * MINUTE) });
        await expect(mfa.confirmTotp({ userId, sealedSecret: hash(), step: STEP, now: at(MINUTE), codeHashes: hashes(10) })).resolves.toBe(false);
        await expect(mfa.getTotp(userId)).resolves.toMatchObject({ sealedSecret: secret, confirmedAt: undefined, pendingExpiresAt: at(10 * MINUTE) });
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(0);
      });

      it("refuses an expired enrolment and inserts no codes", async () => {
        const userId = await aUser();
        const secret = hash();
        await mfa.startTotp({ userId, sealedSecret: secret, now: T0, expiresAt: at(10 * MINUTE) });
        await expect(mfa.confirmTotp({ userId, sealedSecret: secret, step: STEP, now: at(10 * MINUTE), codeHashes: hashes(10) })).resolves.toBe(false);
        await expect(mfa.getTotp(userId)).resolves.toMatchObject({ confirmedAt: undefined });
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(0);
        // Nor for a user who never enrolled.
        const other = await aUser();
        await expect(mfa.confirmTotp({ userId: other, sealedSecret: secret, step: STEP, now: T0, codeHashes: hashes(1) })).resolves.toBe(false);
        await expect(mfa.remainingRecoveryCodes(other)).resolves.toBe(0);
      });

      it("confirms a secret passed as a view into a larger buffer", async () => {
        const userId = await aUser();
        const backing = randomBytes(64);
        const secret = new Uint8Array(backing.buffer, backing.byteOffset + 16, 32);
        await mfa.startTotp({ userId, sealedSecret: secret, now: T0, expiresAt: at(10 * MINUTE) });
        expect((await mfa.getTotp(userId))!.sealedSecret).toEqual(new Uint8Array(secret));
        await expect(mfa.confirmTotp({ userId, sealedSecret: new Uint8Array(secret), step: STEP, now: T0, codeHashes: [] })).resolves.toBe(true);
      });
    });

    describe("TOTP use", () => {
      it("accepts only later steps", async () => {
        const { userId } = await userWithTotp();
        await expect(mfa.useTotpStep(userId, STEP + 1)).resolves.toBe(true);
        await expect(mfa.useTotpStep(userId, STEP + 1)).resolves.toBe(false);
        await expect(mfa.useTotpStep(userId, STEP)).resolves.toBe(false);
        await expect(mfa.useTotpStep(userId, STEP + 3)).resolves.toBe(true);
        await expect(mfa.useTotpStep(userId, STEP + 2)).resolves.toBe(false);
        expect((await mfa.getTotp(userId))!.lastUsedStep).toBe(STEP + 3);
      });

      it("refuses any step of an unconfirmed enrolment or of a user without TOTP", async () => {
        const userId = await aUser();
        await mfa.startTotp({ userId, sealedSecret: hash(), now: T0, expiresAt: at(10 * MINUTE) });
        await expect(mfa.useTotpStep(userId, STEP)).resolves.toBe(false);
        await expect(mfa.useTotpStep(await aUser(), STEP)).resolves.toBe(false);
        expect((await mfa.getTotp(userId))!.lastUsedStep).toBeUndefined();
      });

      it("lets exactly one of 10 concurrent uses of one step through", async () => {
        const { userId } = await userWithTotp();
        const results = await Promise.all(Array.from({ length: 10 }, () => mfa.useTotpStep(userId, STEP + 1)));
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await mfa.getTotp(userId))!.lastUsedStep).toBe(STEP + 1);
      });

      it("re-seals only when the secret is still the expected one", async () => {
        const { userId, secret } = await userWithTotp();
        const next = hash();
        await mfa.resealTotp(userId, hash(), next);
        expect((await mfa.getTotp(userId))!.sealedSecret).toEqual(secret);
        await mfa.resealTotp(userId, secret, next);
        await expect(mfa.getTotp(userId)).resolves.toMatchObject({ sealedSecret: next, confirmedAt: at(MINUTE), lastUsedStep: STEP });
      });

      it("disables TOTP with its recovery codes; false when there was no confirmed TOTP", async () => {
        const { userId, codes } = await userWithTotp();
        const other = await userWithTotp();
        await expect(mfa.disableTotp(userId)).resolves.toBe(true);
        await expect(mfa.getTotp(userId)).resolves.toBeUndefined();
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(0);
        const [left] = await database.db.select({ n: count() }).from(recoveryCodes).where(eq(recoveryCodes.userId, userId));
        expect(left!.n).toBe(0);
        await expect(mfa.useRecoveryCode(userId, codes[0]!, at(HOUR))).resolves.toBe(false);
        await expect(mfa.disableTotp(userId)).resolves.toBe(false);
        // Others are untouched.
        await expect(mfa.remainingRecoveryCodes(other.userId)).resolves.toBe(3);
        await expect(mfa.getTotp(other.userId)).resolves.toMatchObject({ confirmedAt: at(MINUTE) });
        // A pending enrolment is not "TOTP on".
        const pending = await aUser();
        await mfa.startTotp({ userId: pending, sealedSecret: hash(), now: T0, expiresAt: at(10 * MINUTE) });
        await expect(mfa.disableTotp(pending)).resolves.toBe(false);
      });
    });

    describe("recovery codes", () => {
      it("uses each code once, only for its own user", async () => {
        const { userId, codes } = await userWithTotp(hashes(3));
        const other = await userWithTotp(hashes(3));
        await expect(mfa.useRecoveryCode(other.userId, codes[0]!, at(HOUR))).resolves.toBe(false);
        await expect(mfa.useRecoveryCode(userId, hash(), at(HOUR))).resolves.toBe(false);
        await expect(mfa.useRecoveryCode(userId, codes[0]!, at(HOUR))).resolves.toBe(true);
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(2);
        await expect(mfa.useRecoveryCode(userId, codes[0]!, at(2 * HOUR))).resolves.toBe(false);
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(2);
        await expect(mfa.remainingRecoveryCodes(other.userId)).resolves.toBe(3);
        const [row] = await database.db.select().from(recoveryCodes).where(eq(recoveryCodes.codeHash, Buffer.from(codes[0]!)));
        expect(row!.usedAt).toEqual(at(HOUR));
      });

      it("lets exactly one of 20 concurrent uses of one code through", async () => {
        const { userId, codes } = await userWithTotp(hashes(2));
        const results = await Promise.all(Array.from({ length: 20 }, () => mfa.useRecoveryCode(userId, codes[1]!, at(HOUR))));
        expect(results.filter(Boolean)).toHaveLength(1);
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(1);
      });

      it("replacing invalidates the old codes, used or not", async () => {
        const { userId, codes } = await userWithTotp(hashes(3));
        await mfa.useRecoveryCode(userId, codes[0]!, at(HOUR));
        const fresh = hashes(4);
        await mfa.replaceRecoveryCodes(userId, fresh, at(2 * HOUR));
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(4);
        for (const old of codes) await expect(mfa.useRecoveryCode(userId, old, at(3 * HOUR))).resolves.toBe(false);
        await expect(mfa.useRecoveryCode(userId, fresh[2]!, at(3 * HOUR))).resolves.toBe(true);
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(3);
        await mfa.replaceRecoveryCodes(userId, [], at(4 * HOUR));
        await expect(mfa.remainingRecoveryCodes(userId)).resolves.toBe(0);
      });
    });

    describe("challenges", () => {
      async function aChallenge(overrides: { deviceHash?: Uint8Array; expiresAt?: Date; firstFactorAmr?: string[] } = {}) {
        const userId = await aUser();
        const tokenHash = hash();
        await mfa.createChallenge({
          tokenHash,
          userId,
          now: T0,
          expiresAt: overrides.expiresAt ?? at(5 * MINUTE),
          deviceHash: overrides.deviceHash,
          firstFactorAmr: overrides.firstFactorAmr,
        });
        return { userId, tokenHash };
      }

      it("finds an open challenge with its device, until it expires", async () => {
        const device = hash();
        const withDevice = await aChallenge({ deviceHash: device });
        await expect(mfa.findChallenge(withDevice.tokenHash, at(MINUTE))).resolves.toEqual({ userId: withDevice.userId, deviceHash: device, firstFactorAmr: ["pwd"] });
        const without = await aChallenge();
        const found = await mfa.findChallenge(without.tokenHash, at(MINUTE));
        expect(found).toEqual({ userId: without.userId, firstFactorAmr: ["pwd"] });
        expect(found?.deviceHash).toBeUndefined();
        // The first step's factor is kept (an e-mail login); a challenge without one was a password's.
        const byEmail = await aChallenge({ firstFactorAmr: ["email"] });
        await expect(mfa.findChallenge(byEmail.tokenHash, at(MINUTE))).resolves.toEqual({ userId: byEmail.userId, firstFactorAmr: ["email"] });
        await expect(mfa.findChallenge(hash(), at(MINUTE))).resolves.toBeUndefined();
        await expect(mfa.findChallenge(without.tokenHash, at(5 * MINUTE))).resolves.toBeUndefined();
        await expect(mfa.consumeChallenge(without.tokenHash, at(5 * MINUTE))).resolves.toBe(false);
        await expect(mfa.consumeChallenge(without.tokenHash, at(5 * MINUTE - 1))).resolves.toBe(true);
      });

      it(`dies after ${MAX_CHALLENGE_ATTEMPTS} wrong codes`, async () => {
        expect(MAX_CHALLENGE_ATTEMPTS).toBe(5);
        const { userId, tokenHash } = await aChallenge();
        for (let i = 0; i < MAX_CHALLENGE_ATTEMPTS - 1; i++) await mfa.failChallenge(tokenHash);
        await expect(mfa.findChallenge(tokenHash, at(MINUTE))).resolves.toEqual({ userId, firstFactorAmr: ["pwd"] });
        await mfa.failChallenge(tokenHash);
        await expect(mfa.findChallenge(tokenHash, at(MINUTE))).resolves.toBeUndefined();
        await expect(mfa.consumeChallenge(tokenHash, at(MINUTE))).resolves.toBe(false);
        const [row] = await database.db.select().from(mfaChallenges).where(eq(mfaChallenges.tokenHash, Buffer.from(tokenHash)));
        expect(row).toMatchObject({ attempts: MAX_CHALLENGE_ATTEMPTS, consumedAt: null });
      });

      it("is consumed once", async () => {
        const { tokenHash } = await aChallenge();
        await expect(mfa.consumeChallenge(tokenHash, at(MINUTE))).resolves.toBe(true);
        await expect(mfa.findChallenge(tokenHash, at(MINUTE))).resolves.toBeUndefined();
        await expect(mfa.consumeChallenge(tokenHash, at(MINUTE))).resolves.toBe(false);
        await expect(mfa.consumeChallenge(hash(), at(MINUTE))).resolves.toBe(false);
      });

      it("lets exactly one of 20 concurrent consumes through", async () => {
        const { tokenHash } = await aChallenge();
        const results = await Promise.all(Array.from({ length: 20 }, () => mfa.consumeChallenge(tokenHash, at(MINUTE))));
        expect(results.filter(Boolean)).toHaveLength(1);
        const [row] = await database.db.select().from(mfaChallenges).where(eq(mfaChallenges.tokenHash, Buffer.from(tokenHash)));
        expect(row!.consumedAt).toEqual(at(MINUTE));
      });

      it("prunes expired and consumed challenges, keeping open ones", async () => {
        const expired = await aChallenge({ expiresAt: at(MINUTE) });
        const consumed = await aChallenge({ expiresAt: at(HOUR) });
        await mfa.consumeChallenge(consumed.tokenHash, at(MINUTE));
        const open = await aChallenge({ expiresAt: at(HOUR) });
        await expect(pruneExpiredChallenges(database.db, at(2 * MINUTE))).resolves.toBeGreaterThanOrEqual(2);
        const left = async (h: Uint8Array) =>
          (await database.db.select({ n: count() }).from(mfaChallenges).where(eq(mfaChallenges.tokenHash, Buffer.from(h))))[0]!.n;
        expect(await left(expired.tokenHash)).toBe(0);
        expect(await left(consumed.tokenHash)).toBe(0);
        expect(await left(open.tokenHash)).toBe(1);
        await expect(mfa.findChallenge(open.tokenHash, at(2 * MINUTE))).resolves.toEqual({ userId: open.userId, firstFactorAmr: ["pwd"] });
      });
    });

    describe("login history", () => {
      const PARIS = { country: "FR", lat: 48.86, lon: 2.35, accuracyKm: 20 };

      it("is empty for a user without logins (and for an unknown user)", async () => {
        const userId = await aUser();
        const empty = { hasHistory: false, networkKnown: false, countries: [] };
        await expect(history.lookup(userId, hash(), "203.0.113.0/24")).resolves.toEqual(empty);
        await expect(history.lookup(userId, undefined, undefined)).resolves.toEqual(empty);
        await expect(history.lookup(uuidv7(T0), hash(), "203.0.113.0/24")).resolves.toEqual(empty);
      });

      it("records a login and finds its device, network, country and place", async () => {
        const userId = await aUser();
        const device = hash();
        await history.record({ userId, deviceHash: device, network: "203.0.113.0/24", point: PARIS, at: T0, mfa: false });
        await expect(history.lookup(userId, device, "203.0.113.0/24")).resolves.toEqual({
          hasHistory: true,
          device: {},
          networkKnown: true,
          countries: ["FR"],
          last: { at: T0, point: PARIS },
        });
        // Another device and network are new; so is everything for another user.
        const elsewhere = await history.lookup(userId, hash(), "198.51.100.0/24");
        expect(elsewhere).toMatchObject({ hasHistory: true, networkKnown: false });
        expect(elsewhere.device).toBeUndefined();
        const stranger = await history.lookup(await aUser(), device, "203.0.113.0/24");
        expect(stranger).toEqual({ hasHistory: false, networkKnown: false, countries: [] });
        // Nothing presented: nothing known.
        const anonymous = await history.lookup(userId, undefined, undefined);
        expect(anonymous.device).toBeUndefined();
        expect(anonymous.networkKnown).toBe(false);
      });

      it("keeps a device's last MFA time until a later login passes MFA", async () => {
        const userId = await aUser();
        const device = hash();
        await history.record({ userId, deviceHash: device, at: T0, mfa: false });
        expect((await history.lookup(userId, device, undefined)).device).toEqual({});
        await history.record({ userId, deviceHash: device, at: at(HOUR), mfa: true });
        expect((await history.lookup(userId, device, undefined)).device).toEqual({ mfaAt: at(HOUR) });
        await history.record({ userId, deviceHash: device, at: at(2 * HOUR), mfa: false });
        expect((await history.lookup(userId, device, undefined)).device).toEqual({ mfaAt: at(HOUR) });
        await history.record({ userId, deviceHash: device, at: at(3 * HOUR), mfa: true });
        expect((await history.lookup(userId, device, undefined)).device).toEqual({ mfaAt: at(3 * HOUR) });
        const [row] = await database.db.select().from(knownDevices).where(eq(knownDevices.userId, userId));
        expect(row).toMatchObject({ firstSeenAt: T0, lastSeenAt: at(3 * HOUR), mfaAt: at(3 * HOUR) });
      });

      it("lists distinct known countries, without networks of unknown place", async () => {
        const userId = await aUser();
        await history.record({ userId, network: "203.0.113.0/24", point: PARIS, at: T0, mfa: false });
        await history.record({ userId, network: "198.51.100.0/24", point: { ...PARIS, lat: 45.76, lon: 4.84 }, at: at(HOUR), mfa: false });
        await history.record({ userId, network: "192.0.2.0/24", point: { country: "DE", lat: 52.52, lon: 13.4 }, at: at(2 * HOUR), mfa: false });
        await history.record({ userId, network: "2001:db8::/48", at: at(3 * HOUR), mfa: false });
        const found = await history.lookup(userId, undefined, "2001:db8::/48");
        expect([...found.countries].sort()).toEqual(["DE", "FR"]);
        expect(found.networkKnown).toBe(true);
        // The last login had no place: no point, but still a time.
        expect(found.last).toEqual({ at: at(3 * HOUR) });
      });

      it("lists at most 50 countries, the most recently seen", async () => {
        const userId = await aUser();
        for (let i = 0; i < 55; i++) {
          const country = `C${String(i).padStart(2, "0")}`;
          await history.record({ userId, network: `10.0.${i}.0/24`, point: { country, lat: 0, lon: 0 }, at: at(i * MINUTE), mfa: false });
        }
        const { countries } = await history.lookup(userId, undefined, undefined);
        expect(countries).toHaveLength(50);
        expect(countries).not.toContain("C00");
        expect(countries).not.toContain("C04");
        expect(countries).toContain("C05");
        expect(countries).toContain("C54");
      });

      it("keeps the latest login as the last one, and the point without optional fields", async () => {
        const userId = await aUser();
        await history.record({ userId, point: { lat: 1.5, lon: -2.5 }, at: at(HOUR), mfa: false });
        await history.record({ userId, point: PARIS, at: T0, mfa: false });
        const found = await history.lookup(userId, undefined, undefined);
        expect(found.hasHistory).toBe(true);
        expect(found.last).toEqual({ at: at(HOUR), point: { lat: 1.5, lon: -2.5 } });
        expect(found.last!.point).not.toHaveProperty("country");
        expect(found.last!.point).not.toHaveProperty("accuracyKm");
        await history.record({ userId, point: PARIS, at: at(2 * HOUR), mfa: false });
        expect((await history.lookup(userId, undefined, undefined)).last).toEqual({ at: at(2 * HOUR), point: PARIS });
      });

      it("updates a known network's last sighting and country", async () => {
        const userId = await aUser();
        await history.record({ userId, network: "203.0.113.0/24", at: T0, mfa: false });
        await history.record({ userId, network: "203.0.113.0/24", point: PARIS, at: at(HOUR), mfa: false });
        await history.record({ userId, network: "203.0.113.0/24", at: at(2 * HOUR), mfa: false });
        const rows = await database.db.select().from(knownNetworks).where(eq(knownNetworks.userId, userId));
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ country: "FR", firstSeenAt: T0, lastSeenAt: at(2 * HOUR) });
      });
    });

    it("deleting the user deletes its second factors, challenges and history", async () => {
      const { userId } = await userWithTotp(hashes(3));
      await mfa.createChallenge({ tokenHash: hash(), userId, now: T0, expiresAt: at(HOUR), deviceHash: hash() });
      await history.record({ userId, deviceHash: hash(), network: "203.0.113.0/24", point: { country: "FR", lat: 1, lon: 2 }, at: T0, mfa: true });
      const tables = [
        { t: mfaTotp, c: mfaTotp.userId },
        { t: recoveryCodes, c: recoveryCodes.userId },
        { t: mfaChallenges, c: mfaChallenges.userId },
        { t: knownDevices, c: knownDevices.userId },
        { t: knownNetworks, c: knownNetworks.userId },
        { t: lastLogins, c: lastLogins.userId },
      ] as const;
      const counts = async () =>
        Promise.all(tables.map(async ({ t, c }) => (await database.db.select({ n: count() }).from(t).where(eq(c, userId)))[0]!.n));
      expect(await counts()).toEqual([1, 3, 1, 1, 1, 1]);
      await database.db.delete(usersTable).where(eq(usersTable.id, userId));
      expect(await counts()).toEqual([0, 0, 0, 0, 0, 0]);
    });
  });
}
