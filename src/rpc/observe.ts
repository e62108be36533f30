import { randomUUID } from "node:crypto";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../logger.js";
import { kRequestId } from "./context.js";

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Assigns the request id (the caller's if sane), answers it, logs the outcome. */
export function observeInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const incoming = req.header.get("x-request-id");
    const requestId = req.contextValues.get(kRequestId) || (incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID());
    req.contextValues.set(kRequestId, requestId);
    const started = performance.now();
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      logger.debug({ requestId, rpc: req.method.name, ms: Math.round(performance.now() - started) }, "rpc ok");
      return res;
    } catch (err) {
      const error = ConnectError.from(err);
      error.metadata.set("x-request-id", requestId);
      logger.info({ requestId, rpc: req.method.name, code: error.code, ms: Math.round(performance.now() - started) }, "rpc failed");
      throw error;
    }
  };
}
