import { create, type DescMethod, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createHandlerContext,
  type ContextValues,
  type Interceptor,
  type ServiceImplSpec,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";

// Calls a unary RPC implementation in process, through the same interceptors
// the Connect router runs, without encoding the messages to bytes and back.
// The REST gateway and the grpc-js server both sit on this, so every
// protocol meets one implementation of every RPC and one chain of checks.

// lib has no DOM; this is the HeadersInit of Node's fetch types.
type HeadersInit = NonNullable<ConstructorParameters<typeof Headers>[0]>;

export interface InvokeInit {
  header?: HeadersInit | undefined;
  contextValues?: ContextValues | undefined;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  /** For logs and handlers: "rest", "grpc-js", … */
  protocolName: string;
}

export type UnaryInvoker = <I extends DescMethodUnary>(
  method: I,
  input: MessageInitShape<I["input"]>,
  init: InvokeInit,
) => Promise<UnaryResponse>;

type AnyUnaryImpl = (req: unknown, ctx: unknown) => unknown;

export function createUnaryInvoker(specs: ServiceImplSpec[], interceptors: Interceptor[]): UnaryInvoker {
  const impls = new Map<DescMethod, AnyUnaryImpl>();
  for (const spec of specs) {
    for (const m of Object.values(spec.methods)) {
      if (m.kind === "unary") impls.set(m.method, m.impl as AnyUnaryImpl);
    }
  }

  return async (method, input, init) => {
    const impl = impls.get(method);
    if (!impl) throw new ConnectError(`${method.parent.typeName}/${method.name} is not implemented`, Code.Unimplemented);
    const service = method.parent;
    const url = `/${service.typeName}/${method.name}`;
    const ctx = createHandlerContext({
      service,
      method,
      protocolName: init.protocolName,
      requestMethod: "POST",
      url,
      timeoutMs: init.timeoutMs,
      requestSignal: init.signal,
      requestHeader: init.header,
      contextValues: init.contextValues,
    });
    const handle = async (req: UnaryRequest): Promise<UnaryResponse> => {
      const output = await impl(req.message, ctx);
      return {
        stream: false,
        service,
        method: req.method,
        header: ctx.responseHeader,
        trailer: ctx.responseTrailer,
        message: create(method.output, output as never),
      };
    };
    // Outermost first, as the router applies them.
    const chain = interceptors.reduceRight<(req: UnaryRequest) => Promise<UnaryResponse>>(
      (next, interceptor) => interceptor(next as never) as never,
      handle,
    );
    try {
      return await chain({
        stream: false,
        service,
        method,
        requestMethod: "POST",
        url,
        signal: ctx.signal,
        header: ctx.requestHeader,
        contextValues: ctx.values,
        message: create(method.input, input as never),
      });
    } finally {
      ctx.abort(); // releases the timeout and signal listeners
    }
  };
}

/** A Transport over an invoker: unary calls only, with contextValues passed through. */
export function createDirectTransport(invoke: UnaryInvoker, protocolName: string): Transport {
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      return (await invoke(method as DescMethodUnary, input as never, {
        signal,
        timeoutMs,
        header,
        contextValues,
        protocolName,
      })) as never;
    },
    stream() {
      return Promise.reject(new ConnectError("streaming RPCs are not served in process", Code.Unimplemented));
    },
  };
}
