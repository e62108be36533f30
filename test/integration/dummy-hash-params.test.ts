import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PasswordHasher } from "../../src/hashing/ports.js";
import { createArgon2Hasher, parsePhc } from "../../src/hashing/argon2.js";
import { passwordCredentials } from "../../src/storage/schema.js";
import { rest, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { registerUser } from "../support/users.js";

// After an operator raises ARGON2_TIME_COST, accounts keep their old-cost
// hash until they log in again. A login for an unknown address must then be
// verified at one of the costs in use, not always the new one: otherwise a
// fast wrong-password answer proves the account exists. Asserted through an
// injected hasher that records which PHC string each login verified (timing
// itself would be a flaky measure here).

/** The real argon2id hasher at the new cost, recording every hash it verifies against. */
function recordingHasher() {
  const inner = createArgon2Hasher({ memoryKib: 8192, timeCost: 2, parallelism: 1 }, { concurrency: 2, maxQueue: 128, queueTimeoutMs: 5_000 });
  const verified: string[] = [];
  const hasher: PasswordHasher = {
    hash: (p) => inner.hash(p),
    verify: (h, p) => (verified.push(h), inner.verify(h, p)),
    needsRehash: (h) => inner.needsRehash(h),
  };
  return { hasher, verified };
}

const timeCost = (phc: string) => parsePhc(phc)?.params.timeCost;

for (const backend of backends) {
  describe.skipIf(backend.skip)(`dummy hashes for every argon2 cost in use (${backend.name})`, () => {
    let s: TestServer;
    const recording = recordingHasher();
    let oldAccounts: Awaited<ReturnType<typeof registerUser>>[];

    beforeAll(async () => {
      // Accounts registered at t=1 (the test cost), then the cost raised to t=2.
      const first = await startTestServer(backend.name, { env: { SPRAY_SOURCE_ACCOUNTS: "100000", SPRAY_PASSWORD_ACCOUNTS: "100000" } });
      oldAccounts = [await registerUser(first), await registerUser(first)];
      s = await first.restart({ env: { ARGON2_TIME_COST: "2" }, overrides: { hasher: recording.hasher } });
    });
    afterAll(async () => {
      await s?.destroy();
    });

    async function verifiedFor(email: string, password = "not the password 1"): Promise<string> {
      const before = recording.verified.length;
      const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password } });
      expect(r.status).toBe(401);
      expect(recording.verified.length).toBe(before + 1);
      return recording.verified.at(-1)!;
    }

    it("unknown addresses are verified against an old-cost dummy for some addresses and a new-cost one for others", async () => {
      const stored = await s.app.database.db.select({ hash: passwordCredentials.passwordHash }).from(passwordCredentials);
      expect(stored.map((r) => timeCost(r.hash))).toEqual([1, 1]);
      const costs = new Map<string, number | undefined>();
      for (let i = 0; i < 24; i++) {
        const email = uniqueEmail("unknown");
        const hash = await verifiedFor(email);
        costs.set(email, timeCost(hash));
        // A dummy, never an account's own hash.
        expect(stored.map((r) => r.hash)).not.toContain(hash);
      }
      // Two sets in use: each is picked for some of 24 addresses (all alike: odds 2^-23).
      expect(new Set(costs.values())).toEqual(new Set([1, 2]));
      // Every address keeps its dummy, as an account keeps its hash.
      for (const [email, cost] of [...costs].slice(0, 6)) expect(timeCost(await verifiedFor(email))).toBe(cost);
      // Spelling does not matter: the address is canonical first.
      const [email, cost] = [...costs][0]!;
      expect(timeCost(await verifiedFor(`  ${email.toUpperCase()} `))).toBe(cost);
    });

    it("a wrong password for an old account is verified against its own old-cost hash", async () => {
      const victim = oldAccounts[0]!;
      const [row] = await s.app.database.db
        .select({ hash: passwordCredentials.passwordHash })
        .from(passwordCredentials)
        .where(eq(passwordCredentials.userId, victim.userId));
      expect(await verifiedFor(victim.email)).toBe(row!.hash);
      expect(timeCost(row!.hash)).toBe(1);
    });

    it("a login re-hashes the account at the new cost", async () => {
      const u = oldAccounts[1]!;
      expect((await rest(s.baseUrl, "POST", "/login", { body: { email: u.email, password: u.password } })).status).toBe(201);
      const [row] = await s.app.database.db
        .select({ hash: passwordCredentials.passwordHash })
        .from(passwordCredentials)
        .where(eq(passwordCredentials.userId, u.userId));
      expect(timeCost(row!.hash)).toBe(2);
    });
  });
}
