import { Code } from "@connectrpc/connect";
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GOVERNED_SERVICES } from "../../src/app/rpc.js";
import { buildAccessPolicies } from "../../src/transport/rpc/access-policy.js";
import { rateLimitClasses } from "../../src/transport/rpc/rate-limit.js";
import { backends } from "../support/databases.js";
import { serviceClient, STRONG_PASSWORD } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { expectConnectError } from "../support/error-info.js";
import { login, registerUser } from "../support/users.js";
import { controlledClock, MINUTE } from "../support/mfa.js";

// `recent_auth` is declared in each RPC's access policy and enforced by the
// use case (with its audit row). This walks every RPC that declares it and
// proves a stale login is refused, so the declaration and the enforcement
// cannot drift apart: a new recent-auth RPC without a sample request here
// fails the first test.

// A request each RPC's validation accepts, so that recency is what decides
// ("Service.method", every governed service).
const SAMPLES: Record<string, MessageInitShape<DescMessage>> = {
  "IdentityService.changePassword": { oldPassword: STRONG_PASSWORD, newPassword: "an entirely new passphrase 7" },
  "IdentityService.revokeOtherSessions": {},
  "IdentityService.startTotpEnrollment": { password: STRONG_PASSWORD },
  "IdentityService.confirmTotpEnrollment": { code: "123456" },
  "IdentityService.disableTotp": { password: STRONG_PASSWORD, code: "123456" },
  "IdentityService.regenerateRecoveryCodes": {},
  "EmailService.changeEmail": { newEmail: "someone.new@example.com" },
};

const policies = buildAccessPolicies(GOVERNED_SERVICES, rateLimitClasses).all.filter((p) => p.recentAuth);
const declared = policies.map((p) => `${p.method.parent.name}.${p.method.localName}`).sort();
const serviceOf = new Map(policies.map((p) => [`${p.method.parent.name}.${p.method.localName}`, p.method.parent]));

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
    const client = serviceClient(serviceOf.get(method)!, s.baseUrl) as unknown as Record<string, (req: unknown, opts: unknown) => Promise<unknown>>;
    const call = client[method.split(".")[1]!]!(SAMPLES[method], { headers: { authorization: `Bearer ${session.accessToken}` } });
    await expectConnectError(call, Code.Unauthenticated, "RECENT_AUTH_REQUIRED");
  });
});
