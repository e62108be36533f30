// gRPC server reflection (grpc.reflection.v1 and v1alpha) for connect-es,
// which has none (connectrpc/connect-es#507). Behaviour follows grpc-go:
// one bidi stream answers many requests, and each dependency is sent at
// most once per stream so a client never receives a file twice.
import type { ConnectRouter } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { DescFile, FileRegistry } from "@bufbuild/protobuf";
import { create, createFileRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { file_grpc_health_v1_health, Health } from "../../../gen/grpc/health/v1/health_pb.js";
import type {
  ServerReflectionRequest,
  ServerReflectionResponse,
} from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ErrorResponseSchema,
  ExtensionNumberResponseSchema,
  file_grpc_reflection_v1_reflection,
  FileDescriptorResponseSchema,
  ListServiceResponseSchema,
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
} from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  file_grpc_reflection_v1alpha_reflection,
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionRequestSchema as ServerReflectionRequestSchemaV1alpha,
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1alpha,
} from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Answer = ServerReflectionResponse["messageResponse"];

interface Schema {
  readonly registry: FileRegistry;
  readonly services: readonly string[];
  /** Fully-qualified symbol name -> file that declares it. */
  readonly symbols: ReadonlyMap<string, DescFile>;
  /** Extendee type name -> extension numbers, ascending. */
  readonly extensionNumbers: ReadonlyMap<string, readonly number[]>;
}

/**
 * Serves grpc.reflection.v1 and v1alpha for `serviceNames`, described by
 * `files` (dependencies are followed). The reflection and health services are
 * listed and describable too. Throws at boot if a service is not in `files`.
 */
export function registerReflection(router: ConnectRouter, files: DescFile[], serviceNames: string[]): void {
  const own = [file_grpc_reflection_v1_reflection, file_grpc_reflection_v1alpha_reflection, file_grpc_health_v1_health];
  const schema = buildSchema([...files, ...own], [
    ...serviceNames,
    ServerReflectionV1.typeName,
    ServerReflectionV1alpha.typeName,
    Health.typeName,
  ]);

  router.service(ServerReflectionV1, {
    serverReflectionInfo: (requests) => reflect(schema, requests),
  });
  // v1alpha is wire-identical to v1: re-read each message with the v1 schema.
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      const asV1 = mapAsync(requests, (req) =>
        fromBinary(ServerReflectionRequestSchema, toBinary(ServerReflectionRequestSchemaV1alpha, req)),
      );
      for await (const res of reflect(schema, asV1)) {
        yield fromBinary(ServerReflectionResponseSchemaV1alpha, toBinary(ServerReflectionResponseSchema, res));
      }
    },
  });
}

function buildSchema(roots: readonly DescFile[], serviceNames: readonly string[]): Schema {
  const byName = new Map<string, DescFile>();
  const collect = (file: DescFile): void => {
    if (byName.has(file.proto.name)) return;
    byName.set(file.proto.name, file);
    file.dependencies.forEach(collect);
  };
  roots.forEach(collect);
  // Each root's registry reuses the already-built DescFiles of its imports.
  const registry = createFileRegistry(
    ...roots.map((root) => createFileRegistry(root.proto, (name) => byName.get(name))),
  );

  const symbols = new Map<string, DescFile>();
  const extensionNumbers = new Map<string, number[]>();
  for (const file of registry.files) {
    for (const desc of nestedTypes(file)) {
      symbols.set(desc.typeName, file);
      switch (desc.kind) {
        case "message":
          for (const field of desc.fields) symbols.set(`${desc.typeName}.${field.name}`, file);
          for (const oneof of desc.oneofs) symbols.set(`${desc.typeName}.${oneof.name}`, file);
          break;
        case "enum": {
          // Enum values are scoped as siblings of their enum (C++ scoping);
          // the Enum.VALUE spelling is accepted as well.
          const scope = desc.typeName.slice(0, Math.max(desc.typeName.lastIndexOf("."), 0));
          for (const value of desc.values) {
            symbols.set(scope ? `${scope}.${value.name}` : value.name, file);
            symbols.set(`${desc.typeName}.${value.name}`, file);
          }
          break;
        }
        case "service":
          for (const method of desc.methods) symbols.set(`${desc.typeName}.${method.name}`, file);
          break;
        case "extension": {
          const numbers = extensionNumbers.get(desc.extendee.typeName) ?? [];
          numbers.push(desc.number);
          extensionNumbers.set(desc.extendee.typeName, numbers);
          break;
        }
      }
    }
  }
  for (const numbers of extensionNumbers.values()) numbers.sort((a, b) => a - b);

  const services = [...new Set(serviceNames)];
  for (const name of services) {
    if (!registry.getService(name)) {
      throw new Error(`reflection: service ${name} is not declared in the given files`);
    }
  }
  return { registry, services, symbols, extensionNumbers };
}

async function* reflect(
  schema: Schema,
  requests: AsyncIterable<ServerReflectionRequest>,
): AsyncGenerator<ServerReflectionResponse> {
  const sent = new Set<string>();
  for await (const req of requests) {
    yield create(ServerReflectionResponseSchema, {
      validHost: req.host,
      originalRequest: req,
      messageResponse: answer(schema, req, sent),
    });
  }
}

function answer(schema: Schema, req: ServerReflectionRequest, sent: Set<string>): Answer {
  const { registry } = schema;
  const request = req.messageRequest;
  switch (request.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: create(ListServiceResponseSchema, { service: schema.services.map((name) => ({ name })) }),
      };
    case "fileByFilename": {
      const file = registry.getFile(request.value);
      return file ? files(file, sent) : notFound(`file not found: ${request.value}`);
    }
    case "fileContainingSymbol": {
      const file = schema.symbols.get(request.value);
      return file ? files(file, sent) : notFound(`symbol not found: ${request.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = request.value;
      const extendee = registry.getMessage(containingType);
      const extension = extendee && registry.getExtensionFor(extendee, extensionNumber);
      return extension
        ? files(extension.file, sent)
        : notFound(`extension not found: ${containingType} ${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      if (!registry.getMessage(request.value)) return notFound(`type not found: ${request.value}`);
      return {
        case: "allExtensionNumbersResponse",
        value: create(ExtensionNumberResponseSchema, {
          baseTypeName: request.value,
          extensionNumber: [...(schema.extensionNumbers.get(request.value) ?? [])],
        }),
      };
    }
    case undefined:
      // grpc-go ends the stream the same way.
      throw new ConnectError("reflection: empty message_request", Code.InvalidArgument);
  }
}

/**
 * The file itself (always, as grpc-go does, so a client asking again gets an
 * answer) and, breadth first, every dependency not yet sent on this stream.
 */
function files(root: DescFile, sent: Set<string>): Answer {
  const out: Uint8Array[] = [];
  const visited = new Set<string>();
  const queue = [root];
  for (let file = queue.shift(); file; file = queue.shift()) {
    if (visited.has(file.proto.name)) continue;
    visited.add(file.proto.name);
    if (file === root || !sent.has(file.proto.name)) {
      sent.add(file.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, file.proto));
    }
    queue.push(...file.dependencies);
  }
  return {
    case: "fileDescriptorResponse",
    value: create(FileDescriptorResponseSchema, { fileDescriptorProto: out }),
  };
}

function notFound(message: string): Answer {
  return {
    case: "errorResponse",
    value: create(ErrorResponseSchema, { errorCode: Code.NotFound, errorMessage: message }),
  };
}

async function* mapAsync<T, U>(source: AsyncIterable<T>, fn: (value: T) => U): AsyncGenerator<U> {
  for await (const value of source) yield fn(value);
}
