import { z } from "zod";
import { parseSecretBoxKeys } from "../../keys/secret-box.js";
import { DAY, MINUTE, durationWithin, onceValid, refuse } from "../fields.js";

// Signing-key rotation and the key-encryption keys that seal keys and secrets at rest.

// "k2:BASE64,k1:BASE64", validated here; the message never repeats a key.
const secretBoxKeys = z.string().superRefine((v, ctx) => {
  try {
    parseSecretBoxKeys(v);
  } catch (err) {
    ctx.addIssue({ code: "custom", message: (err as Error).message });
  }
});

const env = z.object({
  // Verifiers cache the JWKS for 300 s and refetch at most once a minute.
  KEY_PUBLISH_LEAD: durationWithin(6 * MINUTE, 7 * DAY, "must be between 6m (JWKS max-age 5m + refetch interval 1m) and 7d").default(10 * MINUTE),
  // AES-256 key-encryption keys sealing the signing keys, the server secrets
  // and the TOTP secrets; the first seals (rotation: put the new key first,
  // keep the old ones).
  KEY_ENCRYPTION_KEYS: secretBoxKeys.optional(),
  // Its former name, from when it sealed TOTP secrets only: still read.
  MFA_ENCRYPTION_KEYS: secretBoxKeys.optional(),
});

export const keysSchema = env
  .superRefine((e, ctx) => {
    if (e.KEY_ENCRYPTION_KEYS !== undefined && e.MFA_ENCRYPTION_KEYS !== undefined && e.KEY_ENCRYPTION_KEYS.trim() !== e.MFA_ENCRYPTION_KEYS.trim()) {
      refuse(ctx, "MFA_ENCRYPTION_KEYS", "the deprecated name of KEY_ENCRYPTION_KEYS, set to a different value; set KEY_ENCRYPTION_KEYS only");
    }
  }, onceValid)
  .transform((e) => ({
    /** How long a rotated-in signing key is in the JWKS before it signs. */
    signingKeys: { publishLeadMs: e.KEY_PUBLISH_LEAD },
    /**
     * The key-encryption keys ("id:base64,…", validated) and the variable they
     * came from; unset: see keyEncryptionSource.
     */
    keyEncryption: {
      keys: e.KEY_ENCRYPTION_KEYS ?? e.MFA_ENCRYPTION_KEYS,
      variable:
        e.KEY_ENCRYPTION_KEYS !== undefined ? ("KEY_ENCRYPTION_KEYS" as const) : e.MFA_ENCRYPTION_KEYS !== undefined ? ("MFA_ENCRYPTION_KEYS" as const) : undefined,
    },
  }));
