import type { ServerResponse } from "node:http";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { Code, createContextValues, type ContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { http_success_status } from "../../gen/identity/v1/annotations_pb.js";
import type { Config } from "../config/config.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { createRestGateway, writeError, type RestGateway } from "../transport/gateway/gateway.js";
import { createBrowserCredentials, type BrowserCredentials } from "../transport/http/browser-credentials.js";
import { createCors } from "../transport/http/cors.js";
import type { AnyRequest, AnyResponse, RequestHandler } from "../transport/one-port.js";
import type { AccessPolicies } from "../transport/rpc/access-policy.js";
import type { ClientInfoResolver } from "../transport/rpc/client-info.js";
import { kClient, REST_PROTOCOL } from "../transport/rpc/context.js";
import { createDirectTransport } from "../transport/rpc/direct.js";
import { edgeErrorGate } from "../transport/rpc/edge-errors.js";
import { connectErrorOf, ERROR_DOMAIN } from "../transport/rpc/errors.js";
import { GOVERNED_SERVICES, type Rpc } from "./rpc.js";

// The main port's HTTP handler: probes and the JWKS, CORS preflights,
// gRPC / gRPC-Web / Connect through connect-node, and REST through the
// gateway with browser cookies and CSRF checks. Every protocol meets the
// same interceptor chain (app/rpc.ts).

export interface Probes {
  /** Resolves when the database answers; Redis is reported, not required. */
  ready(): Promise<{ redis: string }>;
  jwks(): unknown;
}

export function buildHttpHandler(
  config: Config,
  deps: { rpc: Rpc; policies: AccessPolicies; clientInfo: ClientInfoResolver; probes: Probes; clock: Clock; logger: Logger },
): RequestHandler {
  const { rpc, clientInfo, logger } = deps;
  const contextValues = (req: AnyRequest) => createContextValues().set(kClient, clientInfo(req));

  const browser = createBrowserCredentials({
    cookieSecure: config.cookieSecure,
    cookieHostPrefix: config.cookieHostPrefix,
    corsOrigins: config.corsOrigins,
    csrfAllowSameSite: config.csrfAllowSameSite,
    publicMethods: deps.policies.publicMethods,
    now: () => deps.clock.now(),
    onCsrfRejected: (req, error) =>
      logger.info(
        { path: req.url, origin: req.headers.origin, secFetchSite: req.headers["sec-fetch-site"], reason: error.rawMessage },
        "csrf check refused a request",
      ),
  });
  const cors = createCors({ origins: config.corsOrigins });

  const gateway = buildGateway(config, { rpc, browser, contextValues, logger });

  const connect = connectNodeAdapter({
    routes: rpc.routes,
    interceptors: rpc.interceptors,
    // Refused before a byte of it is decoded; the edge gate adds the reason.
    readMaxBytes: config.maxRequestBytes,
    // Unknown fields are skipped, not kept (millions of empty ones would
    // otherwise each become an object), and nesting is bounded.
    binaryOptions: { readUnknownFields: false, recursionLimit: 32 },
    jsonOptions: { ignoreUnknownFields: false },
    requestGate: edgeErrorGate({
      maxRequestBytes: config.maxRequestBytes,
      onRefused: (info) => logger.info(info, "request refused before its handler"),
    }),
    contextValues,
    fallback(req, res) {
      // Errors in the gateway's error JSON, with a reason like every other.
      gateway(req as never, res as never).then(
        (handled) => {
          if (!handled) writeError(req, res as ServerResponse, connectErrorOf(Code.NotFound, "ROUTE_NOT_FOUND", "no such route"));
        },
        (err: unknown) => {
          logger.error({ err }, "gateway failed");
          if (!res.headersSent) writeError(req, res as ServerResponse, connectErrorOf(Code.Internal, "INTERNAL_ERROR", "internal error"));
          else res.end();
        },
      );
    },
  });

  return (req, res) => {
    if (cors.handle(req, res)) return; // a preflight, answered
    const url = req.url ?? "/";
    if (req.method === "GET" || req.method === "HEAD") {
      if (url === "/healthz") return json(res, 200, { status: "ok" });
      if (url === "/readyz") {
        deps.probes.ready().then(
          ({ redis }) => json(res, 200, { status: "ready", redis }),
          () => json(res, 503, { status: "unavailable", reason: "DEPENDENCY_UNAVAILABLE" }),
        );
        return;
      }
      if (url === "/.well-known/jwks.json") return json(res, 200, deps.probes.jwks(), { "cache-control": "public, max-age=300" });
    }
    // A body declared too large is refused unread (edge gate); closing the
    // connection spares reading and discarding the rest of it.
    if (req.httpVersionMajor === 1 && Number(req.headers["content-length"]) > config.maxRequestBytes) {
      res.setHeader("connection", "close");
    }
    connect(req as never, res as never);
  };
}

// REST/JSON from the google.api.http rules, through the in-process invoker
// (the same interceptors); cookies stand in for the token and the refresh
// token, under the CSRF checks.
function buildGateway(
  config: Config,
  deps: { rpc: Rpc; browser: BrowserCredentials; contextValues(req: AnyRequest): ContextValues; logger: Logger },
): RestGateway {
  const { rpc, browser, contextValues, logger } = deps;
  return createRestGateway({
    services: [...GOVERNED_SERVICES],
    errorDomain: ERROR_DOMAIN,
    successStatus: (method) => (hasOption(method, http_success_status) ? getOption(method, http_success_status) : undefined),
    transport: createDirectTransport(rpc.invoke, REST_PROTOCOL),
    maxBodyBytes: config.maxRequestBytes,
    forwardHeaders: ["retry-after", "x-request-id"],
    onError({ method, error }) {
      if (!method) logger.info({ code: error.code, reason: error.rawMessage }, "rest request refused");
    },
    requestHeaders(req) {
      const headers = new Headers();
      const auth = req.headers.authorization;
      const fromCookie = browser.accessToken(req);
      if (auth) headers.set("authorization", auth);
      // Whatever the cookie holds, the auth interceptor judges it.
      else if (fromCookie) headers.set("authorization", /^[\x21-\x7e]+$/.test(fromCookie) ? `Bearer ${fromCookie}` : "Bearer -");
      const rid = req.headers["x-request-id"];
      if (typeof rid === "string") headers.set("x-request-id", rid);
      return headers;
    },
    contextValues,
    prepareCall: browser.prepareCall,
    onSuccess: browser.onSuccess,
  });
}

function json(res: AnyResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body);
  const r = res as ServerResponse;
  r.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  r.end(payload);
}
