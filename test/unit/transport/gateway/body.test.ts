import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorInfoDetail } from "../../../support/error-info.js";
import { errorBody, type Harness, maxBodyBytes, post, startIdentityGateway } from "./harness.js";

// Bounded body reading: 413 REQUEST_TOO_LARGE for a declared length over the
// limit before a byte is read, and for a chunked body as soon as it passes it.

describe("REST request bodies", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startIdentityGateway();
  });
  afterAll(() => h.close());

  it("answers 413 when Content-Length is too large", async () => {
    const res = await post(h, "/register", JSON.stringify({ account: { email: "x".repeat(maxBodyBytes) } }));
    expect(res.status).toBe(413);
    const json = await errorBody(res);
    expect(json.code).toBe("resource_exhausted");
    expect(errorInfoDetail(json)?.reason).toBe("REQUEST_TOO_LARGE");
  });

  it("rejects a declared Content-Length before reading any of the body", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(h.url + "/register", {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": String(100 * 1024 * 1024) },
      });
      req.on("response", (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on("error", reject);
      req.flushHeaders(); // headers only: the 100 MB never come
    });
    expect(status).toBe(413);
  });

  /** POST /register with a chunked body (no Content-Length). */
  const postStream = (body: ReadableStream<Uint8Array>) =>
    fetch(h.url + "/register", { method: "POST", body, headers: { "content-type": "application/json" }, duplex: "half" } as RequestInit);

  it("answers 413 for a chunked body past the limit", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(300));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 20) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await postStream(body);
    expect(res.status).toBe(413);
    expect(errorInfoDetail(await errorBody(res))?.reason).toBe("REQUEST_TOO_LARGE");
  });

  it("answers 413 to a chunked body that never ends", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(512));
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        controller.enqueue(chunk);
      },
    });
    const res = await postStream(body);
    expect(res.status).toBe(413);
  });
});
