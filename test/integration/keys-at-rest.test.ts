import { readdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { decodeProtectedHeader, type JWK } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app/app.js";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/shared/logger.js";
import { createSecretBox, parseSecretBoxKeys, sealedKeyId } from "../../src/keys/secret-box.js";
import { openDatabase } from "../../src/storage/db.js";
import { createKeyStore } from "../../src/storage/key-store.js";
import { mfaTotp, serverSecrets, signingKeys } from "../../src/storage/schema.js";
import { rest } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { testBox } from "../support/keys.js";
import { startTestServer, TEST_ENV, type TestServer } from "../support/server.js";
import { login, registerUser } from "../support/users.js";
import { controlledClock, loginRest, mfaUser, STEP } from "../support/mfa.js";

// Keys at rest as an operator meets them: embedded mode's key file across
// restarts, PostgreSQL refused without KEY_ENCRYPTION_KEYS, and a database in
// the layout of the previous version upgraded in place (clear-text signing
// key and server secrets, TOTP secrets under the old database-kept key).

const silent = createLogger("silent");
const profileStatus = async (s: TestServer, token: string) => (await rest(s.baseUrl, "GET", "/user/profile", { token })).status;

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

describe("embedded mode without KEY_ENCRYPTION_KEYS", () => {
  let s: TestServer | undefined;
  afterAll(async () => {
    await s?.destroy();
  });

  it("creates a key file beside the data directory, restarts with it and the same signing key, and the data files alone hold no key", async () => {
    s = await startTestServer("pglite", { env: { KEY_ENCRYPTION_KEYS: "" } });
    const { dataDir } = s.config.database as { dataDir: string };
    const kekPath = `${dataDir}.kek`;
    expect(statSync(kekPath).mode & 0o777).toBe(0o600);
    const user = await registerUser(s);
    const before = await login(s, user.email, user.password);
    const kid = decodeProtectedHeader(before.accessToken).kid;

    s = await s.restart();
    expect((await rest(s.baseUrl, "GET", "/.well-known/jwks.json")).body.keys.map((k: JWK) => k.kid)).toEqual([kid]);
    expect(await profileStatus(s, before.accessToken)).toBe(200);
    expect(decodeProtectedHeader((await login(s, user.email, user.password)).accessToken).kid).toBe(kid);
    const { config } = s;
    await s.stop();
    s = undefined;

    // A copy of the data directory alone: neither the KEK nor the private key is in it.
    const keks = parseSecretBoxKeys(readFileSync(kekPath, "utf8").trim());
    const database = await openDatabase({ kind: "pglite", dataDir });
    const [key] = await createKeyStore(database.db, createSecretBox(keks)).listUsable(new Date());
    await database.close();
    const needles = [Buffer.from(keks[0]!.key), Buffer.from(Buffer.from(keks[0]!.key).toString("base64")), Buffer.from(key!.privateJwk.d!, "base64url"), Buffer.from(key!.privateJwk.d!)];
    const files = filesUnder(dataDir);
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const content = readFileSync(file);
      for (const needle of needles) expect(content.includes(needle), file).toBe(false);
    }

    // Without its key file the database opens nothing, and no new key replaces the lost one.
    renameSync(kekPath, `${kekPath}.away`);
    await expect(createApp(config, silent)).rejects.toThrow(`the key file ${kekPath} that sealed this database's keys is missing`);
    renameSync(`${kekPath}.away`, kekPath);
    const app = await createApp(config, silent);
    expect(app.tokens.jwks().keys.map((k) => k.kid)).toEqual([kid]);
    await app.dispose();
  });
});

describe("PostgreSQL without KEY_ENCRYPTION_KEYS", () => {
  it("refuses to start with a ConfigError before connecting to the database", async () => {
    // Nothing listens there: the refusal comes first.
    const config = loadConfig({ ...TEST_ENV, KEY_ENCRYPTION_KEYS: "", DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" });
    const started = createApp(config, silent);
    await expect(started).rejects.toBeInstanceOf(ConfigError);
    await expect(started).rejects.toThrow(/KEY_ENCRYPTION_KEYS: required with DATABASE_URL/);
  });
});

for (const backend of backends) {
  describe.skipIf(backend.skip)(`upgrade from the clear-text layout (${backend.name})`, () => {
    const c = controlledClock();
    let s: TestServer | undefined;
    afterAll(async () => {
      await s?.destroy();
    });

    it("seals the clear-text signing key and secrets at start; old tokens verify; TOTP secrets under the old database key open and are re-sealed at use", async () => {
      s = await startTestServer(backend.name, { overrides: { clock: c.clock } });
      const u = await mfaUser(s, c.now());
      const box = testBox();
      const { db } = s.app.database;

      // Rewrite the rows as the previous version had them.
      for (const row of await db.select().from(signingKeys)) {
        const privateJwk = JSON.parse(Buffer.from(box.open(row.sealedPrivateJwk!, `signing_key:${row.kid}`)).toString("utf8")) as JWK;
        await db.update(signingKeys).set({ privateJwk, sealedPrivateJwk: null }).where(eq(signingKeys.kid, row.kid));
      }
      const secretsBefore = new Map<string, string>();
      for (const row of await db.select().from(serverSecrets)) {
        const value = box.open(row.sealedValue!, `server_secret:${row.name}`);
        secretsBefore.set(row.name, Buffer.from(value).toString("hex"));
        await db.update(serverSecrets).set({ value, sealedValue: null }).where(eq(serverSecrets.name, row.name));
      }
      const oldTotpKey = new Uint8Array(32).fill(7);
      await db.insert(serverSecrets).values({ name: "mfa_secret_box_key", value: oldTotpKey, createdAt: new Date() });
      const [totp] = await db.select().from(mfaTotp).where(eq(mfaTotp.userId, u.userId));
      const underOldKey = createSecretBox([{ id: "db", key: oldTotpKey }]).seal(box.open(totp!.sealedSecret, u.userId), u.userId);
      await db.update(mfaTotp).set({ sealedSecret: underOldKey }).where(eq(mfaTotp.userId, u.userId));

      s = await s.restart();
      const { db: after } = s.app.database;
      expect(await profileStatus(s, u.accessToken)).toBe(200);
      for (const row of await after.select().from(signingKeys)) expect([row.privateJwk, sealedKeyId(row.sealedPrivateJwk!)]).toEqual([null, "test1"]);
      const secretsAfter = await after.select().from(serverSecrets);
      expect(secretsAfter.map((r) => r.name).sort()).toEqual([...secretsBefore.keys(), "mfa_secret_box_key"].sort());
      for (const row of secretsAfter) {
        expect(row.value).toBeNull();
        const value = Buffer.from(box.open(row.sealedValue!, `server_secret:${row.name}`)).toString("hex");
        expect(value).toBe(secretsBefore.get(row.name) ?? Buffer.from(oldTotpKey).toString("hex"));
      }

      c.advance(STEP);
      const r = await loginRest(s, { email: u.email, password: u.password, mfa_code: await c.code(u.secret) });
      expect(r.status, r.text).toBe(201);
      const [resealed] = await after.select().from(mfaTotp).where(eq(mfaTotp.userId, u.userId));
      expect(sealedKeyId(resealed!.sealedSecret)).toBe("test1");
    });
  });
}
