import type { MfaService } from "../../../src/mfa/mfa-service.js";
import { memoryMail } from "../../support/mail-fakes.js";
import { createTestDefence, noChallenges, noMfa, quietRisk } from "../../support/fakes.js";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../src/shared/errors.js";
import { wireIdentity, type IdentityCollaborators } from "../../../src/app/identity.js";
import { MAX_SESSIONS_PAGE_SIZE } from "../../../src/sessions/session-control.js";
import { decodePageToken, encodePageToken } from "../../../src/shared/page-token.js";
import { createPasswordPolicy } from "../../../src/accounts/password-policy.js";
import type { AccessClaims, TokenIssuer } from "../../../src/tokens/ports.js";
import type { AuditEvent } from "../../../src/audit/ports.js";
import type { RoleLifetimes, RotateResult, SessionInfo, SessionStore } from "../../../src/sessions/ports.js";
import type { UserStore } from "../../../src/accounts/ports.js";
import { uuidv7 } from "../../../src/shared/uuid.js";
import { expectRejected } from "../../support/thrown.js";

// The domain's session control with fakes: who is told what, in which
// order, and which lifetimes a role gets. Storage semantics (SQL, locks,
// the grace window's successor check) are the contract suite's business.

const T0 = new Date("2026-03-01T10:00:00.000Z");
const MINUTE = 60_000;
const LIFETIMES: RoleLifetimes = {
  customer: { accessTokenTtlMs: 15 * MINUTE, idleTtlMs: 30 * 24 * 60 * MINUTE, absoluteTtlMs: 90 * 24 * 60 * MINUTE },
  admin: { accessTokenTtlMs: 5 * MINUTE, idleTtlMs: 30 * MINUTE, absoluteTtlMs: 12 * 60 * MINUTE },
};
const USER = uuidv7(T0);
const OTHER_USER = uuidv7(T0);
const REFRESH = "r".repeat(43);

function setup(
  opts: { role?: "customer" | "admin"; rotate?: RotateResult; evict?: string[]; sessions?: SessionInfo[]; mfa?: MfaService } = {},
) {
  const log: string[] = [];
  const audit: AuditEvent[] = [];
  const issued: Parameters<TokenIssuer["issueAccessToken"]>[0][] = [];
  const created: Parameters<SessionStore["create"]>[0][] = [];
  const owned = new Map<string, string>(); // session id → user id, active ones
  let claims: AccessClaims | undefined;

  const sessions: SessionStore = {
    async create(s) {
      log.push("store.create");
      created.push(s);
      return { evictedSessionIds: opts.evict ?? [] };
    },
    async findActive(id) {
      const userId = owned.get(id);
      return userId ? { id, userId, expiresAt: new Date(T0.getTime() + MINUTE) } : undefined;
    },
    reauthenticate: async () => false,
    async rotate() {
      log.push("store.rotate");
      return opts.rotate ?? { kind: "invalid" };
    },
    async revoke(id) {
      return owned.delete(id);
    },
    async listActive(_userId, _now, page) {
      const all = opts.sessions ?? [];
      const from = page.before === undefined ? 0 : all.findIndex((s) => s.id === page.before) + 1;
      return all.slice(from, from + page.limit);
    },
    async revokeOfUser({ userId, sessionId }) {
      log.push("store.revokeOfUser");
      if (owned.get(sessionId) !== userId) return false;
      owned.delete(sessionId);
      return true;
    },
    async revokeOthersOfUser({ userId, keepSessionId }) {
      log.push("store.revokeOthersOfUser");
      const ids = [...owned].filter(([id, u]) => u === userId && id !== keepSessionId).map(([id]) => id);
      for (const id of ids) owned.delete(id);
      return ids;
    },
  };
  const users = {
    async findCredentialByEmail() {
      return { userId: USER, passwordHash: "hash", role: opts.role ?? "customer" };
    },
  } as unknown as UserStore;
  const tokens: TokenIssuer = {
    async issueAccessToken(input) {
      issued.push(input);
      return { token: "access", expiresAt: new Date(input.now.getTime() + (input.ttlMs ?? 0)) };
    },
    async verifyAccessToken() {
      return claims;
    },
  };
  const deps: IdentityCollaborators = {
    users,
    sessions,
    audit: { record: async (e) => void audit.push(e), list: async () => [], verifyChain: async () => ({ ok: true, checked: 0, unchained: 0, headSeq: "0" }) },
    hasher: { hash: async () => "hash", verify: async () => true, needsRehash: () => false },
    tokens,
    revocations: { sessionsRevoked: (list) => void log.push(`listener:${list.map((s) => s.id).join(",")}`) },
    policy: createPasswordPolicy({ minLength: 8, maxLength: 64, maxBytes: 256, blocklist: new Set() }),
    clock: { now: () => T0 },
    dummyHashFor: () => "dummy",
    lifetimes: LIFETIMES,
    maxSessionsPerUser: 3,
    refreshReuseGraceMs: 5_000,
    defence: createTestDefence({ now: () => T0 }).defence,
    alerts: { notify: () => {} },
    mfa: opts.mfa ?? noMfa,
    challenges: noChallenges,
    risk: quietRisk(),
    recentAuthMaxAgeMs: 10 * 60_000,
    trustedDeviceTtlMs: 30 * 86_400_000,
    mail: memoryMail(),
    requireEmailVerification: false,
  };
  const { identity } = wireIdentity(deps);
  return {
    identity,
    log,
    audit,
    issued,
    created,
    owned,
    setClaims: (c: AccessClaims | undefined) => (claims = c),
  };
}

const call = { client: { ip: "203.0.113.9" }, requestId: "req-1" };

describe("page tokens", () => {
  it("round-trip a UUID through 22 opaque characters", () => {
    const id = uuidv7(T0);
    const token = encodePageToken(id);
    expect(token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(decodePageToken(token)).toBe(id);
  });

  it("refuse anything that is not one of ours", () => {
    for (const bad of ["", "short", "A".repeat(23), "!".repeat(22), "AAAAAAAAAAAAAAAAAAAAAB"]) expect(decodePageToken(bad)).toBeUndefined();
  });
});

describe("login: lifetimes by role and the session cap", () => {
  it("gives customers the customer lifetimes and the role claim", async () => {
    const t = setup();
    const pair = await t.identity.login({ email: "a@example.com", password: "long enough" }, call);
    expect(t.issued[0]).toMatchObject({ role: "customer", ttlMs: 15 * MINUTE });
    expect(t.created[0]).toMatchObject({
      expiresAt: new Date(T0.getTime() + LIFETIMES.customer.idleTtlMs),
      absoluteExpiresAt: new Date(T0.getTime() + LIFETIMES.customer.absoluteTtlMs),
      maxActiveSessions: 3,
    });
    expect(pair.refreshTokenExpiresAt).toEqual(new Date(T0.getTime() + LIFETIMES.customer.idleTtlMs));
  });

  it("refuses an admin session to an admin without TOTP (MFA_ENROLLMENT_REQUIRED), before any session exists", async () => {
    const t = setup({ role: "admin" });
    const err = await expectRejected(DomainError, t.identity.login({ email: "a@example.com", password: "long enough" }, call));
    expect([err.kind, err.reason]).toEqual(["permission_denied", "MFA_ENROLLMENT_REQUIRED"]);
    expect(t.created).toHaveLength(0);
  });

  it("gives admins 5-minute tokens, 30 minutes idle and 12 hours in all", async () => {
    const t = setup({ role: "admin", mfa: { ...noMfa, enabled: async () => true, checkTotp: async () => true } });
    const pair = await t.identity.login({ email: "a@example.com", password: "long enough", mfaCode: "123456" }, call);
    expect(t.issued[0]).toMatchObject({ role: "admin", ttlMs: 5 * MINUTE });
    expect(pair.accessTokenExpiresAt).toEqual(new Date(T0.getTime() + 5 * MINUTE));
    expect(t.created[0]).toMatchObject({
      expiresAt: new Date(T0.getTime() + 30 * MINUTE),
      absoluteExpiresAt: new Date(T0.getTime() + 12 * 60 * MINUTE),
    });
  });

  it("tells the listener of evicted sessions after the store, and audits each with reason session_limit", async () => {
    const evicted = [uuidv7(T0), uuidv7(T0)];
    const t = setup({ evict: evicted });
    await t.identity.login({ email: "a@example.com", password: "long enough" }, call);
    expect(t.log).toEqual(["store.create", `listener:${evicted.join(",")}`]);
    const revocations = t.audit.filter((e) => e.type === "session_revoke");
    expect(revocations.map((e) => e.sessionId).sort()).toEqual([...evicted].sort());
    for (const e of revocations) expect(e).toMatchObject({ outcome: "success", reason: "session_limit", userId: USER, requestId: "req-1" });
  });
});

describe("refresh", () => {
  it("superseded (grace window): UNAUTHENTICATED / REFRESH_TOKEN_SUPERSEDED, no token, no revocation, audited", async () => {
    const sessionId = uuidv7(T0);
    const t = setup({ rotate: { kind: "superseded", sessionId, userId: USER } });
    const err = await expectRejected(DomainError, t.identity.refresh(REFRESH, call));
    expect({ kind: err.kind, reason: err.reason }).toEqual({ kind: "unauthenticated", reason: "REFRESH_TOKEN_SUPERSEDED" });
    expect(t.log).toEqual(["store.rotate"]);
    expect(t.issued).toEqual([]);
    expect(t.audit).toEqual([expect.objectContaining({ type: "refresh", outcome: "failure", reason: "REFRESH_TOKEN_SUPERSEDED", sessionId, userId: USER })]);
  });

  it("reuse: REFRESH_TOKEN_REUSED and the listener hears of the session", async () => {
    const sessionId = uuidv7(T0);
    const t = setup({ rotate: { kind: "reused", sessionId, userId: USER } });
    expect((await expectRejected(DomainError, t.identity.refresh(REFRESH, call))).reason).toBe("REFRESH_TOKEN_REUSED");
    expect(t.log).toEqual(["store.rotate", `listener:${sessionId}`]);
  });

  it("keeps the role's access-token lifetime on refresh", async () => {
    const sessionId = uuidv7(T0);
    const t = setup({ rotate: { kind: "rotated", session: { id: sessionId, userId: USER, expiresAt: T0, role: "admin", emailVerified: false } } });
    const pair = await t.identity.refresh(REFRESH, call);
    expect(t.issued[0]).toMatchObject({ role: "admin", ttlMs: 5 * MINUTE, sessionId });
    expect(pair.accessTokenExpiresAt).toEqual(new Date(T0.getTime() + 5 * MINUTE));
  });
});

describe("session control", () => {
  const current = uuidv7(T0);
  const principal = { userId: USER, sessionId: current, authTime: T0 };

  it("revokeSession: store first, then the listener, then the audit row; the current session may go too", async () => {
    const t = setup();
    const other = uuidv7(T0);
    t.owned.set(other, USER).set(current, USER);
    await t.identity.revokeSession(principal, other.toUpperCase(), call);
    expect(t.log).toEqual(["store.revokeOfUser", `listener:${other}`]);
    expect(t.audit).toEqual([
      expect.objectContaining({ type: "session_revoke", outcome: "success", reason: "user_revoke", userId: USER, sessionId: other }),
    ]);
    await t.identity.revokeSession(principal, current, call);
    expect(t.owned.size).toBe(0);
  });

  it("revokeSession: someone else's, unknown, ended or malformed id → NOT_FOUND / SESSION_NOT_FOUND, nobody told", async () => {
    const t = setup();
    const theirs = uuidv7(T0);
    t.owned.set(theirs, OTHER_USER);
    for (const id of [theirs, uuidv7(T0), "not-a-uuid"]) {
      const err = await expectRejected(DomainError, t.identity.revokeSession(principal, id, call));
      expect({ kind: err.kind, reason: err.reason }).toEqual({ kind: "not_found", reason: "SESSION_NOT_FOUND" });
    }
    expect(t.owned.get(theirs)).toBe(OTHER_USER);
    expect(t.log.filter((l) => l.startsWith("listener"))).toEqual([]);
    expect(t.audit.map((e) => [e.type, e.outcome, e.reason])).toEqual(
      Array(3).fill(["session_revoke", "failure", "SESSION_NOT_FOUND"]),
    );
  });

  it("revokeOtherSessions: all of the caller's but the current, one audit row each", async () => {
    const t = setup();
    const [a, b, theirs] = [uuidv7(T0), uuidv7(T0), uuidv7(T0)];
    t.owned.set(current, USER).set(a, USER).set(b, USER).set(theirs, OTHER_USER);
    await expect(t.identity.revokeOtherSessions(principal, call)).resolves.toEqual({ revokedSessions: 2 });
    expect(t.log).toEqual(["store.revokeOthersOfUser", `listener:${a},${b}`]);
    expect([...t.owned.keys()].sort()).toEqual([current, theirs].sort());
    expect(t.audit.map((e) => [e.sessionId, e.reason])).toEqual([
      [a, "user_revoke_others"],
      [b, "user_revoke_others"],
    ]);
  });

  it("listSessions marks the current one and pages with opaque tokens; page size 0 or too big means the cap", async () => {
    const rows: SessionInfo[] = Array.from({ length: 5 }, (_, i) => ({
      id: i === 1 ? current : uuidv7(T0),
      createdAt: T0,
      lastUsedAt: T0,
      expiresAt: T0,
    }));
    const t = setup({ sessions: rows });
    const p1 = await t.identity.listSessions(principal, { pageSize: 2, pageToken: "" });
    expect(p1.sessions.map((s) => [s.id, s.current])).toEqual([
      [rows[0]!.id, false],
      [current, true],
    ]);
    expect(p1.nextPageToken).toBe(encodePageToken(current));
    const p2 = await t.identity.listSessions(principal, { pageSize: 2, pageToken: p1.nextPageToken });
    const p3 = await t.identity.listSessions(principal, { pageSize: 2, pageToken: p2.nextPageToken });
    expect([...p2.sessions, ...p3.sessions].map((s) => s.id)).toEqual(rows.slice(2).map((r) => r.id));
    expect(p3.nextPageToken).toBe("");
    for (const pageSize of [0, MAX_SESSIONS_PAGE_SIZE + 1]) {
      expect((await t.identity.listSessions(principal, { pageSize, pageToken: "" })).sessions).toHaveLength(5);
    }
    const err = await expectRejected(DomainError, t.identity.listSessions(principal, { pageSize: 2, pageToken: "AAAAAAAAAAAAAAAAAAAAAB" }));
    expect({ kind: err.kind, reason: err.reason }).toEqual({ kind: "invalid_argument", reason: "VALIDATION_FAILED" });
  });
});

describe("verifyToken", () => {
  const sessionId = uuidv7(T0);
  const claims: AccessClaims = {
    userId: USER,
    sessionId,
    tokenId: "jti",
    issuedAt: T0,
    expiresAt: new Date(T0.getTime() + 5 * MINUTE),
    role: "admin",
  };
  // Shaped like a compact JWS, every part canonical base64url.
  const jwtLike = "aQ.bQ.cQ";

  it("is active with the claims when the token verifies and its session is active", async () => {
    const t = setup();
    t.setClaims(claims);
    t.owned.set(sessionId, USER);
    await expect(t.identity.verifyToken(jwtLike)).resolves.toEqual({ active: true, ...claims });
  });

  it("is inactive, never an error, for a bad token, a revoked session or a session of another user", async () => {
    const t = setup();
    await expect(t.identity.verifyToken(jwtLike)).resolves.toEqual({ active: false });
    t.setClaims(claims);
    await expect(t.identity.verifyToken(jwtLike)).resolves.toEqual({ active: false });
    t.owned.set(sessionId, OTHER_USER);
    await expect(t.identity.verifyToken(jwtLike)).resolves.toEqual({ active: false });
    t.owned.set(sessionId, USER);
    for (const junk of ["", "garbage", "a.b", `${"a".repeat(4096)}.b.c`]) {
      await expect(t.identity.verifyToken(junk)).resolves.toEqual({ active: false });
    }
  });
});
