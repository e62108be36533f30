// REST/JSON transcoding from google.api.http annotations (the grpc-gateway
// idea) for Connect: every call goes through a Transport, so REST requests
// meet the same interceptors as gRPC and Connect ones.
import type { IncomingMessage, ServerResponse } from "node:http";
import { create, fromJson, getOption, hasOption, ScalarType, toJson } from "@bufbuild/protobuf";
import type {
  DescField,
  DescMessage,
  DescMethod,
  DescService,
  JsonObject,
  JsonValue,
  Message,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { CallOptions, ContextValues, Transport } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { http } from "../../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../../gen/google/api/http_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { http_success_status } from "../../../gen/identity/v1/annotations_pb.js";

// lib has no DOM; this is the HeadersInit of Node's global fetch types.
type HeadersInit = NonNullable<ConstructorParameters<typeof Headers>[0]>;

export interface RestGatewayOptions {
  /** Services whose google.api.http rules are exposed. */
  services: DescService[];
  /**
   * Where calls go: a transport that runs the server's interceptors, e.g.
   * createDirectTransport (transport/rpc/direct.ts) or createRouterTransport.
   */
  transport: Transport;
  /** Request bodies above this many bytes get 413. */
  maxBodyBytes: number;
  /** Call headers for a request; nothing is forwarded by default. */
  requestHeaders?(req: IncomingMessage): HeadersInit;
  /** Per-call context values (e.g. the client address). */
  contextValues?(req: IncomingMessage): ContextValues;
  /**
   * After the request is decoded, before the call: may complete the request
   * (e.g. a credential from a cookie) or throw a ConnectError to refuse it.
   */
  prepareCall?(ctx: { method: DescMethod; req: IncomingMessage; input: Message }): void;
  /**
   * After a successful call, before the body is encoded (e.g. to set
   * cookies). May return the message to encode instead of `response` (e.g.
   * without what went into a cookie).
   */
  onSuccess?(ctx: { method: DescMethod; req: IncomingMessage; res: ServerResponse; input: Message; response: Message }): Message | void;
  /** Response headers and error metadata copied to the HTTP response (default: retry-after). */
  forwardHeaders?: string[];
  /** Every error response, for logging. Must not throw. */
  onError?(ctx: { method?: DescMethod; req: IncomingMessage; error: ConnectError }): void;
}

/** Handles a request; resolves false when no route matches (the caller falls through, e.g. to 404). */
export type RestGateway = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

const errorDomain = "identity.v1";

// ---------------------------------------------------------------------------
// Path templates (google/api/http.proto):
//   Template = "/" Segments [ Verb ] ;  Segments = Segment { "/" Segment } ;
//   Segment  = "*" | "**" | LITERAL | Variable ;
//   Variable = "{" FieldPath [ "=" Segments ] "}" ;  Verb = ":" LITERAL ;

type Segment = { kind: "literal"; value: string } | { kind: "any" } | { kind: "deep" };

interface TemplateVariable {
  fieldPath: string;
  /** Range of template segments the variable covers. */
  start: number;
  end: number;
  /** Spans more than one path segment: "/" inside the value stays %2F-encoded. */
  multi: boolean;
}

export interface PathTemplate {
  readonly template: string;
  readonly verb: string | undefined;
  /** Field paths of the variables, in template order. */
  readonly variables: readonly string[];
  /**
   * Matches a path already split on "/" (without the leading slash). Returns
   * one still percent-encoded capture per variable, or undefined.
   */
  matchSegments(segments: readonly string[]): string[] | undefined;
  /** Percent-decodes the captures of matchSegments. Throws URIError on bad encoding. */
  decode(captures: readonly string[]): string[];
  /** Matches a path ("/a/b:verb"); values are percent-decoded. Throws URIError on bad encoding. */
  match(path: string): Record<string, string> | undefined;
}

/** Compiles a google.api.http path template once; matching then costs a few string compares. */
export function compilePathTemplate(template: string): PathTemplate {
  const { segments, variables, verb } = parseTemplate(template);
  const last = segments.length - 1;
  const deep = segments[last]?.kind === "deep";
  const fixed = deep ? last : segments.length;
  const verbSuffix = verb === undefined ? undefined : `:${verb}`;

  function decode(captures: readonly string[]): string[] {
    return captures.map((raw, i) => decodeCapture(raw, variables[i]!.multi));
  }

  function matchSegments(input: readonly string[]): string[] | undefined {
    let segs = input;
    if (verbSuffix !== undefined) {
      const tail = segs[segs.length - 1];
      if (tail === undefined || !tail.endsWith(verbSuffix)) return undefined;
      segs = [...segs.slice(0, -1), tail.slice(0, -verbSuffix.length)];
    }
    if (deep ? segs.length < fixed : segs.length !== fixed) return undefined;
    for (let i = 0; i < fixed; i++) {
      const want = segments[i]!;
      const got = segs[i]!;
      if (want.kind === "literal" ? got !== want.value : got === "") return undefined;
    }
    return variables.map((v) =>
      v.end - v.start === 1 && !(deep && v.end === segments.length)
        ? segs[v.start]!
        : segs.slice(v.start, deep && v.end === segments.length ? undefined : v.end).join("/"),
    );
  }

  return {
    template,
    verb,
    variables: variables.map((v) => v.fieldPath),
    matchSegments,
    decode,
    match(path) {
      if (!path.startsWith("/")) return undefined;
      const captures = matchSegments(path.slice(1).split("/"));
      if (captures === undefined) return undefined;
      const values = decode(captures);
      return Object.fromEntries(variables.map((v, i) => [v.fieldPath, values[i]!]));
    },
  };
}

function parseTemplate(template: string): { segments: Segment[]; variables: TemplateVariable[]; verb: string | undefined } {
  const fail = (why: string): never => {
    throw new Error(`invalid path template "${template}": ${why}`);
  };
  if (!template.startsWith("/")) fail("must start with /");
  const segments: Segment[] = [];
  const variables: TemplateVariable[] = [];
  let verb: string | undefined;
  let pos = 1;
  for (;;) {
    if (template[pos] === "{") {
      const close = template.indexOf("}", pos);
      if (close < 0) fail("unclosed {");
      const inner = template.slice(pos + 1, close);
      const eq = inner.indexOf("=");
      const fieldPath = eq < 0 ? inner : inner.slice(0, eq);
      if (!/^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(fieldPath)) fail(`bad field path "${fieldPath}"`);
      if (variables.some((v) => v.fieldPath === fieldPath)) fail(`"${fieldPath}" bound twice`);
      const start = segments.length;
      for (const part of (eq < 0 ? "*" : inner.slice(eq + 1)).split("/")) segments.push(parseSegment(part, fail));
      const covered = segments.slice(start);
      variables.push({
        fieldPath,
        start,
        end: segments.length,
        multi: covered.length > 1 || covered[0]?.kind === "deep",
      });
      pos = close + 1;
    } else {
      let end = pos;
      while (end < template.length && template[end] !== "/" && template[end] !== ":") end++;
      segments.push(parseSegment(template.slice(pos, end), fail));
      pos = end;
    }
    if (pos === template.length) break;
    if (template[pos] === "/") {
      pos++;
      continue;
    }
    if (template[pos] === ":") {
      verb = template.slice(pos + 1);
      if (!/^[^/{}*:]+$/.test(verb)) fail(`bad verb "${verb}"`);
      break;
    }
    fail(`unexpected "${template[pos]}"`);
  }
  // "**" must end the path, or matching would need backtracking.
  if (segments.slice(0, -1).some((s) => s.kind === "deep")) fail("** must be the last segment");
  return { segments, variables, verb };
}

function parseSegment(text: string, fail: (why: string) => never): Segment {
  if (text === "*") return { kind: "any" };
  if (text === "**") return { kind: "deep" };
  if (text === "") fail("empty segment");
  if (/[{}*=]/.test(text)) fail(`bad segment "${text}"`);
  return { kind: "literal", value: text };
}

// Single segments decode fully; multi-segment values keep "/" unambiguous
// (RFC 6570 reserved expansion, as http.proto describes).
function decodeCapture(raw: string, multi: boolean): string {
  if (!multi) return decodeURIComponent(raw);
  return raw
    .split("/")
    .map((s) => decodeURIComponent(s).replaceAll("/", "%2F"))
    .join("/");
}

// ---------------------------------------------------------------------------
// Routes

type UnaryCall = (request: Message, options: CallOptions) => Promise<Message>;

interface Route {
  method: DescMethod;
  /** Upper-case HTTP method, or "*" for a custom rule matching any method. */
  httpMethod: string;
  template: PathTemplate;
  /** Resolved field chain of each path variable. */
  pathFields: DescField[][];
  /** undefined: no body; "*": the whole request; otherwise the top-level field. */
  body: DescField | "*" | undefined;
  responseField: DescField | undefined;
  /** JSON of response_body when the field is unset ([], 0, "", null...). */
  responseDefault: JsonValue;
  successStatus: number;
  call: UnaryCall;
}

function compileRoutes(services: DescService[], transport: Transport): Route[] {
  const routes: Route[] = [];
  for (const service of services) {
    // createClient keeps the call on the public client path (timeouts, interceptors).
    const client = createClient(service, transport) as unknown as Record<string, UnaryCall>;
    for (const method of service.methods) {
      if (method.methodKind !== "unary" || !hasOption(method, http)) continue;
      const rule = getOption(method, http);
      const call = client[method.localName]!;
      // additional_bindings of additional bindings are ignored, as http.proto says.
      for (const r of [rule, ...rule.additionalBindings]) routes.push(compileRoute(method, r, call));
    }
  }
  return routes;
}

function compileRoute(method: DescMethod, rule: HttpRule, call: UnaryCall): Route {
  const where = `${method.parent.typeName}.${method.name}`;
  let httpMethod: string;
  let path: string;
  switch (rule.pattern.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      httpMethod = rule.pattern.case.toUpperCase();
      path = rule.pattern.value;
      break;
    case "custom":
      httpMethod = rule.pattern.value.kind === "*" ? "*" : rule.pattern.value.kind.toUpperCase();
      path = rule.pattern.value.path;
      break;
    default:
      throw new Error(`${where}: google.api.http rule without a pattern`);
  }
  const template = compilePathTemplate(path);
  const pathFields = template.variables.map((fieldPath) => {
    const chain = resolveFieldPath(method.input, fieldPath.split("."), false);
    const leaf = chain?.[chain.length - 1];
    if (chain === undefined || leaf === undefined || leaf.fieldKind === "list" || !fromStringSupported(leaf)) {
      throw new Error(`${where}: path variable "${fieldPath}" is not a singular scalar field of ${method.input.typeName}`);
    }
    return chain;
  });
  let body: Route["body"];
  if (rule.body === "*") body = "*";
  else if (rule.body !== "") {
    body = method.input.fields.find((f) => f.name === rule.body);
    if (body === undefined) throw new Error(`${where}: body field "${rule.body}" not in ${method.input.typeName}`);
  }
  let responseField: DescField | undefined;
  let responseDefault: JsonValue = null;
  if (rule.responseBody !== "") {
    responseField = method.output.fields.find((f) => f.name === rule.responseBody);
    if (responseField === undefined) {
      throw new Error(`${where}: response_body field "${rule.responseBody}" not in ${method.output.typeName}`);
    }
    const empty = toJson(method.output, create(method.output), { useProtoFieldName: true, alwaysEmitImplicit: true });
    responseDefault = (empty as JsonObject)[responseField.name] ?? null;
  }
  const successStatus = hasOption(method, http_success_status) ? getOption(method, http_success_status) : 200;
  if (successStatus < 200 || successStatus > 299) throw new Error(`${where}: http_success_status ${successStatus} is not 2xx`);
  return { method, httpMethod, template, pathFields, body, responseField, responseDefault, successStatus, call };
}

// Field lookup by proto name, or also by JSON name (query parameters accept both).
function resolveFieldPath(message: DescMessage, parts: string[], jsonNames: boolean): DescField[] | undefined {
  const chain: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const part of parts) {
    if (current === undefined) return undefined;
    const field: DescField | undefined = current.fields.find(
      (f) => f.name === part || (jsonNames && f.jsonName === part),
    );
    if (field === undefined) return undefined;
    chain.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return chain;
}

// ---------------------------------------------------------------------------
// Gateway

const utf8 = new TextDecoder("utf-8", { fatal: true });

// HTTP statuses of errors the gateway makes itself (connect's mapping would
// give 429 for 413 and 501 for 405).
const gatewayStatus = new WeakMap<ConnectError, number>();

function gatewayError(status: number, code: Code, reason: string, message: string): ConnectError {
  const error = new ConnectError(message, code, undefined, [
    { desc: ErrorInfoSchema, value: { reason, domain: errorDomain } },
  ]);
  gatewayStatus.set(error, status);
  return error;
}

function malformed(message: string, status = 400): ConnectError {
  return gatewayError(status, Code.InvalidArgument, "MALFORMED_REQUEST", message);
}

export function createRestGateway(opts: RestGatewayOptions): RestGateway {
  if (!Number.isSafeInteger(opts.maxBodyBytes) || opts.maxBodyBytes < 0) {
    throw new Error(`maxBodyBytes must be a non-negative integer, got ${opts.maxBodyBytes}`);
  }
  const routes = compileRoutes(opts.services, opts.transport);
  const forward = (opts.forwardHeaders ?? ["retry-after"]).map((h) => h.toLowerCase());

  function reportError(req: IncomingMessage, error: ConnectError, method?: DescMethod): void {
    try {
      opts.onError?.({ method, req, error });
    } catch {
      // A logging hook must never turn into a second failure.
    }
  }

  async function serve(route: Route, captures: string[], query: string, req: IncomingMessage, res: ServerResponse) {
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableEnded) controller.abort(); // the client left before the answer
    };
    const ownHeaders = new Set(res.getHeaderNames());
    res.once("close", onClose);
    try {
      const input = await decodeRequest(route, captures, query, req, opts.maxBodyBytes);
      opts.prepareCall?.({ method: route.method, req, input });
      const response = await route.call(input, {
        headers: opts.requestHeaders?.(req),
        contextValues: opts.contextValues?.(req),
        signal: controller.signal,
        onHeader: (headers) => copyHeaders(headers, res, forward),
      });
      // The hook first, so it can shape the body; should encoding then fail,
      // writeError drops the headers it set.
      const shown = opts.onSuccess?.({ method: route.method, req, res, input, response }) ?? response;
      if (res.writableEnded) return; // the hook answered itself
      const body = route.successStatus === 204 ? undefined : JSON.stringify(encodeResponse(route, shown));
      res.statusCode = route.successStatus;
      res.setHeader("cache-control", "no-store");
      if (body === undefined) {
        res.end();
        return;
      }
      res.setHeader("content-type", "application/json");
      res.setHeader("content-length", Buffer.byteLength(body));
      res.end(body);
    } catch (err) {
      const error = ConnectError.from(err);
      reportError(req, error, route.method);
      if (res.headersSent || res.destroyed) return;
      writeError(req, res, error, ownHeaders, forward);
    } finally {
      res.off("close", onClose);
    }
  }

  return async function handle(req, res) {
    const url = req.url ?? "";
    if (!url.startsWith("/")) return false;
    const q = url.indexOf("?");
    const segments = (q < 0 ? url : url.slice(0, q)).slice(1).split("/");
    let allowed: Set<string> | undefined;
    for (const route of routes) {
      const captures = route.template.matchSegments(segments);
      if (captures === undefined) continue;
      if (route.httpMethod === "*" || route.httpMethod === req.method) {
        await serve(route, captures, q < 0 ? "" : url.slice(q + 1), req, res);
        return true;
      }
      (allowed ??= new Set()).add(route.httpMethod);
    }
    if (allowed === undefined) return false;
    const error = gatewayError(405, Code.Unimplemented, "METHOD_NOT_ALLOWED", `method ${req.method} not allowed`);
    reportError(req, error);
    res.setHeader("allow", [...allowed].sort().join(", "));
    writeError(req, res, error, new Set(res.getHeaderNames()), forward);
    return true;
  };
}

function encodeResponse(route: Route, response: Message): JsonValue {
  const json = toJson(route.method.output, response, { useProtoFieldName: true });
  if (route.responseField === undefined) return json;
  return (json as JsonObject)[route.responseField.name] ?? route.responseDefault;
}

// The messages of internal errors stay in the logs (onError), not the response.
function publicError(error: ConnectError): ConnectError {
  if (error.code !== Code.Unknown && error.code !== Code.Internal && error.code !== Code.DataLoss) return error;
  const safe = new ConnectError("internal error", error.code);
  safe.details.push(...error.details);
  return safe;
}

// keep: headers the caller set before the gateway ran.
function copyHeaders(from: Headers, res: ServerResponse, names: readonly string[]): void {
  for (const name of names) {
    const value = from.get(name);
    if (value !== null) res.setHeader(name, value);
  }
}

function writeError(
  req: IncomingMessage,
  res: ServerResponse,
  error: ConnectError,
  keep: Set<string>,
  forward: readonly string[],
): void {
  const status = gatewayStatus.get(error) ?? codeToHttpStatus(error.code);
  // Drop what a hook set before failing (e.g. a session cookie).
  for (const name of res.getHeaderNames()) if (!keep.has(name)) res.removeHeader(name);
  let body: Uint8Array;
  try {
    body = errorToJsonBytes(publicError(error), { useProtoFieldName: true });
  } catch {
    body = new TextEncoder().encode(`{"code":"internal"}`);
  }
  res.statusCode = status;
  res.setHeader("cache-control", "no-store");
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", body.byteLength);
  copyHeaders(error.metadata, res, forward);
  // Close rather than read the rest of an oversized body (HTTP/2 forbids the header).
  if (status === 413 && req.httpVersionMajor < 2) res.setHeader("connection", "close");
  res.end(body);
}

// ---------------------------------------------------------------------------
// Request decoding: one JSON object from body, path and query, then a single
// fromJson so the proto JSON rules (names, types, unknown fields) apply once.

async function decodeRequest(
  route: Route,
  captures: string[],
  query: string,
  req: IncomingMessage,
  maxBodyBytes: number,
): Promise<Message> {
  let root: JsonObject = {};
  if (route.body !== undefined) {
    const bytes = await readBody(req, maxBodyBytes);
    if (bytes.byteLength > 0) {
      if (!isJsonContentType(req.headers["content-type"])) {
        throw malformed("content-type must be application/json", 415);
      }
      let json: JsonValue;
      try {
        json = JSON.parse(utf8.decode(bytes)) as JsonValue;
      } catch {
        throw malformed("request body is not valid UTF-8 JSON");
      }
      if (route.body === "*") {
        if (!isObject(json)) throw malformed("request body must be a JSON object");
        root = json;
      } else {
        root[route.body.jsonName] = json;
      }
    }
  }

  let values: string[];
  try {
    values = route.template.decode(captures);
  } catch {
    throw malformed("bad percent-encoding in path");
  }
  // Path values win over the body (grpc-gateway does the same).
  route.pathFields.forEach((chain, i) => setLeaf(root, chain, fromString(chain[chain.length - 1]!, values[i]!)));

  if (query !== "") applyQuery(route, new URLSearchParams(query), root);

  try {
    return fromJson(route.method.input, root, { ignoreUnknownFields: false });
  } catch (err) {
    throw malformed(err instanceof Error ? err.message : "invalid request");
  }
}

function applyQuery(route: Route, params: URLSearchParams, root: JsonObject): void {
  const grouped = new Map<string, string[]>();
  for (const [key, value] of params) {
    const values = grouped.get(key);
    if (values === undefined) grouped.set(key, [value]);
    else values.push(value);
  }
  for (const [key, values] of grouped) {
    // With body "*" every field not in the path comes from the body.
    const chain = route.body === "*" ? undefined : resolveFieldPath(route.method.input, key.split("."), true);
    const leaf = chain?.[chain.length - 1];
    if (chain === undefined || leaf === undefined) throw malformed(`unknown query parameter "${key}"`);
    if (chain[0] === route.body || route.pathFields.some((p) => p.length === chain.length && p.every((f, i) => f === chain[i]))) {
      throw malformed(`query parameter "${key}" sets a field bound by the body or path`);
    }
    if (!fromStringSupported(leaf)) throw malformed(`query parameter "${key}" cannot be set from a string`);
    if (leaf.fieldKind === "list") {
      setLeaf(root, chain, values.map((v) => fromString(leaf, v)), true);
    } else {
      if (values.length > 1) throw malformed(`query parameter "${key}" given more than once`);
      setLeaf(root, chain, fromString(leaf, values[0]!));
    }
  }
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// Sets a field in the JSON tree, reusing whichever name (JSON or proto) the
// body already used so fromJson does not see the field twice.
function setLeaf(root: JsonObject, chain: DescField[], value: JsonValue, append = false): void {
  let node = root;
  for (const field of chain.slice(0, -1)) {
    const key = Object.hasOwn(node, field.name) && !Object.hasOwn(node, field.jsonName) ? field.name : field.jsonName;
    const child = node[key];
    if (isObject(child)) node = child;
    else node = node[key] = {};
  }
  const leaf = chain[chain.length - 1]!;
  const existing = node[leaf.jsonName] ?? node[leaf.name];
  if (leaf.name !== leaf.jsonName) delete node[leaf.name];
  node[leaf.jsonName] = append && Array.isArray(existing) && Array.isArray(value) ? [...existing, ...value] : value;
}

const stringWkts = new Set([
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
  "google.protobuf.FieldMask",
  "google.protobuf.StringValue",
  "google.protobuf.BytesValue",
  "google.protobuf.DoubleValue",
  "google.protobuf.FloatValue",
  "google.protobuf.Int64Value",
  "google.protobuf.UInt64Value",
  "google.protobuf.Int32Value",
  "google.protobuf.UInt32Value",
]);

type LeafKind = { scalar: ScalarType } | { enum: true } | { message: DescMessage } | undefined;

function leafKind(field: DescField): LeafKind {
  switch (field.fieldKind) {
    case "scalar":
      return { scalar: field.scalar };
    case "enum":
      return { enum: true };
    case "message":
      return { message: field.message };
    case "list":
      if (field.listKind === "scalar") return { scalar: field.scalar };
      if (field.listKind === "enum") return { enum: true };
      return { message: field.message };
    case "map":
      return undefined;
  }
}

function fromStringSupported(field: DescField): boolean {
  const kind = leafKind(field);
  if (kind === undefined) return false;
  if ("message" in kind) return stringWkts.has(kind.message.typeName) || kind.message.typeName === "google.protobuf.BoolValue";
  return true;
}

// Path and query values are strings; turn them into the JSON fromJson expects
// (it accepts strings for numbers, but not for bools).
function fromString(field: DescField, value: string): JsonValue {
  const kind = leafKind(field);
  const isBool =
    kind !== undefined &&
    (("scalar" in kind && kind.scalar === ScalarType.BOOL) ||
      ("message" in kind && kind.message.typeName === "google.protobuf.BoolValue"));
  if (isBool) {
    if (value === "true" || value === "1") return true;
    if (value === "false" || value === "0") return false;
    throw malformed(`"${field.name}" must be true or false`);
  }
  if (kind !== undefined && "enum" in kind && /^-?\d+$/.test(value)) return Number(value);
  return value;
}

function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const [type, ...params] = header.split(";");
  if (type?.trim().toLowerCase() !== "application/json") return false;
  return params.every((p) => {
    const [name, val] = p.split("=");
    if (name?.trim().toLowerCase() !== "charset") return true;
    return /^"?utf-?8"?$/i.test(val?.trim() ?? "");
  });
}

// Reads at most limit bytes; past that it stops collecting and rejects with
// 413 while the rest of the body is discarded.
function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) {
    return Promise.reject(gatewayError(413, Code.ResourceExhausted, "REQUEST_TOO_LARGE", "request body too large"));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAbort);
      req.off("close", onAbort);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limit) {
        stop();
        req.resume(); // keep draining so the client can read the 413
        reject(gatewayError(413, Code.ResourceExhausted, "REQUEST_TOO_LARGE", "request body too large"));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks, size));
    };
    const onAbort = () => {
      stop();
      reject(new ConnectError("client closed the request", Code.Canceled));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAbort);
    req.on("close", onAbort);
  });
}
