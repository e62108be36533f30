import { createServer, request as httpRequest } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, createFileRegistry, fromBinary, getOption, hasOption, setExtension, toJson } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, DescService, Message, MessageInitShape } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
} from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  createRouterTransport,
} from "@connectrpc/connect";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { http } from "../../gen/google/api/annotations_pb.js";
import { HttpRuleSchema } from "../../gen/google/api/http_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { http_success_status } from "../../gen/identity/v1/annotations_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { compilePathTemplate, createRestGateway } from "../../src/transport/gateway/gateway.js";
import type { RestGateway, RestGatewayOptions } from "../../src/transport/gateway/gateway.js";

const maxBodyBytes = 1024;
const clientAddress = createContextKey<string>("", { description: "client address" });

interface Harness {
  url: string;
  errors: { method?: DescMethod; error: ConnectError }[];
  close(): Promise<void>;
}

// A real HTTP server on port 0; requests the gateway does not route fall through to a plain 404.
async function serve(gateway: RestGateway, errors: Harness["errors"]): Promise<Harness> {
  const server: Server = createServer((req, res) => {
    res.setHeader("x-request-id", "r1"); // set by the caller: must survive error responses
    void gateway(req, res).then((handled) => {
      if (!handled) {
        res.statusCode = 404;
        res.end("fallthrough");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function gatewayOptions(
  services: DescService[],
  routes: (router: ConnectRouter) => void,
  errors: Harness["errors"],
  interceptors: { router?: Interceptor[]; transport?: Interceptor[] } = {},
): RestGatewayOptions {
  return {
    services,
    errorDomain: "identity.v1",
    successStatus: (method) => (hasOption(method, http_success_status) ? getOption(method, http_success_status) : undefined),
    transport: createRouterTransport(routes, {
      router: { interceptors: interceptors.router ?? [] },
      transport: { interceptors: interceptors.transport ?? [] },
    }),
    maxBodyBytes,
    requestHeaders: (req) => {
      const headers: Record<string, string> = {};
      const user = req.headers["x-user"];
      if (typeof user === "string") headers["x-user"] = user;
      return headers;
    },
    contextValues: (req) => createContextValues().set(clientAddress, req.socket.remoteAddress ?? ""),
    onSuccess: ({ method, res, input, response }) => {
      if (method.name !== "Register") return;
      res.setHeader("set-cookie", "session=s1; HttpOnly");
      const registered = response as Message & { user?: { email: string } };
      const email = registered.user?.email;
      if (email === "hook@example.com") throw new Error("hook secret");
      // The hook shapes the body: here, what the request asked to leave out.
      if ((input as Message & { captchaToken?: string }).captchaToken === "hide-email") return { ...registered, user: { ...registered.user, email: "" } };
    },
    onError: ({ method, error }) => errors.push({ method, error }),
  };
}

type HttpRuleInit = MessageInitShape<typeof HttpRuleSchema>;

interface ErrorBody {
  code: string;
  message?: string;
  details?: { type: string; value: string; debug?: unknown }[];
}

async function errorBody(res: Response): Promise<ErrorBody> {
  return (await res.json()) as ErrorBody;
}

function errorInfo(body: ErrorBody) {
  const detail = body.details?.find((d) => d.type === "google.rpc.ErrorInfo");
  return detail === undefined ? undefined : fromBinary(ErrorInfoSchema, base64Decode(detail.value));
}

const registerBody =
  '{"account":{"email":"ngoc.phu@example.com","password":"x"},"info_user":{"name":"Ngoc Phu","phone_number":"1234567890","date_of_birth":"2023-11-12T08:00:23.719000","gender":true,"address":"Ha Noi"}}';

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

describe("REST gateway over IdentityService", () => {
  let h: Harness;
  const seen: { headers: Record<string, string | null>; intercepted?: boolean }[] = [];
  const contexts: (string | undefined)[] = [];
  let aborted: Promise<void>;
  let markAborted: () => void;
  let handlerEntered: () => void;
  let entered: Promise<void>;

  beforeAll(async () => {
    aborted = new Promise((resolve) => (markAborted = resolve));
    entered = new Promise((resolve) => (handlerEntered = resolve));
    const errors: Harness["errors"] = [];
    // Marks calls so the test can see they went through the router's interceptors.
    const marker: Interceptor = (next) => (req) => {
      req.header.set("x-intercepted", "1");
      return next(req);
    };
    const routes = (router: ConnectRouter) =>
      router.service(IdentityService, {
        register(req) {
          const email = req.account?.email ?? "";
          if (email === "denied@example.com") {
            throw new ConnectError("token missing", Code.Unauthenticated, undefined, [
              { desc: ErrorInfoSchema, value: { reason: "TOKEN_MISSING", domain: "identity.v1" } },
            ]);
          }
          if (email === "boom@example.com") throw new Error("db password is hunter2");
          return { user: { userId: "u1", email, infoUser: req.infoUser } };
        },
        login() {
          throw new ConnectError("slow down", Code.ResourceExhausted, { "retry-after": "7", "x-secret": "s" }, [
            { desc: ErrorInfoSchema, value: { reason: "RATE_LIMITED", domain: "identity.v1" } },
          ]);
        },
        logout: () => ({}),
        getProfile(_req, ctx) {
          seen.push({
            headers: {
              "x-user": ctx.requestHeader.get("x-user"),
              "content-type": ctx.requestHeader.get("content-type"),
              cookie: ctx.requestHeader.get("cookie"),
            },
            intercepted: ctx.requestHeader.get("x-intercepted") === "1",
          });
          return { user: { email: ctx.requestHeader.get("x-user") ?? "" } };
        },
        async updateProfile(_req, ctx) {
          handlerEntered();
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
          markAborted();
          return {};
        },
      });
    // contextValues reach the transport's interceptors (createRouterTransport's
    // in-memory client does not hand them on to the router's handlers).
    const capture: Interceptor = (next) => (req) => {
      contexts.push(req.contextValues.get(clientAddress));
      return next(req);
    };
    const options = gatewayOptions([IdentityService], routes, errors, { router: [marker], transport: [capture] });
    h = await serve(createRestGateway(options), errors);
  });
  afterAll(() => h.close());

  const post = (path: string, body: RequestInit["body"], headers: Record<string, string> = { "content-type": "application/json" }) =>
    fetch(h.url + path, { method: "POST", body, headers });

  it("POST /register answers 201 with snake_case JSON", async () => {
    const res = await post("/register", registerBody);
    expect(res.status).toBe(201);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("set-cookie")).toBe("session=s1; HttpOnly");
    expect((await res.json()) as unknown).toEqual({
      user: {
        user_id: "u1",
        email: "ngoc.phu@example.com",
        info_user: {
          name: "Ngoc Phu",
          phone_number: "1234567890",
          date_of_birth: "2023-11-12T08:00:23.719000",
          gender: true,
          address: "Ha Noi",
        },
      },
    });
  });

  it("encodes the message onSuccess returns instead of the response, after the hook set its headers", async () => {
    const res = await post("/register", '{"account":{"email":"shaped@example.com","password":"x"},"captcha_token":"hide-email"}');
    expect(res.status).toBe(201);
    expect(res.headers.get("set-cookie")).toBe("session=s1; HttpOnly");
    expect((await res.json()) as unknown).toEqual({ user: { user_id: "u1" } });
  });

  it("accepts lowerCamel names and a charset parameter", async () => {
    const res = await post("/register", '{"account":{"email":"a@example.com","password":"x"},"infoUser":{"phoneNumber":"1"}}', {
      "content-type": "application/json; charset=UTF-8",
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ user: { info_user: { phone_number: "1" } } });
  });

  it("answers 204 without a body for Logout with an empty request body", async () => {
    const res = await fetch(h.url + "/logout", { method: "POST" });
    expect(res.status).toBe(204);
    expect(res.headers.get("content-type")).toBeNull();
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.text()).toBe("");
  });

  it("GET /user/profile passes requestHeaders and context values, through the interceptors", async () => {
    const res = await fetch(h.url + "/user/profile", {
      headers: { "x-user": "me@example.com", cookie: "access_token=t" },
    });
    expect(res.status).toBe(200);
    expect((await res.json()) as unknown).toEqual({ user: { email: "me@example.com" } });
    const call = seen.at(-1)!;
    expect(call.headers["x-user"]).toBe("me@example.com");
    // Only what requestHeaders returns is forwarded; the transport sets its own content-type.
    expect(call.headers.cookie).toBeNull();
    expect(call.headers["content-type"]).not.toContain("json");
    expect(contexts.at(-1)).toBe("127.0.0.1");
    expect(call.intercepted).toBe(true);
  });

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
    expect(errorInfo(body)?.reason).toBe("METHOD_NOT_ALLOWED");
    const del = await fetch(h.url + "/user/profile", { method: "DELETE" });
    expect(del.status).toBe(405);
    expect(del.headers.get("allow")).toBe("GET, PUT");
  });

  it.each([
    ["malformed JSON", '{"account":'],
    ["a wrong type", '{"account":{"email":123}}'],
    ["an unknown field", '{"account":{"email":"a@example.com"},"admin":true}'],
    ["a non-object body", "[1,2]"],
    ["whitespace only", "  "],
  ])("answers 400 MALFORMED_REQUEST for %s", async (_name, body) => {
    const res = await post("/register", body);
    expect(res.status).toBe(400);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("x-request-id")).toBe("r1");
    const json = await errorBody(res);
    expect(json.code).toBe("invalid_argument");
    expect(errorInfo(json)).toMatchObject({ reason: "MALFORMED_REQUEST", domain: "identity.v1" });
  });

  it("answers 400 for invalid UTF-8", async () => {
    const bytes = new TextEncoder().encode('{"account":{"email":"x@example.com","password":"\u0000"}}');
    bytes[bytes.indexOf(0)] = 0xff;
    const res = await post("/register", bytes);
    expect(res.status).toBe(400);
    expect(errorInfo(await errorBody(res))?.reason).toBe("MALFORMED_REQUEST");
  });

  it("answers 400 for unknown query parameters and 415 for a non-JSON body", async () => {
    const q = await fetch(h.url + "/user/profile?debug=1");
    expect(q.status).toBe(400);
    expect(errorInfo(await errorBody(q))?.reason).toBe("MALFORMED_REQUEST");
    const star = await post("/register?account.email=a@example.com", registerBody);
    expect(star.status).toBe(400);
    const text = await post("/register", registerBody, { "content-type": "text/plain" });
    expect(text.status).toBe(415);
    expect(errorInfo(await errorBody(text))?.reason).toBe("MALFORMED_REQUEST");
  });

  it("answers 413 when Content-Length is too large", async () => {
    const res = await post("/register", JSON.stringify({ account: { email: "x".repeat(maxBodyBytes) } }));
    expect(res.status).toBe(413);
    const json = await errorBody(res);
    expect(json.code).toBe("resource_exhausted");
    expect(errorInfo(json)?.reason).toBe("REQUEST_TOO_LARGE");
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

  it("answers 413 for a chunked body past the limit", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(300));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 20) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await fetch(h.url + "/register", {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
    expect(errorInfo(await errorBody(res))?.reason).toBe("REQUEST_TOO_LARGE");
  });

  it("answers 413 to a chunked body that never ends", async () => {
    const chunk = new TextEncoder().encode(" ".repeat(512));
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        controller.enqueue(chunk);
      },
    });
    const res = await fetch(h.url + "/register", {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      duplex: "half",
    } as RequestInit);
    expect(res.status).toBe(413);
  });

  it("maps a handler's ConnectError to its HTTP status with code and ErrorInfo", async () => {
    const res = await post("/register", '{"account":{"email":"denied@example.com","password":"x"}}');
    expect(res.status).toBe(401);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const json = await errorBody(res);
    expect(json.code).toBe("unauthenticated");
    expect(json.message).toBe("token missing");
    expect(json.details?.[0]?.type).toBe("google.rpc.ErrorInfo");
    expect(json.details?.[0]?.debug).toMatchObject({ reason: "TOKEN_MISSING" });
    expect(errorInfo(json)).toMatchObject({ reason: "TOKEN_MISSING", domain: "identity.v1" });
    expect(h.errors.at(-1)?.method?.name).toBe("Register");
  });

  it("forwards retry-after but no other error metadata", async () => {
    const res = await post("/login", '{"email":"a@example.com","password":"x"}');
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("7");
    expect(res.headers.get("x-secret")).toBeNull();
    expect(errorInfo(await errorBody(res))?.reason).toBe("RATE_LIMITED");
  });

  it("answers 500 for a plain Error without leaking its message", async () => {
    const res = await post("/register", '{"account":{"email":"boom@example.com","password":"x"}}');
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain("hunter2");
    expect(JSON.parse(text)).toEqual({ code: "internal", message: "internal error" });
    expect(h.errors.at(-1)?.error.code).toBe(Code.Internal);
  });

  it("answers 500 when a hook fails, without its message or the headers it set", async () => {
    const res = await post("/register", '{"account":{"email":"hook@example.com","password":"x"}}');
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
    }).catch(() => undefined);
    await entered;
    controller.abort();
    await pending;
    await aborted; // would time out if the handler's signal never fired
  });
});

// A service built at test time, to reach the parts of http.proto the identity API does not use.
const T = FieldDescriptorProto_Type;
const repeated = { label: FieldDescriptorProto_Label.REPEATED };

function field(name: string, number: number, type: FieldDescriptorProto_Type, extra: { label?: FieldDescriptorProto_Label; typeName?: string } = {}) {
  return {
    name,
    number,
    type,
    label: FieldDescriptorProto_Label.OPTIONAL,
    jsonName: name.replace(/_(\w)/g, (_m, c: string) => c.toUpperCase()),
    ...extra,
  };
}

function rpc(name: string, input: string, output: string, rule: HttpRuleInit) {
  const options = create(MethodOptionsSchema);
  setExtension(options, http, create(HttpRuleSchema, rule));
  return { name, inputType: `.gw.v1.${input}`, outputType: `.gw.v1.${output}`, options };
}

const libraryMethods = [
  rpc("GetBook", "BookRequest", "Book", {
    pattern: { case: "get", value: "/v1/{name=shelves/*/books/*}" },
    additionalBindings: [create(HttpRuleSchema, { pattern: { case: "get", value: "/v1/books/{name}" } })],
  }),
  rpc("CreateBook", "CreateBookRequest", "Book", {
    pattern: { case: "post", value: "/v1/{parent.name=shelves/*}/books" },
    body: "book",
  }),
  rpc("ListBooks", "BookRequest", "ListBooksResponse", {
    pattern: { case: "get", value: "/v1/files/{name=**}" },
    responseBody: "books",
  }),
  rpc("ArchiveBook", "BookRequest", "Book", { pattern: { case: "post", value: "/v1/books/{name}:archive" }, body: "*" }),
  rpc("PurgeBook", "BookRequest", "Book", { pattern: { case: "custom", value: { kind: "PURGE", path: "/v1/purge/{name}" } } }),
];

function libraryService(methods = libraryMethods): DescService {
  const file = create(FileDescriptorProtoSchema, {
    name: "gw/v1/library.proto",
    package: "gw.v1",
    syntax: "proto3",
    enumType: [{ name: "Shelf", value: [{ name: "SHELF_UNSPECIFIED", number: 0 }, { name: "SHELF_FICTION", number: 1 }] }],
    messageType: [
      {
        name: "Book",
        field: [field("name", 1, T.STRING), field("title", 2, T.STRING), field("pages", 3, T.INT32), field("tags", 4, T.STRING, repeated)],
      },
      { name: "Filter", field: [field("author", 1, T.STRING), field("in_print", 2, T.BOOL)] },
      { name: "Parent", field: [field("name", 1, T.STRING)] },
      {
        name: "BookRequest",
        field: [
          field("name", 1, T.STRING),
          field("tags", 2, T.STRING, repeated),
          field("page_size", 3, T.INT32),
          field("filter", 4, T.MESSAGE, { typeName: ".gw.v1.Filter" }),
          field("verbose", 5, T.BOOL),
          field("shelf", 6, T.ENUM, { typeName: ".gw.v1.Shelf" }),
          field("big", 7, T.INT64),
        ],
      },
      {
        name: "CreateBookRequest",
        field: [
          field("parent", 1, T.MESSAGE, { typeName: ".gw.v1.Parent" }),
          field("book", 2, T.MESSAGE, { typeName: ".gw.v1.Book" }),
          field("request_id", 3, T.STRING),
        ],
      },
      { name: "ListBooksResponse", field: [field("books", 1, T.MESSAGE, { ...repeated, typeName: ".gw.v1.Book" })] },
    ],
    service: [{ name: "LibraryService", method: methods }],
  });
  return createFileRegistry(file, () => undefined).getService("gw.v1.LibraryService")!;
}

describe("REST gateway, general http.proto features", () => {
  let h: Harness;
  const library = libraryService();

  beforeAll(async () => {
    // Every method echoes its decoded request (snake_case JSON) in Book.title.
    const echo = (schema: DescMessage) => (req: Message) => ({
      name: (req as Message & { name?: string }).name ?? "",
      title: JSON.stringify(toJson(schema, req, { useProtoFieldName: true })),
    });
    const impl: Record<string, (req: Message) => unknown> = {};
    for (const m of library.methods) impl[m.localName] = echo(m.input);
    impl["listBooks"] = (req) => ({ books: [{ name: (req as Message & { name: string }).name }] });
    const routes = (router: ConnectRouter) => router.service(library, impl as never);
    const errors: Harness["errors"] = [];
    h = await serve(createRestGateway(gatewayOptions([library], routes, errors)), errors);
  });
  afterAll(() => h.close());

  const call = async (path: string, init?: RequestInit) => {
    const res = await fetch(h.url + path, init);
    const text = await res.text();
    return { status: res.status, json: text === "" ? undefined : JSON.parse(text) };
  };
  const echoed = async (path: string, init?: RequestInit) => {
    const { status, json } = await call(path, init);
    expect(status, JSON.stringify(json)).toBe(200);
    return JSON.parse(json.title);
  };

  it("fills path variables and typed query parameters (repeated, nested, enum, int64, camelCase)", async () => {
    const req = await echoed(
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

  it("serves additional_bindings, decoding a single-segment variable fully", async () => {
    expect(await echoed("/v1/books/b%2F1?shelf=1")).toEqual({ name: "b/1", shelf: "SHELF_FICTION" });
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
    const { status, json } = await call(path);
    expect(status).toBe(400);
    expect(errorInfo(json)?.reason).toBe("MALFORMED_REQUEST");
  });

  it("maps body: field plus a nested path variable and query parameters", async () => {
    const req = await echoed("/v1/shelves/s1/books?request_id=r1", {
      method: "POST",
      body: '{"title":"T","pages":3}',
      headers: { "content-type": "application/json" },
    });
    expect(req).toEqual({ parent: { name: "shelves/s1" }, book: { title: "T", pages: 3 }, request_id: "r1" });
    const { status } = await call("/v1/shelves/s1/books?book.title=x", { method: "POST" });
    expect(status).toBe(400);
  });

  it("honours response_body and ** variables", async () => {
    expect(await call("/v1/files/a/b/c")).toEqual({ status: 200, json: [{ name: "a/b/c" }] });
    expect(await call("/v1/files")).toEqual({ status: 200, json: [{}] });
  });

  it("routes custom verbs and custom HTTP methods", async () => {
    const req = await echoed("/v1/books/b1:archive", {
      method: "POST",
      body: '{"verbose":true,"name":"ignored"}',
      headers: { "content-type": "application/json" },
    });
    expect(req).toEqual({ name: "b1", verbose: true });
    expect(await echoed("/v1/purge/b2", { method: "PURGE" })).toEqual({ name: "b2" });
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
    expect(() => createRestGateway({ services: [service], errorDomain: "gw.v1", transport: createRouterTransport(() => {}), maxBodyBytes })).toThrow(message);
  });
});
