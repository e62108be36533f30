import { createContextValues } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { Config } from "../config/config.js";
import type { Logger } from "../shared/logger.js";
import { listenGrpcJs, type GrpcJsServer } from "../transport/grpc-js.js";
import { listen, type ListeningServer, type RequestHandler } from "../transport/one-port.js";
import { createProxyMatcher, type ClientInfoResolver } from "../transport/rpc/client-info.js";
import { kClient } from "../transport/rpc/context.js";
import type { UnaryInvoker } from "../transport/rpc/direct.js";
import { GOVERNED_SERVICES } from "./rpc.js";

// The two ports: the main one (every protocol, with the connection deadlines
// and caps of configuration) and the internal @grpc/grpc-js one.
export function listeners(
  config: Config,
  deps: { handler: RequestHandler; invoke: UnaryInvoker; clientInfo: ClientInfoResolver; logger: Logger },
): {
  listen(opts: { port: number; host: string }): Promise<ListeningServer>;
  listenGrpcJs(opts: { port: number; host: string }): Promise<GrpcJsServer>;
} {
  const { clientInfo, logger } = deps;
  return {
    listen: ({ port, host }) =>
      listen(deps.handler, {
        port,
        host,
        limits: config.connections,
        exemptFromSourceCap: createProxyMatcher(config.trustedProxies),
        onSourceCapped: (source) => logger.warn({ source }, "connection refused: too many open connections from one source"),
      }),
    listenGrpcJs: ({ port, host }) =>
      listenGrpcJs({
        port,
        host,
        services: [...GOVERNED_SERVICES, Health],
        invoke: deps.invoke,
        maxReceiveBytes: config.maxRequestBytes,
        // grpc-js's own cap, above which a message is not read at all.
        transportMaxBytes: Math.max(4 * 1_048_576, config.maxRequestBytes),
        contextValues: ({ remoteAddress, headers }) => createContextValues().set(kClient, clientInfo({ headers, socket: { remoteAddress } })),
      }),
  };
}
