import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { RetryInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { normalizeEmailForLookup } from "../../accounts/email.js";
import { DomainError } from "../../shared/errors.js";
import { sourceBlockKey, sourceOf } from "../../abuse/login-defence.js";
import type { LimitCheck, Rate, RateLimiter } from "../../abuse/rate-limiter.js";
import type { AccessPolicies } from "./access-policy.js";
import { errorInfo } from "./errors.js";
import { kClient, kPrincipal } from "./context.js";

// Rate limits on every RPC of the service, keyed per client address, per
// account (the e-mail a login or registration names, or the caller of an
// authenticated RPC), per address and account, and a fleet-wide ceiling.
// Each RPC counts against the table entry its access policy names
// (rate_limit_class); RPCs of one class share its counters.
// GCRA in Redis (shared by every instance; per instance while Redis is
// down); a refusal is RESOURCE_EXHAUSTED with google.rpc.RetryInfo and a
// `retry-after` header, which the REST gateway turns into 429 Retry-After.

export type Scope = "ip" | "account" | "ip_account" | "global";

/**
 * Limits per class and scope. The classes RPCs name are the public ones'
 * (`login`, `register`, ...) and `authenticated`; `auth_failure` counts
 * calls refused for their token.
 */
export type LimitTable = Readonly<Record<string, Partial<Record<Scope, Rate>>>>;

const per = (limit: number, periodMs: number, burst?: number): Rate => ({ limit, periodMs, burst });
const MINUTE = 60_000;
const HOUR = 3_600_000;

/**
 * Defaults sized for one client address being a household or a mobile
 * carrier's NAT (many people behind one address), and for the fleet's
 * argon2 capacity. The per-account defence against guessing is the
 * progressive delay (core/login-defence.ts); these bound volume.
 */
export const defaultLimits: LimitTable = {
  login: { ip: per(60, MINUTE, 30), account: per(20, MINUTE, 10), ip_account: per(10, MINUTE, 6), global: per(3_000, 1_000, 3_000) },
  complete_mfa_login: { ip: per(60, MINUTE, 30), global: per(3_000, 1_000, 3_000) },
  register: { ip: per(20, HOUR, 10), account: per(5, HOUR, 3), global: per(500, 1_000, 500) },
  refresh_token: { ip: per(600, MINUTE, 120), global: per(20_000, 1_000, 20_000) },
  verify_token: { ip: per(6_000, MINUTE, 1_000) },
  // Every RPC that needs an access token; `account` is the caller.
  authenticated: { ip: per(1_200, MINUTE, 300), account: per(600, MINUTE, 120) },
  // Calls refused for a missing or bad token, per address (token guessing).
  auth_failure: { ip: per(300, MINUTE, 100) },
};

const AUTH_FAILURE = "auth_failure";

/** The classes an RPC's access policy may name: every entry but the token-failure count. */
export const rateLimitClasses: ReadonlySet<string> = new Set(Object.keys(defaultLimits).filter((c) => c !== AUTH_FAILURE));

/** The classes a blocked source may not call: those that check a password or a second factor. */
const BLOCKABLE: ReadonlySet<string> = new Set(["login", "register", "complete_mfa_login"]);

/** Key prefixes that differ from the class name (the keys Redis already holds). */
const KEY_PREFIX: Readonly<Record<string, string>> = { authenticated: "auth" };

const SPEC = /^([a-z_]+)\.(ip|account|ip_account|global)=(\d+)\/(\d+)(ms|s|m|h)(?::(\d+))?$/;
const UNIT = { ms: 1, s: 1_000, m: MINUTE, h: HOUR } as const;

/**
 * The limits in force: the defaults with the overrides of RATE_LIMITS
 * ("login.ip=30/1m:10,register.ip=10/1h" — limit per period, optional
 * burst), or undefined for "off". Throws on a malformed entry.
 */
export function parseLimits(spec: string, defaults: LimitTable = defaultLimits): LimitTable | undefined {
  if (spec === "off") return undefined;
  const table: Record<string, Partial<Record<Scope, Rate>>> = {};
  for (const [method, scopes] of Object.entries(defaults)) table[method] = { ...scopes };
  for (const item of spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = SPEC.exec(item);
    if (!m) throw new Error(`"${item}" is not a limit like login.ip=30/1m or register.ip=10/1h:5`);
    const [, method = "", scope, limit, amount, unit, burst] = m;
    if (!(method in table)) throw new Error(`"${item}": unknown RPC "${method}" (one of ${Object.keys(table).join(", ")})`);
    const periodMs = Number(amount) * UNIT[unit as keyof typeof UNIT];
    if (Number(limit) < 1 || periodMs < 1) throw new Error(`"${item}": limit and period must be positive`);
    table[method]![scope as Scope] = per(Number(limit), periodMs, burst === undefined ? undefined : Math.max(1, Number(burst)));
  }
  return table;
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`));
}

/** The e-mail a public request names, if any (Login, Register). */
function emailOf(message: unknown): string | undefined {
  const m = message as { email?: unknown; account?: { email?: unknown } };
  const raw = typeof m.email === "string" ? m.email : typeof m.account?.email === "string" ? m.account.email : undefined;
  if (raw === undefined || raw.length > 320) return undefined;
  return normalizeEmailForLookup(raw) ?? raw.trim().toLowerCase();
}

export function rateLimited(retryAfterMs: number, scope: string): ConnectError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  const error = new ConnectError(`too many requests; retry in ${seconds}s`, Code.ResourceExhausted, { "retry-after": String(seconds) }, [
    errorInfo("RATE_LIMITED", { scope, retry_after_seconds: String(seconds) }),
    { desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(seconds * 1000) }) },
  ] as ConstructorParameters<typeof ConnectError>[3]);
  return error;
}

export interface RateLimitOptions {
  limiter: RateLimiter;
  table: LimitTable;
  /** Each governed RPC's class and access; other services (health, reflection) are not limited. */
  policies: Pick<AccessPolicies, "of">;
  /** A short keyed hash of a canonical e-mail: no address reaches Redis. */
  accountKey(canonicalEmail: string): string;
  onRefused?(info: { rpc: string; scope: string; ip: string | undefined; retryAfterMs: number }): void;
}

/**
 * Two interceptors: `beforeAuth` limits public RPCs (and counts refused
 * tokens); `afterAuth` limits authenticated RPCs per caller. Each call costs
 * one limiter round trip.
 */
export function rateLimitInterceptors(opts: RateLimitOptions): { beforeAuth: Interceptor; afterAuth: Interceptor } {
  const { limiter, table } = opts;
  // Checked at no cost, the key only carries source blocks (spray and
  // stuffing detection) into every public RPC.
  const blockRate = per(1, 1_000);

  async function enforce(rpc: string, checks: LimitCheck[], scopes: string[], ip: string | undefined): Promise<void> {
    if (checks.length === 0) return;
    const decision = await limiter.consume(checks);
    if (decision.allowed) return;
    const scope = scopes[checks.findIndex((c) => c.key === decision.key)] ?? "ip";
    opts.onRefused?.({ rpc, scope, ip, retryAfterMs: decision.retryAfterMs });
    throw rateLimited(decision.retryAfterMs, scope);
  }

  function add(checks: LimitCheck[], scopes: string[], scope: string, key: string, rate: Rate | undefined, cost?: number): void {
    if (!rate) return;
    checks.push({ key, rate, cost });
    scopes.push(scope);
  }

  const beforeAuth: Interceptor = (next) => async (req) => {
    const policy = opts.policies.of(req.method);
    if (!policy) return next(req);
    const ip = req.contextValues.get(kClient).ip;
    const source = sourceOf(ip);
    if (policy.access !== "public") {
      try {
        return await next(req);
      } catch (err) {
        // The auth interceptor (inside this one) throws domain errors; the
        // error mapping happens outside.
        const unauthenticated = err instanceof DomainError ? err.kind === "unauthenticated" : err instanceof ConnectError && err.code === Code.Unauthenticated;
        // Only refusals of the token itself: the handler never ran.
        if (unauthenticated && req.contextValues.get(kPrincipal) === undefined && table.auth_failure?.ip) {
          const decision = await limiter.consume([{ key: `authfail:ip:${source}`, rate: table.auth_failure.ip }]);
          if (!decision.allowed) {
            opts.onRefused?.({ rpc: snake(req.method.name), scope: "auth_failure", ip, retryAfterMs: decision.retryAfterMs });
            throw rateLimited(decision.retryAfterMs, "auth_failure");
          }
        }
        throw err;
      }
    }
    const cls = policy.rateLimitClass;
    const prefix = KEY_PREFIX[cls] ?? cls;
    const limits = table[cls] ?? {};
    const checks: LimitCheck[] = [];
    const scopes: string[] = [];
    // Blocks of spraying sources apply to the RPCs they abuse; a shared
    // address keeps refreshing and introspecting tokens.
    if (BLOCKABLE.has(cls)) add(checks, scopes, "source_blocked", sourceBlockKey(ip), blockRate, 0);
    add(checks, scopes, "ip", `${prefix}:ip:${source}`, limits.ip);
    const email = limits.account || limits.ip_account ? emailOf(req.message) : undefined;
    if (email !== undefined) {
      const account = opts.accountKey(email);
      add(checks, scopes, "account", `${prefix}:acct:${account}`, limits.account);
      add(checks, scopes, "ip_account", `${prefix}:ipacct:${source}:${account}`, limits.ip_account);
    }
    add(checks, scopes, "global", `${prefix}:global`, limits.global);
    await enforce(snake(req.method.name), checks, scopes, ip);
    return next(req);
  };

  const afterAuth: Interceptor = (next) => async (req) => {
    const principal = req.contextValues.get(kPrincipal);
    const policy = opts.policies.of(req.method);
    if (!principal || !policy || policy.access === "public") return next(req);
    const ip = req.contextValues.get(kClient).ip;
    const cls = policy.rateLimitClass;
    const prefix = KEY_PREFIX[cls] ?? cls;
    const limits = table[cls] ?? {};
    const checks: LimitCheck[] = [];
    const scopes: string[] = [];
    add(checks, scopes, "ip", `${prefix}:ip:${sourceOf(ip)}`, limits.ip);
    add(checks, scopes, "account", `${prefix}:user:${principal.userId}`, limits.account);
    await enforce(snake(req.method.name), checks, scopes, ip);
    return next(req);
  };

  return { beforeAuth, afterAuth };
}
