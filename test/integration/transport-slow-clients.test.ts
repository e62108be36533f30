import { connect as h2connect, constants as h2constants } from "node:http2";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../support/server.js";
import { expectNear } from "../support/timing.js";

// Slow clients on the main port (slowloris): every phase of a connection
// has a deadline, whichever bytes trickle in, and one source cannot hold
// more than its share of connections. Short deadlines are configured so
// the test can watch them fire; each is asserted near its configured value
// (expectNear): before a byte decides the protocol, the server's own timer
// closes the connection; after, Node's HTTP/1.1 server sweeps its header
// and request deadlines once a second, which is that check's granularity.

const HEADERS_MS = 2_000;
const REQUEST_MS = 3_000;
const KEEPALIVE_MS = 1_000;
/** How often Node's HTTP/1.1 server looks for connections past their deadlines (one-port.ts). */
const SWEEP_MS = 1_000;
/** How long Node keeps an idle keep-alive socket past the advertised timeout (keepAliveTimeoutBuffer). */
const KEEPALIVE_BUFFER_MS = 1_000;

interface Watched {
  socket: Socket;
  data: () => string;
  /** Milliseconds from open to close. */
  closed: Promise<number>;
}

function open(port: number): Promise<Watched> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => (received += chunk));
    socket.on("error", () => {});
    const closed = new Promise<number>((r) => socket.once("close", () => r(performance.now() - started)));
    socket.once("connect", () => resolve({ socket, data: () => received, closed }));
    socket.once("error", reject);
  });
}

/** Writes `parts` one by one, `everyMs` apart, until the socket closes. */
function trickle(socket: Socket, parts: string[], everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || i >= parts.length) return clearInterval(timer);
    socket.write(parts[i++]!);
  }, everyMs);
  socket.once("close", () => clearInterval(timer));
}

describe("slow clients on the main port", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer("pglite", {
      env: {
        HTTP_HEADERS_TIMEOUT: String(HEADERS_MS),
        HTTP_REQUEST_TIMEOUT: String(REQUEST_MS),
        HTTP_KEEPALIVE_TIMEOUT: String(KEEPALIVE_MS),
        MAX_CONNECTIONS_PER_SOURCE: "8",
      },
    });
  });
  afterAll(() => srv.destroy());

  it("a connection that sends nothing is closed at the header deadline", async () => {
    const c = await open(srv.port);
    expectNear(await c.closed, HEADERS_MS);
    expect(c.data()).toBe("");
  });

  it("a connection that sent one byte gets 408 and is closed at the header deadline", async () => {
    const c = await open(srv.port);
    c.socket.write("G");
    expectNear(await c.closed, HEADERS_MS, { granularityMs: SWEEP_MS });
    expect(c.data()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("a connection stuck inside the HTTP/2 preface is closed at the header deadline", async () => {
    const c = await open(srv.port);
    c.socket.write("PRI * HTTP/2.0\r\n");
    expectNear(await c.closed, HEADERS_MS);
    expect(c.data()).toBe("");
  });

  it("header lines trickled one every 300 ms: 408 and closed at the header deadline", async () => {
    const c = await open(srv.port);
    const lines = ["GET /healthz HTTP/1.1\r\n", "Host: x\r\n", ...Array.from({ length: 50 }, (_, i) => `X-Slow-${i}: y\r\n`)];
    trickle(c.socket, lines, 300);
    expectNear(await c.closed, HEADERS_MS, { granularityMs: SWEEP_MS });
    expect(c.data()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("a body trickled one byte every 300 ms: 408 and closed at the request deadline", async () => {
    const c = await open(srv.port);
    c.socket.write("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
    trickle(c.socket, Array.from({ length: 1000 }, () => " "), 300);
    expectNear(await c.closed, REQUEST_MS, { granularityMs: SWEEP_MS });
    expect(c.data()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const c = await open(srv.port);
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const closedAt = await c.closed;
    expect(c.data()).toMatch(/^HTTP\/1\.1 200 /);
    // Node keeps an idle socket keepAliveTimeoutBuffer past the advertised
    // timeout, so a client reusing it at the last moment does not race the
    // close; the socket's own timer closes it then.
    expectNear(closedAt, KEEPALIVE_MS + KEEPALIVE_BUFFER_MS);
  });

  it("a request line split across packets ('P', pause, 'OST …') is HTTP/1.1, not HTTP/2", async () => {
    const c = await open(srv.port);
    c.socket.write("P");
    await new Promise((r) => setTimeout(r, 80));
    const body = JSON.stringify({ email: "nobody@example.com", password: "x" });
    c.socket.write(`OST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    await c.closed;
    expect(c.data()).toMatch(/^HTTP\/1\.1 401 /);
  });

  it("'P', a pause, then header lines trickled: 408 at the header deadline counted from accept, sniff included", async () => {
    const c = await open(srv.port);
    c.socket.write("P");
    await new Promise((r) => setTimeout(r, HEADERS_MS / 2));
    trickle(c.socket, ["OST /login HTTP/1.1\r\n", ...Array.from({ length: 50 }, (_, i) => `X-Slow-${i}: y\r\n`)], 300);
    // The server's own timer: no sweep granularity.
    expectNear(await c.closed, HEADERS_MS);
    expect(c.data()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("HTTP/2: a gRPC request whose body trickles is reset at the request deadline, and the session stays usable", async () => {
    const session = h2connect(srv.baseUrl);
    session.on("error", () => {});
    const started = performance.now();
    const stream = session.request({ ":method": "POST", ":path": "/identity.v1.IdentityService/Login", "content-type": "application/grpc+proto", te: "trailers" });
    stream.on("error", () => {});
    stream.resume();
    // An envelope announcing 64 bytes, then one byte every 300 ms.
    stream.write(Buffer.from([0, 0, 0, 0, 64]));
    const timer = setInterval(() => !stream.destroyed && stream.write(Buffer.from([0x0a])), 300);
    const closedAt = await new Promise<number>((r) => stream.once("close", () => r(performance.now() - started)));
    clearInterval(timer);
    expect(stream.rstCode).toBe(h2constants.NGHTTP2_CANCEL);
    expectNear(closedAt, REQUEST_MS);
    // Only the stream ended: the connection serves the next request.
    const next = session.request({ ":method": "GET", ":path": "/healthz" });
    const status = await new Promise<number>((r) => next.once("response", (h) => r(Number(h[":status"]))));
    next.resume();
    expect(status).toBe(200);
    session.close();
  });

  it("one source holds at most MAX_CONNECTIONS_PER_SOURCE connections; a freed slot is usable again", async () => {
    const held = await Promise.all(Array.from({ length: 8 }, () => open(srv.port)));
    const extra = await open(srv.port);
    // Refused at accept: closed at once, without an answer.
    expect(await extra.closed).toBeLessThan(1_000);
    expect(extra.data()).toBe("");
    held[0]!.socket.destroy();
    await held[0]!.closed;
    const again = await open(srv.port);
    again.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    await again.closed;
    expect(again.data()).toMatch(/^HTTP\/1\.1 200 /);
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
  });
});

describe("trusted proxies and the per-source cap", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer("pglite", { env: { MAX_CONNECTIONS_PER_SOURCE: "2", TRUSTED_PROXIES: "127.0.0.1" } });
  });
  afterAll(() => srv.destroy());

  it("a trusted proxy's connections are not capped (it carries many clients)", async () => {
    const held = await Promise.all(Array.from({ length: 5 }, () => open(srv.port)));
    const last = held[4]!;
    last.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    await last.closed;
    expect(last.data()).toMatch(/^HTTP\/1\.1 200 /);
    for (const h of held) h.socket.destroy();
    await Promise.all(held.map((h) => h.closed));
  });
});
