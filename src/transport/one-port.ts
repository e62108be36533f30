import * as http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as http2 from "node:http2";
import type { Http2ServerRequest, Http2ServerResponse, ServerHttp2Session } from "node:http2";
import * as net from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { sourcePrefix } from "../risk/geo.js";

// One port for everything. Cleartext HTTP/2 (gRPC, gRPC-Web, Connect) and
// HTTP/1.1 (REST, Connect, gRPC-Web, probes) share it: Node's h2c server
// cannot fall back to HTTP/1.1 without TLS, so a plain TCP server looks at
// the first bytes and hands the socket to the right one.
//
// Every phase of a connection has a deadline, so a client that trickles
// bytes (slowloris) holds a socket for a bounded time: the sniff and the
// request head within `headersTimeoutMs`, the whole request within
// `requestTimeoutMs` (HTTP/1.1 answers 408 and closes), an idle keep-alive
// connection `keepAliveTimeoutMs`, an HTTP/2 session without frames
// `h2IdleTimeoutMs`. A cap per source address keeps one client from taking
// all the connections.

export type AnyRequest = IncomingMessage | Http2ServerRequest;
export type AnyResponse = ServerResponse | Http2ServerResponse;
export type RequestHandler = (req: AnyRequest, res: AnyResponse) => void;

export interface ListeningServer {
  port: number;
  /** Requests being handled now. */
  inFlight(): number;
  /** Open connections now. */
  connections(): number;
  /** Stops accepting, lets in-flight requests finish (up to timeoutMs), then closes every connection. */
  close(timeoutMs: number): Promise<void>;
}

export interface ConnectionLimits {
  /** The request line and headers (and the protocol sniff before them) must arrive within this. */
  headersTimeoutMs: number;
  /** A whole HTTP/1.1 request, head and body, must arrive within this. */
  requestTimeoutMs: number;
  /** An HTTP/1.1 connection idle between requests is closed after this. */
  keepAliveTimeoutMs: number;
  /** An HTTP/2 session with no frames at all for this long is closed. */
  h2IdleTimeoutMs: number;
  /** Open connections per instance; beyond it new ones are refused at accept. */
  maxConnections: number;
  /** Open connections per source (an IPv4 address, an IPv6 /64); 0 = no cap. */
  maxConnectionsPerSource: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  headersTimeoutMs: 15_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  h2IdleTimeoutMs: 120_000,
  maxConnections: 20_000,
  maxConnectionsPerSource: 256,
};

export interface ListenOptions {
  port: number;
  host: string;
  limits?: Partial<ConnectionLimits>;
  /** Peers the per-source cap does not apply to (trusted proxies carry many clients). */
  exemptFromSourceCap?(ip: string): boolean;
  /** A connection refused by the per-source cap (for a log line; called at most once a second per source). */
  onSourceCapped?(source: string): void;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// How often Node's HTTP/1.1 server looks for connections past their deadlines.
const CHECK_INTERVAL_MS = 1_000;
// Streams a client may have open at once on one HTTP/2 connection.
const MAX_H2_STREAMS = 100;
const { NGHTTP2_STREAM_STATE_HALF_CLOSED_REMOTE: HALF_CLOSED_REMOTE, NGHTTP2_STREAM_STATE_CLOSED: STREAM_CLOSED } = http2.constants;

export async function listen(handler: RequestHandler, opts: ListenOptions): Promise<ListeningServer> {
  const limits = { ...defaultConnectionLimits, ...opts.limits };
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

  const { h1, h2, sessions } = protocolServers(limits, counted);
  const sockets = new Set<Socket>();
  const headDeadlines = firstHeadDeadlines(h1);

  const perSource = createSourceCounter(limits.maxConnectionsPerSource, opts);

  const front = net.createServer({ noDelay: true }, (socket: Socket) => {
    const release = perSource.acquire(socket.remoteAddress);
    if (!release) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      release();
    });
    socket.once("error", () => socket.destroy());
    const acceptedAt = performance.now();
    sniff(socket, limits.headersTimeoutMs, (protocol) => {
      if (protocol === "h2") {
        h2.emit("connection", socket);
      } else {
        // Node's header clock starts now; the first head must still arrive
        // within the deadline counted from accept (the sniff took some of it).
        headDeadlines.arm(socket, limits.headersTimeoutMs - (performance.now() - acceptedAt));
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });

  front.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(opts.port, opts.host, () => resolve());
  });
  const port = (front.address() as AddressInfo).port;

  return {
    port,
    inFlight: () => inFlight,
    connections: () => sockets.size,
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
      h1.close(); // stops its deadline checker
      await closed;
    },
  };
}

/** The HTTP/1.1 and HTTP/2 servers the front hands sockets to, with their deadlines. */
function protocolServers(limits: ConnectionLimits, handler: RequestHandler) {
  const h1 = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(CHECK_INTERVAL_MS, limits.headersTimeoutMs),
      maxHeaderSize: 16 * 1024,
    },
    handler,
  );
  // Node enforces headersTimeout and requestTimeout (408, then close) only
  // for a server that emitted "listening": that event starts its tracking of
  // connections and their deadlines. This server never listens itself (the
  // front hands it sockets), so it is told here.
  h1.emit("listening");
  const h2 = http2.createServer({ maxSessionMemory: 32, settings: { maxConcurrentStreams: MAX_H2_STREAMS } }, handler);
  const sessions = new Set<ServerHttp2Session>();
  h2.on("session", (session: ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    session.setTimeout(limits.h2IdleTimeoutMs, () => session.destroy());
  });
  // A stream's request (headers and body) must be complete within the
  // request deadline, as on HTTP/1.1: any frame resets the session's idle
  // timer, so without this a body trickled one byte a minute would hold a
  // stream (and its connection) forever. Reset with CANCEL.
  h2.on("stream", (stream: http2.ServerHttp2Stream) => {
    const timer = setTimeout(() => {
      const state = stream.state?.state;
      if (stream.destroyed || state === HALF_CLOSED_REMOTE || state === STREAM_CLOSED) return;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }, limits.requestTimeoutMs);
    timer.unref();
    stream.once("close", () => clearTimeout(timer));
  });

  return { h1, h2, sessions };
}

/**
 * The first request head of an HTTP/1.1 connection must arrive within the
 * header deadline counted from accept, sniff included: arm() holds what is
 * left of it; the connection's first request disarms it, and a timeout
 * answers 408 and closes, as Node's own check does.
 */
function firstHeadDeadlines(h1: http.Server): { arm(socket: Socket, remainingMs: number): void } {
  const timers = new WeakMap<Socket, NodeJS.Timeout>();
  h1.on("request", (req: IncomingMessage) => {
    const timer = timers.get(req.socket);
    if (timer) clearTimeout(timer);
    timers.delete(req.socket);
  });
  return {
    arm(socket, remainingMs) {
      const timer = setTimeout(
        () => {
          if (!socket.destroyed) socket.end("HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n", () => socket.destroy());
        },
        Math.max(0, remainingMs),
      );
      timer.unref();
      timers.set(socket, timer);
      socket.once("close", () => clearTimeout(timer));
    },
  };
}

/**
 * Reads until the first bytes tell the protocol: the whole HTTP/2 preface,
 * or a byte that departs from it. A request line that arrives split ("P",
 * then "OST …") is not mistaken for HTTP/2. The bytes go back onto the
 * socket for the server that gets it; the socket is destroyed when nothing
 * decisive arrives within `deadlineMs`.
 */
function sniff(socket: Socket, deadlineMs: number, decide: (protocol: "h1" | "h2") => void): void {
  let seen: Buffer | undefined;
  const timer = setTimeout(() => socket.destroy(), deadlineMs);
  const onData = (chunk: Buffer) => {
    seen = seen === undefined ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const h2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (h2 && n < H2_PREFACE.length) return; // a prefix of the preface: wait for more
    socket.off("data", onData);
    socket.off("close", onClose);
    clearTimeout(timer);
    socket.pause();
    socket.unshift(seen);
    decide(h2 ? "h2" : "h1");
  };
  const onClose = () => clearTimeout(timer);
  socket.on("data", onData);
  socket.once("close", onClose);
}

/** Counts open connections per source; acquire() returns the release, or undefined when the source is at its cap. */
function createSourceCounter(
  cap: number,
  opts: Pick<ListenOptions, "exemptFromSourceCap" | "onSourceCapped">,
): { acquire(remoteAddress: string | undefined): (() => void) | undefined } {
  const open = new Map<string, number>();
  const lastReported = new Map<string, number>();
  const noop = () => {};
  return {
    acquire(remoteAddress) {
      if (cap <= 0 || remoteAddress === undefined) return noop;
      const ip = remoteAddress.startsWith("::ffff:") && remoteAddress.includes(".") ? remoteAddress.slice(7) : remoteAddress;
      if (opts.exemptFromSourceCap?.(ip)) return noop;
      const source = sourcePrefix(ip) ?? ip;
      const count = open.get(source) ?? 0;
      if (count >= cap) {
        const now = Date.now();
        if ((lastReported.get(source) ?? 0) + 1_000 <= now) {
          if (lastReported.size > 10_000) lastReported.clear();
          lastReported.set(source, now);
          opts.onSourceCapped?.(source);
        }
        return undefined;
      }
      open.set(source, count + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (open.get(source) ?? 1) - 1;
        if (left <= 0) open.delete(source);
        else open.set(source, left);
      };
    },
  };
}
