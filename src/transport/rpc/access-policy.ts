import { getOption, hasOption, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { access_policy, AccessPolicy_Access, AccessPolicy_AssuranceLevel } from "../../../gen/identity/v1/annotations_pb.js";

// The access policy each RPC declares in the proto (identity.v1.access_policy),
// read once at boot into the table the interceptors consult. A served
// method without a policy, or with one that contradicts itself, stops the
// boot: no RPC is ever open, or unlimited, by omission.

export type Access = "public" | "authenticated" | "admin";

export interface MethodPolicy {
  readonly method: DescMethod;
  readonly access: Access;
  /** Least assurance level of the caller's session: 2 needs a session that passed a second factor. */
  readonly minAal: 0 | 1 | 2;
  /** Needs a login or Reauthenticate within RECENT_AUTH_MAX_AGE. */
  readonly recentAuth: boolean;
  /** The rate-limit table entry the calls count against. */
  readonly rateLimitClass: string;
}

export interface AccessPolicies {
  /**
   * The policy of a method of a governed service, or undefined for health
   * and reflection (UNGOVERNED_SERVICES). Throws for any other method: the
   * call is refused rather than let through.
   */
  of(method: DescMethod): MethodPolicy | undefined;
  /** The methods that need no access token. */
  readonly publicMethods: ReadonlySet<DescMethod>;
  readonly all: readonly MethodPolicy[];
}

const ACCESS: Partial<Record<AccessPolicy_Access, Access>> = {
  [AccessPolicy_Access.PUBLIC]: "public",
  [AccessPolicy_Access.AUTHENTICATED]: "authenticated",
  [AccessPolicy_Access.ADMIN]: "admin",
};

const AAL: Partial<Record<AccessPolicy_AssuranceLevel, 0 | 1 | 2>> = {
  [AccessPolicy_AssuranceLevel.UNSPECIFIED]: 0,
  [AccessPolicy_AssuranceLevel.AAL1]: 1,
  [AccessPolicy_AssuranceLevel.AAL2]: 2,
};

/** Services served without access policies: gRPC health checking and server reflection. */
export const UNGOVERNED_SERVICES: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

const key = (method: DescMethod) => `${method.parent.typeName}/${method.name}`;

/**
 * The policies of every method of `services`. `rateLimitClasses` are the
 * entries of the rate-limit table an RPC may name. Throws, naming the
 * method, when one has no policy or an inconsistent one.
 */
export function buildAccessPolicies(services: readonly DescService[], rateLimitClasses: ReadonlySet<string>): AccessPolicies {
  const byKey = new Map<string, MethodPolicy>();
  const governed = new Set<string>();
  // A class counts either anonymous calls (by address and e-mail) or callers (by user), not both.
  const classAccess = new Map<string, "public" | "authenticated">();
  for (const service of services) {
    governed.add(service.typeName);
    for (const method of service.methods) {
      const policy = readPolicy(method, rateLimitClasses);
      const kind = policy.access === "public" ? "public" : "authenticated";
      const seen = classAccess.get(policy.rateLimitClass);
      if (seen !== undefined && seen !== kind) {
        throw new Error(`${where(method)}: rate_limit_class "${policy.rateLimitClass}" already serves ${seen} RPCs; a class serves public or authenticated RPCs, not both`);
      }
      classAccess.set(policy.rateLimitClass, kind);
      byKey.set(key(method), policy);
    }
  }
  const all = [...byKey.values()];
  return {
    of(method) {
      const policy = byKey.get(key(method));
      if (policy !== undefined) return policy;
      // Health and reflection answer anyone, as their protocols expect; any
      // other service without policies is refused rather than let through.
      if (governed.has(method.parent.typeName) || !UNGOVERNED_SERVICES.has(method.parent.typeName)) {
        throw new Error(`${where(method)}: no access policy was loaded for it`);
      }
      return undefined;
    },
    publicMethods: new Set(all.filter((p) => p.access === "public").map((p) => p.method)),
    all,
  };
}

function where(method: DescMethod): string {
  return `${method.parent.typeName}.${method.name}`;
}

function readPolicy(method: DescMethod, rateLimitClasses: ReadonlySet<string>): MethodPolicy {
  const fail = (problem: string): never => {
    throw new Error(`${where(method)}: ${problem}`);
  };
  if (!hasOption(method, access_policy)) fail("no identity.v1.access_policy option: every RPC declares who may call it");
  const declared = getOption(method, access_policy);
  const access = ACCESS[declared.access] ?? fail("access_policy.access is unspecified: declare ACCESS_PUBLIC, ACCESS_AUTHENTICATED or ACCESS_ADMIN");
  const minAal = AAL[declared.minAal] ?? fail(`access_policy.min_aal ${declared.minAal} is not a known assurance level`);
  const { recentAuth, rateLimitClass } = declared;
  if (access === "public" && (minAal > 0 || recentAuth)) fail("a public RPC cannot ask for an assurance level or a recent login: it has no caller");
  // Administrators always log in with their second factor; a session without it is not an administrator's.
  if (access === "admin" && minAal < 2) fail("an ACCESS_ADMIN RPC needs min_aal ASSURANCE_LEVEL_AAL2");
  if (rateLimitClass === "") fail("access_policy.rate_limit_class is empty: every RPC counts against some limit");
  if (!rateLimitClasses.has(rateLimitClass)) {
    fail(`access_policy.rate_limit_class "${rateLimitClass}" is not one of ${[...rateLimitClasses].join(", ")}`);
  }
  return { method, access, minAal, recentAuth, rateLimitClass };
}
