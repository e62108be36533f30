import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";

// The three kinds of caller the service has: internal services with gRPC
// stubs (grpc-js), Connect/gRPC-Web clients, and the gateway speaking REST.

export function connectClient(baseUrl: string, protocol: "connect" | "grpc" | "grpc-web" = "connect"): Client<typeof IdentityService> {
  return serviceClient(IdentityService, baseUrl, protocol);
}

/** A Connect-ES client of any of the service's services. */
export function serviceClient<S extends DescService>(service: S, baseUrl: string, protocol: "connect" | "grpc" | "grpc-web" = "connect"): Client<S> {
  let transport: Transport;
  if (protocol === "grpc") transport = createGrpcTransport({ baseUrl });
  else if (protocol === "grpc-web") transport = createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
  else transport = createConnectTransport({ baseUrl, httpVersion: "1.1" });
  return createClient(service, transport);
}

type Unary<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends { input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? (req: MessageInitShape<I>, metadata?: Record<string, string>) => Promise<MessageShape<O>>
    : never;
};

/** A @grpc/grpc-js client for a protobuf-es service, as an internal service would build one. */
export function grpcJsClient<S extends DescService>(service: S, port: number): Unary<S> & { close(): void } {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    definition[m.localName] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: unknown) => Buffer.from(toBinary(m.input, create(m.input, v as never))),
      requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
      responseSerialize: (v: unknown) => Buffer.from(toBinary(m.output, v as never)),
      responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
    };
  }
  const Ctor = grpc.makeGenericClientConstructor(definition, service.typeName);
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, Function> & grpc.Client;
  const out: Record<string, unknown> = { close: () => client.close() };
  for (const m of service.methods) {
    out[m.localName] = (req: unknown, metadata: Record<string, string> = {}) =>
      new Promise((resolve, reject) => {
        const md = new grpc.Metadata();
        for (const [k, v] of Object.entries(metadata)) md.set(k, v);
        client[m.localName]!.call(client, req, md, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
      });
  }
  return out as Unary<S> & { close(): void };
}

export interface RestResponse {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/** A plain fetch call, as the API gateway would make it. */
export async function rest(
  baseUrl: string,
  method: string,
  path: string,
  opts: { body?: unknown; raw?: string | Uint8Array; token?: string; cookie?: string; headers?: Record<string, string> } = {},
): Promise<RestResponse> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined || opts.raw !== undefined) headers["content-type"] ??= "application/json";
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.cookie) headers.cookie = opts.cookie;
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: jsonOrUndefined(text), text };
}

/** `text` parsed as JSON, or undefined when it is empty or not JSON. */
export function jsonOrUndefined(text: string): any {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Call options carrying an access token, for Connect clients. */
export function bearer(token: string) {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** gRPC metadata carrying an access token, for grpc-js clients. */
export function bearerMd(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export const STRONG_PASSWORD = "correct horse battery staple 42";

let counter = 0;
/** A unique, valid e-mail per call. */
export function uniqueEmail(prefix = "user"): string {
  counter++;
  return `${prefix}.${Date.now().toString(36)}${counter}${Math.random().toString(36).slice(2, 6)}@example.com`;
}
