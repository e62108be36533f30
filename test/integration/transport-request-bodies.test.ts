import { connect } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoginRequestSchema } from "../../gen/identity/v1/identity_service_pb.js";
import { h2Call, envelope, rawCall, type RawProtocol } from "../support/raw-rpc.js";
import { startTestServer, type TestServer } from "../support/server.js";

// Request bodies an attacker shapes to cost the service: oversized ones
// are refused before a byte is decoded, on every protocol; bodies that do
// not parse are the client's fault (INVALID_ARGUMENT / MALFORMED_REQUEST,
// without the parser's text), never a 500.

const LOGIN = "/identity.v1.IdentityService/Login";
const MAX = 64 * 1024; // MAX_REQUEST_BYTES default

const login = toBinary(LoginRequestSchema, create(LoginRequestSchema, { email: "nobody@example.com", password: "wrong password 1" }));

/** A valid login followed by `count` empty unknown fields (field 15, length 0): 2 bytes each. */
function withUnknownFields(count: number): Buffer {
  const tail = Buffer.alloc(count * 2);
  for (let i = 0; i < tail.length; i += 2) tail[i] = (15 << 3) | 2;
  return Buffer.concat([login, tail]);
}

const MALFORMED: Record<string, Uint8Array> = {
  "bytes that are not protobuf (0f ff ff)": Buffer.from([0x0f, 0xff, 0xff]),
  "5,000 nested groups": Buffer.concat([Buffer.alloc(5_000, (15 << 3) | 3), Buffer.alloc(5_000, (15 << 3) | 4)]),
  "invalid UTF-8 in the email field": Buffer.from([0x0a, 0x02, 0xff, 0xfe]),
  "a length running past the end": Buffer.from([0x0a, 0x40, 0x61]),
};

const PROTOCOLS: RawProtocol[] = ["connect", "grpc-web", "grpc", "grpc-js"];

/**
 * Writes a Connect unary request with `body` (declared in full, `send` bytes
 * of it actually written) on a raw socket; resolves with the answer's head.
 */
async function http1Post(port: number, path: string, body: Buffer, send: number): Promise<string> {
  const socket = connect(port, "127.0.0.1");
  let answer = "";
  socket.setEncoding("latin1");
  socket.on("data", (c: string) => (answer += c));
  socket.on("error", () => {}); // the server may close while we still write
  await new Promise((r) => socket.once("connect", r));
  socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\nContent-Length: ${body.length}\r\n\r\n`);
  socket.write(body.subarray(0, send));
  await new Promise<void>((resolve) => {
    const check = () => (answer.includes("\r\n\r\n") || socket.destroyed ? resolve() : setTimeout(check, 10));
    check();
  });
  socket.destroy();
  return answer;
}

describe("request bodies on every protocol", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer("pglite");
  });
  afterAll(() => srv.destroy());

  for (const protocol of PROTOCOLS) {
    for (const [what, bytes] of Object.entries(MALFORMED)) {
      it(`${protocol}: ${what} → INVALID_ARGUMENT / MALFORMED_REQUEST without the parser's text`, async () => {
        const out = await rawCall(srv, protocol, LOGIN, bytes);
        expect(out.code).toBe("invalid_argument");
        expect(out.reason).toBe("MALFORMED_REQUEST");
        expect(out.message).not.toMatch(/parse binary|premature|wire type|UTF-8|recursion/i);
        if (protocol === "connect") expect(out.httpStatus).toBe(400);
      });
    }

    it(`${protocol}: a body over MAX_REQUEST_BYTES → RESOURCE_EXHAUSTED / REQUEST_TOO_LARGE`, async () => {
      const out = await rawCall(srv, protocol, LOGIN, withUnknownFields(MAX));
      expect(out.code).toBe("resource_exhausted");
      expect(out.reason).toBe("REQUEST_TOO_LARGE");
    });

    it(`${protocol}: the same login with unknown fields under the cap is an ordinary wrong password`, async () => {
      const out = await rawCall(srv, protocol, LOGIN, withUnknownFields(1_000));
      expect(out.code).toBe("unauthenticated");
      expect(out.reason).toBe("INVALID_CREDENTIALS");
    });
  }

  it("Connect over HTTP/1.1: a 4 MB body is answered before the client has sent it", async () => {
    const body = withUnknownFields(2_000_000);
    // Only the first 64 KiB + 1: the rest never comes.
    const answer = await http1Post(srv.port, LOGIN, body, MAX + 1);
    expect(answer).toMatch(/^HTTP\/1\.1 429 /);
    expect(answer).toContain("REQUEST_TOO_LARGE");
  });

  it("gRPC over HTTP/2: an envelope declaring 4 MB is refused before its bytes arrive", async () => {
    const head = envelope(Buffer.alloc(0));
    head.writeUInt32BE(4 * 1024 * 1024, 1);
    const out = await h2Call(srv.baseUrl, LOGIN, Buffer.concat([head, login]), { endStream: false });
    expect(out.code).toBe("resource_exhausted");
    expect(out.reason).toBe("REQUEST_TOO_LARGE");
  });

  it("twenty 4 MB bodies of unknown fields leave the process's memory where it was", async () => {
    const body = withUnknownFields(2_000_000);
    const envelopeOfBody = envelope(body);
    const send = async (i: number) => {
      if (i % 2 === 0) expect(await http1Post(srv.port, LOGIN, body, body.length)).toContain("REQUEST_TOO_LARGE");
      else expect((await h2Call(srv.baseUrl, LOGIN, envelopeOfBody)).reason).toBe("REQUEST_TOO_LARGE");
    };
    await send(0); // warm-up: lazily loaded code
    await send(1);
    const before = process.memoryUsage();
    for (let i = 0; i < 20; i++) await send(i);
    const after = process.memoryUsage();
    // A decoded body of this size costs ~460 MB; refused ones cost nothing that stays.
    expect(after.heapUsed - before.heapUsed).toBeLessThan(8 * 1024 * 1024);
    expect(after.rss - before.rss).toBeLessThan(32 * 1024 * 1024);
  });
});
