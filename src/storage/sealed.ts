import { isNotNull } from "drizzle-orm";
import { SecretBoxError, sealedKeyId, type SecretBox } from "../keys/secret-box.js";
import type { Db } from "./db.js";
import { serverSecrets, signingKeys } from "./schema.js";

// Values sealed at rest under the key-encryption keys (signing keys, server
// secrets). Each kind has an AAD namespace of its own ("signing_key:<kid>",
// "server_secret:<name>"; TOTP secrets use the bare user id), so sealed bytes
// copied into another row or another table do not open.


/**
 * Opens `sealed`, or throws an Error that says what could not be opened and
 * which key-encryption key it needs: ids only, never key material.
 */
export function openSealed(box: SecretBox, sealed: Uint8Array, aad: string, what: string): Uint8Array {
  try {
    return box.open(sealed, aad);
  } catch (err) {
    if (!(err instanceof SecretBoxError)) throw err;
    if (err.reason === "MALFORMED") throw new Error(`${what} is not a sealed value`, { cause: err });
    const keyId = sealedKeyId(sealed);
    if (err.reason === "UNKNOWN_KEY") {
      throw new Error(
        `${what} is sealed with key-encryption key "${keyId}", which is not configured: add it to KEY_ENCRYPTION_KEYS (embedded mode: restore the key file)`,
        { cause: err },
      );
    }
    throw new Error(`${what} does not open with key-encryption key "${keyId}": that key changed, or the sealed bytes were altered or copied from another row`, {
      cause: err,
    });
  }
}

/** Whether any signing key or server secret is sealed already (embedded mode: a missing key file is then lost, not new). */
export async function holdsSealedData(db: Db): Promise<boolean> {
  const [key] = await db.select({ kid: signingKeys.kid }).from(signingKeys).where(isNotNull(signingKeys.sealedPrivateJwk)).limit(1);
  if (key) return true;
  const [secret] = await db.select({ name: serverSecrets.name }).from(serverSecrets).where(isNotNull(serverSecrets.sealedValue)).limit(1);
  return secret !== undefined;
}
