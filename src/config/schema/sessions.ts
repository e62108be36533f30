import { z } from "zod";
import type { RoleLifetimes } from "../../sessions/ports.js";
import { DAY, HOUR, MINUTE, SECOND, duration, durationWithin, int, onceValid, refuse } from "../fields.js";

// Access tokens and sessions: their lifetimes by role, the per-user cap,
// refresh rotation, the session cache.

const env = z.object({
  JWT_ISSUER: z.string().min(1).default("urn:identity-service"),
  JWT_AUDIENCE: z.string().min(1).default("urn:ecommerce-platform"),
  ACCESS_TOKEN_TTL: durationWithin(30 * SECOND, HOUR, "must be between 30s and 1h").default(15 * MINUTE),
  SESSION_IDLE_TTL: duration.default(30 * DAY),
  SESSION_ABSOLUTE_TTL: duration.default(90 * DAY),
  // Administrators: short-lived tokens and sessions. Unset, the access and
  // idle TTLs are 5m and 30m, or less when the limits above them are lower.
  ADMIN_ACCESS_TOKEN_TTL: duration.optional(),
  ADMIN_SESSION_IDLE_TTL: duration.optional(),
  ADMIN_SESSION_ABSOLUTE_TTL: durationWithin(MINUTE, 30 * DAY, "must be between 1m and 30d").default(12 * HOUR),
  MAX_SESSIONS_PER_USER: int(1, 1_000).default(10),
  // RFC 9700 §4.14.2: the window in which a replayed refresh token does not end its session stays short.
  REFRESH_REUSE_GRACE: durationWithin(0, 10 * SECOND, "must be at most 10s").default(5 * SECOND),
  SESSION_CACHE_TTL: durationWithin(0, MINUTE, "must be at most 60s (it bounds how late a revocation is seen without Redis)").default(SECOND),
});

type Env = z.output<typeof env>;

const adminAccessTokenTtl = (e: Env) => e.ADMIN_ACCESS_TOKEN_TTL ?? Math.min(5 * MINUTE, e.ACCESS_TOKEN_TTL);
const adminIdleTtl = (e: Env) => e.ADMIN_SESSION_IDLE_TTL ?? Math.min(30 * MINUTE, e.ADMIN_SESSION_ABSOLUTE_TTL);

export const sessionsSchema = env
  .superRefine((e, ctx) => {
    if (e.SESSION_IDLE_TTL > e.SESSION_ABSOLUTE_TTL) refuse(ctx, "SESSION_IDLE_TTL", "must not exceed SESSION_ABSOLUTE_TTL");
    const adminAccess = adminAccessTokenTtl(e);
    if (adminAccess < 30 * SECOND || adminAccess > e.ACCESS_TOKEN_TTL) {
      // Revocation denylists and verifier caches keep an entry for ACCESS_TOKEN_TTL.
      refuse(ctx, "ADMIN_ACCESS_TOKEN_TTL", "must be between 30s and ACCESS_TOKEN_TTL");
    }
    const adminIdle = adminIdleTtl(e);
    if (adminIdle < MINUTE || adminIdle > e.ADMIN_SESSION_ABSOLUTE_TTL) {
      refuse(ctx, "ADMIN_SESSION_IDLE_TTL", "must be at least 1m and not exceed ADMIN_SESSION_ABSOLUTE_TTL");
    }
  }, onceValid)
  .transform((e) => ({
    jwt: { issuer: e.JWT_ISSUER, audience: e.JWT_AUDIENCE, accessTokenTtlMs: e.ACCESS_TOKEN_TTL },
    session: { idleTtlMs: e.SESSION_IDLE_TTL, absoluteTtlMs: e.SESSION_ABSOLUTE_TTL, cacheTtlMs: e.SESSION_CACHE_TTL },
    /** Token and session lifetimes by role; `customer` repeats ACCESS_TOKEN_TTL and SESSION_*_TTL. */
    lifetimes: {
      customer: { accessTokenTtlMs: e.ACCESS_TOKEN_TTL, idleTtlMs: e.SESSION_IDLE_TTL, absoluteTtlMs: e.SESSION_ABSOLUTE_TTL },
      admin: { accessTokenTtlMs: adminAccessTokenTtl(e), idleTtlMs: adminIdleTtl(e), absoluteTtlMs: e.ADMIN_SESSION_ABSOLUTE_TTL },
    } satisfies RoleLifetimes,
    maxSessionsPerUser: e.MAX_SESSIONS_PER_USER,
    /** A retired refresh token presented this soon after its rotation is not treated as reuse (0 = never). */
    refreshReuseGraceMs: e.REFRESH_REUSE_GRACE,
  }));
