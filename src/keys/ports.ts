import type { JWK } from "jose";

// The signing-key store the token service needs. Its own module so that
// tokens/ (the user) and storage/ (the implementation) both depend on it and
// never on each other.

/** A signing key as the token service sees it: the private JWK in clear, in memory only (the store seals it at rest). */
export interface StoredKey {
  kid: string;
  alg: string;
  publicJwk: JWK;
  privateJwk: JWK;
  createdAt: Date;
  activatesAt: Date;
  retiresAt: Date | null;
}

export type KeyRotation =
  | { rotated: true; retired: { kid: string; retiresAt: Date }[] }
  /** Another rotation's key is still waiting to activate: nothing changed. */
  | { rotated: false; pending: StoredKey };

export interface KeyStore {
  /** Keys not yet retired at `now`, newest first. */
  listUsable(now: Date): Promise<StoredKey[]>;
  insert(key: StoredKey): Promise<void>;
  /**
   * Inserts `next` and moves every other key's retiresAt to `retireOthersAt`
   * (never later than it already was), atomically and one rotation at a time
   * across instances. Unless `force`, does nothing when a key is already
   * pending (activatesAt > now, not retired), so two operators or instances
   * rotating at once publish one key, not two.
   */
  rotate(input: { next: StoredKey; retireOthersAt: Date; now: Date; force: boolean }): Promise<KeyRotation>;
}
