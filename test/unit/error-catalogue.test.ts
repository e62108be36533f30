import { describe, expect, it } from "vitest";
import { ErrorReasonSchema } from "../../gen/identity/v1/errors_pb.js";
import { errorReasons } from "../../src/shared/errors.js";

// core/errors.ts and identity.v1.ErrorReason are one catalogue written twice:
// a reason the domain throws must exist in the contract, and a reason the
// contract promises must be one the domain can produce.

const protoReasons = ErrorReasonSchema.values.map((v) => v.name).filter((name) => name !== "ERROR_REASON_UNSPECIFIED");

describe("error catalogue", () => {
  it("reads the enum from the generated descriptor", () => {
    expect(ErrorReasonSchema.typeName).toBe("identity.v1.ErrorReason");
    expect(ErrorReasonSchema.values[0]).toMatchObject({ name: "ERROR_REASON_UNSPECIFIED", number: 0 });
    expect(protoReasons.length).toBeGreaterThan(0);
  });

  it("has every domain reason in identity.v1.ErrorReason", () => {
    const missingFromProto = errorReasons.filter((r) => !protoReasons.includes(r));
    expect(missingFromProto).toEqual([]);
  });

  it("has every identity.v1.ErrorReason value in the domain catalogue", () => {
    const missingFromDomain = protoReasons.filter((r) => !(errorReasons as readonly string[]).includes(r));
    expect(missingFromDomain).toEqual([]);
  });

  it("lists each reason once, in UPPER_SNAKE", () => {
    expect(new Set(errorReasons).size).toBe(errorReasons.length);
    expect(new Set(protoReasons).size).toBe(protoReasons.length);
    for (const reason of errorReasons) expect(reason).toMatch(/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/);
  });

  it("never uses UNSPECIFIED as a domain reason", () => {
    expect(errorReasons as readonly string[]).not.toContain("ERROR_REASON_UNSPECIFIED");
  });
});
