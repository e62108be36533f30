import { createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AccessPolicy_Access as Access } from "../../../../gen/identity/v1/annotations_pb.js";
import type { LimitCheck, RateLimiter } from "../../../../src/abuse/rate-limiter.js";
import { buildAccessPolicies } from "../../../../src/transport/rpc/access-policy.js";
import { kPrincipal } from "../../../../src/transport/rpc/context.js";
import { defaultLimits } from "../../../../src/abuse/rate-limits.js";
import { rateLimitClasses, rateLimitInterceptors } from "../../../../src/transport/rpc/rate-limit.js";
import { probeService } from "../../../support/probe-service.js";

// Which limits a call counts against comes from its method's rate_limit_class.
describe("rate limits by the access policy's class", () => {
  const service = probeService({
    SignIn: { access: Access.PUBLIC, rateLimitClass: "login" },
    SignInOtherWay: { access: Access.PUBLIC, rateLimitClass: "login" },
    Renew: { access: Access.PUBLIC, rateLimitClass: "refresh_token" },
    Me: { access: Access.AUTHENTICATED, rateLimitClass: "authenticated" },
  });
  const consumed: string[][] = [];
  const limiter = {
    consume: async (checks: readonly LimitCheck[]) => (consumed.push(checks.map((c) => c.key)), { allowed: true }),
  } as unknown as RateLimiter;
  const limits = rateLimitInterceptors({
    limiter,
    table: defaultLimits,
    policies: buildAccessPolicies([service], rateLimitClasses),
    accountKey: (email) => `tag(${email})`,
  });
  const caller: Interceptor = (next) => async (req) => {
    const user = req.header.get("x-user");
    if (user) req.contextValues.set(kPrincipal, { userId: user, sessionId: "s" });
    return next(req);
  };
  const client = createClient(
    service,
    createRouterTransport(
      // A service loaded at run time has no static handler types.
      (router) => router.service(service, { signIn: () => ({}), signInOtherWay: () => ({}), renew: () => ({}), me: () => ({}) } as never),
      { router: { interceptors: [limits.beforeAuth, caller, limits.afterAuth] } },
    ),
  ) as unknown as Record<string, (req: object, opts?: object) => Promise<unknown>>;

  const keysOf = async (call: () => Promise<unknown>) => {
    consumed.length = 0;
    await call();
    return consumed;
  };

  it("public RPCs of one class share its limits and counters (by address, e-mail and fleet-wide)", async () => {
    const login = await keysOf(() => client.signIn!({ email: "Ann@Example.com" }));
    expect(login).toHaveLength(1);
    expect(login[0]!.filter((k) => k.startsWith("login:"))).toEqual([
      "login:ip:unknown",
      "login:acct:tag(ann@example.com)",
      "login:ipacct:unknown:tag(ann@example.com)",
      "login:global",
    ]);
    // The source-block key: the class checks a password.
    expect(login[0]).toHaveLength(5);
    expect(await keysOf(() => client.signInOtherWay!({ email: "ann@example.com" }))).toEqual(login);
    // refresh_token: per address and fleet-wide, and no source block.
    expect(await keysOf(() => client.renew!({ email: "ann@example.com" }))).toEqual([["refresh_token:ip:unknown", "refresh_token:global"]]);
  });

  it("authenticated RPCs count per address and per caller after authentication, under the keys Redis already holds", async () => {
    expect(await keysOf(() => client.me!({}, { headers: { "x-user": "u1" } }))).toEqual([["auth:ip:unknown", "auth:user:u1"]]);
  });
});
