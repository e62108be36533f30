import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethodUnary, type DescService } from "@bufbuild/protobuf";
import { anyPack, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import type { UnaryInvoker } from "./rpc/direct.js";
import { connectErrorOf } from "./rpc/errors.js";

// A second door for internal callers: the same RPC implementations and
// interceptors (through the in-process invoker), served by @grpc/grpc-js,
// whose HTTP/2 path costs several times less CPU per call than
// connect-node's (docs/benchmarks.md). Unary methods only; the main port
// keeps serving everything, streaming and reflection included.

export interface GrpcJsServer {
  port: number;
  close(timeoutMs: number): Promise<void>;
}

export interface GrpcJsServerOptions {
  port: number;
  host: string;
  services: DescService[];
  invoke: UnaryInvoker;
  /** Context values for a call, from the peer address and metadata. */
  contextValues(peer: { remoteAddress: string | undefined; headers: Record<string, string> }): ContextValues;
  /** Messages above this are refused with RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE. */
  maxReceiveBytes: number;
  /** grpc-js's own cap: above this the message is not even read (no reason attached). */
  transportMaxBytes: number;
}

const TOO_LARGE = Symbol("too large");
const MALFORMED = Symbol("malformed");
// As on the main port: unknown fields skipped, nesting bounded.
const READ_OPTIONS = { readUnknownFields: false, recursionLimit: 32 };

function decode(input: DescMessage, bytes: Buffer, maxBytes: number): unknown {
  if (bytes.length > maxBytes) return TOO_LARGE;
  try {
    return fromBinary(input, bytes, READ_OPTIONS);
  } catch {
    // grpc-js would answer INTERNAL: a body that does not parse is the client's fault.
    return MALFORMED;
  }
}

/** "ipv4:1.2.3.4:5", "ipv6:[::1]:5", "1.2.3.4:5", "[::1]:5" → the address. */
export function peerAddress(peer: string): string | undefined {
  const bare = peer.replace(/^ipv[46]:/, "");
  const v6 = /^\[([^\]]+)\]:\d+$/.exec(bare);
  if (v6) return v6[1];
  const v4 = /^([^:]+):\d+$/.exec(bare);
  return v4?.[1];
}

function headersOf(metadata: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === "string") out[key] = value;
  }
  return out;
}

function metadataOf(headers: Headers, skip: ReadonlySet<string> = new Set()): grpc.Metadata {
  const md = new grpc.Metadata();
  headers.forEach((value, key) => {
    if (!skip.has(key) && !key.endsWith("-bin") && !key.startsWith("grpc-") && key !== "content-type") md.set(key, value);
  });
  return md;
}

function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  const error = ConnectError.from(err);
  const details: Any[] = [];
  for (const d of error.details) {
    if ("desc" in d) details.push(anyPack(d.desc, create(d.desc, d.value as never)));
    else details.push({ $typeName: "google.protobuf.Any", typeUrl: `type.googleapis.com/${d.type}`, value: d.value });
  }
  const metadata = metadataOf(error.metadata);
  metadata.set(
    "grpc-status-details-bin",
    Buffer.from(toBinary(StatusSchema, create(StatusSchema, { code: error.code, message: error.rawMessage, details }))),
  );
  return { code: error.code as number as grpc.status, details: error.rawMessage, metadata };
}

function definitionOf(service: DescService, invoke: UnaryInvoker, opts: GrpcJsServerOptions) {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: Record<string, grpc.handleUnaryCall<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== "unary") continue;
    const input: DescMessage = method.input;
    const output: DescMessage = method.output;
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestDeserialize: (b: Buffer) => decode(input, b, opts.maxReceiveBytes),
      requestSerialize: (v: unknown) => Buffer.from(toBinary(input, v as never)),
      responseDeserialize: (b: Buffer) => fromBinary(output, b),
      responseSerialize: (v: unknown) => Buffer.from(toBinary(output, v as never)),
    };
    handlers[method.localName] = (call, callback) => {
      if (call.request === TOO_LARGE) {
        const error = connectErrorOf(Code.ResourceExhausted, "REQUEST_TOO_LARGE", `request message exceeds ${opts.maxReceiveBytes} bytes`);
        callback(toServiceError(error) as grpc.ServiceError);
        return;
      }
      if (call.request === MALFORMED) {
        const error = connectErrorOf(Code.InvalidArgument, "MALFORMED_REQUEST", "request message is not valid protobuf");
        callback(toServiceError(error) as grpc.ServiceError);
        return;
      }
      const controller = new AbortController();
      call.once("cancelled", () => controller.abort(new ConnectError("cancelled", Code.Canceled)));
      const deadline = call.getDeadline();
      const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
      const timeoutMs = Number.isFinite(deadlineMs) ? Math.max(0, deadlineMs - Date.now()) : undefined;
      const headers = headersOf(call.metadata);
      invoke(method as DescMethodUnary, call.request as never, {
        header: headers,
        contextValues: opts.contextValues({ remoteAddress: peerAddress(call.getPeer()), headers }),
        signal: controller.signal,
        timeoutMs,
        protocolName: "grpc",
      }).then(
        (res) => {
          call.sendMetadata(metadataOf(res.header));
          callback(null, res.message, metadataOf(res.trailer));
        },
        (err: unknown) => callback(toServiceError(err) as grpc.ServiceError),
      );
    };
  }
  return { definition, handlers };
}

export async function listenGrpcJs(opts: GrpcJsServerOptions): Promise<GrpcJsServer> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": opts.transportMaxBytes,
    "grpc.keepalive_permit_without_calls": 1,
  });
  for (const service of opts.services) {
    const { definition, handlers } = definitionOf(service, opts.invoke, opts);
    server.addService(definition as grpc.ServiceDefinition, handlers);
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    close: (timeoutMs) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        timer.unref();
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

