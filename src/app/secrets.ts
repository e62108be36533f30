import { keyEncryptionSource, longestAccessTokenTtlMs, type Config } from "../config/config.js";
import { openKeyEncryptionKeys } from "../config/key-encryption-keys.js";
import { createSecretBox, type SecretBox } from "../keys/secret-box.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { Db } from "../storage/db.js";
import { createKeyStore } from "../storage/key-store.js";
import { holdsSealedData } from "../storage/sealed.js";
import { createServerSecrets } from "../storage/server-secrets.js";
import { createJwtService, type JwtService } from "../tokens/jwt-service.js";

// Everything secret the service holds at rest, opened with the
// key-encryption keys: the signing keys (through the token service), the
// shared server secrets, and the box that seals TOTP secrets.

export interface OpenedSecrets {
  tokens: JwtService;
  /** Key of the keyed hashes of the abuse defences and the risk engine. */
  hashKey: Uint8Array;
  /** Key of the recovery-code hashes. */
  recoveryKey: Uint8Array;
  /** Seals TOTP secrets (with the former database key as a decrypt-only one, while secrets under it remain). */
  totpBox: SecretBox;
  /** Derives the tokens and codes of mails from their outbox ids (mail/mail-secrets.ts). */
  mailKey: Uint8Array;
}

const LEGACY_TOTP_KEY_ID = "db";

/** Checks that the configuration has the keys it needs (PostgreSQL without KEY_ENCRYPTION_KEYS is refused): before anything is opened. */
export const checkKeySource = keyEncryptionSource;

export async function openSecrets(config: Config, db: Db, deps: { logger: Logger; clock: Clock }): Promise<OpenedSecrets> {
  const { logger, clock } = deps;
  if (config.keyEncryption.variable === "MFA_ENCRYPTION_KEYS") {
    logger.warn("MFA_ENCRYPTION_KEYS is deprecated: rename it KEY_ENCRYPTION_KEYS (it now also seals the signing keys and server secrets)");
  }
  const keks = await openKeyEncryptionKeys(keyEncryptionSource(config), {
    holdsSealedData: () => holdsSealedData(db),
    warn: (message) => logger.warn(message),
  });
  // One set of key-encryption keys seals everything secret at rest.
  const box = createSecretBox(keks);
  const secrets = createServerSecrets(db, box);
  // Sealed too: with the database and Redis alone, password guesses cannot be tested against the spray fingerprints.
  const hashKey = await secrets.shared("abuse_hmac_key");
  const recoveryKey = await secrets.shared("recovery_code_key");
  const mailKey = await secrets.shared("mail_token_key");
  // Before KEY_ENCRYPTION_KEYS, a service without MFA_ENCRYPTION_KEYS sealed
  // TOTP secrets with this key (id "db"). It only opens now: each such
  // secret is re-sealed with the current key at its next use.
  const legacyTotpKey = await secrets.existing("mfa_secret_box_key");
  const idTaken = keks.some((k) => k.id === LEGACY_TOTP_KEY_ID);
  if (legacyTotpKey && idTaken) {
    logger.warn(`a key-encryption key has the id "${LEGACY_TOTP_KEY_ID}" of the former TOTP key: TOTP secrets sealed with that one will not open`);
  }
  const totpBox = legacyTotpKey && !idTaken ? createSecretBox([...keks, { id: LEGACY_TOTP_KEY_ID, key: legacyTotpKey }]) : box;
  // Last: init() starts the key reload timer, and nothing after it can fail.
  const tokens = createJwtService({
    keys: createKeyStore(db, box),
    issuer: config.jwt.issuer,
    audience: config.jwt.audience,
    accessTokenTtlMs: config.jwt.accessTokenTtlMs,
    maxAccessTokenTtlMs: longestAccessTokenTtlMs(config),
    publishLeadMs: config.signingKeys.publishLeadMs,
    onRefreshError: (err) => logger.warn({ err }, "signing key reload failed"),
    now: () => clock.now(),
  });
  await tokens.init();
  return { tokens, hashKey, recoveryKey, totpBox, mailKey };
}
