import { randomBytes } from "node:crypto";
import { afterAll, beforeAll } from "vitest";
import type { NewUser, UserStore } from "../../src/accounts/ports.js";
import type { AuditLog } from "../../src/audit/ports.js";
import type { KeyStore } from "../../src/keys/ports.js";
import type { NewSession, RoleLifetimes, SessionStore } from "../../src/sessions/ports.js";
import { hashRefreshToken } from "../../src/sessions/refresh-token.js";
import { uuidv7 } from "../../src/shared/uuid.js";
import { createAuditLog } from "../../src/storage/audit-store.js";
import type { Database } from "../../src/storage/db.js";
import { createKeyStore } from "../../src/storage/key-store.js";
import { createSessionStore } from "../../src/storage/session-store.js";
import { createUserStore } from "../../src/storage/user-store.js";
import { uniqueEmail } from "./clients.js";
import { openTestDatabase, type Backend } from "./databases.js";
import { testBox } from "./keys.js";

// What the store contract suites (test/contract/<feature>/) build their rows
// from: one fixed instant, users and sessions with unique e-mails and ids
// (so tests share a database without sharing data), and the stores of a
// fresh migrated database of each backend.

export const T0 = new Date("2025-06-15T12:00:00.000Z");
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;
export const at = (offsetMs: number) => new Date(T0.getTime() + offsetMs);

// The store never parses hashes; a distinct PHC-looking string per call is enough.
export function fakeHash(label = randomBytes(4).toString("hex")): string {
  return `$argon2id$v=19$m=8192,t=1,p=1$${randomBytes(16).toString("base64").replace(/=+$/, "")}$${label}`;
}

export function aUser(overrides: Partial<NewUser> = {}): NewUser {
  return { id: uuidv7(T0), email: uniqueEmail(), passwordHash: fakeHash(), profile: {}, now: T0, ...overrides };
}

export function aRefreshToken(): { token: string; hash: Uint8Array } {
  const token = randomBytes(32).toString("base64url");
  return { token, hash: hashRefreshToken(token) };
}

export function aSession(userId: string, overrides: Partial<NewSession> = {}): NewSession {
  return {
    id: uuidv7(T0),
    userId,
    refreshTokenHash: aRefreshToken().hash,
    now: T0,
    expiresAt: at(HOUR),
    absoluteExpiresAt: at(DAY),
    client: { ip: "203.0.113.7", userAgent: "contract-test/1.0" },
    authTime: T0,
    amr: ["pwd"],
    maxActiveSessions: 100,
    ...overrides,
  };
}

/** Lifetimes as the rotate port takes them; only the idle ones matter unless a test says otherwise. */
export function lifetimes(idleTtlMs = HOUR, admin: Partial<RoleLifetimes["admin"]> = {}): RoleLifetimes {
  return {
    customer: { accessTokenTtlMs: 15 * MINUTE, idleTtlMs, absoluteTtlMs: 365 * DAY },
    admin: { accessTokenTtlMs: 5 * MINUTE, idleTtlMs: 30 * MINUTE, absoluteTtlMs: 12 * HOUR, ...admin },
  };
}

export interface Stores {
  database: Database;
  users: UserStore;
  sessions: SessionStore;
  audit: AuditLog;
  keys: KeyStore;
  destroy(): Promise<void>;
}

/** A fresh migrated database of `backend` and the stores over it. */
async function openStores(backend: Backend): Promise<Stores> {
  const { database, destroy } = await openTestDatabase(backend);
  return {
    database,
    users: createUserStore(database.db),
    sessions: createSessionStore(database.db),
    audit: createAuditLog(database.db),
    keys: createKeyStore(database.db, testBox()),
    destroy,
  };
}

/**
 * Opens the stores of a fresh database of `backend` before the enclosing
 * describe block's tests (handing them to `use`), and throws it away after.
 */
export function useStores(backend: Backend, use: (stores: Stores) => void): void {
  let stores: Stores | undefined;
  beforeAll(async () => {
    stores = await openStores(backend);
    use(stores);
  });
  afterAll(async () => {
    await stores?.destroy();
  });
}

/** A stored user with `n` sessions. */
export async function userWithSessions(
  stores: Pick<Stores, "users" | "sessions">,
  n: number,
): Promise<{ user: NewUser; sessionIds: string[] }> {
  const user = aUser();
  await stores.users.create(user);
  const sessionIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const s = aSession(user.id);
    await stores.sessions.create(s);
    sessionIds.push(s.id);
  }
  return { user, sessionIds };
}
