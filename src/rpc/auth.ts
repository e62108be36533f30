import type { DescMethod } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { DomainError } from "../core/errors.js";
import type { IdentityService } from "../core/identity.js";
import { kPrincipal } from "./context.js";

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i;

/** The bearer token of an `authorization` header, if it has that shape. */
export function bearerToken(header: string | null): string | undefined {
  return header ? BEARER.exec(header.trim())?.[1] : undefined;
}

/**
 * Authenticates calls to the methods of `services` except `publicMethods`:
 * fail-closed, so a new RPC needs a token until it is listed as public.
 */
export function authInterceptor(
  identity: Pick<IdentityService, "authenticate">,
  services: ReadonlySet<string>,
  publicMethods: ReadonlySet<DescMethod>,
): Interceptor {
  return (next) => async (req) => {
    if (!services.has(req.service.typeName) || publicMethods.has(req.method)) return next(req);
    const token = bearerToken(req.header.get("authorization"));
    if (!token) throw new DomainError("unauthenticated", "TOKEN_MISSING", "an access token is required");
    const principal = await identity.authenticate(token);
    req.contextValues.set(kPrincipal, principal);
    return next(req);
  };
}
