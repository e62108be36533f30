import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { connect, createServer as createTcpServer, type Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTHeaderParameters, type JWTPayload } from "jose";
import { sign as edSign, createPrivateKey } from "node:crypto";

export const ISSUER = "urn:test:identity";
export const AUDIENCE = "urn:test:platform";

export const b64url = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

export function parts(token: string): [string, string, string] {
  const [h = "", p = "", s = ""] = token.split(".");
  return [h, p, s];
}

// ---------------------------------------------------------------- signing keys

export interface TestKey {
  kid: string;
  publicJwk: JWK;
  privateKey: CryptoKey;
  privateJwk: JWK;
  /** Signs claims with this key; the header defaults to ours (EdDSA, kid, at+jwt). */
  sign(claims: JWTPayload, header?: Partial<JWTHeaderParameters> & Record<string, unknown>): Promise<string>;
  /** Signs any header at all, even one jose refuses to produce. */
  signRaw(header: Record<string, unknown>, claims: unknown): string;
}

export async function createTestKey(kid?: string): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const jwk = await exportJWK(publicKey);
  const id = kid ?? (await calculateJwkThumbprint(jwk));
  const privateJwk = await exportJWK(privateKey);
  const nodeKey = createPrivateKey({ key: privateJwk as never, format: "jwk" });
  return {
    kid: id,
    publicJwk: { ...jwk, kid: id, alg: "EdDSA", use: "sig" },
    privateKey,
    privateJwk,
    sign(claims, header = {}) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: "EdDSA", kid: id, typ: "at+jwt", ...header } as JWTHeaderParameters)
        .sign(privateKey);
    },
    signRaw(header, claims) {
      const input = `${b64url(header)}.${b64url(claims)}`;
      return `${input}.${edSign(null, Buffer.from(input), nodeKey).toString("base64url")}`;
    },
  };
}

export function claimsAt(nowSec: number, overrides: JWTPayload = {}): JWTPayload {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: "user-1",
    sid: randomUUID(),
    jti: randomUUID(),
    iat: nowSec,
    exp: nowSec + 900,
    ...overrides,
  };
}

// ---------------------------------------------------------------- JWKS server

export interface JwksServer {
  url: string;
  /** GET requests served so far. */
  readonly hits: number;
  keys: unknown[];
  /** Answer with this status (and no body) instead of the key set. */
  failWith: number | undefined;
  /** Replace the whole response (status 200, this body). */
  rawBody: string | undefined;
  close(): Promise<void>;
}

export async function startJwksServer(keys: unknown[]): Promise<JwksServer> {
  const state = { hits: 0, keys, failWith: undefined as number | undefined, rawBody: undefined as string | undefined };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== "/.well-known/jwks.json") {
      res.writeHead(404).end();
      return;
    }
    state.hits++;
    if (state.failWith !== undefined) {
      res.writeHead(state.failWith).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/jwk-set+json" });
    res.end(state.rawBody ?? JSON.stringify({ keys: state.keys }));
  });
  server.keepAliveTimeout = 100;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    get hits() {
      return state.hits;
    },
    get keys() {
      return state.keys;
    },
    set keys(k) {
      state.keys = k;
    },
    get failWith() {
      return state.failWith;
    },
    set failWith(s) {
      state.failWith = s;
    },
    get rawBody() {
      return state.rawBody;
    },
    set rawBody(b) {
      state.rawBody = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- network faults

/**
 * A TCP proxy in front of Redis that a test can cut (close every connection
 * and refuse new ones) or blackhole (accept and then forward nothing, like a
 * dead link), then restore.
 */
export interface TcpProxy {
  url: string;
  cut(): void;
  blackhole(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetUrl: string): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  let mode: "pass" | "cut" | "blackhole" = "pass";
  const pairs = new Set<[Socket, Socket]>();
  const server = createTcpServer((client) => {
    if (mode === "cut") {
      client.destroy();
      return;
    }
    const upstream = connect({ host: target.hostname, port: Number(target.port || 6379) });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on("data", (chunk) => {
        if (mode === "pass") to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    cut() {
      mode = "cut";
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
    blackhole() {
      mode = "blackhole";
    },
    restore() {
      mode = "pass";
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- misc

/** Polls `check` until it returns true; resolves with the time it took (ms). */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, stepMs = 5): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** The code of the VerificationError a promise rejects with ("OK" if it resolves). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "OK";
  } catch (err) {
    return (err as { code?: string }).code ?? `untyped: ${String(err)}`;
  }
}
