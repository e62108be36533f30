import * as http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as http2 from "node:http2";
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from "node:http2";
import * as net from "node:net";
import type { AddressInfo, Socket } from "node:net";

// One port for everything. Cleartext HTTP/2 (gRPC, gRPC-Web, Connect) and
// HTTP/1.1 (REST, Connect, gRPC-Web, probes) share it: Node's h2c server
// cannot fall back to HTTP/1.1 without TLS, so a plain TCP server looks at
// the first bytes and hands the socket to the right one.

export type AnyRequest = IncomingMessage | Http2ServerRequest;
export type AnyResponse = ServerResponse | Http2ServerResponse;
export type RequestHandler = (req: AnyRequest, res: AnyResponse) => void;

export interface ListeningServer {
  port: number;
  /** Requests being handled now. */
  inFlight(): number;
  /** Stops accepting, lets in-flight requests finish (up to timeoutMs), then closes every connection. */
  close(timeoutMs: number): Promise<void>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// A connection that sends nothing is closed after this; the HTTP/1.1
// server's own header and request timeouts only start once it has bytes.
const FIRST_BYTE_TIMEOUT_MS = 10_000;
// An HTTP/2 connection with no frames at all for this long is closed (a
// client holding streams open without sending anything costs memory).
const H2_IDLE_TIMEOUT_MS = 120_000;
// Open connections per instance; beyond it new ones are refused at accept.
const MAX_CONNECTIONS = 20_000;

export async function listen(
  handler: RequestHandler,
  opts: { port: number; host: string; firstByteTimeoutMs?: number },
): Promise<ListeningServer> {
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const counted: RequestHandler = (req, res) => {
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    handler(req, res);
  };

  const h1 = http.createServer(
    { requestTimeout: 30_000, headersTimeout: 15_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 },
    counted,
  );
  const h2 = http2.createServer({ maxSessionMemory: 32 }, counted);
  const sockets = new Set<Socket>();
  const sessions = new Set<ServerHttp2Session>();
  h2.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.setTimeout(H2_IDLE_TIMEOUT_MS, () => session.destroy());
  });

  const front = net.createServer({ noDelay: true }, (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("error", () => socket.destroy());
    socket.setTimeout(opts.firstByteTimeoutMs ?? FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    socket.once("data", (first: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(first);
      const n = Math.min(first.length, H2_PREFACE.length);
      if (first.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });

  front.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(opts.port, opts.host, () => resolve());
  });
  const port = (front.address() as AddressInfo).port;

  return {
    port,
    inFlight: () => inFlight,
    async close(timeoutMs) {
      const closed = new Promise<void>((resolve) => front.close(() => resolve()));
      for (const s of sessions) s.close(); // GOAWAY: finish open streams, accept no new ones
      h1.closeIdleConnections();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => (drained = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
        ]);
      }
      for (const s of sessions) s.destroy();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
