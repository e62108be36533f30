import { create, getOption, hasOption, toJson } from "@bufbuild/protobuf";
import type { DescField, DescMethod, DescService, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import type { CallOptions, Transport } from "@connectrpc/connect";
import { http } from "../../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../../gen/google/api/http_pb.js";
import { fromStringSupported, resolveFieldPath } from "./fields.js";
import { compilePathTemplate, type PathTemplate } from "./path-template.js";

// The route table: one entry per google.api.http rule (and additional
// binding) of the services, each with what decoding and encoding need.

export type UnaryCall = (request: Message, options: CallOptions) => Promise<Message>;

export interface Route {
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

/**
 * Compiles the google.api.http rules of every unary method once. A rule the
 * gateway cannot serve (a path variable that is not a singular scalar, a
 * body or response_body field that does not exist, a bad template, a
 * success status that is not 2xx) throws here, at start-up, not per request.
 */
export function compileRoutes(
  services: DescService[],
  transport: Transport,
  successStatus: (method: DescMethod) => number | undefined,
): Route[] {
  const routes: Route[] = [];
  for (const service of services) {
    // createClient keeps the call on the public client path (timeouts, interceptors).
    const client = createClient(service, transport) as unknown as Record<string, UnaryCall>;
    for (const method of service.methods) {
      if (method.methodKind !== "unary" || !hasOption(method, http)) continue;
      const rule = getOption(method, http);
      const call = client[method.localName]!;
      // additional_bindings of additional bindings are ignored, as http.proto says.
      for (const r of [rule, ...rule.additionalBindings]) routes.push(compileRoute(method, r, call, successStatus(method) ?? 200));
    }
  }
  return routes;
}

function compileRoute(method: DescMethod, rule: HttpRule, call: UnaryCall, successStatus: number): Route {
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
  if (!Number.isInteger(successStatus) || successStatus < 200 || successStatus > 299) {
    throw new Error(`${where}: success status ${successStatus} is not 2xx`);
  }
  return { method, httpMethod, template, pathFields, body, responseField, responseDefault, successStatus, call };
}

export type RouteMatch = { route: Route; captures: string[] } | { allowed: string[] } | undefined;

/**
 * The first route whose template matches the path segments and whose HTTP
 * method fits; else the methods the matching templates take (405 with
 * Allow), or undefined when no template matches (not a REST path: the caller
 * falls through).
 */
export function matchRoute(routes: readonly Route[], httpMethod: string | undefined, segments: readonly string[]): RouteMatch {
  let allowed: Set<string> | undefined;
  for (const route of routes) {
    const captures = route.template.matchSegments(segments);
    if (captures === undefined) continue;
    if (route.httpMethod === "*" || route.httpMethod === httpMethod) return { route, captures };
    (allowed ??= new Set()).add(route.httpMethod);
  }
  return allowed === undefined ? undefined : { allowed: [...allowed].sort() };
}
