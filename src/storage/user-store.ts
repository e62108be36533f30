import { and, eq, isNull, ne, sql } from "drizzle-orm";
import { emailAlreadyRegistered } from "../accounts/account.js";
import { isRole, type NewUser, type Profile, type ProfilePatch, type Role, type User, type UserStore } from "../accounts/ports.js";
import { pgErrorCode, type Db } from "./db.js";
import { insertOutbox } from "./outbox-store.js";
import { isReserved } from "./recovery-store.js";
import { loginThrottle, passwordCredentials, profiles, sessions, users } from "./schema.js";

// The UserStore port on PostgreSQL / PGlite: users, profiles and password
// credentials. Rows never leave this file: only domain types cross the port.

const UNIQUE_VIOLATION = "23505";

type ProfileRow = typeof profiles.$inferSelect;

// The column's check constraint allows only known roles; anything else is
// corruption, not a reason to guess.
export function toRole(value: string): Role {
  if (!isRole(value)) throw new Error(`unknown role in the database: ${JSON.stringify(value)}`);
  return value;
}

function toProfile(row: ProfileRow | null | undefined): Profile {
  if (!row) return {};
  const profile: Profile = {};
  if (row.name !== null) profile.name = row.name;
  if (row.phoneNumber !== null) profile.phoneNumber = row.phoneNumber;
  if (row.dateOfBirth !== null) profile.dateOfBirth = row.dateOfBirth;
  if (row.gender !== null) profile.gender = row.gender;
  if (row.address !== null) profile.address = row.address;
  if (row.locale !== null) profile.locale = row.locale;
  return profile;
}

export function createUserStore(db: Db): UserStore {
  // The hot reads are prepared once: drizzle then skips building the SQL and
  // PostgreSQL skips parsing and planning it on every call.
  const getUser = db
    .select({ user: users, profile: profiles })
    .from(users)
    .leftJoin(profiles, eq(profiles.userId, users.id))
    .where(eq(users.id, sql.placeholder("id")))
    .limit(1)
    .prepare("users_get");
  const credentialByEmail = db
    .select({ userId: passwordCredentials.userId, passwordHash: passwordCredentials.passwordHash, role: users.role, verifiedAt: users.emailVerifiedAt })
    .from(users)
    .innerJoin(passwordCredentials, eq(passwordCredentials.userId, users.id))
    .where(eq(users.email, sql.placeholder("email")))
    .limit(1)
    .prepare("credentials_by_email");

  async function get(userId: string): Promise<User | undefined> {
    const rows = await getUser.execute({ id: userId });
    const row = rows[0];
    if (!row) return undefined;
    return {
      id: row.user.id,
      email: row.user.email,
      profile: toProfile(row.profile),
      emailVerified: row.user.emailVerifiedAt !== null,
      ...(row.user.pendingEmail !== null ? { pendingEmail: row.user.pendingEmail } : {}),
      createdAt: row.user.createdAt,
      updatedAt: row.user.updatedAt,
    };
  }

  return {
    async create(input: NewUser) {
      try {
        await db.transaction(async (tx) => {
          // An address an undo link still reserves belongs to its former account.
          if (await isReserved(tx, input.email, input.now)) throw emailAlreadyRegistered();
          await tx.insert(users).values({ id: input.id, email: input.email, createdAt: input.now, updatedAt: input.now });
          await tx.insert(profiles).values({
            userId: input.id,
            name: input.profile.name ?? null,
            phoneNumber: input.profile.phoneNumber ?? null,
            dateOfBirth: input.profile.dateOfBirth ?? null,
            gender: input.profile.gender ?? null,
            address: input.profile.address ?? null,
            locale: input.profile.locale ?? null,
            updatedAt: input.now,
          });
          await tx.insert(passwordCredentials).values({ userId: input.id, passwordHash: input.passwordHash, changedAt: input.now });
          // In the same transaction: a duplicate (rolled back) clears nothing.
          if (input.throttleKey) await tx.delete(loginThrottle).where(eq(loginThrottle.accountKey, Buffer.from(input.throttleKey)));
          if (input.mail) await insertOutbox(tx, input.mail);
        });
      } catch (err) {
        if (pgErrorCode(err) === UNIQUE_VIOLATION) {
          throw emailAlreadyRegistered(err);
        }
        throw err;
      }
      return { id: input.id, email: input.email, profile: { ...input.profile }, emailVerified: false, createdAt: input.now, updatedAt: input.now };
    },

    get,

    async findCredentialByEmail(email) {
      const rows = await credentialByEmail.execute({ email });
      const row = rows[0];
      return row && { userId: row.userId, passwordHash: row.passwordHash, role: toRole(row.role), emailVerified: row.verifiedAt !== null };
    },

    async findCredentialByUserId(userId) {
      const rows = await db
        .select({ userId: passwordCredentials.userId, passwordHash: passwordCredentials.passwordHash, role: users.role, verifiedAt: users.emailVerifiedAt })
        .from(passwordCredentials)
        .innerJoin(users, eq(users.id, passwordCredentials.userId))
        .where(eq(passwordCredentials.userId, userId))
        .limit(1);
      const row = rows[0];
      return row && { userId: row.userId, passwordHash: row.passwordHash, role: toRole(row.role), emailVerified: row.verifiedAt !== null };
    },

    async rehashPassword(userId, expected, next, now) {
      const rows = await db
        .update(passwordCredentials)
        .set({ passwordHash: next })
        .where(and(eq(passwordCredentials.userId, userId), eq(passwordCredentials.passwordHash, expected)))
        .returning({ userId: passwordCredentials.userId });
      void now; // a re-hash is not a password change: changed_at stays
      return rows.length === 1;
    },

    async replacePassword(input) {
      return db.transaction(async (tx) => {
        const rows = await tx
          .update(passwordCredentials)
          .set({ passwordHash: input.next, changedAt: input.now })
          .where(and(eq(passwordCredentials.userId, input.userId), eq(passwordCredentials.passwordHash, input.expected)))
          .returning({ userId: passwordCredentials.userId });
        if (rows.length !== 1) return { replaced: false, revokedSessionIds: [] };
        await tx.update(users).set({ updatedAt: input.now }).where(eq(users.id, input.userId));
        if (!input.revokeSessions) return { replaced: true, revokedSessionIds: [] };
        const revoked = await tx
          .update(sessions)
          .set({ revokedAt: input.now, revokeReason: "password_change" })
          .where(and(eq(sessions.userId, input.userId), ne(sessions.id, input.keepSessionId), isNull(sessions.revokedAt)))
          .returning({ id: sessions.id });
        return { replaced: true, revokedSessionIds: revoked.map((r) => r.id) };
      });
    },

    async updateProfile(userId, patch: ProfilePatch, now) {
      const set: Partial<typeof profiles.$inferInsert> = { updatedAt: now };
      if (patch.name !== undefined) set.name = patch.name;
      if (patch.phoneNumber !== undefined) set.phoneNumber = patch.phoneNumber;
      if (patch.dateOfBirth !== undefined) set.dateOfBirth = patch.dateOfBirth;
      if (patch.gender !== undefined) set.gender = patch.gender;
      if (patch.address !== undefined) set.address = patch.address;
      if (patch.locale !== undefined) set.locale = patch.locale;
      const updated = await db.transaction(async (tx) => {
        const rows = await tx.update(users).set({ updatedAt: now }).where(eq(users.id, userId)).returning({ id: users.id });
        if (rows.length !== 1) return false;
        await tx
          .insert(profiles)
          .values({ userId, updatedAt: now, ...set })
          .onConflictDoUpdate({ target: profiles.userId, set });
        return true;
      });
      return updated ? get(userId) : undefined;
    },

    async setRole(email, role, now) {
      const rows = await db.update(users).set({ role, updatedAt: now }).where(eq(users.email, email)).returning({ id: users.id });
      return rows[0]?.id;
    },
  };
}
