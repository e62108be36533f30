import { sql } from "drizzle-orm";
import { runIfMain, withConfig } from "./run.js";
import { openDatabase, type Db } from "../storage/db.js";

// `npm run grant-service-role -- <role>`: run by the schema owner (who also
// runs `npm run migrate`) to give the service's own login role exactly what
// it needs, and on the audit trail no more than reading and appending: even
// a stolen service password cannot rewrite history. The role must exist
// (operators create it with a password). Idempotent; run it again after
// every migration that adds a table.

const USAGE = "usage: npm run grant-service-role -- <role>";

// Lower-case unquoted identifiers only, so the quoted name means what an
// operator typed in CREATE ROLE.
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

const CRUD = "SELECT, INSERT, UPDATE, DELETE";
// Tables the service must not change freely; every other table gets CRUD.
const RESTRICTED: Readonly<Record<string, string>> = {
  audit_events: "SELECT, INSERT",
  // Moved only by the chain trigger, which runs as the owner.
  audit_chain_head: "SELECT",
};

/** Rows of db.execute, whichever driver answered (postgres.js: an array; PGlite: { rows }). */
function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[];
}

/** Whether `name` is a role name this command accepts (and can quote safely). */
export function isServiceRoleName(name: string): boolean {
  return ROLE_NAME.test(name);
}

export type GrantResult = { ok: true; actions: string[] } | { ok: false; message: string };

const notARoleName = (name: string) =>
  `"${name}" is not a role name: lower-case letters, digits and _, at most 63, not starting with a digit`;

// Thrown inside the transaction so that a refusal also undoes any grant made.
class GrantRefused extends Error {}

/** Grants `role` the service's privileges on the database `db` is connected to (as its owner). */
export async function grantServiceRole(db: Db, role: string): Promise<GrantResult> {
  if (!isServiceRoleName(role)) return { ok: false, message: notARoleName(role) };
  const quoted = `"${role}"`;
  try {
    const actions = await db.transaction((tx) => grantIn(tx, role, quoted));
    return { ok: true, actions };
  } catch (err) {
    if (err instanceof GrantRefused) return { ok: false, message: err.message };
    throw err;
  }
}

async function grantIn(tx: Pick<Db, "execute">, role: string, quoted: string): Promise<string[]> {
  const exec = (statement: string) => tx.execute(sql.raw(statement));
  const found = rowsOf<{ rolsuper: boolean; is_me: boolean; owns: boolean | null; migrated: boolean }>(
    await tx.execute(sql`
      select r.rolsuper,
             r.rolname = current_user as is_me,
             (select pg_has_role(r.oid, t.tableowner, 'MEMBER') from pg_tables t
               where t.schemaname = 'public' and t.tablename = 'audit_events') as owns,
             to_regclass('public.audit_chain_head') is not null as migrated
      from pg_roles r where r.rolname = ${role}`),
  )[0];
  if (!found) {
    throw new GrantRefused(`role "${role}" does not exist: create it first (CREATE ROLE ${role} LOGIN PASSWORD '…')`);
  }
  if (!found.migrated) throw new GrantRefused("the schema is not migrated: run `npm run migrate` first");
  if (found.is_me || found.owns) {
    throw new GrantRefused(`"${role}" owns the schema (or is a member of its owner): the service needs a role of its own`);
  }
  if (found.rolsuper) throw new GrantRefused(`"${role}" is a superuser: no grant can restrict it`);

  const actions: string[] = [];
  const database = rowsOf<{ name: string }>(await tx.execute(sql`select quote_ident(current_database()) as name`))[0]!.name;
  await exec(`GRANT CONNECT ON DATABASE ${database} TO ${quoted}`);
  actions.push(`CONNECT on database ${database}`);
  await exec(`GRANT USAGE ON SCHEMA public TO ${quoted}`);
  actions.push("USAGE on schema public");

  const tables = rowsOf<{ name: string; quoted: string }>(
    await tx.execute(sql`select tablename as name, quote_ident(tablename) as quoted from pg_tables where schemaname = 'public' order by tablename`),
  );
  for (const table of tables) {
    const privileges = RESTRICTED[table.name] ?? CRUD;
    // Revoke first so a re-run also takes back anything granted earlier.
    await exec(`REVOKE ALL ON TABLE public.${table.quoted} FROM ${quoted}`);
    await exec(`GRANT ${privileges} ON TABLE public.${table.quoted} TO ${quoted}`);
    actions.push(`${privileges} on ${table.name}`);
  }
  await exec(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM ${quoted}`);
  await exec(`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${quoted}`);
  actions.push("USAGE, SELECT on the sequences of schema public");

  // The migrations' bookkeeping is the owner's alone.
  const drizzle = rowsOf<{ present: boolean }>(await tx.execute(sql`select to_regnamespace('drizzle') is not null as present`))[0];
  if (drizzle?.present) {
    await exec(`REVOKE ALL ON ALL TABLES IN SCHEMA drizzle FROM ${quoted}`);
    await exec(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA drizzle FROM ${quoted}`);
    await exec(`REVOKE ALL ON SCHEMA drizzle FROM ${quoted}`);
    actions.push("nothing on schema drizzle (migrations)");
  }

  // Privileges can also come through PUBLIC or another role: check what
  // the role can actually do, and undo everything if the trail is exposed.
  const leaks = rowsOf<{ leak: string }>(
    await tx.execute(sql`
      select t.name || ': ' || p.privilege as leak
      from (values ('public.audit_events'), ('public.audit_chain_head')) as t(name)
      cross join (values ('UPDATE'), ('DELETE'), ('TRUNCATE')) as p(privilege)
      where has_table_privilege(${role}::name, t.name, p.privilege)
      union all
      select 'public.audit_chain_head: INSERT' where has_table_privilege(${role}::name, 'public.audit_chain_head', 'INSERT')`),
  );
  if (leaks.length > 0) {
    throw new GrantRefused(
      `"${role}" would still be able to change the audit trail (${leaks.map((l) => l.leak).join(", ")}), through PUBLIC or another role: nothing granted`,
    );
  }
  return actions;
}

export async function grantServiceRoleCommand(
  args: readonly string[],
  env: Record<string, string | undefined> = process.env,
): Promise<{ exitCode: number; message: string }> {
  const [role, ...rest] = args;
  if (!role || rest.length > 0) return { exitCode: 2, message: USAGE };
  if (!isServiceRoleName(role)) return { exitCode: 2, message: notARoleName(role) };
  return withConfig(env, async (config) => {
    if (config.database.kind !== "postgres") {
      return { exitCode: 2, message: "set DATABASE_URL: embedded PGlite has a single user and no roles to grant" };
    }
    // The owner's connection; the schema is expected to be migrated already.
    const database = await openDatabase(config.database, { migrate: false });
    try {
      const result = await grantServiceRole(database.db, role);
      if (!result.ok) return { exitCode: 1, message: result.message };
      return { exitCode: 0, message: [`granted ${role}:`, ...result.actions.map((a) => `  ${a}`)].join("\n") };
    } finally {
      await database.close();
    }
  });
}

await runIfMain(import.meta.url, (args) => grantServiceRoleCommand(args));
