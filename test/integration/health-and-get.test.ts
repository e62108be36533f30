import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection, ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { grpcJsClient, rest } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorInfo } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { userWithSession } from "../support/users.js";

// What health checkers and Connect clients meet on a started service: the
// services by name on both ports (Kubernetes gRPC probes, Envoy,
// grpc-health-probe -service), and GET for the read-only RPCs.

const NAMED = ["", "identity.v1.IdentityService", "identity.v1.EmailService", "identity.v1.AdminService"];

const pglite = backends.find((b) => b.name === "pglite")!;

describe("named health checks and Connect GET", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer(pglite.name);
  });
  afterAll(() => s?.destroy());

  it("Check knows every served service by name on the main port; an unknown one is NOT_FOUND with a catalogued reason", async () => {
    const client = createClient(Health, createGrpcTransport({ baseUrl: s.baseUrl }));
    for (const service of NAMED) expect((await client.check({ service })).status, service).toBe(Status.SERVING);
    const err = await client.check({ service: "identity.v1.NoSuch" }).catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
    expect(errorInfo(err)).toMatchObject({ reason: "HEALTH_SERVICE_UNKNOWN" });
  });

  it("the internal gRPC port answers the same", async () => {
    const client = grpcJsClient(Health, s.grpcPort);
    try {
      for (const service of NAMED) expect((await client.check({ service })).status, service).toBe(Status.SERVING);
      const err = await client.check({ service: "identity.v1.NoSuch" }).catch((e: unknown) => e);
      expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
      expect(errorInfo(err)).toMatchObject({ reason: "HEALTH_SERVICE_UNKNOWN" });
    } finally {
      client.close();
    }
  });

  it("reflection serves the error catalogue and the google.rpc detail types, so clients can decode any ErrorInfo", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: s.baseUrl }));
    const symbols = ["google.rpc.ErrorInfo", "google.rpc.RetryInfo", "google.rpc.BadRequest", "identity.v1.ErrorReason", "identity.v1.EmailService"];
    async function* asks() {
      for (const symbol of symbols) yield create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: symbol } });
    }
    const files = new Set<string>();
    for await (const res of client.serverReflectionInfo(asks())) {
      expect(res.messageResponse.case, JSON.stringify(res.messageResponse)).toBe("fileDescriptorResponse");
      if (res.messageResponse.case !== "fileDescriptorResponse") continue;
      for (const bytes of res.messageResponse.value.fileDescriptorProto) files.add(fromBinary(FileDescriptorProtoSchema, bytes).name);
    }
    for (const name of ["google/rpc/error_details.proto", "identity/v1/errors.proto", "identity/v1/email_service.proto"]) expect(files).toContain(name);
  });

  it("read-only RPCs answer Connect GET (the token in the header, never the URL); others refuse GET", async () => {
    const user = await userWithSession(s);
    const headers = { authorization: `Bearer ${user.accessToken}` };
    const viaGet = createClient(IdentityService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1", useHttpGet: true }));
    expect((await viaGet.getProfile({}, { headers })).user?.email).toBe(user.email);
    expect((await viaGet.listSessions({}, { headers })).sessions.length).toBeGreaterThan(0);
    expect((await viaGet.getMfaStatus({}, { headers })).totpEnabled).toBe(false);
    // What a cache or a browser sends: a plain GET with the message in the query.
    const raw = await rest(s.baseUrl, "GET", "/identity.v1.IdentityService/GetProfile?connect=v1&encoding=json&message=%7B%7D", { headers });
    expect(raw.status, raw.text).toBe(200);
    expect(raw.body.user.userId).toBe(user.userId);
    // Without the token: the usual 401, over GET as well.
    expect((await rest(s.baseUrl, "GET", "/identity.v1.IdentityService/GetProfile?connect=v1&encoding=json&message=%7B%7D")).status).toBe(401);
    // A method with side effects is not reachable by GET.
    const update = await rest(s.baseUrl, "GET", "/identity.v1.IdentityService/UpdateProfile?connect=v1&encoding=json&message=%7B%7D", { headers });
    expect(update.status).toBe(405);
  });
});
