import * as grpc from "@grpc/grpc-js";
import { fromBinary, fromJson, type DescMessage, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { ConnectError, type Code } from "@connectrpc/connect";
import { expect } from "vitest";
import { ErrorInfoSchema, RetryInfoSchema, type ErrorInfo } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import type { RestResponse } from "./clients.js";

// What a failed call says, however it arrived: the google.rpc.ErrorInfo
// (reason and metadata) and RetryInfo of a REST or Connect JSON error body,
// a ConnectError, a grpc-js ServiceError, or raw gRPC trailers carrying
// grpc-status-details-bin; and the assertions the suites make on them.

/** Trailers or headers (gRPC, gRPC-Web) that may carry grpc-status-details-bin: base64 text, or bytes as grpc-js gives them. */
export type Trailers = Record<string, string | string[] | Uint8Array | undefined>;

/**
 * Anything a failed call leaves: a REST/Connect JSON error body
 * (`RestResponse.body`), a ConnectError, a grpc-js ServiceError, Trailers,
 * or the grpc-status-details-bin bytes themselves.
 */
export type ErrorSource = unknown;

export interface ErrorInfoView {
  reason: string | undefined;
  metadata: Record<string, string>;
}

/** The reason and metadata of the ErrorInfo detail of `source` (reason undefined, metadata {} without one). */
export function errorInfo(source: ErrorSource): ErrorInfoView {
  const info = errorInfoDetail(source);
  return { reason: info?.reason, metadata: { ...info?.metadata } };
}

/** The ErrorInfo reason of `source`. */
export function errorReason(source: ErrorSource): string | undefined {
  return errorInfoDetail(source)?.reason;
}

/** The whole ErrorInfo detail of `source` (its domain too), or undefined. */
export function errorInfoDetail(source: ErrorSource): ErrorInfo | undefined {
  return detailOf(source, ErrorInfoSchema);
}

/** google.rpc.RetryInfo.retry_delay of `source` in seconds, or undefined. */
export function retryDelaySeconds(source: ErrorSource): number | undefined {
  const delay = detailOf(source, RetryInfoSchema)?.retryDelay;
  return delay ? Number(delay.seconds) + delay.nanos / 1e9 : undefined;
}

/** The raw grpc-status-details-bin bytes of a grpc-js error or trailers (to compare two answers byte for byte). */
export function statusDetailsBytes(source: grpc.ServiceError | Trailers): Uint8Array | undefined {
  const raw = isServiceError(source) ? source.metadata.get("grpc-status-details-bin")[0] : source["grpc-status-details-bin"];
  if (raw === undefined) return undefined;
  if (typeof raw === "string") return base64Decode(raw);
  return Array.isArray(raw) ? undefined : new Uint8Array(raw as Uint8Array);
}

function isServiceError(source: unknown): source is grpc.ServiceError {
  return source instanceof Error && (source as Partial<grpc.ServiceError>).metadata instanceof grpc.Metadata;
}

function detailOf<Desc extends DescMessage>(source: ErrorSource, desc: Desc): MessageShape<Desc> | undefined {
  if (source === undefined || source === null) return undefined;
  if (source instanceof ConnectError) return source.findDetails(desc)[0];
  if (source instanceof Uint8Array) return fromStatusBytes(source, desc);
  if (isServiceError(source)) return fromStatusBytes(statusDetailsBytes(source), desc);
  if (typeof source !== "object") return undefined;
  if ("grpc-status-details-bin" in source || "grpc-status" in source) return fromStatusBytes(statusDetailsBytes(source as Trailers), desc);
  // A Connect or REST JSON error body: details[] of { type, value (base64), debug }.
  const details = (source as { details?: { type?: string; value?: string; debug?: JsonValue }[] }).details ?? [];
  const detail = details.find((d) => d.type === desc.typeName);
  if (detail === undefined) return undefined;
  return typeof detail.value === "string" ? fromBinary(desc, base64Decode(detail.value)) : fromJson(desc, detail.debug ?? {});
}

function fromStatusBytes<Desc extends DescMessage>(bytes: Uint8Array | undefined, desc: Desc): MessageShape<Desc> | undefined {
  if (bytes === undefined) return undefined;
  const any = fromBinary(StatusSchema, bytes).details.find((d) => d.typeUrl.endsWith(`/${desc.typeName}`));
  return any === undefined ? undefined : fromBinary(desc, any.value);
}

/** Asserts a REST error: HTTP status and ErrorInfo reason. */
export function expectRestError(r: RestResponse, status: number, reason: string): void {
  expect({ status: r.status, reason: errorReason(r.body) }, r.text).toEqual({ status, reason });
}

/** Any client-side rejection, never a server failure. */
export function expect4xx(r: RestResponse): void {
  expect(r.status, r.text).toBeGreaterThanOrEqual(400);
  expect(r.status, r.text).toBeLessThan(500);
}

/** A grpc-js call's error, or undefined when it succeeded. */
export async function grpcOutcome(call: Promise<unknown>): Promise<grpc.ServiceError | undefined> {
  try {
    await call;
    return undefined;
  } catch (err) {
    return err as grpc.ServiceError;
  }
}

/** Awaits a grpc-js call that must fail; returns the error. */
export async function grpcFailure(call: Promise<unknown>): Promise<grpc.ServiceError> {
  const err = await grpcOutcome(call);
  if (err === undefined) expect.fail("expected the gRPC call to fail, it succeeded");
  return err;
}

/** Asserts a grpc-js failure: status code and ErrorInfo reason. */
export async function expectGrpcError(call: Promise<unknown>, code: grpc.status, reason: string): Promise<grpc.ServiceError> {
  const err = await grpcFailure(call);
  expect({ code: err.code, reason: errorReason(err) }, err.details).toEqual({ code, reason });
  return err;
}

/** Awaits a Connect call that must fail; returns the error. */
export async function connectFailure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  expect.fail("expected the Connect call to fail, it succeeded");
}

/** Asserts a Connect failure: code and ErrorInfo reason. */
export async function expectConnectError(call: Promise<unknown>, code: Code, reason: string): Promise<ConnectError> {
  const err = await connectFailure(call);
  expect({ code: err.code, reason: errorReason(err) }, err.rawMessage).toEqual({ code, reason });
  return err;
}
