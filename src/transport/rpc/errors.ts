import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { BadRequestSchema, ErrorInfoSchema, type BadRequest_FieldViolation } from "../../../gen/google/rpc/error_details_pb.js";
import { DomainError, type ErrorKind, type ErrorReason } from "../../shared/errors.js";
import type { Logger } from "../../shared/logger.js";
import { kRequestId } from "./context.js";

export const ERROR_DOMAIN = "identity.v1";

const codeOf = {
  invalid_argument: Code.InvalidArgument,
  already_exists: Code.AlreadyExists,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
} as const satisfies Record<ErrorKind, Code>;

export function errorInfo(reason: ErrorReason, metadata: Record<string, string> = {}) {
  return { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, metadata }) };
}

export function connectErrorOf(
  code: Code,
  reason: ErrorReason,
  message: string,
  metadata: Record<string, string> = {},
  violations: BadRequest_FieldViolation[] = [],
): ConnectError {
  const details: { desc: DescMessage; value: unknown }[] = [errorInfo(reason, metadata)];
  if (violations.length > 0) {
    details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: violations }) });
  }
  return new ConnectError(message, code, undefined, details as ConstructorParameters<typeof ConnectError>[3]);
}

export function toConnectError(err: DomainError): ConnectError {
  return connectErrorOf(codeOf[err.kind], err.reason, err.message, { ...err.metadata });
}

/**
 * Maps every failure to a ConnectError with a google.rpc.ErrorInfo. Domain
 * errors keep their reason; a lost database is UNAVAILABLE (retryable);
 * anything else is INTERNAL with nothing leaked and the cause logged.
 */
export function errorInterceptor(logger: Logger, isUnavailable: (err: unknown) => boolean): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (err instanceof DomainError) throw toConnectError(err);
      if (err instanceof ConnectError) {
        if (err.findDetails(ErrorInfoSchema).length > 0) throw err;
        // Framework errors (deadline, cancel, bad encoding) keep their code
        // and gain a reason.
        const reason: ErrorReason = err.code === Code.InvalidArgument ? "MALFORMED_REQUEST" : "INTERNAL_ERROR";
        if (err.code === Code.Internal || err.code === Code.Unknown) {
          logger.error({ err, requestId: req.contextValues.get(kRequestId), procedure: req.url }, "rpc failed");
          throw connectErrorOf(Code.Internal, "INTERNAL_ERROR", "internal error");
        }
        throw connectErrorOf(err.code, reason, err.rawMessage);
      }
      const requestId = req.contextValues.get(kRequestId);
      if (isUnavailable(err)) {
        logger.warn({ err, requestId }, "dependency unavailable");
        throw connectErrorOf(Code.Unavailable, "DEPENDENCY_UNAVAILABLE", "a dependency is unavailable; retry shortly");
      }
      logger.error({ err, requestId, procedure: req.url }, "rpc failed");
      throw connectErrorOf(Code.Internal, "INTERNAL_ERROR", "internal error", requestId ? { request_id: requestId } : {});
    }
  };
}
