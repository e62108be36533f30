import type { Interceptor } from "@connectrpc/connect";
import type { Role } from "../../accounts/ports.js";
import { recentAuthRequired } from "../../sessions/recent-auth.js";
import type { Principal } from "../../shared/call.js";
import { DomainError } from "../../shared/errors.js";
import type { AccessPolicies, MethodPolicy } from "./access-policy.js";
import { kPrincipal } from "./context.js";

// What an authenticated caller must be, beyond holding a valid token, as
// each RPC's access policy declares it: an administrator, a session that
// passed a second factor. Innermost of the interceptors, right before the
// handler, so that a request refused here has met every earlier check
// (limits, validation) just as the use case's own checks did.
//
// `recent_auth` is declared in the proto too, but enforced by the use case
// (sessions/recent-auth.ts): it also needs the account's second-factor state,
// and the refusal belongs in the use case's audit row. A test walks every
// RPC that declares it and proves a stale login is refused
// (test/integration/access-policy.test.ts).

export interface AuthorizeOptions {
  policies: Pick<AccessPolicies, "of">;
  /** The caller's role now, from the database (not the token's claim: a demotion applies at once). */
  roleOf(userId: string): Promise<Role | undefined>;
  /** RECENT_AUTH_MAX_AGE (named in the aal2 refusal). */
  recentAuthMaxAgeMs: number;
}

export function adminRoleRequired(): DomainError {
  return new DomainError("permission_denied", "ADMIN_ROLE_REQUIRED", "this RPC is for administrators");
}

export function authorizeInterceptor(opts: AuthorizeOptions): Interceptor {
  return (next) => async (req) => {
    const policy = opts.policies.of(req.method);
    if (!policy || policy.access === "public") return next(req);
    const principal = req.contextValues.get(kPrincipal);
    // The auth interceptor sets one for every such method; fail closed if not.
    if (!principal) throw new DomainError("unauthenticated", "TOKEN_MISSING", "an access token is required");
    await authorize(policy, principal, opts);
    return next(req);
  };
}

/** Throws the refusal the policy gives this caller, if any: role first, then assurance. */
export async function authorize(policy: MethodPolicy, principal: Principal, opts: Omit<AuthorizeOptions, "policies">): Promise<void> {
  if (policy.access === "admin" && (await opts.roleOf(principal.userId)) !== "admin") throw adminRoleRequired();
  // amr "mfa" is what makes a token's acr aal2.
  if (policy.minAal >= 2 && !principal.amr?.includes("mfa")) throw recentAuthRequired(opts.recentAuthMaxAgeMs, "aal2");
}
