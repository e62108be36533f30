import { availableParallelism } from "node:os";
import { z } from "zod";
import { SECOND, duration, int } from "../fields.js";

// Password hashing (argon2id), its worker pool and queue, password lengths.

const cores = availableParallelism();

const env = z.object({
  ARGON2_MEMORY_KIB: int(8_192, 4_194_304).default(19_456),
  ARGON2_TIME_COST: int(1, 100).default(2),
  ARGON2_PARALLELISM: int(1, 64).default(1),
  HASH_CONCURRENCY: int(1, 1_024).default(cores),
  HASH_QUEUE_MAX: int(0, 100_000).default(64 * cores),
  HASH_QUEUE_TIMEOUT: duration.default(5 * SECOND),
  PASSWORD_MIN_LENGTH: int(8, 64).default(8),
  PASSWORD_MAX_LENGTH: int(64, 1_024).default(256),
});

export const hashingSchema = env.transform((e) => ({
  argon2: { memoryKib: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST, parallelism: e.ARGON2_PARALLELISM },
  hashing: { concurrency: e.HASH_CONCURRENCY, maxQueue: e.HASH_QUEUE_MAX, queueTimeoutMs: e.HASH_QUEUE_TIMEOUT },
  // The byte cap: 4 bytes per code point of the longest allowed password.
  password: { minLength: e.PASSWORD_MIN_LENGTH, maxLength: e.PASSWORD_MAX_LENGTH, maxBytes: e.PASSWORD_MAX_LENGTH * 4 },
}));
