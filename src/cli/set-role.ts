import { runIfMain, withConfig } from "./run.js";
import { normalizeEmailForLookup } from "../accounts/email.js";
import { isRole, roles } from "../accounts/ports.js";
import { openDatabase } from "../storage/db.js";
import { createMfaStore } from "../storage/mfa-store.js";
import { createAuditLog } from "../storage/audit-store.js";
import { createUserStore } from "../storage/user-store.js";

// `npm run set-role -- <email> <role>`: how an operator makes (or unmakes)
// an admin (who must have TOTP on). There is deliberately no RPC for it, so no stolen token can
// grant itself privileges. The new role takes effect at the user's next
// login or refresh (lifetimes and the `role` claim); it reads the same
// DATABASE_URL / DATA_DIR as the service.

const USAGE = `usage: npm run set-role -- <email> <${roles.join("|")}>`;

export async function setRole(
  args: readonly string[],
  env: Record<string, string | undefined> = process.env,
): Promise<{ exitCode: number; message: string }> {
  const [rawEmail, role, ...rest] = args;
  if (!rawEmail || !role || rest.length > 0) return { exitCode: 2, message: USAGE };
  if (!isRole(role)) return { exitCode: 2, message: `unknown role "${role}"; one of: ${roles.join(", ")}` };
  const email = normalizeEmailForLookup(rawEmail);
  if (!email) return { exitCode: 2, message: `"${rawEmail}" is not an e-mail address` };
  return withConfig(env, async (config) => {
    const database = await openDatabase(config.database);
    try {
      const now = new Date();
      const userStore = createUserStore(database.db);
      if (role === "admin") {
        // Administrators must use MFA: promote only an account whose TOTP is on.
        const credential = await userStore.findCredentialByEmail(email);
        if (!credential) return { exitCode: 1, message: `no account with the e-mail ${email}` };
        const totp = await createMfaStore(database.db).getTotp(credential.userId);
        if (!totp?.confirmedAt) {
          return { exitCode: 1, message: `${email} has no TOTP: administrators must use MFA; the user enrols first (POST /user/mfa/totp)` };
        }
      }
      const userId = await userStore.setRole(email, role, now);
      if (!userId) return { exitCode: 1, message: `no account with the e-mail ${email}` };
      // A privilege change belongs in the trail like any login.
      await createAuditLog(database.db).record({ type: "role_change", outcome: "success", reason: role, userId, client: {}, at: now });
      return { exitCode: 0, message: `${email} (${userId}) is now ${role}; it applies from the user's next login or refresh` };
    } finally {
      await database.close();
    }
  });
}

await runIfMain(import.meta.url, (args) => setRole(args));
