import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { ErrorReason } from "../../shared/errors.js";
import { kInChain } from "./context.js";
import { errorInfo } from "./errors.js";

// connect-node reads, decompresses and parses a request before any
// interceptor runs, so what goes wrong there never meets errorInterceptor:
// a body over readMaxBytes is RESOURCE_EXHAUSTED without a reason, and a
// protobuf body that does not parse is INTERNAL ("parse binary: …", the
// parser's own text) — a 500 for what is the client's fault (connect-es 2.x,
// serialization.ts). The request gate runs first on every call of every
// protocol, and the protocol handler aborts the call's context with the
// error before it writes it out; a listener on that signal gives such
// errors their code and a reason from the catalogue, in place, so the one
// error shape reaches clients whatever failed.
// test/integration/transport-request-bodies.test.ts pins this on Connect,
// gRPC-Web, gRPC and the grpc-js port.

/** Options for connect-node's `requestGate`. */
export function edgeErrorGate(opts: {
  maxRequestBytes: number;
  /** A request refused before its handler ran (for a log line). */
  onRefused?(info: { procedure: string; protocol: string; code: Code; reason: ErrorReason }): void;
}): (ctx: HandlerContext) => void {
  return (ctx) => {
    ctx.signal.addEventListener(
      "abort",
      () => {
        // Only what failed before the chain: later errors were mapped there,
        // and a failure writing the response (writeMaxBytes) is ours, not the client's.
        if (ctx.values.get(kInChain)) return;
        const reason = classify(ctx.signal.reason, opts.maxRequestBytes);
        if (reason) opts.onRefused?.({ procedure: ctx.method.name, protocol: ctx.protocolName, code: reason.code, reason: reason.reason });
      },
      { once: true },
    );
  };
}

function classify(err: unknown, maxRequestBytes: number): { code: Code; reason: ErrorReason } | undefined {
  // Errors that passed through the interceptors already carry a reason.
  if (!(err instanceof ConnectError) || err.findDetails(ErrorInfoSchema).length > 0) return undefined;
  if (err.code === Code.Internal && err.rawMessage.startsWith("parse binary:")) {
    // The parser's text describes our decoder, not the client's request.
    rewrite(err, Code.InvalidArgument, "request message is not valid protobuf", "MALFORMED_REQUEST");
    return { code: err.code, reason: "MALFORMED_REQUEST" };
  }
  if (err.code === Code.ResourceExhausted) {
    rewrite(err, err.code, `request message exceeds ${maxRequestBytes} bytes`, "REQUEST_TOO_LARGE", {
      max_bytes: String(maxRequestBytes),
    });
    return { code: err.code, reason: "REQUEST_TOO_LARGE" };
  }
  if (err.code === Code.InvalidArgument) {
    // Bad JSON, a bad timeout header, a missing protocol version: the
    // message names what was wrong with the request itself.
    rewrite(err, err.code, err.rawMessage, "MALFORMED_REQUEST");
    return { code: err.code, reason: "MALFORMED_REQUEST" };
  }
  return undefined;
}

function rewrite(err: ConnectError, code: Code, message: string, reason: ErrorReason, metadata: Record<string, string> = {}): void {
  const fresh = new ConnectError(message, code);
  const target = err as { -readonly [K in "code" | "rawMessage" | "message"]: ConnectError[K] };
  target.code = code;
  target.rawMessage = message;
  target.message = fresh.message;
  err.details.push(errorInfo(reason, metadata));
}
