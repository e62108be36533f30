import { createServer } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../../../gen/google/rpc/error_details_pb.js";
import { writeError } from "../../../../src/transport/gateway/gateway.js";
import { errorInfoDetail } from "../../../support/error-info.js";
import { closeServer, listenLocal } from "../../../support/local-http.js";
import { issueRegistrationBody } from "../../../support/users.js";
import { call, errorBody, type Harness, post, registerBody, startIdentityGateway, startLibraryGateway } from "./harness.js";

// Response writing: the route's JSON with its success status, and every
// error as Connect's error JSON with the status of its code, never cached,
// internal messages kept out.

describe("REST responses over IdentityService", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startIdentityGateway();
  });
  afterAll(() => h.close());

  it("POST /register answers 201 with snake_case JSON", async () => {
    const res = await post(h, "/register", registerBody);
    expect(res.status).toBe(201);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("set-cookie")).toBe("session=s1; HttpOnly");
    expect((await res.json()) as unknown).toEqual({
      user: { user_id: "u1", email: "ngoc.phu@example.com", info_user: issueRegistrationBody().info_user },
    });
  });

  it("answers 204 without a body for Logout with an empty request body", async () => {
    const res = await fetch(h.url + "/logout", { method: "POST" });
    expect(res.status).toBe(204);
    expect(res.headers.get("content-type")).toBeNull();
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.text()).toBe("");
  });

  it("maps a handler's ConnectError to its HTTP status with code and ErrorInfo", async () => {
    const res = await post(h, "/register", '{"account":{"email":"denied@example.com","password":"x"}}');
    expect(res.status).toBe(401);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const json = await errorBody(res);
    expect(json.code).toBe("unauthenticated");
    expect(json.message).toBe("token missing");
    expect(json.details?.[0]?.type).toBe("google.rpc.ErrorInfo");
    expect(json.details?.[0]?.debug).toMatchObject({ reason: "TOKEN_MISSING" });
    expect(errorInfoDetail(json)).toMatchObject({ reason: "TOKEN_MISSING", domain: "identity.v1" });
    expect(h.errors.at(-1)?.method?.name).toBe("Register");
  });

  it("forwards retry-after but no other error metadata", async () => {
    const res = await post(h, "/login", '{"email":"a@example.com","password":"x"}');
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("7");
    expect(res.headers.get("x-secret")).toBeNull();
    expect(errorInfoDetail(await errorBody(res))?.reason).toBe("RATE_LIMITED");
  });

  it("answers 500 for a plain Error without leaking its message", async () => {
    const res = await post(h, "/register", '{"account":{"email":"boom@example.com","password":"x"}}');
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain("hunter2");
    expect(JSON.parse(text)).toEqual({ code: "internal", message: "internal error" });
    expect(h.errors.at(-1)?.error.code).toBe(Code.Internal);
  });
});

describe("REST responses, general http.proto features", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startLibraryGateway();
  });
  afterAll(() => h.close());

  it("honours response_body and ** variables", async () => {
    expect(await call(h, "/v1/files/a/b/c")).toEqual({ status: 200, json: [{ name: "a/b/c" }] });
    expect(await call(h, "/v1/files")).toEqual({ status: 200, json: [{}] });
  });
});

describe("writeError", () => {
  it("writes any ConnectError in the same shape, keeping the caller's headers and forwarding only what it is told", async () => {
    const server = createServer((req, res) => {
      res.setHeader("x-request-id", "r1");
      const error = new ConnectError("no such route", Code.NotFound, { "retry-after": "3", "x-secret": "s" }, [
        { desc: ErrorInfoSchema, value: { reason: "ROUTE_NOT_FOUND", domain: "example.v1" } },
      ]);
      writeError(req, res, error, undefined, ["retry-after"]);
    });
    const base = await listenLocal(server);
    try {
      const res = await fetch(`${base}/anything`);
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("x-request-id")).toBe("r1");
      expect(res.headers.get("retry-after")).toBe("3");
      expect(res.headers.get("x-secret")).toBeNull();
      const json = await errorBody(res);
      expect(json).toMatchObject({ code: "not_found", message: "no such route" });
      expect(errorInfoDetail(json)).toMatchObject({ reason: "ROUTE_NOT_FOUND", domain: "example.v1" });
    } finally {
      await closeServer(server);
    }
  });
});
