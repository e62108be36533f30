import { and, desc, eq, gt, isNull, lt, ne, sql } from "drizzle-orm";
import { type ActiveSession, type SessionInfo, type SessionStore } from "../sessions/ports.js";
import { rowsOf, type Db } from "./db.js";
import { refreshTokens, sessions, users } from "./schema.js";
import { toRole } from "./user-store.js";

// The SessionStore port on PostgreSQL / PGlite: sessions and their refresh
// tokens (rotation with reuse detection, the per-user cap). Rows never
// leave this file: only domain types cross the port.

// First key of the advisory locks that serialise session-cap evictions per user.
const EVICTION_LOCK_CLASS = 0x5e55;

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

// The presented refresh token with its session and user, locked so that two
// concurrent refreshes with one token serialise: exactly one rotates, the
// other sees it superseded.
async function lockPresentedToken(tx: Tx, presented: Uint8Array) {
  const found = await tx
    .select({
      sessionId: refreshTokens.sessionId,
      supersededAt: refreshTokens.supersededAt,
      replacedBy: refreshTokens.replacedBy,
      userId: sessions.userId,
      revokedAt: sessions.revokedAt,
      createdAt: sessions.createdAt,
      expiresAt: sessions.expiresAt,
      absoluteExpiresAt: sessions.absoluteExpiresAt,
      authTime: sessions.authTime,
      amr: sessions.amr,
      role: users.role,
      emailVerifiedAt: users.emailVerifiedAt,
    })
    .from(refreshTokens)
    .innerJoin(sessions, eq(sessions.id, refreshTokens.sessionId))
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(eq(refreshTokens.tokenHash, presented))
    .for("update", { of: [refreshTokens, sessions] })
    .limit(1);
  return found[0];
}

export function createSessionStore(db: Db): SessionStore {
  const activeSession = db
    .select({ id: sessions.id, userId: sessions.userId, expiresAt: sessions.expiresAt })
    .from(sessions)
    .where(and(eq(sessions.id, sql.placeholder("id")), isNull(sessions.revokedAt), gt(sessions.expiresAt, sql.placeholder("now"))))
    .limit(1)
    .prepare("sessions_find_active");

  return {
    async create(s) {
      // Two autocommitted statements, no lock. First the session and its
      // first refresh token, in one statement (both or neither). Then the
      // cap: revoke the user's active sessions beyond the N most recently
      // used. Each eviction starts after its own insert committed, so of
      // racing logins the last eviction sees every new session, and as all
      // evictions rank sessions the same way the N newest are never revoked:
      // once the logins are done exactly N remain. Overlapping evictions are
      // harmless (only rows still active are revoked and returned). More
      // than N logins of one account in the same instant can revoke a
      // session as it is created: the cap keeps the most recent, as it says.
      await db.execute(sql`
        with s as (
          insert into ${sessions} (id, user_id, created_at, last_used_at, expires_at, absolute_expires_at, ip, user_agent, auth_time, amr)
          values (${s.id}, ${s.userId}, ${s.now.toISOString()}, ${s.now.toISOString()}, ${s.expiresAt.toISOString()},
                  ${s.absoluteExpiresAt.toISOString()}, ${s.client.ip ?? null}, ${s.client.userAgent ?? null},
                  ${s.authTime.toISOString()}, ${s.amr.join(",")})
          returning id
        )
        insert into ${refreshTokens} (token_hash, session_id, issued_at)
        select ${Buffer.from(s.refreshTokenHash)}, s.id, ${s.now.toISOString()} from s`);
      // The per-user advisory lock (held to the end of this one statement)
      // keeps two evictions from locking the same rows in opposite orders,
      // which PostgreSQL would break as a deadlock after a second.
      const now = s.now.toISOString();
      const result = await db.execute(sql`
        with held as (select pg_advisory_xact_lock(${EVICTION_LOCK_CLASS}, hashtext(${s.userId}))),
        victims as (
          select ${sessions.id} as id from ${sessions}, held
          where ${sessions.userId} = ${s.userId} and ${sessions.revokedAt} is null and ${sessions.expiresAt} > ${now}
          order by ${sessions.lastUsedAt} desc, ${sessions.id} desc
          offset ${Math.max(1, s.maxActiveSessions)}
        )
        update ${sessions} set revoked_at = ${now}, revoke_reason = 'session_limit'
        where id in (select id from victims) and revoked_at is null
        returning id`);
      return { evictedSessionIds: rowsOf<{ id: string }>(result).map((r) => r.id) };
    },

    async findActive(sessionId, now): Promise<ActiveSession | undefined> {
      const rows = await activeSession.execute({ id: sessionId, now: now.toISOString() });
      return rows[0];
    },

    async rotate({ presented, next, now, lifetimes, reuseGraceMs, client }) {
      return db.transaction(async (tx) => {
        const row = await lockPresentedToken(tx, presented);
        if (!row) return { kind: "invalid" } as const;
        if (row.revokedAt !== null || row.expiresAt <= now) return { kind: "invalid" } as const;
        if (row.supersededAt !== null && row.replacedBy !== null && now.getTime() - row.supersededAt.getTime() < reuseGraceMs) {
          // Retired moments ago. If its successor is still unused, this is
          // most likely the loser of a concurrent refresh by the same client.
          const successor = await tx
            .select({ supersededAt: refreshTokens.supersededAt })
            .from(refreshTokens)
            .where(eq(refreshTokens.tokenHash, row.replacedBy))
            .limit(1);
          if (successor[0] && successor[0].supersededAt === null) {
            return { kind: "superseded", sessionId: row.sessionId, userId: row.userId } as const;
          }
        }
        if (row.supersededAt !== null) {
          // RFC 9700 §4.14.2: a retired token came back, so one of its
          // holders is not the user. End the whole session.
          await tx
            .update(sessions)
            .set({ revokedAt: now, revokeReason: "refresh_token_reuse" })
            .where(and(eq(sessions.id, row.sessionId), isNull(sessions.revokedAt)));
          return { kind: "reused", sessionId: row.sessionId, userId: row.userId } as const;
        }
        // The user's current role rules: a promotion to admin shortens the
        // session at its next refresh (idle, and absolute from the login).
        const role = toRole(row.role);
        const lifetime = lifetimes[role];
        const absoluteExpiresAt = new Date(
          Math.min(row.absoluteExpiresAt.getTime(), row.createdAt.getTime() + lifetime.absoluteTtlMs),
        );
        if (absoluteExpiresAt <= now) {
          await tx.update(sessions).set({ expiresAt: absoluteExpiresAt, absoluteExpiresAt }).where(eq(sessions.id, row.sessionId));
          return { kind: "invalid" } as const;
        }
        const expiresAt = new Date(Math.min(now.getTime() + lifetime.idleTtlMs, absoluteExpiresAt.getTime()));
        await tx.update(refreshTokens).set({ supersededAt: now, replacedBy: next }).where(eq(refreshTokens.tokenHash, presented));
        await tx.insert(refreshTokens).values({ tokenHash: next, sessionId: row.sessionId, issuedAt: now });
        await tx
          .update(sessions)
          .set({
            lastUsedAt: now,
            expiresAt,
            absoluteExpiresAt,
            ...(client.ip !== undefined ? { ip: client.ip } : {}),
            ...(client.userAgent !== undefined ? { userAgent: client.userAgent } : {}),
          })
          .where(eq(sessions.id, row.sessionId));
        return {
          kind: "rotated",
          session: {
            id: row.sessionId,
            userId: row.userId,
            expiresAt,
            role,
            emailVerified: row.emailVerifiedAt !== null,
            authTime: row.authTime ?? undefined,
            amr: row.amr ? row.amr.split(",") : undefined,
          },
        } as const;
      });
    },

    async reauthenticate({ sessionId, userId, authTime, amr }) {
      const rows = await db
        .update(sessions)
        .set({ authTime, amr: amr.join(",") })
        .where(and(eq(sessions.id, sessionId), eq(sessions.userId, userId), isNull(sessions.revokedAt)))
        .returning({ id: sessions.id });
      return rows.length === 1;
    },

    async revoke(sessionId, now, reason) {
      const rows = await db
        .update(sessions)
        .set({ revokedAt: now, revokeReason: reason })
        .where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt)))
        .returning({ id: sessions.id });
      return rows.length === 1;
    },

    async listActive(userId, now, page): Promise<SessionInfo[]> {
      // UUIDv7 ids are time-ordered: newest first is id descending, and the
      // last id of a page is the cursor of the next.
      const rows = await db
        .select({
          id: sessions.id,
          createdAt: sessions.createdAt,
          lastUsedAt: sessions.lastUsedAt,
          expiresAt: sessions.expiresAt,
          ip: sessions.ip,
          userAgent: sessions.userAgent,
        })
        .from(sessions)
        .where(
          and(
            eq(sessions.userId, userId),
            isNull(sessions.revokedAt),
            gt(sessions.expiresAt, now),
            page.before === undefined ? undefined : lt(sessions.id, page.before),
          ),
        )
        .orderBy(desc(sessions.id))
        .limit(page.limit);
      return rows.map((r) => ({
        id: r.id,
        createdAt: r.createdAt,
        lastUsedAt: r.lastUsedAt,
        expiresAt: r.expiresAt,
        ...(r.ip !== null ? { ip: r.ip } : {}),
        ...(r.userAgent !== null ? { userAgent: r.userAgent } : {}),
      }));
    },

    async revokeOfUser({ userId, sessionId, now, reason }) {
      const rows = await db
        .update(sessions)
        .set({ revokedAt: now, revokeReason: reason })
        .where(and(eq(sessions.id, sessionId), eq(sessions.userId, userId), isNull(sessions.revokedAt), gt(sessions.expiresAt, now)))
        .returning({ id: sessions.id });
      return rows.length === 1;
    },

    async revokeOthersOfUser({ userId, keepSessionId, now, reason }) {
      const rows = await db
        .update(sessions)
        .set({ revokedAt: now, revokeReason: reason })
        .where(and(eq(sessions.userId, userId), ne(sessions.id, keepSessionId), isNull(sessions.revokedAt), gt(sessions.expiresAt, now)))
        .returning({ id: sessions.id });
      return rows.map((r) => r.id);
    },
  };
}
