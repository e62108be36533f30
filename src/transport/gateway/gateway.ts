// REST/JSON transcoding from google.api.http annotations (the grpc-gateway
// idea) for Connect: every call goes through a Transport, so REST requests
// meet the same interceptors as gRPC and Connect ones. One concern per file:
// path-template.ts, routes.ts (the route table), request.ts and fields.ts
// (decoding), body.ts (bounded reading), response.ts (writing), errors.ts
// (the gateway's own refusals). Nothing here knows the application: its
// error domain and success statuses come in through the options.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescMethod, DescService, Message } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { ContextValues, Transport } from "@connectrpc/connect";
import { methodNotAllowed, withErrorInfo } from "./errors.js";
import { decodeRequest } from "./request.js";
import { compileRoutes, matchRoute, type Route } from "./routes.js";
import { copyHeaders, writeError, writeSuccess } from "./response.js";

export { compilePathTemplate, type PathTemplate } from "./path-template.js";
export { gatewayErrorReasons, type GatewayErrorReason } from "./errors.js";
export { writeError } from "./response.js";

// lib has no DOM; this is the HeadersInit of Node's global fetch types.
type HeadersInit = NonNullable<ConstructorParameters<typeof Headers>[0]>;

export interface RestGatewayOptions {
  /** Services whose google.api.http rules are exposed. */
  services: DescService[];
  /**
   * The google.rpc.ErrorInfo domain of the requests the gateway refuses
   * itself; its catalogue must hold every one of gatewayErrorReasons.
   */
  errorDomain: string;
  /** A method's 2xx success status, e.g. from a method option (default 200; 204 has no body). */
  successStatus?(method: DescMethod): number | undefined;
  /**
   * Where calls go: a transport that runs the server's interceptors, e.g.
   * createDirectTransport (transport/rpc/direct.ts) or createRouterTransport.
   */
  transport: Transport;
  /** Request bodies above this many bytes get 413. */
  maxBodyBytes: number;
  /** Call headers for a request; nothing is forwarded by default. */
  requestHeaders?(req: IncomingMessage): HeadersInit;
  /** Per-call context values (e.g. the client address). */
  contextValues?(req: IncomingMessage): ContextValues;
  /**
   * After the request is decoded, before the call: may complete the request
   * (e.g. a credential from a cookie) or throw a ConnectError to refuse it.
   */
  prepareCall?(ctx: { method: DescMethod; req: IncomingMessage; input: Message }): void;
  /**
   * After a successful call, before the body is encoded (e.g. to set
   * cookies). May return the message to encode instead of `response` (e.g.
   * without what went into a cookie).
   */
  onSuccess?(ctx: { method: DescMethod; req: IncomingMessage; res: ServerResponse; input: Message; response: Message }): Message | void;
  /** Response headers and error metadata copied to the HTTP response (default: retry-after). */
  forwardHeaders?: string[];
  /** Every error response, for logging. Must not throw. */
  onError?(ctx: { method?: DescMethod; req: IncomingMessage; error: ConnectError }): void;
}

/** Handles a request; resolves false when no route matches (the caller falls through, e.g. to 404). */
export type RestGateway = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export function createRestGateway(opts: RestGatewayOptions): RestGateway {
  if (!Number.isSafeInteger(opts.maxBodyBytes) || opts.maxBodyBytes < 0) {
    throw new Error(`maxBodyBytes must be a non-negative integer, got ${opts.maxBodyBytes}`);
  }
  const routes = compileRoutes(opts.services, opts.transport, (method) => opts.successStatus?.(method));
  const forward = (opts.forwardHeaders ?? ["retry-after"]).map((h) => h.toLowerCase());

  // The one place an error is completed (ErrorInfo of a refusal) and reported.
  function failed(req: IncomingMessage, err: unknown, method?: DescMethod): ConnectError {
    const error = withErrorInfo(ConnectError.from(err), opts.errorDomain);
    try {
      opts.onError?.({ method, req, error });
    } catch {
      // A logging hook must never turn into a second failure.
    }
    return error;
  }

  async function serve(route: Route, captures: string[], query: string, req: IncomingMessage, res: ServerResponse) {
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) controller.abort(); // the client left before the answer
    };
    // Headers the caller set before the gateway ran survive an error.
    const ownHeaders = new Set(res.getHeaderNames());
    res.once("close", onClose);
    try {
      const input = await decodeRequest(route, captures, query, req, opts.maxBodyBytes);
      opts.prepareCall?.({ method: route.method, req, input });
      const response = await route.call(input, {
        headers: opts.requestHeaders?.(req),
        contextValues: opts.contextValues?.(req),
        signal: controller.signal,
        onHeader: (headers) => copyHeaders(headers, res, forward),
      });
      // The hook first, so it can shape the body; should encoding then fail,
      // writeError drops the headers it set.
      const shown = opts.onSuccess?.({ method: route.method, req, res, input, response }) ?? response;
      if (res.writableEnded) return; // the hook answered itself
      writeSuccess(route, res, shown);
    } catch (err) {
      const error = failed(req, err, route.method);
      if (res.headersSent || res.destroyed) return;
      writeError(req, res, error, ownHeaders, forward);
    } finally {
      res.off("close", onClose);
    }
  }

  return async function handle(req, res) {
    const url = req.url ?? "";
    if (!url.startsWith("/")) return false;
    const q = url.indexOf("?");
    const segments = (q < 0 ? url : url.slice(0, q)).slice(1).split("/");
    const match = matchRoute(routes, req.method, segments);
    if (match === undefined) return false;
    if ("route" in match) {
      await serve(match.route, match.captures, q < 0 ? "" : url.slice(q + 1), req, res);
      return true;
    }
    const error = failed(req, methodNotAllowed(req.method));
    res.setHeader("allow", match.allowed.join(", "));
    writeError(req, res, error, new Set(res.getHeaderNames()), forward);
    return true;
  };
}
