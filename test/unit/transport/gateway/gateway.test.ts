import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../../../gen/google/rpc/error_details_pb.js";
import { errorInfoDetail } from "../../../support/error-info.js";
import { call, errorBody, type Harness, type IdentityHarness, post, startIdentityGateway, startLibraryGateway } from "./harness.js";

// createRestGateway composed: calls go through the transport's interceptors
// with the headers and context values the options give, the hooks shape or
// fail a call, a client that leaves cancels its call, and the gateway's own
// refusals carry the error domain it is given.

describe("REST gateway calls and hooks", () => {
  let h: IdentityHarness;
  // UpdateProfile waits on its signal: only an aborted call ever ends it.
  const profileCalls: { abortedOnEntry: boolean; reason?: unknown }[] = [];
  let handlerEntered: () => void;
  const entered = new Promise<void>((resolve) => (handlerEntered = resolve));
  let markAborted: () => void;
  const aborted = new Promise<void>((resolve) => (markAborted = resolve));

  beforeAll(async () => {
    h = await startIdentityGateway({
      async updateProfile(_req, ctx) {
        const entry: (typeof profileCalls)[number] = { abortedOnEntry: ctx.signal.aborted };
        profileCalls.push(entry);
        handlerEntered();
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        entry.reason = ctx.signal.reason;
        markAborted();
        return {};
      },
    });
  });
  afterAll(() => h.close());

  it("GET /user/profile passes requestHeaders and context values, through the interceptors", async () => {
    const res = await fetch(h.url + "/user/profile", {
      headers: { "x-user": "me@example.com", cookie: "access_token=t" },
    });
    expect(res.status).toBe(200);
    expect((await res.json()) as unknown).toEqual({ user: { email: "me@example.com" } });
    const seen = h.seen.at(-1)!;
    expect(seen.headers["x-user"]).toBe("me@example.com");
    // Only what requestHeaders returns is forwarded; the transport sets its own content-type.
    expect(seen.headers.cookie).toBeNull();
    expect(seen.headers["content-type"]).not.toContain("json");
    expect(h.contexts.at(-1)).toBe("127.0.0.1");
    expect(seen.intercepted).toBe(true);
  });

  it("encodes the message onSuccess returns instead of the response, after the hook set its headers", async () => {
    const res = await post(h, "/register", '{"account":{"email":"shaped@example.com","password":"x"},"captcha_token":"hide-email"}');
    expect(res.status).toBe(201);
    expect(res.headers.get("set-cookie")).toBe("session=s1; HttpOnly");
    expect((await res.json()) as unknown).toEqual({ user: { user_id: "u1" } });
  });

  it("answers 500 when a hook fails, without its message or the headers it set", async () => {
    const res = await post(h, "/register", '{"account":{"email":"hook@example.com","password":"x"}}');
    expect(res.status).toBe(500);
    expect(res.headers.get("set-cookie")).toBeNull();
    expect(res.headers.get("cache-control")).toBe("no-store");
    const text = await res.text();
    expect(text).not.toContain("hook secret");
    expect(JSON.parse(text).message).toBe("internal error");
    // The cause still reaches the log hook.
    expect(h.errors.at(-1)?.error.rawMessage).toBe("hook secret");
  });

  it("aborts the call when the client disconnects", async () => {
    const controller = new AbortController();
    const pending = fetch(h.url + "/user/profile", {
      method: "PUT",
      body: '{"info_user":{"name":"x"}}',
      headers: { "content-type": "application/json" },
      signal: controller.signal,
    }).then(
      () => "answered",
      (err: unknown) => (err instanceof Error ? err.name : String(err)),
    );
    await entered;
    // The call was live until the client left: the abort below is its only cause.
    expect(profileCalls).toEqual([{ abortedOnEntry: false }]);
    controller.abort();
    expect(await pending).toBe("AbortError");
    // Bounded, so a signal that never fires fails here rather than as a test timeout.
    const outcome = await Promise.race([aborted.then(() => "aborted"), delay(5_000, "handler still waiting", { ref: false })]);
    expect(outcome).toBe("aborted");
    // A cancellation, not a deadline or a failure.
    expect(ConnectError.from(profileCalls[0]?.reason).code).toBe(Code.Canceled);
    // The gateway reports the cancelled call; there is no one left to answer.
    await vi.waitFor(() => expect(h.errors.at(-1)?.method?.name).toBe("UpdateProfile"));
    expect(h.errors.at(-1)?.error.code).toBe(Code.Canceled);
  });
});

describe("REST gateway error domain", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startLibraryGateway({ errorDomain: "gw.v1" });
  });
  afterAll(() => h.close());

  it("gives its own refusals an ErrorInfo in the domain it is given, in the response and in what onError sees", async () => {
    const wrongMethod = await fetch(h.url + "/v1/purge/b1");
    expect(wrongMethod.status).toBe(405);
    expect(errorInfoDetail(await errorBody(wrongMethod))).toMatchObject({ reason: "METHOD_NOT_ALLOWED", domain: "gw.v1" });
    expect(errorInfoDetail(h.errors.at(-1)?.error)).toMatchObject({ reason: "METHOD_NOT_ALLOWED", domain: "gw.v1" });

    const { status, json } = await call(h, "/v1/books/b1?verbose=yes");
    expect(status).toBe(400);
    expect(errorInfoDetail(json)).toMatchObject({ reason: "MALFORMED_REQUEST", domain: "gw.v1" });
    const reported = h.errors.at(-1);
    expect(reported?.method?.name).toBe("GetBook");
    // One ErrorInfo, however many times the error is looked at.
    expect(reported?.error.findDetails(ErrorInfoSchema)).toHaveLength(1);
  });
});
