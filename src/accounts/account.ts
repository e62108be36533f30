import { DomainError } from "../shared/errors.js";
import type { Role, User, UserStore } from "./ports.js";

/** The account a valid token names is gone (deleted meanwhile). */
export function accountNotFound(): DomainError {
  return new DomainError("not_found", "ACCOUNT_NOT_FOUND", "account no longer exists");
}

export interface AccountWithCredential {
  user: User;
  passwordHash: string;
  role: Role;
}

/** The user with their password credential; ACCOUNT_NOT_FOUND when either is gone. */
export async function loadAccount(users: Pick<UserStore, "get" | "findCredentialByUserId">, userId: string): Promise<AccountWithCredential> {
  const [user, credential] = await Promise.all([users.get(userId), users.findCredentialByUserId(userId)]);
  if (!user || !credential) throw accountNotFound();
  return { user, passwordHash: credential.passwordHash, role: credential.role };
}
