import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { uuidv7 } from "../../shared/uuid.js";
import type { Logger } from "../../shared/logger.js";
import { kClientRequestId, kInChain, kRequestId } from "./context.js";

// What a client may name its own request by; anything else is dropped.
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Assigns the request id, always our own (logs, the x-request-id answer, the
 * audit trail): a client-chosen one could collide with or impersonate other
 * requests' ids. A sane X-Request-Id the client sent is kept beside it as
 * the client request id.
 */
export function observeInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    req.contextValues.set(kInChain, true);
    const requestId = uuidv7();
    const incoming = req.header.get("x-request-id");
    const clientRequestId = incoming !== null && CLIENT_REQUEST_ID.test(incoming) ? incoming : undefined;
    req.contextValues.set(kRequestId, requestId);
    req.contextValues.set(kClientRequestId, clientRequestId);
    const started = performance.now();
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      logger.debug({ requestId, clientRequestId, rpc: req.method.name, ms: Math.round(performance.now() - started) }, "rpc ok");
      return res;
    } catch (err) {
      const error = ConnectError.from(err);
      error.metadata.set("x-request-id", requestId);
      logger.info(
        { requestId, clientRequestId, rpc: req.method.name, code: error.code, ms: Math.round(performance.now() - started) },
        "rpc failed",
      );
      throw error;
    }
  };
}
