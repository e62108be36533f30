// Builders and probes shared by the abuse-*.test.ts suites: the one place
// that makes an administrator, a local CAPTCHA siteverify endpoint, spoofed
// client addresses, and the assertions on a RATE_LIMITED error.
import { randomInt } from "node:crypto";
import { createServer, request, type IncomingHttpHeaders } from "node:http";
import * as grpc from "@grpc/grpc-js";
import { expect } from "vitest";
import { createUserStore } from "../../src/storage/user-store.js";
import { jsonOrUndefined, rest, type RestResponse, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { errorInfo, retryDelaySeconds } from "../support/error-info.js";
import { closeServer, listenLocal, readText } from "../support/local-http.js";
import { enrolTotp } from "../support/users.js";
import type { TestServer } from "../support/server.js";

/**
 * Makes a new administrator and returns an access token of theirs.
 * Administrators must have TOTP on: the user enrols, is promoted in the
 * database (as `npm run set-role` does), and logs in again with a recovery
 * code as the second factor. The one place to adapt when the admin rules change.
 */
export async function makeAdmin(s: TestServer, opts: { now?: Date; headers?: Record<string, string> } = {}): Promise<string> {
  const email = uniqueEmail("admin");
  const headers = opts.headers ?? {};
  const registered = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } }, headers });
  expect(registered.status, registered.text).toBe(201);
  const first = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD }, headers });
  expect(first.status, first.text).toBe(201);
  const { recoveryCodes } = await enrolTotp(s, first.body.access_token, STRONG_PASSWORD, opts.now);
  expect(await createUserStore(s.app.database.db).setRole(email, "admin", opts.now ?? new Date())).toBeTruthy();
  const again = await rest(s.baseUrl, "POST", "/login", {
    body: { email, password: STRONG_PASSWORD, recovery_code: recoveryCodes[0] },
    headers,
  });
  expect(again.status, again.text).toBe(201);
  return again.body.access_token as string;
}

/** The /48s of 2001:db8::/32 (third group) handed out; 1 is kept for tests that spell addresses out (2001:db8:1:…). */
const usedNetworks = new Set<string>(["1"]);
/**
 * A client address no other test (or concurrent run sharing a Redis) uses:
 * a random address of the IPv6 documentation prefix, all groups non-zero
 * (so it is already in its canonical spelling), in a /48 of its own in this
 * process. Sources are limited, counted and blocked by /64, and the risk
 * checks compare /48 networks: two calls never share either.
 */
export function uniqueIp(): string {
  for (;;) {
    const groups = Array.from({ length: 6 }, () => randomInt(1, 0x10000).toString(16));
    if (!usedNetworks.has(groups[0]!)) {
      usedNetworks.add(groups[0]!);
      return `2001:db8:${groups.join(":")}`;
    }
  }
}

/** Another address in the /64 of `ip` (a uniqueIp()): the same source to the limits and blocks. `interfaceId`: four groups. */
export function sameSource(ip: string, interfaceId = "ffff:ffff:ffff:ffff"): string {
  if (interfaceId.split(":").length !== 4) throw new Error(`interface id of four groups expected: ${interfaceId}`);
  return `${ip.split(":").slice(0, 4).join(":")}:${interfaceId}`;
}

/** The header a trusted proxy adds (believed only from a configured proxy). */
export const xff = (ip: string): Record<string, string> => ({ "x-forwarded-for": ip });

export interface RateLimitedInfo {
  reason: string | undefined;
  scope: string | undefined;
  retryAfterSeconds: string | undefined;
  /** google.rpc.RetryInfo.retry_delay in whole seconds. */
  retryDelaySeconds: number | undefined;
}

/** The RATE_LIMITED details of any failed call (see error-info.ts for the sources it reads). */
export function rateLimitedInfo(source: unknown): RateLimitedInfo {
  const { reason, metadata } = errorInfo(source);
  return { reason, scope: metadata.scope, retryAfterSeconds: metadata.retry_after_seconds, retryDelaySeconds: retryDelaySeconds(source) };
}

/** A REST 429: RATE_LIMITED of `scope`, Retry-After in whole seconds (>= 1) agreeing with the body. */
export function expectRest429(r: RestResponse, scope: string): number {
  const d = rateLimitedInfo(r.body);
  expect({ status: r.status, ...d }, r.text).toMatchObject({ status: 429, reason: "RATE_LIMITED", scope });
  const header = r.headers.get("retry-after");
  expect(header, "Retry-After").toMatch(/^[1-9][0-9]*$/);
  expect(d.retryAfterSeconds).toBe(header);
  expect(d.retryDelaySeconds).toBe(Number(header));
  return Number(header);
}

/** A grpc-js RESOURCE_EXHAUSTED: RATE_LIMITED of `scope` with a RetryInfo detail and a retry-after header. */
export function expectGrpc429(err: grpc.ServiceError, scope: string): number {
  const d = rateLimitedInfo(err);
  expect({ code: err.code, reason: d.reason, scope: d.scope }, err.details).toEqual({ code: grpc.status.RESOURCE_EXHAUSTED, reason: "RATE_LIMITED", scope });
  expect(d.retryDelaySeconds).toBeGreaterThanOrEqual(1);
  expect(Number.isInteger(d.retryDelaySeconds)).toBe(true);
  expect(err.metadata.get("retry-after")).toEqual([String(d.retryDelaySeconds)]);
  expect(d.retryAfterSeconds).toBe(String(d.retryDelaySeconds));
  return d.retryDelaySeconds!;
}

/** POST over node:http from a chosen local address (127.0.0.x): a client the server sees as another peer. */
export function postFrom(
  localAddress: string,
  port: number,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: any; text: string }> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method: "POST", localAddress, agent: false, headers: { "content-type": "application/json", ...headers } },
      (res) => readText(res).then((text) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: jsonOrUndefined(text), text }), reject),
    );
    req.on("error", reject);
    req.end(payload);
  });
}

export const CAPTCHA_SECRET = "captcha-test-secret-0001";

/**
 * A local siteverify endpoint (Turnstile, hCaptcha and reCAPTCHA share the
 * protocol): tokens starting with "pass" succeed once (with a reCAPTCHA v3 score
 * of 0.9, or 0.1 when the token contains "lowscore"), others are refused;
 * `down()` makes it answer 503 until `up()`.
 */
export async function startSiteverify() {
  const requests: Record<string, string>[] = [];
  const used = new Set<string>();
  let down = false;
  const server = createServer((req, res) => {
    readText(req).then((text) => {
      const form = Object.fromEntries(new URLSearchParams(text));
      requests.push(form);
      if (down) return void res.writeHead(503).end();
      // Like the real providers, a token is good once.
      const reused = used.has(form.response ?? "");
      used.add(form.response ?? "");
      const ok = form.secret === CAPTCHA_SECRET && (form.response ?? "").startsWith("pass") && !reused;
      const answer = ok
        ? { success: true, hostname: "localhost", challenge_ts: new Date().toISOString(), score: form.response!.includes("lowscore") ? 0.1 : 0.9 }
        : {
            success: false,
            "error-codes": [form.secret !== CAPTCHA_SECRET ? "invalid-input-secret" : reused ? "timeout-or-duplicate" : "invalid-input-response"],
          };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    }, () => res.writeHead(400).end());
  });
  const url = await listenLocal(server);
  return {
    url: `${url}/siteverify`,
    requests,
    down: () => void (down = true),
    up: () => void (down = false),
    close: () => closeServer(server),
  };
}
