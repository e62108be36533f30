import { Code } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { buildAccessPolicies } from "../../src/transport/rpc/access-policy.js";
import { rateLimitClasses } from "../../src/transport/rpc/rate-limit.js";
import { backends } from "../support/databases.js";
import { connectClient, STRONG_PASSWORD } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { expectConnectError } from "../support/error-info.js";
import { login, registerUser } from "../support/users.js";
import { controlledClock, MINUTE } from "../support/mfa.js";

// `recent_auth` is declared in each RPC's access policy and enforced by the
// use case (with its audit row). This walks every RPC that declares it and
// proves a stale login is refused, so the declaration and the enforcement
// cannot drift apart: a new recent-auth RPC without a sample request here
// fails the first test.

type Samples = { [K in keyof typeof IdentityService.method]?: MessageInitShape<(typeof IdentityService.method)[K]["input"]> };

// A request each RPC's validation accepts, so that recency is what decides.
const SAMPLES: Samples = {
  changePassword: { oldPassword: STRONG_PASSWORD, newPassword: "an entirely new passphrase 7" },
  revokeOtherSessions: {},
  startTotpEnrollment: { password: STRONG_PASSWORD },
  confirmTotpEnrollment: { code: "123456" },
  disableTotp: { password: STRONG_PASSWORD, code: "123456" },
  regenerateRecoveryCodes: {},
};

const declared = buildAccessPolicies([IdentityService], rateLimitClasses)
  .all.filter((p) => p.recentAuth)
  .map((p) => p.method.localName)
  .sort();

describe.each(backends)("recent-login RPCs ($name)", ({ name, skip }) => {
  const c = controlledClock();
  let s: TestServer;
  beforeAll(async () => {
    if (!skip) s = await startTestServer(name, { overrides: { clock: c.clock } });
  });
  afterAll(() => s?.destroy());

  it("every RPC declaring recent_auth has a sample request here", () => {
    expect(Object.keys(SAMPLES).sort()).toEqual(declared);
  });

  it.skipIf(skip).each(declared)("%s: a login older than RECENT_AUTH_MAX_AGE gets RECENT_AUTH_REQUIRED before anything else", async (method) => {
    const user = await registerUser(s);
    const session = await login(s, user.email, user.password);
    c.advance(10 * MINUTE + 1_000);
    const client = connectClient(s.baseUrl) as unknown as Record<string, (req: unknown, opts: unknown) => Promise<unknown>>;
    const call = client[method]!(SAMPLES[method as keyof Samples], { headers: { authorization: `Bearer ${session.accessToken}` } });
    await expectConnectError(call, Code.Unauthenticated, "RECENT_AUTH_REQUIRED");
  });
});
