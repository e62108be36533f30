import type { OutboxEntry } from "../mail/ports.js";

// An account: the user, the profile and the password credential, and the
// store that keeps them. Other features read accounts through this port.

export interface Profile {
  name?: string | undefined;
  phoneNumber?: string | undefined;
  /** ISO date, YYYY-MM-DD. */
  dateOfBirth?: string | undefined;
  gender?: boolean | undefined;
  address?: string | undefined;
  /** BCP 47 tag of the user's mail language. */
  locale?: string | undefined;
}

export interface User {
  id: string;
  email: string;
  profile: Profile;
  /** The owner of `email` followed a verification mail. */
  emailVerified: boolean;
  /** An address change waiting for its verification. */
  pendingEmail?: string | undefined;
  createdAt: Date;
  updatedAt: Date;
}

/** Privilege level: selects the lifetimes of the user's tokens and sessions. */
export type Role = "customer" | "admin";
export const roles: readonly Role[] = ["customer", "admin"];

export function isRole(value: unknown): value is Role {
  return (roles as readonly unknown[]).includes(value);
}

/** How long a role's access tokens and sessions live. */

export interface PasswordCredential {
  userId: string;
  passwordHash: string;
  role: Role;
  emailVerified: boolean;
}

export interface NewUser {
  id: string;
  email: string;
  passwordHash: string;
  profile: Profile;
  now: Date;
  /**
   * The address's login-throttle key: its failure count (a lock included) is
   * deleted with the account's creation, so failures run up before anyone
   * owned the address do not lock its owner out.
   */
  throttleKey?: Uint8Array | undefined;
  /** The verification mail, written in the same transaction. */
  mail?: OutboxEntry | undefined;
}

export interface UserStore {
  /** Creates user, profile and credential atomically (and clears `throttleKey`). Throws EMAIL_ALREADY_REGISTERED on a duplicate. */
  create(user: NewUser): Promise<User>;
  get(userId: string): Promise<User | undefined>;
  findCredentialByEmail(email: string): Promise<PasswordCredential | undefined>;
  findCredentialByUserId(userId: string): Promise<PasswordCredential | undefined>;
  /** Replaces the hash only if it is still `expected` (a concurrent change wins). */
  rehashPassword(userId: string, expected: string, next: string, now: Date): Promise<boolean>;
  /** Replaces the hash if it is still `expected` and, in the same transaction, revokes the user's sessions except `keepSessionId`. */
  replacePassword(input: {
    userId: string;
    expected: string;
    next: string;
    now: Date;
    revokeSessions: boolean;
    keepSessionId: string;
  }): Promise<{ replaced: boolean; revokedSessionIds: string[] }>;
  /** Applies the present fields of `patch`; undefined leaves a field alone, null clears it. */
  updateProfile(userId: string, patch: ProfilePatch, now: Date): Promise<User | undefined>;
  /** Sets the role of the account with this (normalised) e-mail; its id, or undefined when there is none. */
  setRole(email: string, role: Role, now: Date): Promise<string | undefined>;
}

export type ProfilePatch = { [K in keyof Profile]?: Profile[K] | null };
