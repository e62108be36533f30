import * as grpc from "@grpc/grpc-js";
import { connect as h2connect, constants as h2 } from "node:http2";
import type { Code } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { errorReason } from "./error-info.js";

// Calls a procedure with bytes the test chose (malformed, oversized), on
// each protocol of the main port and on the grpc-js port, and reports the
// outcome in one shape: the gRPC code name and the ErrorInfo reason.

export type RawProtocol = "connect" | "grpc-web" | "grpc" | "grpc-js";

export interface RawOutcome {
  /** The status code name, lower snake case ("invalid_argument"), or "ok". */
  code: string;
  reason: string | undefined;
  /** HTTP status (0 for grpc-js). */
  httpStatus: number;
  message: string;
}

/** The lower snake case name of a gRPC status code ("invalid_argument"), "ok" for 0. */
const codeName = (code: number): string => (code === 0 ? "ok" : codeToString(code as Code));

/** A gRPC length-prefixed message (uncompressed). */
export function envelope(message: Uint8Array, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([head, message]);
}

function fromTrailers(t: Record<string, string | undefined>, httpStatus: number): RawOutcome {
  const code = Number(t["grpc-status"] ?? "2");
  return {
    code: codeName(code),
    reason: errorReason(t),
    httpStatus,
    message: decodeURIComponent(t["grpc-message"] ?? ""),
  };
}

/** `procedure` is "/package.Service/Method". */
export async function rawCall(
  target: { baseUrl: string; grpcPort: number },
  protocol: RawProtocol,
  procedure: string,
  body: Uint8Array,
): Promise<RawOutcome> {
  switch (protocol) {
    case "connect": {
      const res = await fetch(target.baseUrl + procedure, { method: "POST", headers: { "content-type": "application/proto" }, body });
      const text = await res.text();
      if (res.status === 200) return { code: "ok", reason: undefined, httpStatus: 200, message: "" };
      const json = JSON.parse(text) as { code: string; message?: string };
      return { code: json.code, reason: errorReason(json), httpStatus: res.status, message: json.message ?? "" };
    }
    case "grpc-web": {
      const res = await fetch(target.baseUrl + procedure, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
        body: envelope(body),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      // Trailers-only responses carry the status in headers; others in a trailer frame (flag 0x80).
      const headers = Object.fromEntries(res.headers.entries());
      if (headers["grpc-status"] !== undefined) return fromTrailers(headers, res.status);
      let at = 0;
      while (at + 5 <= bytes.length) {
        const flags = bytes[at]!;
        const len = bytes.readUInt32BE(at + 1);
        const frame = bytes.subarray(at + 5, at + 5 + len);
        if (flags & 0x80) {
          const t: Record<string, string> = {};
          for (const line of frame.toString("utf8").split("\r\n")) {
            const i = line.indexOf(":");
            if (i > 0) t[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
          }
          return fromTrailers(t, res.status);
        }
        at += 5 + len;
      }
      return { code: "ok", reason: undefined, httpStatus: res.status, message: "" };
    }
    case "grpc":
      return h2Call(target.baseUrl, procedure, envelope(body));
    case "grpc-js":
      return grpcJsCall(target.grpcPort, procedure, body);
  }
}

/**
 * gRPC over cleartext HTTP/2. `send` may write less than the envelope
 * declares (a body the server should refuse before it has all of it):
 * the stream is then left open and the outcome is whatever the server
 * answers without waiting for the rest.
 */
export function h2Call(baseUrl: string, procedure: string, payload: Buffer, opts: { endStream?: boolean } = {}): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const session = h2connect(baseUrl);
    session.on("error", reject);
    const stream = session.request({
      [h2.HTTP2_HEADER_METHOD]: "POST",
      [h2.HTTP2_HEADER_PATH]: procedure,
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
    let status = 0;
    let headerTrailers: Record<string, string> | undefined;
    stream.on("response", (headers) => {
      status = Number(headers[":status"]);
      if (headers["grpc-status"] !== undefined) headerTrailers = headers as Record<string, string>;
    });
    stream.on("trailers", (trailers) => {
      resolve(fromTrailers(trailers as Record<string, string>, status));
      session.destroy();
    });
    stream.on("end", () => {
      if (headerTrailers) resolve(fromTrailers(headerTrailers, status));
      session.destroy();
    });
    stream.on("error", reject);
    stream.resume();
    if (opts.endStream === false) stream.write(payload);
    else stream.end(payload);
  });
}

function grpcJsCall(port: number, procedure: string, body: Uint8Array): Promise<RawOutcome> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      procedure,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from(body),
      (err: grpc.ServiceError | null) => {
        client.close();
        if (!err) return resolve({ code: "ok", reason: undefined, httpStatus: 0, message: "" });
        resolve({
          code: codeName(err.code),
          reason: errorReason(err),
          httpStatus: 0,
          message: err.details,
        });
      },
    );
  });
}
