import { hash as argonHash, verify as argonVerify, type Options } from "@node-rs/argon2";
import type { PasswordHasher } from "./ports.js";
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
// Algorithm and Version, const enums upstream too.
const ALGORITHMS: Record<string, 0 | 1 | 2> = { argon2d: 0, argon2i: 1, argon2id: 2 };
const VERSIONS: Record<number, 0 | 1> = { 16: 0, 19: 1 };
const PHC = /^\$(argon2(?:id|i|d)\$v=\d+\$[a-z]=\d+(?:,[a-z]=\d+)*)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;
const PHC_HEAD = /^argon2(id|i|d)\$v=(\d+)\$([a-z]=\d+(?:,[a-z]=\d+)*)$/;

export interface PhcParams {
  algorithm: string;
  version: number;
  params: Argon2Params;
}

/**
 * The parameter head of a PHC string without its leading "$"
 * ("argon2id$v=19$m=19456,t=2,p=1"), as the credential index holds it.
 * The parameters in any order: the PHC format lists m,t,p, but the `argon2`
 * package writes m,p,t, and a hash of either must not look outdated.
 */
export function parsePhcHead(head: string): PhcParams | undefined {
  const m = PHC_HEAD.exec(head);
  if (!m) return undefined;
  const params = Object.fromEntries(m[3]!.split(",").map((kv) => [kv[0], Number(kv.slice(2))]));
  if (params.m === undefined || params.t === undefined || params.p === undefined) return undefined;
  return {
    algorithm: `argon2${m[1]}`,
    version: Number(m[2]),
    params: { memoryKib: params.m, timeCost: params.t, parallelism: params.p },
  };
}

export function parsePhc(hash: string): PhcParams | undefined {
  const m = PHC.exec(hash);
  return m ? parsePhcHead(m[1]!) : undefined;
}

/** One name per parameter set, whatever order the parameters were written in. */
export function phcParamsId(p: PhcParams): string {
  return `${p.algorithm}$v=${p.version}$m=${p.params.memoryKib},t=${p.params.timeCost},p=${p.params.parallelism}`;
}

// The bounds the configuration accepts: a stored hash outside them is not
// one of ours to imitate (and m=4 TiB must not be allocated at boot).
const MAX_MEMORY_KIB = 4_194_304;
const MAX_TIME_COST = 100;
const MAX_PARALLELISM = 64;

/**
 * A hash of `password` made with exactly these parameters (the dummies an
 * unknown address is verified against), or undefined for parameters this
 * library cannot or should not use.
 */
export async function hashWithParams(p: PhcParams, password: string): Promise<string | undefined> {
  const algorithm = ALGORITHMS[p.algorithm];
  const version = VERSIONS[p.version];
  const { memoryKib, timeCost, parallelism } = p.params;
  if (algorithm === undefined || version === undefined) return undefined;
  if (!(timeCost >= 1 && timeCost <= MAX_TIME_COST && parallelism >= 1 && parallelism <= MAX_PARALLELISM)) return undefined;
  if (!(memoryKib >= 8 * parallelism && memoryKib <= MAX_MEMORY_KIB)) return undefined;
  return argonHash(password, { algorithm, version, memoryCost: memoryKib, timeCost, parallelism, outputLen: 32 });
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
