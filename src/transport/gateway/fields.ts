import { ScalarType } from "@bufbuild/protobuf";
import type { DescField, DescMessage, JsonValue } from "@bufbuild/protobuf";
import { malformed } from "./errors.js";

// Fields named by path variables and query parameters, and the strings they
// carry turned into proto JSON values.

// Field lookup by proto name, or also by JSON name (query parameters accept both).
export function resolveFieldPath(message: DescMessage, parts: string[], jsonNames: boolean): DescField[] | undefined {
  const chain: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const part of parts) {
    if (current === undefined) return undefined;
    const field: DescField | undefined = current.fields.find(
      (f) => f.name === part || (jsonNames && f.jsonName === part),
    );
    if (field === undefined) return undefined;
    chain.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return chain;
}

// Well-known types whose JSON form is a string: a path or query value can set them.
const stringWkts = new Set([
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
  "google.protobuf.FieldMask",
  "google.protobuf.StringValue",
  "google.protobuf.BytesValue",
  "google.protobuf.DoubleValue",
  "google.protobuf.FloatValue",
  "google.protobuf.Int64Value",
  "google.protobuf.UInt64Value",
  "google.protobuf.Int32Value",
  "google.protobuf.UInt32Value",
]);

type LeafKind = { scalar: ScalarType } | { enum: true } | { message: DescMessage } | undefined;

function leafKind(field: DescField): LeafKind {
  switch (field.fieldKind) {
    case "scalar":
      return { scalar: field.scalar };
    case "enum":
      return { enum: true };
    case "message":
      return { message: field.message };
    case "list":
      if (field.listKind === "scalar") return { scalar: field.scalar };
      if (field.listKind === "enum") return { enum: true };
      return { message: field.message };
    case "map":
      return undefined;
  }
}

export function fromStringSupported(field: DescField): boolean {
  const kind = leafKind(field);
  if (kind === undefined) return false;
  if ("message" in kind) return stringWkts.has(kind.message.typeName) || kind.message.typeName === "google.protobuf.BoolValue";
  return true;
}

// Path and query values are strings; turn them into the JSON fromJson expects
// (it accepts strings for numbers, but not for bools).
export function fromString(field: DescField, value: string): JsonValue {
  const kind = leafKind(field);
  const isBool =
    kind !== undefined &&
    (("scalar" in kind && kind.scalar === ScalarType.BOOL) ||
      ("message" in kind && kind.message.typeName === "google.protobuf.BoolValue"));
  if (isBool) {
    if (value === "true" || value === "1") return true;
    if (value === "false" || value === "0") return false;
    throw malformed(`"${field.name}" must be true or false`);
  }
  if (kind !== undefined && "enum" in kind && /^-?\d+$/.test(value)) return Number(value);
  return value;
}
