import { create } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { Code, type Interceptor } from "@connectrpc/connect";
import { createValidator } from "@bufbuild/protovalidate";
import { BadRequest_FieldViolationSchema } from "../../gen/google/rpc/error_details_pb.js";
import { connectErrorOf } from "./errors.js";

/** Runs the protovalidate rules declared in the protos on every unary request. */
export function validationInterceptor(): Interceptor {
  const validator = createValidator();
  return (next) => async (req) => {
    if (!req.stream) {
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
