import { create, createFileRegistry, setExtension, type DescService } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  MethodOptionsSchema,
  type MethodOptions,
} from "@bufbuild/protobuf/wkt";
import { access_policy, AccessPolicySchema, type AccessPolicy } from "../../gen/identity/v1/annotations_pb.js";

// A tiny service built in memory, whose methods declare whatever access
// policy a test needs (or none), to exercise what reads the policies.

export type Declared = Partial<Omit<AccessPolicy, "$typeName">> | undefined;

/** A service `test.v1.<name>` whose methods declare these policies (undefined: no option at all). */
export function probeService(methods: Record<string, Declared>, name = "Probe"): DescService {
  const options = (declared: Declared): MethodOptions | undefined => {
    if (declared === undefined) return undefined;
    const o = create(MethodOptionsSchema);
    setExtension(o, access_policy, create(AccessPolicySchema, declared));
    return o;
  };
  const file = create(FileDescriptorProtoSchema, {
    name: `test/v1/${name.toLowerCase()}.proto`,
    package: "test.v1",
    syntax: "proto3",
    // Ping { string email = 1; }: enough for the limits keyed by e-mail.
    messageType: [
      {
        name: "Ping",
        field: [{ name: "email", number: 1, type: FieldDescriptorProto_Type.STRING, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: "email" }],
      },
    ],
    service: [
      {
        name,
        method: Object.entries(methods).map(([method, declared]) => ({
          name: method,
          inputType: ".test.v1.Ping",
          outputType: ".test.v1.Ping",
          options: options(declared),
        })),
      },
    ],
  });
  const service = createFileRegistry(file, () => undefined).getService(`test.v1.${name}`);
  if (!service) throw new Error("the test descriptor did not load");
  return service;
}

export function methodOf(service: DescService, localName: string) {
  const method = service.method[localName];
  if (!method) throw new Error(`no method ${localName}`);
  return method;
}
