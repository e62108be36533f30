// What the gateway specs share: a real HTTP server around a gateway, two
// services to route (a fake IdentityService, and a library service built at
// test time for the parts of http.proto the identity API does not use), and
// readers for the error JSON.
import { createServer } from "node:http";
import type { Server } from "node:http";
import { expect } from "vitest";
import { create, createFileRegistry, getOption, hasOption, setExtension, toJson } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, DescService, Message, MessageInitShape } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextKey, createContextValues, createRouterTransport } from "@connectrpc/connect";
import type { ConnectRouter, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { http } from "../../../../gen/google/api/annotations_pb.js";
import { HttpRuleSchema } from "../../../../gen/google/api/http_pb.js";
import { ErrorInfoSchema } from "../../../../gen/google/rpc/error_details_pb.js";
import { http_success_status } from "../../../../gen/identity/v1/annotations_pb.js";
import { IdentityService } from "../../../../gen/identity/v1/identity_service_pb.js";
import { createRestGateway } from "../../../../src/transport/gateway/gateway.js";
import type { RestGateway, RestGatewayOptions } from "../../../../src/transport/gateway/gateway.js";
import { closeServer, listenLocal } from "../../../support/local-http.js";
import { issueRegistrationBody } from "../../../support/users.js";

export const maxBodyBytes = 1024;
export const clientAddress = createContextKey<string>("", { description: "client address" });

export type ReportedErrors = { method?: DescMethod; error: ConnectError }[];

export interface Harness {
  url: string;
  /** What onError was given, in order. */
  errors: ReportedErrors;
  close(): Promise<void>;
}

// A real HTTP server on port 0; requests the gateway does not route fall through to a plain 404.
async function serve(gateway: RestGateway, errors: ReportedErrors): Promise<Harness> {
  const server: Server = createServer((req, res) => {
    res.setHeader("x-request-id", "r1"); // set by the caller: must survive error responses
    void gateway(req, res).then((handled) => {
      if (!handled) {
        res.statusCode = 404;
        res.end("fallthrough");
      }
    });
  });
  return { url: await listenLocal(server), errors, close: () => closeServer(server) };
}

function gatewayOptions(
  services: DescService[],
  routes: (router: ConnectRouter) => void,
  errors: ReportedErrors,
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

export interface IdentityHarness extends Harness {
  /** Per GetProfile call: the headers the handler saw and whether the router's interceptor ran. */
  seen: { headers: Record<string, string | null>; intercepted?: boolean }[];
  /** Per call: the client address the transport's interceptors saw in the context values. */
  contexts: (string | undefined)[];
}

/**
 * The gateway over a fake IdentityService: Register echoes the user (or
 * fails for denied@, boom@ and, in the onSuccess hook, hook@), Login is
 * always rate limited, Logout answers {}, GetProfile reports what it saw.
 * `impl` adds or replaces handlers.
 */
export async function startIdentityGateway(impl: Partial<ServiceImpl<typeof IdentityService>> = {}): Promise<IdentityHarness> {
  const seen: IdentityHarness["seen"] = [];
  const contexts: IdentityHarness["contexts"] = [];
  const errors: ReportedErrors = [];
  // Marks calls so a test can see they went through the router's interceptors.
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
      ...impl,
    });
  // contextValues reach the transport's interceptors (createRouterTransport's
  // in-memory client does not hand them on to the router's handlers).
  const capture: Interceptor = (next) => (req) => {
    contexts.push(req.contextValues.get(clientAddress));
    return next(req);
  };
  const options = gatewayOptions([IdentityService], routes, errors, { router: [marker], transport: [capture] });
  const h = await serve(createRestGateway(options), errors);
  return { ...h, seen, contexts };
}

/**
 * The gateway over libraryService(): every method echoes its decoded request
 * (snake_case JSON) in Book.title. `overrides` replace gateway options.
 */
export async function startLibraryGateway(overrides: Partial<RestGatewayOptions> = {}): Promise<Harness> {
  const library = libraryService();
  const echo = (schema: DescMessage) => (req: Message) => ({
    name: (req as Message & { name?: string }).name ?? "",
    title: JSON.stringify(toJson(schema, req, { useProtoFieldName: true })),
  });
  const impl: Record<string, (req: Message) => unknown> = {};
  for (const m of library.methods) impl[m.localName] = echo(m.input);
  impl["listBooks"] = (req) => ({ books: [{ name: (req as Message & { name: string }).name }] });
  const routes = (router: ConnectRouter) => router.service(library, impl as never);
  const errors: ReportedErrors = [];
  return serve(createRestGateway({ ...gatewayOptions([library], routes, errors), ...overrides }), errors);
}

export type HttpRuleInit = MessageInitShape<typeof HttpRuleSchema>;

export interface ErrorBody {
  code: string;
  message?: string;
  details?: { type: string; value: string; debug?: unknown }[];
}

export async function errorBody(res: Response): Promise<ErrorBody> {
  return (await res.json()) as ErrorBody;
}

/** The registration body of issue 2 as a client sends it. */
export const registerBody = JSON.stringify(issueRegistrationBody("x"));

/** A POST with a JSON content type (or the headers given). */
export function post(h: Harness, path: string, body: RequestInit["body"], headers: Record<string, string> = { "content-type": "application/json" }) {
  return fetch(h.url + path, { method: "POST", body, headers });
}

/** Status and parsed JSON body (undefined when empty). */
export async function call(h: Harness, path: string, init?: RequestInit): Promise<{ status: number; json: any }> {
  const res = await fetch(h.url + path, init);
  const text = await res.text();
  return { status: res.status, json: text === "" ? undefined : JSON.parse(text) };
}

/** The request a library method echoed back; the call must succeed. */
export async function echoed(h: Harness, path: string, init?: RequestInit): Promise<any> {
  const { status, json } = await call(h, path, init);
  expect(status, JSON.stringify(json)).toBe(200);
  return JSON.parse(json.title);
}

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

export function rpc(name: string, input: string, output: string, rule: HttpRuleInit) {
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

export function libraryService(methods = libraryMethods): DescService {
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
