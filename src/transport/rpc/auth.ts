import type { Interceptor } from "@connectrpc/connect";
import { DomainError } from "../../shared/errors.js";
import { tokenInvalid, type Authentication } from "../../sessions/authenticate.js";
import { isAccessTokenShape } from "../../tokens/token-shape.js";
import type { AccessPolicies } from "./access-policy.js";
import { kPrincipal } from "./context.js";

const BEARER = /^Bearer[ ]+(\S+)$/i;

/**
 * The access token of an `authorization` header: TOKEN_MISSING when there is
 * none, TOKEN_INVALID when something is there but not a bearer JWT.
 */
export function bearerToken(header: string | null): string {
  const value = header?.trim();
  if (!value || /^Bearer$/i.test(value)) throw new DomainError("unauthenticated", "TOKEN_MISSING", "an access token is required");
  const token = BEARER.exec(value)?.[1];
  // Canonical compact JWS; anything else is refused before any crypto.
  if (!token || !isAccessTokenShape(token)) throw tokenInvalid();
  return token;
}

/**
 * Authenticates every call to a governed method whose access policy is not
 * public. Fail-closed: the policy table refuses to load without a policy
 * for each method, and looks up an unknown one of a governed service as an
 * error, never as public.
 */
export function authInterceptor(identity: Pick<Authentication, "authenticate">, policies: Pick<AccessPolicies, "of">): Interceptor {
  return (next) => async (req) => {
    const policy = policies.of(req.method);
    if (!policy || policy.access === "public") return next(req);
    const token = bearerToken(req.header.get("authorization"));
    const principal = await identity.authenticate(token);
    req.contextValues.set(kPrincipal, principal);
    return next(req);
  };
}
