// Server reflection and grpc.health.v1 over a real h2c server, called by
// @grpc/grpc-js (a real gRPC client), connect-node's gRPC transport and,
// when installed, `buf curl` (a real reflection client written in Go).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import type { ServerHttp2Session } from "node:http2";
import { createServer } from "node:http2";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as grpc from "@grpc/grpc-js";
import type { DescMessage, DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { file_identity_v1_identity_service } from "../../gen/identity/v1/identity_service_pb.js";
import type { HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import type { ServerReflectionResponse } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { createHealth } from "../../src/transport/rpc/health.js";
import { registerReflection } from "../../src/transport/rpc/reflection.js";
import { listenLocal } from "../support/local-http.js";
import { errorInfo } from "../support/error-info.js";

const IDENTITY = "identity.v1.IdentityService";
const bufBin = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));

interface TestServer {
  readonly url: string;
  readonly address: string;
  readonly health: ReturnType<typeof createHealth>;
  close(): Promise<void>;
}

async function startServer(): Promise<TestServer> {
  const health = createHealth();
  const server = createServer(
    connectNodeAdapter({
      routes(router) {
        registerReflection(router, [file_identity_v1_identity_service], [IDENTITY]);
        health.register(router);
      },
    }),
  );
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const url = await listenLocal(server);
  return {
    url,
    address: url.slice("http://".length),
    health,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

// grpc-js generic client: serializers from protobuf-es, one method at a time.
function grpcMethod<I extends DescMessage, O extends DescMessage>(
  method: DescMethod & { input: I; output: O },
): grpc.MethodDefinition<MessageInitShape<I>, MessageShape<O>> {
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: (v) => Buffer.from(toBinary(method.input, create(method.input, v))),
    requestDeserialize: (b) => fromBinary(method.input, b) as MessageInitShape<I>,
    responseSerialize: (v) => Buffer.from(toBinary(method.output, v)),
    responseDeserialize: (b) => fromBinary(method.output, b),
  };
}

function grpcClient(address: string, methods: Record<string, grpc.MethodDefinition<unknown, unknown>>) {
  const Ctor = grpc.makeGenericClientConstructor(methods, "Test");
  return new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (...args: unknown[]) => unknown>;
}

type ReflectionInit = MessageInitShape<typeof ServerReflection.method.serverReflectionInfo.input>;

/** One reflection stream over grpc-js; `ask` writes a request and reads its answer. */
function grpcReflection(address: string) {
  const client = grpcClient(address, {
    ServerReflectionInfo: grpcMethod(ServerReflection.method.serverReflectionInfo) as grpc.MethodDefinition<
      unknown,
      unknown
    >,
  });
  const call = client["ServerReflectionInfo"]!() as grpc.ClientDuplexStream<ReflectionInit, ServerReflectionResponse>;
  const received: ServerReflectionResponse[] = [];
  const waiting: ((res: ServerReflectionResponse) => void)[] = [];
  call.on("data", (res: ServerReflectionResponse) => {
    const next = waiting.shift();
    if (next) next(res);
    else received.push(res);
  });
  call.on("error", () => {});
  return {
    ask(req: ReflectionInit): Promise<ServerReflectionResponse> {
      const answer = new Promise<ServerReflectionResponse>((resolve) => {
        const ready = received.shift();
        if (ready) resolve(ready);
        else waiting.push(resolve);
      });
      call.write(req);
      return answer;
    },
    close() {
      call.end();
      client.close();
    },
  };
}

function fileNames(res: ServerReflectionResponse): string[] {
  expect(res.messageResponse.case).toBe("fileDescriptorResponse");
  const files = res.messageResponse.case === "fileDescriptorResponse" ? res.messageResponse.value.fileDescriptorProto : [];
  return files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

function errorCode(res: ServerReflectionResponse): number | undefined {
  return res.messageResponse.case === "errorResponse" ? res.messageResponse.value.errorCode : undefined;
}

describe("server reflection", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer();
  });
  afterAll(async () => {
    await srv.close();
  });

  it("lists the services and echoes host and request", async () => {
    const stream = grpcReflection(srv.address);
    try {
      const res = await stream.ask({ host: "example", messageRequest: { case: "listServices", value: "*" } });
      expect(res.validHost).toBe("example");
      expect(res.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
      expect(res.messageResponse.case).toBe("listServicesResponse");
      const names = res.messageResponse.case === "listServicesResponse" ? res.messageResponse.value.service.map((s) => s.name) : [];
      expect(names.sort()).toEqual(
        [IDENTITY, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "grpc.health.v1.Health"].sort(),
      );
    } finally {
      stream.close();
    }
  });

  it("sends a file and its dependencies once per stream", async () => {
    const stream = grpcReflection(srv.address);
    try {
      const first = fileNames(
        await stream.ask({ messageRequest: { case: "fileContainingSymbol", value: IDENTITY } }),
      );
      expect(first[0]).toBe("identity/v1/identity_service.proto");
      expect(first).toEqual(expect.arrayContaining([
        "buf/validate/validate.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/api/field_behavior.proto",
        "google/protobuf/descriptor.proto",
        "google/protobuf/timestamp.proto",
        "identity/v1/annotations.proto",
      ]));
      expect(new Set(first).size).toBe(first.length);

      // Same stream: the requested file again, but none of its dependencies.
      const method = fileNames(
        await stream.ask({ messageRequest: { case: "fileContainingSymbol", value: `${IDENTITY}.Login` } }),
      );
      expect(method).toEqual(["identity/v1/identity_service.proto"]);
      const byName = fileNames(
        await stream.ask({ messageRequest: { case: "fileByFilename", value: "google/api/annotations.proto" } }),
      );
      expect(byName).toEqual(["google/api/annotations.proto"]);
    } finally {
      stream.close();
    }
  });

  it("finds files by name, method, message, nested enum value and extension", async () => {
    const stream = grpcReflection(srv.address);
    try {
      expect(
        fileNames(await stream.ask({ messageRequest: { case: "fileByFilename", value: "google/api/annotations.proto" } })),
      ).toEqual(["google/api/annotations.proto", "google/api/http.proto", "google/protobuf/descriptor.proto"]);
      const symbol = (value: string) => stream.ask({ messageRequest: { case: "fileContainingSymbol", value } });
      expect(fileNames(await symbol(`${IDENTITY}.Register`))[0]).toBe("identity/v1/identity_service.proto");
      expect(fileNames(await symbol("identity.v1.LoginRequest"))[0]).toBe("identity/v1/identity_service.proto");
      expect(fileNames(await symbol("identity.v1.LoginRequest.email"))[0]).toBe("identity/v1/identity_service.proto");
      expect(fileNames(await symbol("grpc.health.v1.HealthCheckResponse.SERVING"))).toEqual(["grpc/health/v1/health.proto"]);
      expect(fileNames(await symbol("grpc.reflection.v1.ServerReflection"))).toEqual(["grpc/reflection/v1/reflection.proto"]);
      expect(fileNames(await symbol("google.api.http"))[0]).toBe("google/api/annotations.proto");

      const ext = await stream.ask({
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 72295728 },
        },
      });
      expect(fileNames(ext)).toEqual(["google/api/annotations.proto"]);

      const numbers = await stream.ask({
        messageRequest: { case: "allExtensionNumbersOfType", value: "google.protobuf.MethodOptions" },
      });
      expect(numbers.messageResponse.case).toBe("allExtensionNumbersResponse");
      if (numbers.messageResponse.case === "allExtensionNumbersResponse") {
        expect(numbers.messageResponse.value.baseTypeName).toBe("google.protobuf.MethodOptions");
        expect(numbers.messageResponse.value.extensionNumber).toContain(72295728);
      }
    } finally {
      stream.close();
    }
  });

  it("answers NOT_FOUND for unknown names and keeps the stream open", async () => {
    const stream = grpcReflection(srv.address);
    try {
      const unknown = await stream.ask({ messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } });
      expect(errorCode(unknown)).toBe(Code.NotFound);
      expect(unknown.originalRequest?.messageRequest).toEqual({ case: "fileContainingSymbol", value: "no.such.Symbol" });
      expect(errorCode(await stream.ask({ messageRequest: { case: "fileByFilename", value: "nope.proto" } }))).toBe(Code.NotFound);
      expect(
        errorCode(
          await stream.ask({
            messageRequest: {
              case: "fileContainingExtension",
              value: { containingType: "google.protobuf.MethodOptions", extensionNumber: 1 },
            },
          }),
        ),
      ).toBe(Code.NotFound);
      expect(
        errorCode(await stream.ask({ messageRequest: { case: "allExtensionNumbersOfType", value: "no.Such" } })),
      ).toBe(Code.NotFound);
      // Still usable afterwards.
      expect(
        fileNames(await stream.ask({ messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.Health" } })),
      ).toEqual(["grpc/health/v1/health.proto"]);
    } finally {
      stream.close();
    }
  });

  it("serves v1alpha over connect-node's gRPC transport", async () => {
    const client = createClient(ServerReflectionV1alpha, createGrpcTransport({ baseUrl: srv.url }));
    async function* requests() {
      yield { host: "h", messageRequest: { case: "listServices" as const, value: "" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "identity.v1.User" } };
      yield { messageRequest: { case: "fileContainingSymbol" as const, value: "identity.v1.Nope" } };
    }
    const responses = [];
    for await (const res of client.serverReflectionInfo(requests())) responses.push(res);
    expect(responses).toHaveLength(3);
    const [list, file, missing] = responses;
    expect(list?.$typeName).toBe("grpc.reflection.v1alpha.ServerReflectionResponse");
    expect(list?.validHost).toBe("h");
    expect(list?.messageResponse.case === "listServicesResponse" && list.messageResponse.value.service.map((s) => s.name)).toContain(IDENTITY);
    const names = file?.messageResponse.case === "fileDescriptorResponse"
      ? file.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name)
      : [];
    expect(names[0]).toBe("identity/v1/identity_service.proto");
    expect(names).toContain("buf/validate/validate.proto");
    expect(missing?.messageResponse.case === "errorResponse" && missing.messageResponse.value.errorCode).toBe(Code.NotFound);
  });

  it("ends the stream with INVALID_ARGUMENT for an empty request", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: srv.url }));
    async function* requests(): AsyncGenerator<ReflectionInit> {
      yield { host: "h" };
    }
    const consume = async () => {
      for await (const _ of client.serverReflectionInfo(requests())) void _;
    };
    await expect(consume()).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it.skipIf(!existsSync(bufBin))("works with buf curl as the reflection client", async () => {
    const run = promisify(execFile);
    const curl = (...args: string[]) => run(bufBin, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args]);

    const services = await curl("--list-services", srv.url);
    expect(services.stdout.split("\n")).toContain(IDENTITY);
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      // Listing methods makes buf curl download and link every descriptor.
      const methods = await curl("--reflect-protocol", protocol, "--list-methods", srv.url);
      expect(methods.stdout).toContain(`${IDENTITY}/Login`);
      expect(methods.stdout).toContain("grpc.health.v1.Health/Watch");
    }
    const check = await curl("--data", '{"service": ""}', `${srv.url}/grpc.health.v1.Health/Check`);
    expect(JSON.parse(check.stdout)).toEqual({ status: "SERVING" });
  });
});

describe("grpc.health.v1", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer();
  });
  afterAll(async () => {
    await srv.close();
  });

  function grpcCheck(client: ReturnType<typeof grpcHealth>, service: string) {
    return new Promise<HealthCheckResponse>((resolve, reject) => {
      client["Check"]!({ service }, (err: grpc.ServiceError | null, res: HealthCheckResponse) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  it("Check answers for the server and NOT_FOUND for unknown services (grpc-js)", async () => {
    const client = grpcHealth(srv.address);
    try {
      expect((await grpcCheck(client, "")).status).toBe(Status.SERVING);
      await expect(grpcCheck(client, "no.Such")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      srv.health.setStatus(IDENTITY, "NOT_SERVING");
      expect((await grpcCheck(client, IDENTITY)).status).toBe(Status.NOT_SERVING);
    } finally {
      client.close();
    }
  });

  it("Check works over connect-node's gRPC transport", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
    expect((await client.check({ service: "" })).status).toBe(Status.SERVING);
    const err = await client.check({ service: "no.Such" }).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
    // A reason from the catalogue, with the name asked for.
    expect(errorInfo(err)).toMatchObject({ reason: "HEALTH_SERVICE_UNKNOWN", metadata: { service: "no.Such" } });
  });

  it("Watch sends the current status, then each change", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
    srv.health.setStatus(IDENTITY, "SERVING");
    const abort = new AbortController();
    const it = client.watch({ service: IDENTITY }, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(Status.SERVING);
    srv.health.setStatus(IDENTITY, "NOT_SERVING");
    expect((await it.next()).value?.status).toBe(Status.NOT_SERVING);
    srv.health.setStatus(IDENTITY, "SERVING");
    expect((await it.next()).value?.status).toBe(Status.SERVING);
    abort.abort();
    await expect(it.next()).rejects.toMatchObject({ code: Code.Canceled });
  });

  it("Watch reports SERVICE_UNKNOWN until the service gets a status (grpc-js)", async () => {
    const client = grpcHealth(srv.address);
    const call = client["Watch"]!({ service: "later.Service" }) as grpc.ClientReadableStream<HealthCheckResponse>;
    call.on("error", () => {});
    try {
      const statuses: Status[] = [];
      await new Promise<void>((resolve) => {
        call.on("data", (res: HealthCheckResponse) => {
          statuses.push(res.status);
          if (statuses.length === 1) srv.health.setStatus("later.Service", "SERVING");
          if (statuses.length === 2) resolve();
        });
      });
      expect(statuses).toEqual([Status.SERVICE_UNKNOWN, Status.SERVING]);
    } finally {
      call.cancel();
      client.close();
    }
  });
});

describe("health shutdown", () => {
  it("sends NOT_SERVING to every watcher and ends the streams", async () => {
    const srv = await startServer();
    const client = grpcHealth(srv.address);
    try {
      srv.health.setStatus(IDENTITY, "SERVING");
      // grpc-js watcher on the whole server.
      const call = client["Watch"]!({ service: "" }) as grpc.ClientReadableStream<HealthCheckResponse>;
      const grpcSeen: Status[] = [];
      const grpcDone = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
      const grpcFirst = new Promise<void>((resolve) =>
        call.on("data", (res: HealthCheckResponse) => {
          grpcSeen.push(res.status);
          resolve();
        }),
      );
      // connect watcher on one service.
      const connect = createClient(Health, createGrpcTransport({ baseUrl: srv.url }));
      const it = connect.watch({ service: IDENTITY })[Symbol.asyncIterator]();
      expect((await it.next()).value?.status).toBe(Status.SERVING);
      await grpcFirst;

      srv.health.shutdown();
      srv.health.setStatus(IDENTITY, "SERVING"); // ignored after shutdown

      expect((await it.next()).value?.status).toBe(Status.NOT_SERVING);
      expect((await it.next()).done).toBe(true);
      expect((await grpcDone).code).toBe(grpc.status.OK);
      expect(grpcSeen).toEqual([Status.SERVING, Status.NOT_SERVING]);

      // A watch started after shutdown gets NOT_SERVING and ends at once.
      const late = [];
      for await (const res of connect.watch({ service: "" })) late.push(res.status);
      expect(late).toEqual([Status.NOT_SERVING]);
      expect((await connect.check({ service: IDENTITY })).status).toBe(Status.NOT_SERVING);
    } finally {
      client.close();
      await srv.close();
    }
  });
});

function grpcHealth(address: string) {
  return grpcClient(address, {
    Check: grpcMethod(Health.method.check) as grpc.MethodDefinition<unknown, unknown>,
    Watch: grpcMethod(Health.method.watch) as grpc.MethodDefinition<unknown, unknown>,
  });
}
