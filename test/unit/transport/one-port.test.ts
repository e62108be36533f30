import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listen, type ListeningServer } from "../../../src/transport/one-port.js";
import { expectNear } from "../../support/timing.js";

const HEADERS_MS = 1_000;

describe("one-port server", () => {
  let server: ListeningServer;
  beforeAll(async () => {
    server = await listen((_req, res) => res.end("ok"), {
      port: 0,
      host: "127.0.0.1",
      limits: { headersTimeoutMs: HEADERS_MS, requestTimeoutMs: 2_000 },
    });
  });
  afterAll(() => server.close(1_000));

  it("closes a connection that never sends a byte at the header deadline", async () => {
    const started = performance.now();
    const socket = connect(server.port, "127.0.0.1");
    let received = 0;
    socket.on("data", (chunk: Buffer) => (received += chunk.length));
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    // The protocol sniffer's own timer closes it (no HTTP server has it yet, so no 408).
    expectNear(performance.now() - started, HEADERS_MS, { what: "silent connection closed" });
    expect(received).toBe(0);
  });

  it("serves HTTP/1.1 on the same port once bytes arrive", async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(await res.text()).toBe("ok");
  });
});
