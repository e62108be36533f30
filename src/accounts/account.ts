import { DomainError } from "../shared/errors.js";
import type { Role, User, UserStore } from "./ports.js";

/** The address belongs to another account (or is reserved for one by an undo link). */
export function emailAlreadyRegistered(cause?: unknown): DomainError {
  return new DomainError("already_exists", "EMAIL_ALREADY_REGISTERED", "this e-mail address is already registered", {}, cause === undefined ? undefined : { cause });
}

/** Refuses an address of a disposable-mail service, naming the request's `field`. */
export function refuseDisposable(domains: { isDisposable(email: string): boolean } | undefined, email: string, field: string): void {
  if (domains?.isDisposable(email)) {
    throw new DomainError("invalid_argument", "EMAIL_DOMAIN_NOT_ALLOWED", "e-mail addresses of disposable-mail services are not accepted", { field });
  }
}

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
