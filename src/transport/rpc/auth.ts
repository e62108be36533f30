import type { DescMethod } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { DomainError } from "../../shared/errors.js";
import { tokenInvalid, type Authentication } from "../../sessions/authenticate.js";
import { isAccessTokenShape } from "../../tokens/token-shape.js";
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
 * Authenticates calls to the methods of `services` except `publicMethods`:
 * fail-closed, so a new RPC needs a token until it is listed as public.
 */
export function authInterceptor(
  identity: Pick<Authentication, "authenticate">,
  services: ReadonlySet<string>,
  publicMethods: ReadonlySet<DescMethod>,
): Interceptor {
  return (next) => async (req) => {
    if (!services.has(req.service.typeName) || publicMethods.has(req.method)) return next(req);
    const token = bearerToken(req.header.get("authorization"));
    const principal = await identity.authenticate(token);
    req.contextValues.set(kPrincipal, principal);
    return next(req);
  };
}
