import { createContextKey } from "@connectrpc/connect";
import type { Principal } from "../core/identity.js";
import type { ClientInfo } from "../core/ports.js";

// Typed values that travel with a call. The server (or the REST gateway)
// sets the client and request id; the authentication interceptor sets the
// principal; handlers read them and pass plain values to the core.
export const kClient = createContextKey<ClientInfo>({}, { description: "client address and user agent" });
export const kRequestId = createContextKey<string>("", { description: "request id" });
export const kPrincipal = createContextKey<Principal | undefined>(undefined, { description: "authenticated caller" });
