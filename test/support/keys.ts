import { createSecretBox, parseSecretBoxKeys, type SecretBox } from "../../src/keys/secret-box.js";

// The key-encryption key of the test servers: fixed, because several
// instances (and spawned service processes) share one database.
export const TEST_KEY_ENCRYPTION_KEYS = "test1:9XaqllHt8az+kxZk02INJKXbeQ+FF/EYVKxJPtX0Xtg=";

/** A secret box over TEST_KEY_ENCRYPTION_KEYS, or over `keys` ("id:base64,…"). */
export function testBox(keys: string = TEST_KEY_ENCRYPTION_KEYS): SecretBox {
  return createSecretBox(parseSecretBoxKeys(keys));
}

/** A fresh random key-encryption key entry "id:base64". */
export function randomKek(id: string): string {
  return `${id}:${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64")}`;
}
