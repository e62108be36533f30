import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ErrorReasonSchema } from "../../../gen/identity/v1/errors_pb.js";
import { errorReasons } from "../../../src/shared/errors.js";
import { gatewayErrorReasons } from "../../../src/transport/gateway/gateway.js";

// shared/errors.ts and identity.v1.ErrorReason are one catalogue written twice:
// a reason the domain throws must exist in the contract, and a reason the
// contract promises must be one the service can produce. The transport and
// the gateway answer some requests themselves (405, 404, 413, CSRF...), not
// always through the typed ErrorReason: their reasons are read from the
// sources, so one missing from the contract fails here too.

const protoReasons = ErrorReasonSchema.values.map((v) => v.name).filter((name) => name !== "ERROR_REASON_UNSPECIFIED");

const root = fileURLToPath(new URL("../../..", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const UPPER_SNAKE = /["'`]([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)["'`]/g;
const REASON_POSITION = /\breason\s*[:=]\s*["'`]([A-Z][A-Z0-9_]*)["'`]/g;

/**
 * The reason literals of a source: whatever is set as a `reason`, and, in
 * the transport (`everyUpperSnake`), every UPPER_SNAKE string literal,
 * whatever function it is handed to.
 */
function reasonLiterals(source: string, everyUpperSnake: boolean): string[] {
  const found = new Set<string>();
  for (const m of source.matchAll(REASON_POSITION)) found.add(m[1]!);
  if (everyUpperSnake) for (const m of source.matchAll(UPPER_SNAKE)) found.add(m[1]!);
  return [...found];
}

// UPPER_SNAKE literals of the transport that are not error reasons, and what they are.
const notReasons: Record<string, string> = {
  NOT_SERVING: "a grpc.health.v1 serving status",
  MFA_ENCRYPTION_KEYS: "the name of an environment variable",
};

const transport = /^src\/(transport|app)\//;

/** Source file (relative) → the reason literals it holds. */
const sourceReasons = new Map(
  sourceFiles(join(root, "src")).map((file) => {
    const path = relative(root, file).split("\\").join("/");
    return [path, reasonLiterals(readFileSync(file, "utf8"), transport.test(path))] as const;
  }),
);

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

  it("has every reason the REST gateway answers with in identity.v1.ErrorReason", () => {
    expect(gatewayErrorReasons.filter((r) => !protoReasons.includes(r))).toEqual([]);
  });

  it("has every reason literal of the sources in identity.v1.ErrorReason", () => {
    const missing: string[] = [];
    for (const [path, reasons] of sourceReasons) {
      for (const reason of reasons) {
        if (!protoReasons.includes(reason) && !(reason in notReasons)) missing.push(`${path}: ${reason}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("reads the reasons where the transport and the app produce them", () => {
    // If these go unseen, the scan above proves nothing.
    expect(sourceReasons.get("src/transport/gateway/errors.ts")).toEqual(
      expect.arrayContaining(["MALFORMED_REQUEST", "REQUEST_TOO_LARGE", "METHOD_NOT_ALLOWED"]),
    );
    expect(sourceReasons.get("src/transport/http/csrf.ts")).toContain("CSRF_REJECTED");
    expect(sourceReasons.get("src/transport/rpc/edge-errors.ts")).toEqual(expect.arrayContaining(["MALFORMED_REQUEST", "REQUEST_TOO_LARGE"]));
    expect(sourceReasons.get("src/app/http.ts")).toEqual(expect.arrayContaining(["ROUTE_NOT_FOUND", "DEPENDENCY_UNAVAILABLE"]));
  });

  it("finds a reason literal whatever it is handed to, and one set as a reason anywhere", () => {
    expect(reasonLiterals('throw refusal(405, Code.Unimplemented, "NOT_IN_THE_CATALOGUE", "m");', true)).toEqual(["NOT_IN_THE_CATALOGUE"]);
    expect(reasonLiterals('json(res, 503, { status: "unavailable", reason: "GONE" });', false)).toEqual(["GONE"]);
    expect(reasonLiterals('if (err.reason === "UNKNOWN_KEY") return;', false)).toEqual([]);
    expect(reasonLiterals('const header = "x-request-id";', true)).toEqual([]);
  });

  it("lists as not a reason only what the transport still holds", () => {
    const held = new Set([...sourceReasons].filter(([path]) => transport.test(path)).flatMap(([, reasons]) => reasons));
    expect(Object.keys(notReasons).filter((name) => !held.has(name))).toEqual([]);
    expect(Object.keys(notReasons).filter((name) => protoReasons.includes(name))).toEqual([]);
  });
});
