import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { DomainError } from "../../shared/errors.js";
import type { CallContext, Principal } from "../../shared/call.js";
import type { ClientInfo } from "../../shared/call.js";

// Typed values that travel with a call. The server (or the REST gateway)
// sets the client and request id; the authentication interceptor sets the
// principal; handlers read them and pass plain values to the core.
export const kClient = createContextKey<ClientInfo>({}, { description: "client address and user agent" });
export const kRequestId = createContextKey<string>("", { description: "request id (ours)" });
export const kClientRequestId = createContextKey<string | undefined>(undefined, { description: "the X-Request-Id the client sent" });
/** Set by the outermost interceptor: errors after this point passed the error mapping. */
export const kInChain = createContextKey<boolean>(false, { description: "the call reached the interceptor chain" });
export const kPrincipal = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });

/** The protocolName of the REST gateway's in-process calls: the only ones that can get cookies. */
export const REST_PROTOCOL = "rest";

/** The facts of the call the domain records (client, request ids). */
export function callContext(ctx: HandlerContext): CallContext {
  return {
    client: ctx.values.get(kClient),
    requestId: ctx.values.get(kRequestId) || undefined,
    clientRequestId: ctx.values.get(kClientRequestId),
  };
}

/** The authenticated caller; the auth interceptor guarantees one, and this fails closed if it ever does not. */
export function requirePrincipal(ctx: HandlerContext): Principal {
  const p = ctx.values.get(kPrincipal);
  if (!p) throw new DomainError("unauthenticated", "TOKEN_MISSING", "an access token is required");
  return p;
}
