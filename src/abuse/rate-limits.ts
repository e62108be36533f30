import type { Rate } from "./rate-limiter.js";

// The rate-limit table: limits per RPC and scope, their defaults, and the
// RATE_LIMITS syntax that overrides them. Configuration parses it at boot;
// the RPC interceptor (transport/rpc/rate-limit.ts) enforces it.

export type Scope = "ip" | "account" | "ip_account" | "global";

/** Limits per RPC (snake_case name) and scope; `authenticated` applies to every RPC that needs a token. */
export type LimitTable = Readonly<Record<string, Partial<Record<Scope, Rate>>>>;

const per = (limit: number, periodMs: number, burst?: number): Rate => ({ limit, periodMs, burst });
const MINUTE = 60_000;
const HOUR = 3_600_000;

/**
 * Defaults sized for one client address being a household or a mobile
 * carrier's NAT (many people behind one address), and for the fleet's
 * argon2 capacity. The per-account defence against guessing is the
 * progressive delay (login-defence.ts); these bound volume.
 */
export const defaultLimits: LimitTable = {
  login: { ip: per(60, MINUTE, 30), account: per(20, MINUTE, 10), ip_account: per(10, MINUTE, 6), global: per(3_000, 1_000, 3_000) },
  complete_mfa_login: { ip: per(60, MINUTE, 30), global: per(3_000, 1_000, 3_000) },
  register: { ip: per(20, HOUR, 10), account: per(5, HOUR, 3), global: per(500, 1_000, 500) },
  // Requests that send a mail: the per-account limit is also the mailbox's
  // (at most 5 reset mails an hour, whatever the number of requests).
  password_forgot: { ip: per(20, HOUR, 10), account: per(5, HOUR, 5), global: per(300, 1_000, 300) },
  email_login: { ip: per(30, HOUR, 10), account: per(10, HOUR, 5), global: per(500, 1_000, 500) },
  // Completing an e-mail login: by link (per address) or by code (per account too).
  complete_email_login: { ip: per(60, MINUTE, 30), account: per(20, MINUTE, 10), global: per(3_000, 1_000, 3_000) },
  // Following a link from a mail (verify, reset, revert): 256-bit tokens, so only volume is bounded.
  email_token: { ip: per(60, MINUTE, 30), global: per(3_000, 1_000, 3_000) },
  refresh_token: { ip: per(600, MINUTE, 120), global: per(20_000, 1_000, 20_000) },
  verify_token: { ip: per(6_000, MINUTE, 1_000) },
  // Every RPC that needs an access token; `account` is the caller.
  authenticated: { ip: per(1_200, MINUTE, 300), account: per(600, MINUTE, 120) },
  // Calls refused for a missing or bad token, per address (token guessing).
  auth_failure: { ip: per(300, MINUTE, 100) },
};

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
