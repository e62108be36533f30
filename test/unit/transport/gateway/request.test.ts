import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorInfoDetail } from "../../../support/error-info.js";
import { call, echoed, errorBody, type Harness, post, registerBody, startIdentityGateway, startLibraryGateway } from "./harness.js";

// Request decoding: JSON body, path variables and query parameters into the
// input message, and MALFORMED_REQUEST (400, or 415 for a non-JSON body)
// for whatever does not fit.

describe("REST request decoding over IdentityService", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startIdentityGateway();
  });
  afterAll(() => h.close());

  it("accepts lowerCamel names and a charset parameter", async () => {
    const res = await post(h, "/register", '{"account":{"email":"a@example.com","password":"x"},"infoUser":{"phoneNumber":"1"}}', {
      "content-type": "application/json; charset=UTF-8",
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ user: { info_user: { phone_number: "1" } } });
  });

  it.each([
    ["malformed JSON", '{"account":'],
    ["a wrong type", '{"account":{"email":123}}'],
    ["an unknown field", '{"account":{"email":"a@example.com"},"admin":true}'],
    ["a non-object body", "[1,2]"],
    ["whitespace only", "  "],
  ])("answers 400 MALFORMED_REQUEST for %s", async (_name, body) => {
    const res = await post(h, "/register", body);
    expect(res.status).toBe(400);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("x-request-id")).toBe("r1");
    const json = await errorBody(res);
    expect(json.code).toBe("invalid_argument");
    expect(errorInfoDetail(json)).toMatchObject({ reason: "MALFORMED_REQUEST", domain: "identity.v1" });
  });

  it("answers 400 for invalid UTF-8", async () => {
    const bytes = new TextEncoder().encode('{"account":{"email":"x@example.com","password":"\u0000"}}');
    bytes[bytes.indexOf(0)] = 0xff;
    const res = await post(h, "/register", bytes);
    expect(res.status).toBe(400);
    expect(errorInfoDetail(await errorBody(res))?.reason).toBe("MALFORMED_REQUEST");
  });

  it("answers 400 for unknown query parameters and 415 for a non-JSON body", async () => {
    const q = await fetch(h.url + "/user/profile?debug=1");
    expect(q.status).toBe(400);
    expect(errorInfoDetail(await errorBody(q))?.reason).toBe("MALFORMED_REQUEST");
    const star = await post(h, "/register?account.email=a@example.com", registerBody);
    expect(star.status).toBe(400);
    const text = await post(h, "/register", registerBody, { "content-type": "text/plain" });
    expect(text.status).toBe(415);
    expect(errorInfoDetail(await errorBody(text))?.reason).toBe("MALFORMED_REQUEST");
  });
});

describe("REST request decoding, general http.proto features", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startLibraryGateway();
  });
  afterAll(() => h.close());

  it("fills path variables and typed query parameters (repeated, nested, enum, int64, camelCase)", async () => {
    const req = await echoed(
      h,
      "/v1/shelves/s1/books/b%201?tags=a&tags=b&pageSize=5&filter.author=Ann&filter.in_print=true&shelf=SHELF_FICTION&big=9007199254740993&verbose=1",
    );
    expect(req).toEqual({
      name: "shelves/s1/books/b 1",
      tags: ["a", "b"],
      page_size: 5,
      filter: { author: "Ann", in_print: true },
      shelf: "SHELF_FICTION",
      big: "9007199254740993",
      verbose: true,
    });
  });

  it.each([
    ["a bad bool", "/v1/books/b1?verbose=yes"],
    ["a bad int", "/v1/books/b1?page_size=abc"],
    ["a singular field twice", "/v1/books/b1?page_size=1&page_size=2"],
    ["a path-bound field", "/v1/books/b1?name=other"],
    ["an unknown nested field", "/v1/books/b1?filter.nope=1"],
    ["a message field", "/v1/books/b1?filter=x"],
    ["bad percent-encoding in the path", "/v1/books/%E0%A4%A"],
  ])("answers 400 for %s", async (_name, path) => {
    const { status, json } = await call(h, path);
    expect(status).toBe(400);
    expect(errorInfoDetail(json)?.reason).toBe("MALFORMED_REQUEST");
  });

  it("maps body: field plus a nested path variable and query parameters", async () => {
    const req = await echoed(h, "/v1/shelves/s1/books?request_id=r1", {
      method: "POST",
      body: '{"title":"T","pages":3}',
      headers: { "content-type": "application/json" },
    });
    expect(req).toEqual({ parent: { name: "shelves/s1" }, book: { title: "T", pages: 3 }, request_id: "r1" });
    const { status } = await call(h, "/v1/shelves/s1/books?book.title=x", { method: "POST" });
    expect(status).toBe(400);
  });
});
