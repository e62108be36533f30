// Password hashing as the domain needs it.

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<boolean>;
  /** Whether a stored hash was made with other parameters than the configured ones. */
  needsRehash(hash: string): boolean;
}
