import { resolve } from "node:path";
import type { z } from "zod";
import { parseSecretBoxKeys } from "../keys/secret-box.js";
import { abuseSchema } from "./schema/abuse.js";
import { browserSchema } from "./schema/browser.js";
import { hashingSchema } from "./schema/hashing.js";
import { keysSchema } from "./schema/keys.js";
import { mailSchema } from "./schema/mail.js";
import { mfaRiskSchema } from "./schema/mfa-risk.js";
import { notifySchema } from "./schema/notify.js";
import { serverSchema } from "./schema/server.js";
import { sessionsSchema } from "./schema/sessions.js";
import { storageSchema } from "./schema/storage.js";

// The only reader of process.env. Parsed once, validated, frozen; a bad
// value stops the boot with a message naming the variable.

/**
 * The environment to Config: each area (schema/*.ts) reads its own
 * variables, checks the rules between them and shapes its part of Config.
 * Every area sees the whole environment and reports its problems whatever
 * the others find; the parts have distinct keys and merge into one object.
 */
const configSchema = serverSchema
  .and(browserSchema)
  .and(storageSchema)
  .and(sessionsSchema)
  .and(hashingSchema)
  .and(abuseSchema)
  .and(mfaRiskSchema)
  .and(keysSchema)
  .and(notifySchema)
  .and(mailSchema);

type DeepReadonly<T> = T extends readonly (infer U)[] ? readonly DeepReadonly<U>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

export type Config = DeepReadonly<z.output<typeof configSchema>>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "unset", as in most deployment tools.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  return deepFreeze(parsed.data);
}

function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value as DeepReadonly<T>;
}

/** The longest access-token lifetime of any role: a rotated-out signing key stays published this long after its last use. */
export function longestAccessTokenTtlMs(config: Config): number {
  return Math.max(config.jwt.accessTokenTtlMs, ...Object.values(config.lifetimes).map((l) => l.accessTokenTtlMs));
}

/** Where the key-encryption keys come from. */
export type KeyEncryptionSource =
  | { kind: "configured"; keys: { id: string; key: Uint8Array }[] }
  /** Embedded mode without KEY_ENCRYPTION_KEYS: a key file beside (never inside) the data directory. */
  | { kind: "file"; path: string }
  /** An in-memory database (tests): a key that lives as long as it does. */
  | { kind: "ephemeral" };

/**
 * The key-encryption keys the service and rotate-signing-key need (the other
 * operator commands never touch sealed data, so whoever only migrates or
 * grants roles need not hold them). PostgreSQL without KEY_ENCRYPTION_KEYS is
 * refused: a key kept beside a shared database would protect nothing.
 */
export function keyEncryptionSource(config: Config): KeyEncryptionSource {
  if (config.keyEncryption.keys !== undefined) return { kind: "configured", keys: parseSecretBoxKeys(config.keyEncryption.keys) };
  if (config.database.kind === "postgres") {
    throw new ConfigError(
      [
        "invalid configuration:",
        "  KEY_ENCRYPTION_KEYS: required with DATABASE_URL: it seals the signing keys and secrets kept in PostgreSQL,",
        "    so that a copy of the database cannot sign tokens. Generate one and give every instance the same value:",
        `    KEY_ENCRYPTION_KEYS=$(node -e "console.log('k1:'+crypto.randomBytes(32).toString('base64'))")`,
      ].join("\n"),
    );
  }
  const dataDir = config.database.dataDir;
  if (dataDir.startsWith("memory://")) return { kind: "ephemeral" };
  return { kind: "file", path: `${resolve(dataDir)}.kek` };
}
