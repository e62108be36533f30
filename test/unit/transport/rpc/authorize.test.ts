import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../../../gen/google/rpc/error_details_pb.js";
import { AdminService } from "../../../../gen/identity/v1/admin_service_pb.js";
import { IdentityService } from "../../../../gen/identity/v1/identity_service_pb.js";
import type { Role } from "../../../../src/accounts/ports.js";
import type { Principal } from "../../../../src/shared/call.js";
import { buildAccessPolicies } from "../../../../src/transport/rpc/access-policy.js";
import { authorizeInterceptor } from "../../../../src/transport/rpc/authorize.js";
import { kPrincipal } from "../../../../src/transport/rpc/context.js";
import { errorInterceptor } from "../../../../src/transport/rpc/errors.js";
import { rateLimitClasses } from "../../../../src/transport/rpc/rate-limit.js";

const NOW = Date.UTC(2030, 0, 1, 12);
const MAX_AGE_MS = 600_000;
const silent = { error() {}, warn() {}, info() {}, debug() {} } as never;

/**
 * The real services' policies in front of handlers that only note they ran.
 * The "token" names the caller: `<userId>:<auth age in s or "none">:<amr>`.
 */
function harness(roles: Record<string, Role>) {
  const ran: string[] = [];
  const roleLookups: string[] = [];
  const policies = buildAccessPolicies([IdentityService, AdminService], rateLimitClasses);
  const fakeAuth: Interceptor = (next) => async (req) => {
    const token = req.header.get("authorization");
    if (token) {
      const [userId = "", age = "none", amr = ""] = token.split(":");
      const principal: Principal = {
        userId,
        sessionId: `s-${userId}`,
        authTime: age === "none" ? undefined : new Date(NOW - Number(age) * 1000),
        amr: amr === "" ? [] : amr.split("+"),
      };
      req.contextValues.set(kPrincipal, principal);
    }
    return next(req);
  };
  const transport = createRouterTransport(
    (router) => {
      router.service(IdentityService, {
        login: () => (ran.push("Login"), {}),
        getProfile: () => (ran.push("GetProfile"), {}),
        changePassword: () => (ran.push("ChangePassword"), {}),
        regenerateRecoveryCodes: () => (ran.push("RegenerateRecoveryCodes"), {}),
      });
      router.service(AdminService, { verifyAuditChain: () => (ran.push("VerifyAuditChain"), {}) });
    },
    {
      router: {
        interceptors: [
          errorInterceptor(silent, () => false),
          fakeAuth,
          authorizeInterceptor({
            policies,
            roleOf: async (userId) => (roleLookups.push(userId), roles[userId]),
            recentAuthMaxAgeMs: MAX_AGE_MS,
          }),
        ],
      },
    },
  );
  return { ran, roleLookups, identity: createClient(IdentityService, transport), admin: createClient(AdminService, transport) };
}

const as = (token: string) => ({ headers: { authorization: token } });

async function refusal(call: Promise<unknown>) {
  try {
    await call;
  } catch (err) {
    const e = ConnectError.from(err);
    const info = e.findDetails(ErrorInfoSchema)[0];
    return { code: Code[e.code], reason: info?.reason, metadata: info?.metadata };
  }
  return "allowed";
}

describe("edge authorisation from the access policies", () => {
  it("admin RPCs: the role first (from the lookup, every call), then a session that passed a second factor", async () => {
    const h = harness({ root: "admin", alice: "customer" });
    // A customer is refused for the role even with a fresh two-factor session.
    expect(await refusal(h.admin.verifyAuditChain({}, as("alice:0:pwd+otp+mfa")))).toEqual({
      code: "PermissionDenied",
      reason: "ADMIN_ROLE_REQUIRED",
      metadata: {},
    });
    expect(await refusal(h.admin.verifyAuditChain({}, as("nobody:0:pwd+otp+mfa")))).toMatchObject({ reason: "ADMIN_ROLE_REQUIRED" });
    expect(await refusal(h.admin.verifyAuditChain({}, as("root:0:pwd")))).toEqual({
      code: "Unauthenticated",
      reason: "RECENT_AUTH_REQUIRED",
      metadata: { max_age_seconds: "600", acr: "aal2" },
    });
    expect(h.ran).toEqual([]);
    // An old login is fine for admin RPCs: they ask for AAL2, not recency.
    expect(await refusal(h.admin.verifyAuditChain({}, as("root:86400:pwd+kba+mfa")))).toBe("allowed");
    expect(h.ran).toEqual(["VerifyAuditChain"]);
    expect(h.roleLookups).toEqual(["alice", "nobody", "root", "root"]);
  });

  it("recent-login RPCs pass the edge whatever the login's age: the use case enforces recency and audits the refusal", async () => {
    const h = harness({});
    expect(await refusal(h.identity.changePassword({}, as("bob:601:pwd")))).toBe("allowed");
    expect(await refusal(h.identity.regenerateRecoveryCodes({}, as("bob:none:pwd+otp+mfa")))).toBe("allowed");
    expect(await refusal(h.identity.getProfile({}, as("bob:86400:pwd")))).toBe("allowed");
    expect(h.ran).toEqual(["ChangePassword", "RegenerateRecoveryCodes", "GetProfile"]);
    expect(h.roleLookups).toEqual([]);
  });

  it("public RPCs need no caller; a governed RPC that reaches it without one is refused (fail closed)", async () => {
    const h = harness({});
    expect(await refusal(h.identity.login({}))).toBe("allowed");
    expect(await refusal(h.identity.getProfile({}))).toEqual({ code: "Unauthenticated", reason: "TOKEN_MISSING", metadata: {} });
    expect(h.ran).toEqual(["Login"]);
  });
});
