import type { IncomingMessage } from "node:http";
import { fromJson } from "@bufbuild/protobuf";
import type { DescField, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import { readBody } from "./body.js";
import { malformed } from "./errors.js";
import { fromString, fromStringSupported, resolveFieldPath } from "./fields.js";
import type { Route } from "./routes.js";

// Request decoding: a route's JSON body, path variables and query parameters
// become the method's input message.

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * One JSON object from body, path and query, then a single fromJson, so the
 * proto JSON rules (names, types, unknown fields) apply once, whatever part
 * of the request a value came from.
 */
export async function decodeRequest(
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
