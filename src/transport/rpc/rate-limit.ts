import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { RetryInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { normalizeEmailForLookup } from "../../accounts/email.js";
import { DomainError } from "../../shared/errors.js";
import { sourceBlockKey, sourceOf } from "../../abuse/login-defence.js";
import type { LimitCheck, Rate, RateLimiter } from "../../abuse/rate-limiter.js";
import { defaultLimits, type LimitTable } from "../../abuse/rate-limits.js";
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
// The table (defaults and RATE_LIMITS) is abuse/rate-limits.ts.

const AUTH_FAILURE = "auth_failure";

/** The classes an RPC's access policy may name: every entry but the token-failure count. */
export const rateLimitClasses: ReadonlySet<string> = new Set(Object.keys(defaultLimits).filter((c) => c !== AUTH_FAILURE));

/** The classes a blocked source may not call: those that check a password or a second factor. */
const BLOCKABLE: ReadonlySet<string> = new Set(["login", "register", "complete_mfa_login", "password_forgot", "email_login", "complete_email_login", "email_token"]);

/** Key prefixes that differ from the class name (the keys Redis already holds). */
const KEY_PREFIX: Readonly<Record<string, string>> = { authenticated: "auth" };

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
  const blockRate: Rate = { limit: 1, periodMs: 1_000 };

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
