import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";

// The requests the gateway refuses itself, before any call. Each has a reason
// and an HTTP status of its own (connect's mapping of the code would give 429
// for 413 and 501 for 405). The ErrorInfo is added once, where the gateway
// answers (withErrorInfo), because its domain belongs to the application.

/** Every reason the gateway puts in an ErrorInfo: the application's catalogue must have them. */
export const gatewayErrorReasons = ["MALFORMED_REQUEST", "REQUEST_TOO_LARGE", "METHOD_NOT_ALLOWED"] as const;

export type GatewayErrorReason = (typeof gatewayErrorReasons)[number];

const refusals = new WeakMap<ConnectError, { status: number; reason: GatewayErrorReason }>();

export function refusal(status: number, code: Code, reason: GatewayErrorReason, message: string): ConnectError {
  const error = new ConnectError(message, code);
  refusals.set(error, { status, reason });
  return error;
}

export function malformed(message: string, status = 400): ConnectError {
  return refusal(status, Code.InvalidArgument, "MALFORMED_REQUEST", message);
}

export function tooLarge(): ConnectError {
  return refusal(413, Code.ResourceExhausted, "REQUEST_TOO_LARGE", "request body too large");
}

export function methodNotAllowed(method: string | undefined): ConnectError {
  return refusal(405, Code.Unimplemented, "METHOD_NOT_ALLOWED", `method ${method} not allowed`);
}

/** The gateway's own status for its refusals; undefined for every other error. */
export function refusalStatus(error: ConnectError): number | undefined {
  return refusals.get(error)?.status;
}

/** Gives a refusal its ErrorInfo in the application's domain; other errors pass unchanged. */
export function withErrorInfo(error: ConnectError, domain: string): ConnectError {
  const refused = refusals.get(error);
  if (refused !== undefined && error.findDetails(ErrorInfoSchema).length === 0) {
    error.details.push({ desc: ErrorInfoSchema, value: { reason: refused.reason, domain } });
  }
  return error;
}
