import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouterTransport } from "@connectrpc/connect";
import { createRestGateway } from "../../../../src/transport/gateway/gateway.js";
import { compileRoutes, matchRoute } from "../../../../src/transport/gateway/routes.js";
import { errorInfoDetail } from "../../../support/error-info.js";
import {
  echoed,
  errorBody,
  type Harness,
  type HttpRuleInit,
  libraryService,
  maxBodyBytes,
  rpc,
  startIdentityGateway,
  startLibraryGateway,
} from "./harness.js";

// The route table: which rule a request meets, 405 when only the method is
// wrong, fall-through when no template matches, and rules refused at start-up.

describe("matchRoute", () => {
  const routes = compileRoutes([libraryService()], createRouterTransport(() => {}), () => undefined);
  const segments = (path: string) => path.slice(1).split("/");

  it("finds the rule and its captures, additional bindings included", () => {
    const main = matchRoute(routes, "GET", segments("/v1/shelves/s1/books/b1"));
    expect(main && "route" in main ? [main.route.method.name, main.captures] : main).toEqual(["GetBook", ["shelves/s1/books/b1"]]);
    const extra = matchRoute(routes, "GET", segments("/v1/books/b1"));
    expect(extra && "route" in extra ? [extra.route.method.name, extra.captures] : extra).toEqual(["GetBook", ["b1"]]);
  });

  it("lists the methods a matching path takes, or nothing for an unknown path", () => {
    expect(matchRoute(routes, "DELETE", segments("/v1/purge/b1"))).toEqual({ allowed: ["PURGE"] });
    expect(matchRoute(routes, "GET", segments("/v1/nope"))).toBeUndefined();
  });

  it("gives each route the success status the option returns, 200 by default", () => {
    const statuses = compileRoutes([libraryService()], createRouterTransport(() => {}), (m) => (m.name === "CreateBook" ? 201 : undefined));
    expect(Object.fromEntries(statuses.map((r) => [r.method.name, r.successStatus]))).toEqual({
      GetBook: 200,
      CreateBook: 201,
      ListBooks: 200,
      ArchiveBook: 200,
      PurgeBook: 200,
    });
  });
});

describe("REST routes over IdentityService", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startIdentityGateway();
  });
  afterAll(() => h.close());

  it("returns false for unknown paths so the caller can fall through", async () => {
    for (const path of ["/nope", "/user/profile/extra", "/user//profile", "/register/"]) {
      const res = await fetch(h.url + path);
      expect(res.status, path).toBe(404);
      expect(await res.text()).toBe("fallthrough");
    }
  });

  it("answers 405 with Allow when only the method is wrong", async () => {
    const get = await fetch(h.url + "/register");
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    expect(get.headers.get("x-request-id")).toBe("r1");
    const body = await errorBody(get);
    expect(body.code).toBe("unimplemented");
    expect(errorInfoDetail(body)?.reason).toBe("METHOD_NOT_ALLOWED");
    const del = await fetch(h.url + "/user/profile", { method: "DELETE" });
    expect(del.status).toBe(405);
    expect(del.headers.get("allow")).toBe("GET, PUT");
  });
});

describe("REST routes, general http.proto features", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startLibraryGateway();
  });
  afterAll(() => h.close());

  it("serves additional_bindings, decoding a single-segment variable fully", async () => {
    expect(await echoed(h, "/v1/books/b%2F1?shelf=1")).toEqual({ name: "b/1", shelf: "SHELF_FICTION" });
  });

  it("routes custom verbs and custom HTTP methods", async () => {
    const req = await echoed(h, "/v1/books/b1:archive", {
      method: "POST",
      body: '{"verbose":true,"name":"ignored"}',
      headers: { "content-type": "application/json" },
    });
    expect(req).toEqual({ name: "b1", verbose: true });
    expect(await echoed(h, "/v1/purge/b2", { method: "PURGE" })).toEqual({ name: "b2" });
    const wrong = await fetch(h.url + "/v1/purge/b2");
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("PURGE");
  });

  it.each([
    ["a missing path field", { pattern: { case: "get", value: "/v1/{missing}" } }, /missing/],
    ["a repeated path field", { pattern: { case: "get", value: "/v1/{tags}" } }, /tags/],
    ["a message path field", { pattern: { case: "get", value: "/v1/{filter}" } }, /filter/],
    ["a missing body field", { pattern: { case: "post", value: "/v1/x" }, body: "nope" }, /nope/],
    ["a missing response_body field", { pattern: { case: "get", value: "/v1/x" }, responseBody: "nope" }, /nope/],
    ["a bad template", { pattern: { case: "get", value: "/v1/**/x" } }, /\*\*/],
    ["no pattern", {}, /pattern/],
  ] as const)("fails at creation for %s", (_name, rule, message) => {
    const service = libraryService([rpc("Bad", "BookRequest", "Book", rule as HttpRuleInit)]);
    expect(() =>
      createRestGateway({ services: [service], errorDomain: "gw.v1", transport: createRouterTransport(() => {}), maxBodyBytes }),
    ).toThrow(message);
  });

  it.each([[302], [500], [199], [200.5]])("fails at creation for a success status of %s", (status) => {
    expect(() =>
      createRestGateway({
        services: [libraryService()],
        errorDomain: "gw.v1",
        successStatus: (m) => (m.name === "ArchiveBook" ? status : undefined),
        transport: createRouterTransport(() => {}),
        maxBodyBytes,
      }),
    ).toThrow(`gw.v1.LibraryService.ArchiveBook: success status ${status} is not 2xx`);
  });
});
