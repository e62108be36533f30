// The database schema, one file on purpose (over 300 lines): drizzle-kit
// diffs it as a whole to write migrations (drizzle.config.ts), and the
// tables reference each other. Each table's comment says which feature owns it.
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";
import { sql } from "drizzle-orm";

// One schema for PostgreSQL and embedded PGlite. Keep to SQL both have
// (servers here run 15; PGlite is 18). Migrations are generated from this
// file by drizzle-kit into migrations/ and are append-only.

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => "bytea",
  fromDriver: (value) => new Uint8Array(value),
});

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const users = pgTable(
  "users",
  {
    id: uuid("id").primaryKey(),
    // Lower-cased ASCII (see accounts/email.ts): unique means unique case-insensitively.
    email: text("email").notNull(),
    // Selects token and session lifetimes (accounts/ports.ts Role). Operators set
    // it with `npm run set-role`; the check keeps hand-written SQL honest.
    role: text("role").notNull().default("customer"),
    // When the owner of `email` followed a verification mail (mail/); NULL
    // until then. An address change (recovery/email-change.ts) sets it anew.
    emailVerifiedAt: ts("email_verified_at"),
    // An address change waiting for its verification mail to be followed.
    pendingEmail: text("pending_email"),
    createdAt: ts("created_at").notNull(),
    updatedAt: ts("updated_at").notNull(),
  },
  (t) => [uniqueIndex("users_email_key").on(t.email), check("users_role_check", sql`${t.role} in ('customer', 'admin')`)],
);

export const profiles = pgTable("profiles", {
  userId: uuid("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  name: text("name"),
  phoneNumber: text("phone_number"),
  dateOfBirth: date("date_of_birth", { mode: "string" }),
  gender: boolean("gender"),
  address: text("address"),
  // BCP 47 tag of the user's mail language (mail/templates).
  locale: text("locale"),
  updatedAt: ts("updated_at").notNull(),
});

/**
 * The parameter head of an argon2 PHC string ("argon2id$v=19$m=19456,t=2,p=1"),
 * NULL for anything else (whose third field may be a salt): what the index
 * below holds, so the parameter sets in use are found by a loose index scan
 * (storage/credential-params.ts) without reading every row.
 */
export const PHC_PARAMS_EXPRESSION =
  "substring(password_hash from '^\\$(argon2(?:id|i|d)\\$v=[0-9]+\\$[a-z]=[0-9]+(?:,[a-z]=[0-9]+)*)\\$')";

export const passwordCredentials = pgTable(
  "password_credentials",
  {
    userId: uuid("user_id")
      .primaryKey()
      .references(() => users.id, { onDelete: "cascade" }),
    // PHC string: algorithm, version, parameters, salt and hash.
    passwordHash: text("password_hash").notNull(),
    changedAt: ts("changed_at").notNull(),
  },
  () => [index("password_credentials_phc_params_idx").using("btree", sql.raw(PHC_PARAMS_EXPRESSION))],
);

export const sessions = pgTable(
  "sessions",
  {
    id: uuid("id").primaryKey(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    createdAt: ts("created_at").notNull(),
    lastUsedAt: ts("last_used_at").notNull(),
    // Idle expiry, pushed forward by each refresh but never past absolute_expires_at.
    expiresAt: ts("expires_at").notNull(),
    absoluteExpiresAt: ts("absolute_expires_at").notNull(),
    revokedAt: ts("revoked_at"),
    revokeReason: text("revoke_reason"),
    ip: text("ip"),
    userAgent: text("user_agent"),
    // When the user last proved who they are (login or re-authentication)
    // and how (RFC 8176 amr values, comma-separated): the auth_time and amr
    // claims of the session's access tokens.
    authTime: ts("auth_time"),
    amr: text("amr"),
  },
  (t) => [index("sessions_user_id_idx").on(t.userId)],
);

// Every refresh token a session was ever given, stored as SHA-256 only.
// Keeping the retired ones lets a replayed token be recognised (reuse
// detection) instead of looking merely unknown.
export const refreshTokens = pgTable(
  "refresh_tokens",
  {
    tokenHash: bytea("token_hash").primaryKey(),
    sessionId: uuid("session_id")
      .notNull()
      .references(() => sessions.id, { onDelete: "cascade" }),
    issuedAt: ts("issued_at").notNull(),
    supersededAt: ts("superseded_at"),
    // The token that replaced this one: a retired token whose successor is
    // still unused may be a concurrent refresh (grace window), not theft.
    replacedBy: bytea("replaced_by"),
  },
  (t) => [index("refresh_tokens_session_id_idx").on(t.sessionId)],
);

// Append-only: a trigger in the migrations refuses UPDATE and DELETE.
// No foreign key on user_id: the trail outlives the account it speaks of.
// Tamper-evident: a BEFORE INSERT trigger (migrations/0005) chains every row
// to the one before it; seq, prev_hash and hash are the database's to set,
// whatever an INSERT says. storage/audit-store.ts verifies the chain.
export const auditEvents = pgTable(
  "audit_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    occurredAt: ts("occurred_at").notNull(),
    eventType: text("event_type").notNull(),
    outcome: text("outcome").notNull(),
    reason: text("reason"),
    userId: uuid("user_id"),
    // Who did it, when not the subject (an admin unlocking an account).
    actorUserId: uuid("actor_user_id"),
    sessionId: uuid("session_id"),
    ip: text("ip"),
    userAgent: text("user_agent"),
    requestId: text("request_id"),
    // Evidence (counts, signals), a flat JSON object; never a secret.
    details: jsonb("details").$type<Record<string, string | number | boolean | string[]>>(),
    // Chain order 1, 2, 3, … (rows from before the chain were backfilled).
    seq: bigint("seq", { mode: "number" }),
    prevHash: bytea("prev_hash"),
    // SHA-256(prev_hash ‖ canonical text of the row).
    hash: bytea("hash"),
  },
  (t) => [
    index("audit_events_user_id_idx").on(t.userId, t.occurredAt),
    index("audit_events_occurred_at_idx").on(t.occurredAt),
    uniqueIndex("audit_events_seq_key").on(t.seq),
    // Filtered listings, newest first by id (keyset pagination).
    index("audit_events_user_id_id_idx").on(t.userId, t.id),
    index("audit_events_event_type_id_idx").on(t.eventType, t.id),
    index("audit_events_ip_id_idx").on(t.ip, t.id),
    check(
      "audit_events_chain_check",
      sql`(${t.seq} is null and ${t.prevHash} is null and ${t.hash} is null) or (${t.seq} > 0 and octet_length(${t.prevHash}) = 32 and octet_length(${t.hash}) = 32)`,
    ),
    check("audit_events_details_check", sql`${t.details} is null or jsonb_typeof(${t.details}) = 'object'`),
  ],
);

// The end of the audit chain: one row, locked and moved forward by the
// chain trigger on every insert, so every instance appends to one chain.
export const auditChainHead = pgTable(
  "audit_chain_head",
  {
    id: integer("id").primaryKey(),
    seq: bigint("seq", { mode: "number" }).notNull(),
    hash: bytea("hash").notNull(),
  },
  (t) => [check("audit_chain_head_single_row", sql`${t.id} = 1`), check("audit_chain_head_hash_check", sql`octet_length(${t.hash}) = 32`)],
);

export const signingKeys = pgTable(
  "signing_keys",
  {
    kid: text("kid").primaryKey(),
    alg: text("alg").notNull(),
    publicJwk: jsonb("public_jwk").notNull(),
    // Before migration 0007 the private JWK in clear; the key store seals
    // such a row on its next read and clears this column.
    privateJwk: jsonb("private_jwk"),
    // The private JWK (JSON) sealed by the secret box (mfa/secret-box.ts)
    // under a key-encryption key from configuration, bound to the kid.
    sealedPrivateJwk: bytea("sealed_private_jwk"),
    createdAt: ts("created_at").notNull(),
    // Signing starts after this (published in the JWKS before use)...
    activatesAt: ts("activates_at").notNull(),
    // ...and the key leaves the JWKS after this.
    retiresAt: ts("retires_at"),
  },
  (t) => [
    index("signing_keys_activates_at_idx").on(t.activatesAt),
    // Never both: sealing a legacy row clears the clear-text column in the same UPDATE.
    check("signing_keys_private_key_check", sql`num_nonnulls(${t.privateJwk}, ${t.sealedPrivateJwk}) = 1`),
  ],
);

// Consecutive failed logins per canonical account, keyed by a keyed hash of
// the normalised e-mail (never the address itself). Rows exist for unknown
// e-mails too, so throttling behaves the same whether or not an account
// exists. A successful login deletes the row.
export const loginThrottle = pgTable(
  "login_throttle",
  {
    accountKey: bytea("account_key").primaryKey(),
    // Attempts claimed and not followed by a success (see AttemptStore).
    failures: integer("failures").notNull(),
    lastFailureAt: ts("last_failure_at").notNull(),
    // Set when failures reached the hard stop; cleared only by an unlock.
    lockedAt: ts("locked_at"),
  },
  (t) => [index("login_throttle_last_failure_at_idx").on(t.lastFailureAt)],
);

// Secrets every instance must share (e.g. the key of the abuse-defence
// hashes), created on first use by whichever instance gets there first.
// Sealed like the signing keys (bound to the name); `value` is the clear
// text of rows from before migration 0007, sealed and cleared on next read.
export const serverSecrets = pgTable(
  "server_secrets",
  {
    name: text("name").primaryKey(),
    value: bytea("value"),
    sealedValue: bytea("sealed_value"),
    createdAt: ts("created_at").notNull(),
  },
  (t) => [check("server_secrets_value_check", sql`num_nonnulls(${t.value}, ${t.sealedValue}) = 1`)],
);

// TOTP (RFC 6238). The secret is sealed with AES-256-GCM (mfa/secret-box.ts)
// under a key from configuration, bound to the user id. A row without
// confirmed_at is an enrolment in progress.
export const mfaTotp = pgTable("mfa_totp", {
  userId: uuid("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  sealedSecret: bytea("sealed_secret").notNull(),
  createdAt: ts("created_at").notNull(),
  pendingExpiresAt: ts("pending_expires_at"),
  confirmedAt: ts("confirmed_at"),
  // Replay protection: codes of this time step or earlier are refused.
  lastUsedStep: bigint("last_used_step", { mode: "number" }),
});

// Single-use recovery codes, as keyed hashes.
export const recoveryCodes = pgTable(
  "recovery_codes",
  {
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    codeHash: bytea("code_hash").notNull(),
    createdAt: ts("created_at").notNull(),
    usedAt: ts("used_at"),
  },
  (t) => [primaryKey({ columns: [t.userId, t.codeHash] })],
);

// The second step of a two-step login: a random token (stored as SHA-256)
// that is good for one CompleteMfaLogin and nothing else.
export const mfaChallenges = pgTable(
  "mfa_challenges",
  {
    tokenHash: bytea("token_hash").primaryKey(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceHash: bytea("device_hash"),
    // How the first step proved the user (RFC 8176 amr, comma-separated);
    // NULL for challenges from before e-mail logins: a password.
    firstFactorAmr: text("first_factor_amr"),
    createdAt: ts("created_at").notNull(),
    expiresAt: ts("expires_at").notNull(),
    attempts: integer("attempts").notNull().default(0),
    consumedAt: ts("consumed_at"),
  },
  (t) => [index("mfa_challenges_expires_at_idx").on(t.expiresAt)],
);

// Login history for risk scoring: devices (keyed hashes of device ids) and
// networks (/24, /48) of past successful logins, and the last located login.
export const knownDevices = pgTable(
  "known_devices",
  {
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceHash: bytea("device_hash").notNull(),
    firstSeenAt: ts("first_seen_at").notNull(),
    lastSeenAt: ts("last_seen_at").notNull(),
    // The last login from this device that passed MFA.
    mfaAt: ts("mfa_at"),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceHash] })],
);

export const knownNetworks = pgTable(
  "known_networks",
  {
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    network: text("network").notNull(),
    country: text("country"),
    firstSeenAt: ts("first_seen_at").notNull(),
    lastSeenAt: ts("last_seen_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.network] })],
);

export const lastLogins = pgTable("last_logins", {
  userId: uuid("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  at: ts("at").notNull(),
  country: text("country"),
  lat: doublePrecision("lat"),
  lon: doublePrecision("lon"),
  accuracyKm: doublePrecision("accuracy_km"),
});

// The mail outbox (feature mail/): a row is written in the same transaction
// as the change that causes it and delivered by the dispatcher. Rows hold no
// secret: a mail's token and code are derived from its id with a sealed
// server key when it is rendered (mail/mail-secrets.ts), so a resend is the
// same mail. `params` holds only what the template needs besides that.
export const outbox = pgTable(
  "outbox",
  {
    id: uuid("id").primaryKey(),
    kind: text("kind").notNull(),
    // The account the mail is about; its current address and locale are read at send time.
    userId: uuid("user_id").references(() => users.id, { onDelete: "cascade" }),
    // An explicit recipient (an address being verified, a former address, a requested one).
    address: text("address"),
    params: jsonb("params").$type<Record<string, string>>().notNull(),
    // pending → sending (leased) → sent | dead | dropped (nothing to send: unknown address, capped)
    status: text("status").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: ts("next_attempt_at").notNull(),
    leaseUntil: ts("lease_until"),
    lastError: text("last_error"),
    createdAt: ts("created_at").notNull(),
    sentAt: ts("sent_at"),
  },
  (t) => [
    index("outbox_due_idx").on(t.nextAttemptAt).where(sql`${t.status} in ('pending', 'sending')`),
    index("outbox_user_kind_idx").on(t.userId, t.kind, t.createdAt),
    check("outbox_status_check", sql`${t.status} in ('pending', 'sending', 'sent', 'dead', 'dropped')`),
  ],
);

// Tokens of mails (verification, reset, e-mail login, revert), stored as
// SHA-256 only; `id` is the id of the outbox row that carried the token.
export const emailTokens = pgTable(
  "email_tokens",
  {
    id: uuid("id").primaryKey(),
    userId: uuid("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    purpose: text("purpose").notNull(),
    tokenHash: bytea("token_hash").notNull(),
    // The address the token is about (being verified; restored by a revert).
    email: text("email").notNull(),
    // E-mail login: SHA-256 of the asking client's `attempt`.
    bindingHash: bytea("binding_hash"),
    failedCodes: integer("failed_codes").notNull().default(0),
    createdAt: ts("created_at").notNull(),
    expiresAt: ts("expires_at").notNull(),
    usedAt: ts("used_at"),
  },
  (t) => [
    uniqueIndex("email_tokens_token_hash_key").on(t.tokenHash),
    index("email_tokens_user_purpose_idx").on(t.userId, t.purpose),
    // Mails to one address whoever asked (a mailbox cap), and addresses an undo link still reserves.
    index("email_tokens_email_idx").on(t.email, t.purpose, t.createdAt),
    check("email_tokens_purpose_check", sql`${t.purpose} in ('verify_email', 'reset_password', 'email_login', 'revert_email')`),
  ],
);

export const schema = {
  users,
  profiles,
  passwordCredentials,
  sessions,
  refreshTokens,
  auditEvents,
  auditChainHead,
  signingKeys,
  loginThrottle,
  serverSecrets,
  mfaTotp,
  recoveryCodes,
  mfaChallenges,
  knownDevices,
  knownNetworks,
  lastLogins,
  outbox,
  emailTokens,
};
export type Schema = typeof schema;

