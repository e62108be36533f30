import { hash as argonHash, verify as argonVerify, type Options } from "@node-rs/argon2";
import type { PasswordHasher } from "../core/ports.js";
import { createLimiter, type LimiterOptions } from "./limiter.js";

// argon2id through @node-rs/argon2 (Rust, on the libuv pool, off the event
// loop). Each of it and the `argon2` package verifies the other's PHC strings;
// bench/ measures both and docs/benchmarks.md records why this one ships.

export interface Argon2Params {
  memoryKib: number;
  timeCost: number;
  parallelism: number;
}

// OWASP Password Storage Cheat Sheet minimum for argon2id.
export const OWASP_ARGON2ID: Argon2Params = { memoryKib: 19_456, timeCost: 2, parallelism: 1 };

const ARGON2ID = 2; // Algorithm.Argon2id (a const enum upstream)
const PHC = /^\$argon2(id|i|d)\$v=(\d+)\$([a-z]=\d+(?:,[a-z]=\d+)*)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

// The parameters in any order: the PHC format lists m,t,p, but the `argon2`
// package writes m,p,t, and a hash of either must not look outdated.
export function parsePhc(hash: string): { algorithm: string; version: number; params: Argon2Params } | undefined {
  const m = PHC.exec(hash);
  if (!m) return undefined;
  const params = Object.fromEntries(m[3]!.split(",").map((kv) => [kv[0], Number(kv.slice(2))]));
  if (params.m === undefined || params.t === undefined || params.p === undefined) return undefined;
  return {
    algorithm: `argon2${m[1]}`,
    version: Number(m[2]),
    params: { memoryKib: params.m, timeCost: params.t, parallelism: params.p },
  };
}

export function createArgon2Hasher(params: Argon2Params, limits: LimiterOptions): PasswordHasher {
  const options: Options = {
    algorithm: ARGON2ID,
    memoryCost: params.memoryKib,
    timeCost: params.timeCost,
    parallelism: params.parallelism,
    outputLen: 32,
  };
  const limiter = createLimiter(limits);
  return {
    hash: (password) => limiter.run(() => argonHash(password, options)),
    verify: (hash, password) =>
      limiter.run(async () => {
        try {
          return await argonVerify(hash, password);
        } catch {
          // A malformed stored hash verifies nothing.
          return false;
        }
      }),
    needsRehash(hash) {
      const parsed = parsePhc(hash);
      if (!parsed || parsed.algorithm !== "argon2id" || parsed.version !== 19) return true;
      const p = parsed.params;
      return p.memoryKib !== params.memoryKib || p.timeCost !== params.timeCost || p.parallelism !== params.parallelism;
    },
  };
}
