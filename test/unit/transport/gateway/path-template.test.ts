import { describe, expect, it } from "vitest";
import { compilePathTemplate } from "../../../../src/transport/gateway/path-template.js";

describe("compilePathTemplate", () => {
  it("matches literal paths exactly", () => {
    const t = compilePathTemplate("/user/profile");
    expect(t.match("/user/profile")).toEqual({});
    expect(t.match("/user/profile/")).toBeUndefined();
    expect(t.match("/user")).toBeUndefined();
    expect(t.match("/user/profiles")).toBeUndefined();
  });

  it("binds {var} to one non-empty segment, percent-decoded", () => {
    const t = compilePathTemplate("/v1/books/{book_id}");
    expect(t.variables).toEqual(["book_id"]);
    expect(t.match("/v1/books/b1")).toEqual({ book_id: "b1" });
    expect(t.match("/v1/books/a%20b%2Fc")).toEqual({ book_id: "a b/c" });
    expect(t.match("/v1/books/")).toBeUndefined();
    expect(t.match("/v1/books/b1/x")).toBeUndefined();
    expect(() => t.match("/v1/books/%E0%A4%A")).toThrow(URIError);
  });

  it("binds {var=a/*} and nested field paths", () => {
    const t = compilePathTemplate("/v1/{parent.name=shelves/*}/books/{book_id}");
    expect(t.variables).toEqual(["parent.name", "book_id"]);
    expect(t.match("/v1/shelves/s1/books/b2")).toEqual({ "parent.name": "shelves/s1", book_id: "b2" });
    expect(t.match("/v1/rooms/s1/books/b2")).toBeUndefined();
    expect(t.match("/v1/shelves/s1/b2")).toBeUndefined();
  });

  it("binds ** to zero or more trailing segments, keeping %2F encoded", () => {
    const t = compilePathTemplate("/v1/files/{path=**}");
    expect(t.match("/v1/files/a/b/c")).toEqual({ path: "a/b/c" });
    expect(t.match("/v1/files")).toEqual({ path: "" });
    expect(t.match("/v1/files/a%2Fb/c%20d")).toEqual({ path: "a%2Fb/c d" });
    expect(t.match("/v1/other/a")).toBeUndefined();
    expect(compilePathTemplate("/static/**").match("/static/x/y")).toEqual({});
  });

  it("matches the :verb suffix", () => {
    const t = compilePathTemplate("/user/sessions:revokeOthers");
    expect(t.verb).toBe("revokeOthers");
    expect(t.match("/user/sessions:revokeOthers")).toEqual({});
    expect(t.match("/user/sessions")).toBeUndefined();
    expect(t.match("/user/sessions:revoke")).toBeUndefined();
    const v = compilePathTemplate("/v1/{name=**}:undelete");
    expect(v.match("/v1/a/b:undelete")).toEqual({ name: "a/b" });
    expect(compilePathTemplate("/v1/books/{id}:archive").match("/v1/books/b1:archive")).toEqual({ id: "b1" });
  });

  it("rejects malformed templates at compile time", () => {
    for (const bad of ["v1/x", "/v1//x", "/v1/**/x", "/v1/{a", "/v1/{a}/{a}", "/v1/{a b}", "/v1/x:", "/v1/x:a/b", "/v1/a*b"]) {
      expect(() => compilePathTemplate(bad), bad).toThrow();
    }
  });
});
