import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../src/config/config.js";
import { openKeyEncryptionKeys, type KekDeps } from "../../../src/config/key-encryption-keys.js";

// Embedded mode's zero-setup key file: created once beside the data
// directory (mode 0600), reused afterwards, never silently replaced.

function setup(holdsSealedData = false) {
  const root = mkdtempSync(join(tmpdir(), "identity-kek-"));
  const dataDir = join(root, "data");
  mkdirSync(dataDir);
  const warnings: string[] = [];
  const deps: KekDeps = { holdsSealedData: async () => holdsSealedData, warn: (m) => void warnings.push(m) };
  return { root, dataDir, path: `${dataDir}.kek`, warnings, deps };
}
const hex = (k: { key: Uint8Array }[]) => k.map((e) => Buffer.from(e.key).toString("hex"));

describe("key-encryption key file (embedded mode)", () => {
  it("is created on first start with mode 0600 outside the data directory, in the KEY_ENCRYPTION_KEYS format, and reused", async () => {
    const { root, dataDir, path, warnings, deps } = setup();
    const first = await openKeyEncryptionKeys({ kind: "file", path }, deps);
    expect(first).toHaveLength(1);
    expect(first[0]!.id).toMatch(/^local-[0-9a-f]{8}$/);
    expect(first[0]!.key).toHaveLength(32);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readFileSync(path, "utf8")).toBe(`${first[0]!.id}:${Buffer.from(first[0]!.key).toString("base64")}\n`);
    expect(readdirSync(dataDir)).toEqual([]);
    // No temporary file left behind.
    expect(readdirSync(root).sort()).toEqual(["data", "data.kek"]);

    const again = await openKeyEncryptionKeys({ kind: "file", path }, deps);
    expect(hex(again)).toEqual(hex(first));
    expect(again[0]!.id).toBe(first[0]!.id);
    // Each start says that production should configure the keys, and where this one is.
    expect(warnings).toHaveLength(2);
    for (const w of warnings) expect(w).toMatch(/KEY_ENCRYPTION_KEYS is not set/);
    for (const w of warnings) expect(w).toContain(path);
    for (const w of warnings) expect(w).not.toContain(Buffer.from(first[0]!.key).toString("base64"));
  });

  it("starts racing on a fresh directory agree on one key", async () => {
    const { path, deps } = setup();
    const all = await Promise.all(Array.from({ length: 8 }, () => openKeyEncryptionKeys({ kind: "file", path }, deps)));
    for (const k of all) expect(hex(k)).toEqual(hex(all[0]!));
  });

  it("is not replaced when it is lost but the database holds data it sealed: the start is refused, naming the file", async () => {
    const { path, deps } = setup(true);
    const err = await openKeyEncryptionKeys({ kind: "file", path }, deps).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(`the key file ${path} that sealed this database's keys is missing`);
    expect(existsSync(path)).toBe(false);
  });

  it("warns when others can read it, and refuses a damaged one without echoing its content", async () => {
    const { path, warnings, deps } = setup();
    await openKeyEncryptionKeys({ kind: "file", path }, deps);
    chmodSync(path, 0o644);
    await openKeyEncryptionKeys({ kind: "file", path }, deps);
    expect(warnings.some((w) => w.includes("readable by other users"))).toBe(true);

    const content = `local-1:${Buffer.alloc(20, 9).toString("base64")}`;
    writeFileSync(path, content);
    const err = await openKeyEncryptionKeys({ kind: "file", path }, deps).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toContain(path);
    expect(err!.message).not.toContain(content.slice(8));
  });

  it("configured keys are used as given; memory:// databases get a new random key each time", async () => {
    const deps: KekDeps = { holdsSealedData: async () => true, warn: () => expect.fail("no warning expected") };
    const keys = [{ id: "k1", key: new Uint8Array(32).fill(1) }];
    await expect(openKeyEncryptionKeys({ kind: "configured", keys }, deps)).resolves.toBe(keys);
    const [a, b] = await Promise.all([openKeyEncryptionKeys({ kind: "ephemeral" }, deps), openKeyEncryptionKeys({ kind: "ephemeral" }, deps)]);
    expect(a![0]!.key).toHaveLength(32);
    expect(hex(a!)).not.toEqual(hex(b!));
  });
});
