import { create, toBinary } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { Code, type Interceptor } from "@connectrpc/connect";
import { createValidator } from "@bufbuild/protovalidate";
import { BadRequest_FieldViolationSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { connectErrorOf } from "./errors.js";

/**
 * Refuses unary requests whose message exceeds `maxMessageBytes` (with a
 * reason, unlike the transport's own hard cap), then runs the protovalidate
 * rules declared in the protos.
 */
export function validationInterceptor(maxMessageBytes: number): Interceptor {
  const validator = createValidator();
  return (next) => async (req) => {
    if (!req.stream) {
      if (toBinary(req.method.input, req.message).byteLength > maxMessageBytes) {
        throw connectErrorOf(Code.ResourceExhausted, "REQUEST_TOO_LARGE", `request message exceeds ${maxMessageBytes} bytes`, {
          max_bytes: String(maxMessageBytes),
        });
      }
      const result = validator.validate(req.method.input, req.message);
      if (result.kind === "invalid") {
        const violations = result.violations.map((v) =>
          create(BadRequest_FieldViolationSchema, { field: pathToString(v.field), description: v.message, reason: v.ruleId }),
        );
        const first = violations[0];
        throw connectErrorOf(
          Code.InvalidArgument,
          "VALIDATION_FAILED",
          first ? `${first.field}: ${first.description}` : "invalid request",
          first ? { field: first.field } : {},
          violations,
        );
      }
      if (result.kind === "error") throw result.error;
    }
    return next(req);
  };
}
