import { isIP } from "node:net";
import { z } from "zod";

// The field types the configuration areas (schema/*.ts) share. Not in
// config.ts: it imports the areas, and an area would then run before the
// helpers it reads existed (a circular import).

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");

export const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

// "15m", "30d", "900s", "500ms" or plain milliseconds.
export const duration = z.string().transform((v, ctx) => {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) {
    ctx.addIssue({ code: "custom", message: `"${v}" is not a duration like 900s, 15m, 12h or 30d` });
    return z.NEVER;
  }
  const unit = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: DAY }[m[2] ?? "ms"]!;
  return Number(m[1]) * unit;
});

/** A duration within [min, max] milliseconds; `message` says the bounds as operators write them. */
export const durationWithin = (min: number, max: number, message: string) => duration.refine((ms) => ms >= min && ms <= max, message);

const items = (v: string) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/** Comma-separated names, compared without case (domains, hostnames). */
export const lowercaseList = z.string().transform((v) => items(v.toLowerCase()));

export const cidrList = z.string().transform((v, ctx) => {
  const list = items(v);
  for (const item of list) {
    const [addr = "", bits, ...rest] = item.split("/");
    const family = isIP(addr);
    const max = family === 6 ? 128 : 32;
    const badBits = bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    // IPv4-mapped IPv6 ranges: write the IPv4 range instead.
    const mapped = bits !== undefined && family === 6 && addr.toLowerCase().startsWith("::ffff:") && addr.includes(".");
    if (!family || badBits || rest.length > 0 || mapped) {
      ctx.addIssue({ code: "custom", message: `"${item}" is not an IP address or CIDR range` });
    }
  }
  return list;
});

// "https://shop.example.com,https://admin.example.com": exact origins only
// (no wildcard: credentialed CORS cannot use one, and a pattern is easy to get wrong).
export const originList = z.string().transform((v, ctx) => {
  const list = items(v);
  for (const item of list) {
    let origin: string | undefined;
    try {
      const url = new URL(item);
      if (url.protocol === "https:" || url.protocol === "http:") origin = url.origin;
    } catch {
      // reported below
    }
    if (origin !== item) ctx.addIssue({ code: "custom", message: `"${item}" is not an origin like https://app.example.com` });
  }
  return list;
});

/**
 * For the superRefine of an area's rules between variables: they run only
 * once each variable of the area is valid, so that a bad value is reported
 * once, not again by every rule that reads it.
 */
export const onceValid: z.core.$ZodSuperRefineParams = { when: (payload) => payload.issues.length === 0 };

/**
 * Reports a rule that spans variables against `variable`: the
 * "  VARIABLE: problem" line of the ConfigError, as for a single bad value.
 */
export function refuse<Env>(ctx: z.RefinementCtx<Env>, variable: keyof Env & string, problem: string): void {
  ctx.addIssue({ code: "custom", path: [variable], message: problem });
}
