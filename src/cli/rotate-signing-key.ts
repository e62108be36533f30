import { pathToFileURL } from "node:url";
import { ConfigError, keyEncryptionSource, loadConfig, longestAccessTokenTtlMs, type Config } from "../config/config.js";
import { openKeyEncryptionKeys } from "../config/key-encryption-keys.js";
import { createSecretBox } from "../keys/secret-box.js";
import { openDatabase, type Database } from "../storage/db.js";
import { announceKeysChanged } from "../sessions/redis-revocation-feed.js";
import { createKeyStore } from "../storage/key-store.js";
import { holdsSealedData } from "../storage/sealed.js";
import { createKeyRing, type RotatedKey } from "../tokens/key-ring.js";

// `npm run rotate-signing-key [-- --now]`: creates the next access-token
// signing key in the shared store. Running instances pick it up on their
// next key reload (every minute); see README "Signing-key rotation".

const USAGE = `usage: rotate-signing-key [--now]

Creates the next access-token signing key. It is published in the JWKS at
once and signs from KEY_PUBLISH_LEAD (default 10m) later; the current key
stays published until every token it signed has expired.

  --now   emergency (a leaked key): the new key signs at once and every other
          key is retired at once, so every access token they signed is
          refused from now on (users must refresh; verifiers refuse them once
          they refetch the JWKS). Instances switch within a minute, or at
          once when REDIS_URL is set (the change is announced on Redis).
`;

export async function rotateSigningKey(opts: {
  config: Config;
  immediate: boolean;
  database?: Database;
  now?: () => Date;
}): Promise<RotatedKey> {
  // The new key is sealed like the service's: this command needs the same key-encryption keys.
  const kekSource = keyEncryptionSource(opts.config);
  const database = opts.database ?? (await openDatabase(opts.config.database));
  try {
    const keks = await openKeyEncryptionKeys(kekSource, {
      holdsSealedData: () => holdsSealedData(database.db),
      warn: (message) => process.stderr.write(`${message}\n`),
    });
    const ring = createKeyRing({
      keys: createKeyStore(database.db, createSecretBox(keks)),
      maxAccessTokenTtlMs: longestAccessTokenTtlMs(opts.config),
      publishLeadMs: opts.config.signingKeys.publishLeadMs,
      refreshIntervalMs: 0,
      ...(opts.now ? { now: opts.now } : {}),
    });
    await ring.init();
    return await ring.rotate({ immediate: opts.immediate });
  } finally {
    if (!opts.database) await database.close();
  }
}

export function describeRotation(r: RotatedKey, immediate: boolean): string {
  const lines: string[] = [];
  if (!r.rotated) {
    lines.push(`a rotation is already pending: key ${r.kid} signs from ${r.activatesAt.toISOString()}; nothing changed`);
    lines.push("(use --now to replace every key at once)");
  } else {
    lines.push(`new signing key ${r.kid}`);
    lines.push(`  activates ${r.activatesAt.toISOString()}${immediate ? " (now)" : " (published in the JWKS now)"}`);
    for (const old of r.retired) lines.push(`  retires   ${old.kid} at ${old.retiresAt.toISOString()}`);
  }
  return `${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    process.stdout.write(USAGE);
    return 0;
  }
  const unknown = argv.filter((a) => a !== "--now" && a !== "--immediate");
  if (unknown.length > 0) {
    process.stderr.write(`unknown argument ${unknown[0]}\n${USAGE}`);
    return 2;
  }
  const immediate = argv.length > 0;
  let config: Config;
  let result: RotatedKey;
  try {
    config = loadConfig();
    result = await rotateSigningKey({ config, immediate });
  } catch (err) {
    // A bad configuration, or no key-encryption keys: a usage error.
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  process.stdout.write(describeRotation(result, immediate));
  if (result.rotated && config.redisUrl) {
    // Running instances would reload within a minute anyway; with Redis
    // they do it now (what matters after an emergency rotation).
    try {
      const instances = await announceKeysChanged(config.redisUrl, config.redisPrefix);
      process.stdout.write(`told ${instances} running instance(s) to reload their keys\n`);
    } catch (err) {
      process.stderr.write(`could not announce the change on Redis (${err instanceof Error ? err.message : String(err)}); instances reload within a minute\n`);
    }
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`rotate-signing-key failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
