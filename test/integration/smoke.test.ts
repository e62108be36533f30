import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { connectClient, grpcJsClient, rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorReason, grpcFailure } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";

for (const backend of backends) {
  describe.skipIf(backend.skip)(`smoke (${backend.name})`, () => {
    let s: TestServer;
    beforeAll(async () => {
      s = await startTestServer(backend.name);
    });
    afterAll(async () => {
      await s?.destroy();
    });

    it("registers over REST, logs in over gRPC and Connect", async () => {
      const email = uniqueEmail();
      const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } });
      expect(r.status).toBe(201);
      const g = grpcJsClient(IdentityService, s.port);
      const login = await g.login({ email, password: STRONG_PASSWORD });
      expect(login.accessToken).toBeTruthy();
      const err = await grpcFailure(g.login({ email, password: "wrong password!" }));
      expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(errorReason(err)).toBe("INVALID_CREDENTIALS");
      g.close();
      // The internal grpc-js port: same RPCs, same errors.
      const internal = grpcJsClient(IdentityService, s.grpcPort);
      const again = await internal.login({ email, password: STRONG_PASSWORD });
      const p2 = await internal.getProfile({}, { authorization: `Bearer ${again.accessToken}` });
      expect(p2.user?.email).toBe(email);
      const err2 = await grpcFailure(internal.login({ email, password: "wrong password!" }));
      expect(err2.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(errorReason(err2)).toBe("INVALID_CREDENTIALS");
      const missing = await grpcFailure(internal.getProfile({}));
      expect(errorReason(missing)).toBe("TOKEN_MISSING");
      const invalid = await grpcFailure(internal.register({ account: { email: "not-an-email", password: "x" } }));
      expect(invalid.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(errorReason(invalid)).toBe("VALIDATION_FAILED");
      internal.close();
      const c = connectClient(s.baseUrl);
      const profile = await c.getProfile({}, { headers: { authorization: `Bearer ${login.accessToken}` } });
      expect(profile.user?.email).toBe(email);
      const bad = await rest(s.baseUrl, "GET", "/user/profile", { token: "nope" });
      expect(bad.status).toBe(401);
      expect(errorReason(bad.body)).toBe("TOKEN_INVALID");
    });
  });
}
