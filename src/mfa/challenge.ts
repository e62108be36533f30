import { createHash, randomBytes } from "node:crypto";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import type { MfaStore } from "./ports.js";

// The challenge of a two-step login: after the first factor, MFA_REQUIRED
// hands out a random token; CompleteMfaLogin presents it with the second
// factor. Stored hashed, single use, short-lived, a few wrong codes at most.

const CHALLENGE_BYTES = 32;
const CHALLENGE_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export function challengeInvalid(): DomainError {
  return new DomainError("unauthenticated", "MFA_CHALLENGE_INVALID", "the MFA challenge is unknown, expired or used; log in again");
}

export function hashChallenge(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

export interface OpenChallenge {
  userId: string;
  /** The device token presented with the first step, by hash. */
  deviceHash?: Uint8Array | undefined;
  /** How the first step proved the user. */
  firstFactorAmr: readonly string[];
  tokenHash: Uint8Array;
}

export interface MfaChallenges {
  issue(userId: string, deviceHash: Uint8Array | undefined, firstFactorAmr?: readonly string[]): Promise<{ token: string; expiresAt: Date }>;
  /** The challenge's user; throws MFA_CHALLENGE_INVALID. */
  open(token: string): Promise<OpenChallenge>;
  /** Counts a wrong code against the challenge. */
  fail(tokenHash: Uint8Array): Promise<void>;
  /** Single use: of two concurrent completions only one succeeds; throws MFA_CHALLENGE_INVALID. */
  consume(tokenHash: Uint8Array): Promise<void>;
}

export function createMfaChallenges(deps: {
  store: Pick<MfaStore, "createChallenge" | "findChallenge" | "failChallenge" | "consumeChallenge">;
  clock: Clock;
  ttlMs: number;
}): MfaChallenges {
  const { store, clock } = deps;
  return {
    async issue(userId, deviceHash, firstFactorAmr) {
      const now = clock.now();
      const token = randomBytes(CHALLENGE_BYTES).toString("base64url");
      const expiresAt = new Date(now.getTime() + deps.ttlMs);
      await store.createChallenge({ tokenHash: hashChallenge(token), userId, now, expiresAt, deviceHash, firstFactorAmr });
      return { token, expiresAt };
    },
    async open(token) {
      if (!CHALLENGE_SHAPE.test(token)) throw challengeInvalid();
      const tokenHash = hashChallenge(token);
      const found = await store.findChallenge(tokenHash, clock.now());
      if (!found) throw challengeInvalid();
      return { ...found, tokenHash };
    },
    fail: (tokenHash) => store.failChallenge(tokenHash),
    async consume(tokenHash) {
      if (!(await store.consumeChallenge(tokenHash, clock.now()))) throw challengeInvalid();
    },
  };
}
