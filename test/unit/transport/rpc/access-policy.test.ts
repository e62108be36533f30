import { describe, expect, it } from "vitest";
import { Health } from "../../../../gen/grpc/health/v1/health_pb.js";
import { AdminService } from "../../../../gen/identity/v1/admin_service_pb.js";
import { AccessPolicy_Access as Access, AccessPolicy_AssuranceLevel as Aal } from "../../../../gen/identity/v1/annotations_pb.js";
import { IdentityService } from "../../../../gen/identity/v1/identity_service_pb.js";
import { buildAccessPolicies } from "../../../../src/transport/rpc/access-policy.js";
import { rateLimitClasses } from "../../../../src/transport/rpc/rate-limit.js";
import { methodOf, probeService, type Declared } from "../../../support/probe-service.js";

const CLASSES = new Set(["login", "register", "authenticated"]);
const pub = (rateLimitClass = "login"): Declared => ({ access: Access.PUBLIC, rateLimitClass });
const authed = (more: Declared = {}): Declared => ({ access: Access.AUTHENTICATED, rateLimitClass: "authenticated", ...more });

describe("access policies from the descriptors", () => {
  it("reads each method's declaration: public, authenticated, admin with AAL2, recent login, rate-limit class", () => {
    const service = probeService({
      Login: pub("login"),
      Register: pub("register"),
      Profile: authed(),
      ChangeSecret: authed({ recentAuth: true }),
      Audit: { access: Access.ADMIN, minAal: Aal.AAL2, rateLimitClass: "authenticated" },
    });
    const policies = buildAccessPolicies([service], CLASSES);
    const view = Object.fromEntries(policies.all.map(({ method, ...p }) => [method.name, p]));
    expect(view).toEqual({
      Login: { access: "public", minAal: 0, recentAuth: false, rateLimitClass: "login" },
      Register: { access: "public", minAal: 0, recentAuth: false, rateLimitClass: "register" },
      Profile: { access: "authenticated", minAal: 0, recentAuth: false, rateLimitClass: "authenticated" },
      ChangeSecret: { access: "authenticated", minAal: 0, recentAuth: true, rateLimitClass: "authenticated" },
      Audit: { access: "admin", minAal: 2, recentAuth: false, rateLimitClass: "authenticated" },
    });
    expect(new Set(policies.publicMethods)).toEqual(new Set([methodOf(service, "login"), methodOf(service, "register")]));
    const changeSecret = methodOf(service, "changeSecret");
    expect(policies.of(changeSecret)).toMatchObject({ method: changeSecret, recentAuth: true });
  });

  it("refuses to load a method without a policy, naming it (fail closed: the service does not boot)", () => {
    const service = probeService({ Login: pub(), Forgotten: undefined });
    expect(() => buildAccessPolicies([service], CLASSES)).toThrow(/^test\.v1\.Probe\.Forgotten: no identity\.v1\.access_policy option/);
  });

  it("refuses a policy that contradicts itself or names no known limit", () => {
    const refusal = (declared: Declared) => {
      try {
        buildAccessPolicies([probeService({ Bad: declared })], CLASSES);
        return "loaded";
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(refusal({ rateLimitClass: "authenticated" })).toMatch(/^test\.v1\.Probe\.Bad: access_policy\.access is unspecified/);
    expect(refusal({ access: Access.ADMIN, rateLimitClass: "authenticated" })).toMatch(/ACCESS_ADMIN RPC needs min_aal ASSURANCE_LEVEL_AAL2/);
    expect(refusal({ access: Access.ADMIN, minAal: Aal.AAL1, rateLimitClass: "authenticated" })).toMatch(/needs min_aal ASSURANCE_LEVEL_AAL2/);
    expect(refusal({ ...pub(), recentAuth: true })).toMatch(/public RPC cannot ask for an assurance level or a recent login/);
    expect(refusal({ ...pub(), minAal: Aal.AAL2 })).toMatch(/public RPC cannot ask/);
    expect(refusal({ access: Access.AUTHENTICATED })).toMatch(/rate_limit_class is empty/);
    expect(refusal(authed({ rateLimitClass: "bulk" }))).toMatch(/rate_limit_class "bulk" is not one of login, register, authenticated/);
    expect(refusal(authed({ minAal: 7 as Aal }))).toMatch(/min_aal 7 is not a known assurance level/);
    expect(refusal(authed({ minAal: Aal.AAL2, recentAuth: true }))).toBe("loaded");
  });

  it("a rate-limit class counts public or authenticated calls, not both", () => {
    const service = probeService({ Login: pub("login"), Sneaky: authed({ rateLimitClass: "login" }) });
    expect(() => buildAccessPolicies([service], CLASSES)).toThrow(/^test\.v1\.Probe\.Sneaky: rate_limit_class "login" already serves public RPCs/);
  });

  it("health and reflection are not governed; any other unknown method, of a governed service or not, is an error, never public", () => {
    const policies = buildAccessPolicies([probeService({ Login: pub() })], CLASSES);
    expect(policies.of(Health.method.check)).toBeUndefined();
    // A service served by mistake without being governed is refused, not let through.
    expect(() => policies.of(IdentityService.method.getProfile)).toThrow(/identity\.v1\.IdentityService\.GetProfile: no access policy/);
    // Same service name, a method the table never saw (another copy of the descriptor).
    const other = probeService({ Login: pub(), Extra: pub() });
    expect(policies.of(methodOf(other, "login"))?.access).toBe("public");
    expect(() => policies.of(methodOf(other, "extra"))).toThrow(/test\.v1\.Probe\.Extra: no access policy was loaded/);
  });
});

describe("the policies the served services declare", () => {
  const policies = buildAccessPolicies([IdentityService, AdminService], rateLimitClasses);
  const names = (pick: (p: (typeof policies.all)[number]) => boolean) =>
    policies.all
      .filter(pick)
      .map((p) => `${p.method.parent.name}.${p.method.name}`)
      .sort();

  it("every method of IdentityService and AdminService has one", () => {
    expect(policies.all).toHaveLength(IdentityService.methods.length + AdminService.methods.length);
  });

  it("public: the RPCs whose request carries its own credential or names the token it asks about", () => {
    expect(names((p) => p.access === "public")).toEqual([
      "IdentityService.CompleteMfaLogin",
      "IdentityService.Login",
      "IdentityService.RefreshToken",
      "IdentityService.Register",
      "IdentityService.VerifyToken",
    ]);
    for (const p of policies.all.filter((p) => p.access === "public")) {
      expect(p.rateLimitClass, p.method.name).toBe(p.method.name.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c : `_${c}`)).toLowerCase());
    }
  });

  it("admin with AAL2: every AdminService RPC and nothing else", () => {
    expect(names((p) => p.access === "admin" && p.minAal === 2)).toEqual(AdminService.methods.map((m) => `AdminService.${m.name}`).sort());
    expect(names((p) => p.access === "admin")).toEqual(names((p) => p.method.parent === AdminService));
  });

  it("recent login: the RPCs that change credentials, factors or other sessions", () => {
    expect(names((p) => p.recentAuth)).toEqual([
      "IdentityService.ChangePassword",
      "IdentityService.ConfirmTotpEnrollment",
      "IdentityService.DisableTotp",
      "IdentityService.RegenerateRecoveryCodes",
      "IdentityService.RevokeOtherSessions",
      "IdentityService.StartTotpEnrollment",
    ]);
  });

  it("every RPC that needs a token counts against the `authenticated` limits", () => {
    expect(names((p) => p.access !== "public" && p.rateLimitClass !== "authenticated")).toEqual([]);
  });
});
