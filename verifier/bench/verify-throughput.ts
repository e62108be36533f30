// Verifications per second of the verifier library, on one core.
//
//   taskset -c 0 node --import ./verifier/scripts/ts-resolve.mjs verifier/bench/verify-throughput.ts \
//     [--tokens 20000] [--repeat 1000] [--concurrency 64] [--redis redis://127.0.0.1:6379]
//
// Reports wall-clock ops/s and ops per CPU-second (process CPU time, all
// threads: WebCrypto verifies on libuv's pool). On a shared machine the CPU
// figure is the steadier estimate of one core's capacity. For reference it
// also measures the floor (one Ed25519 verify with node:crypto) and jose's
// jwtVerify alone, and jose's createRemoteJWKSet in place of our key set.
import { createPublicKey, randomUUID, verify as edVerify } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { createRemoteJWKSet, importJWK, jwtVerify } from "jose";
import { createVerifier, type Verifier } from "../src/index.js";
import { createTestKey } from "../test/support.js";

const { values: args } = parseArgs({
  options: {
    tokens: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "64" },
    repeat: { type: "string", default: "1000" },
    redis: { type: "string" },
  },
});
const N = Number(args.tokens);
const CONCURRENCY = Number(args.concurrency);
const ISSUER = "urn:bench:identity";
const AUDIENCE = "urn:bench:platform";

const key = await createTestKey();
const server = createServer((_req, res) => res.end(JSON.stringify({ keys: [key.publicJwk] })));
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const jwksUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`;

const now = Math.floor(Date.now() / 1000);
const sign = () =>
  key.sign({ iss: ISSUER, aud: AUDIENCE, sub: randomUUID(), sid: randomUUID(), jti: randomUUID(), iat: now, exp: now + 900 });
const distinct: string[] = [];
for (let i = 0; i < N; i++) distinct.push(await sign());
const pool = distinct.slice(0, Number(args.repeat));
const repeated = Array.from({ length: N * 10 }, (_, i) => pool[i % pool.length]!);

interface Result {
  name: string;
  wall: number;
  cpu: number;
}
const results: Result[] = [];

async function measure(name: string, tokens: string[], fn: (t: string) => unknown): Promise<void> {
  for (let i = 0; i < Math.min(2_000, tokens.length); i++) await fn(tokens[i]!); // warm up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < tokens.length) await fn(tokens[next++]!);
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  results.push({ name, wall: (tokens.length / ms) * 1000, cpu: (tokens.length / cpuMs) * 1000 });
}

const jwtOptions = { algorithms: ["EdDSA"], issuer: ISSUER, audience: AUDIENCE, typ: "at+jwt", requiredClaims: ["sub", "sid", "jti", "iat", "exp"], clockTolerance: 5 };

// Floor: the signature check alone, synchronous, no parsing.
const keyObject = createPublicKey({ key: key.publicJwk as never, format: "jwk" });
await measure("node:crypto Ed25519 verify only", distinct, (t) => {
  const dot = t.lastIndexOf(".");
  if (!edVerify(null, Buffer.from(t.slice(0, dot)), keyObject, Buffer.from(t.slice(dot + 1), "base64url"))) throw new Error("bad");
});
const cryptoKey = await importJWK(key.publicJwk, "EdDSA");
await measure("jose jwtVerify, fixed key", distinct, (t) => jwtVerify(t, cryptoKey, jwtOptions));
const remote = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 60_000 });
await measure("jose jwtVerify + createRemoteJWKSet", distinct, (t) => jwtVerify(t, remote, jwtOptions));

let feedVerifier: Verifier | undefined;
async function run(label: string, revocation?: { redis: string }): Promise<void> {
  const v = createVerifier({ jwksUrl, issuer: ISSUER, audience: AUDIENCE, revocation });
  await v.ready();
  await measure(`verifier, first-time tokens${label}`, distinct, (t) => v.verify(t));
  await measure(`verifier, repeated tokens${label}`, repeated, (t) => v.verify(t));
  if (revocation) feedVerifier = v;
  else await v.close();
}
await run("");
if (args.redis) {
  await run(" + revocation feed", { redis: args.redis });
  await feedVerifier?.close();
}
server.close();

const out = [
  `node ${process.version}, ${N} distinct tokens, ${repeated.length} repeated (pool of ${pool.length}), concurrency ${CONCURRENCY}`,
  "",
  `${"".padEnd(44)}${"ops/s (wall)".padStart(14)}${"ops/CPU-s".padStart(14)}`,
  ...results.map((r) => `${r.name.padEnd(44)}${Math.round(r.wall).toLocaleString("en-US").padStart(14)}${Math.round(r.cpu).toLocaleString("en-US").padStart(14)}`),
  "",
];
process.stdout.write(out.join("\n"));
