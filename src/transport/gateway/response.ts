import type { IncomingMessage, ServerResponse } from "node:http";
import { toJson } from "@bufbuild/protobuf";
import type { JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { refusalStatus } from "./errors.js";
import type { Route } from "./routes.js";

// Response writing: a success as the route's JSON (or 204 without a body),
// every error as Connect's error JSON, never cached.

export function writeSuccess(route: Route, res: ServerResponse, response: Message): void {
  const body = route.successStatus === 204 ? undefined : JSON.stringify(encodeResponse(route, response));
  res.statusCode = route.successStatus;
  res.setHeader("cache-control", "no-store");
  if (body === undefined) {
    res.end();
    return;
  }
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", Buffer.byteLength(body));
  res.end(body);
}

function encodeResponse(route: Route, response: Message): JsonValue {
  const json = toJson(route.method.output, response, { useProtoFieldName: true });
  if (route.responseField === undefined) return json;
  return (json as JsonObject)[route.responseField.name] ?? route.responseDefault;
}

/**
 * Writes an error as Connect's error JSON ({"code", "message", "details"}),
 * the one error shape of every REST answer; the status is the gateway's own
 * for its refusals, else connect's mapping of the code. `keep`: headers the
 * caller set before (default: all set so far); any other is dropped (e.g. a
 * cookie a hook set before failing). `forward`: error metadata copied to
 * response headers.
 */
export function writeError(
  req: Pick<IncomingMessage, "httpVersionMajor">,
  res: ServerResponse,
  error: ConnectError,
  keep: ReadonlySet<string> = new Set(res.getHeaderNames()),
  forward: readonly string[] = [],
): void {
  const status = refusalStatus(error) ?? codeToHttpStatus(error.code);
  for (const name of res.getHeaderNames()) if (!keep.has(name)) res.removeHeader(name);
  let body: Uint8Array;
  try {
    body = errorToJsonBytes(publicError(error), { useProtoFieldName: true });
  } catch {
    body = new TextEncoder().encode(`{"code":"internal"}`);
  }
  res.statusCode = status;
  res.setHeader("cache-control", "no-store");
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", body.byteLength);
  copyHeaders(error.metadata, res, forward);
  // Close rather than read the rest of an oversized body (HTTP/2 forbids the header).
  if (status === 413 && req.httpVersionMajor < 2) res.setHeader("connection", "close");
  res.end(body);
}

// The messages of internal errors stay in the logs (onError), not the response.
function publicError(error: ConnectError): ConnectError {
  if (error.code !== Code.Unknown && error.code !== Code.Internal && error.code !== Code.DataLoss) return error;
  const safe = new ConnectError("internal error", error.code);
  safe.details.push(...error.details);
  return safe;
}

export function copyHeaders(from: Headers, res: ServerResponse, names: readonly string[]): void {
  for (const name of names) {
    const value = from.get(name);
    if (value !== null) res.setHeader(name, value);
  }
}
