import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listen, type ListeningServer } from "../../../src/transport/one-port.js";

describe("one-port server", () => {
  let server: ListeningServer;
  beforeAll(async () => {
    server = await listen((_req, res) => res.end("ok"), {
      port: 0,
      host: "127.0.0.1",
      limits: { headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 },
    });
  });
  afterAll(() => server.close(1_000));

  it("closes a connection that never sends a byte", async () => {
    const socket = connect(server.port, "127.0.0.1");
    const started = performance.now();
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("serves HTTP/1.1 on the same port once bytes arrive", async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(await res.text()).toBe("ok");
  });
});
