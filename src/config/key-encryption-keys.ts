import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError, type KeyEncryptionSource } from "./config.js";
import { parseSecretBoxKeys } from "../keys/secret-box.js";

// The key-encryption keys (KEKs) that seal signing keys, server secrets and
// TOTP secrets. From configuration in production; in embedded mode without
// configuration, from a key file created on first start beside the data
// directory, never inside it: a copy of the database files alone opens nothing.

export interface KeyEncryptionKey {
  id: string;
  key: Uint8Array;
}

export interface KekDeps {
  /** Whether the database already holds sealed values (then a missing key file is lost, not new). */
  holdsSealedData(): Promise<boolean>;
  warn(message: string): void;
}

export async function openKeyEncryptionKeys(source: KeyEncryptionSource, deps: KekDeps): Promise<KeyEncryptionKey[]> {
  if (source.kind === "configured") return source.keys;
  if (source.kind === "ephemeral") return [{ id: "ephemeral", key: new Uint8Array(randomBytes(32)) }];
  let keys = readKeyFile(source.path, deps);
  if (!keys) {
    if (await deps.holdsSealedData()) {
      // A new key would open none of it: say what is missing instead.
      throw new ConfigError(
        `invalid configuration:\n  KEY_ENCRYPTION_KEYS: unset, and the key file ${source.path} that sealed this database's keys is missing; restore it, or set KEY_ENCRYPTION_KEYS to its content`,
      );
    }
    createKeyFile(source.path);
    keys = readKeyFile(source.path, deps)!;
  }
  deps.warn(
    `KEY_ENCRYPTION_KEYS is not set: signing keys and secrets are sealed with the key in ${source.path}; keep that file out of database backups, and set KEY_ENCRYPTION_KEYS in production`,
  );
  return keys;
}

function readKeyFile(path: string, deps: KekDeps): KeyEncryptionKey[] | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  if ((statSync(path).mode & 0o077) !== 0) deps.warn(`the key file ${path} is readable by other users: chmod 600 it`);
  try {
    // The KEY_ENCRYPTION_KEYS format, so its content can become that variable.
    return parseSecretBoxKeys(text.trim());
  } catch (err) {
    throw new ConfigError(`invalid configuration:\n  KEY_ENCRYPTION_KEYS: unset, and the key file ${path} is unreadable: ${(err as Error).message}`);
  }
}

/** Writes a new key file, mode 0600, unless one appeared meanwhile: link() publishes it whole or not at all. */
function createKeyFile(path: string): void {
  const entry = `local-${randomBytes(4).toString("hex")}:${randomBytes(32).toString("base64")}\n`;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(tmp, "wx", 0o600);
  try {
    writeSync(fd, entry);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    unlinkSync(tmp);
  }
  // The key must survive a crash as surely as the data it is about to seal.
  const dir = openSync(dirname(path), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
