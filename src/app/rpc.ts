import { createServiceImplSpec, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { AdminService as AdminServiceDesc, file_identity_v1_admin_service } from "../../gen/identity/v1/admin_service_pb.js";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.js";
import { EmailService as EmailServiceDesc, file_identity_v1_email_service } from "../../gen/identity/v1/email_service_pb.js";
import { file_identity_v1_errors } from "../../gen/identity/v1/errors_pb.js";
import { file_identity_v1_identity_service, IdentityService as IdentityServiceDesc } from "../../gen/identity/v1/identity_service_pb.js";
import { keyTag } from "../abuse/login-defence.js";
import type { RateLimiter } from "../abuse/rate-limiter.js";
import type { Config } from "../config/config.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { isUnavailableError } from "../storage/db.js";
import { adminHandlers } from "../transport/rpc/admin-handlers.js";
import { buildAccessPolicies, type AccessPolicies } from "../transport/rpc/access-policy.js";
import { authInterceptor } from "../transport/rpc/auth.js";
import { authorizeInterceptor } from "../transport/rpc/authorize.js";
import { createUnaryInvoker, type UnaryInvoker } from "../transport/rpc/direct.js";
import { errorInterceptor } from "../transport/rpc/errors.js";
import { createHealth, type HealthService } from "../transport/rpc/health.js";
import { identityHandlers } from "../transport/rpc/identity-handlers.js";
import { emailHandlers } from "../transport/rpc/email-handlers.js";
import { observeInterceptor } from "../transport/rpc/observe.js";
import { rateLimitClasses, rateLimitInterceptors } from "../transport/rpc/rate-limit.js";
import { registerReflection } from "../transport/rpc/reflection.js";
import { validationInterceptor } from "../transport/rpc/validate.js";
import type { Features } from "./features.js";

// The RPC side: the services' access policies, one interceptor chain for
// every protocol, the handlers, and the two ways in: the Connect router
// (main port) and the in-process invoker (REST gateway, grpc-js port).

/** The services whose every method declares an access policy. */
export const GOVERNED_SERVICES = [IdentityServiceDesc, EmailServiceDesc, AdminServiceDesc] as const;

/** Read from the protos before anything is opened: a served method without a policy stops the boot. */
export function loadAccessPolicies(): AccessPolicies {
  return buildAccessPolicies(GOVERNED_SERVICES, rateLimitClasses);
}

export interface Rpc {
  interceptors: Interceptor[];
  invoke: UnaryInvoker;
  routes(router: ConnectRouter): void;
  health: HealthService;
}

export function buildRpc(
  config: Config,
  deps: {
    policies: AccessPolicies;
    features: Features;
    limiter: RateLimiter;
    roleOf(userId: string): Promise<"customer" | "admin" | undefined>;
    clock: Clock;
    logger: Logger;
  },
): Rpc {
  const { policies, features, logger } = deps;
  const limits = config.rateLimits
    ? rateLimitInterceptors({
        limiter: deps.limiter,
        table: config.rateLimits,
        policies,
        accountKey: (email) => keyTag(features.defence.accountKey(email)),
        onRefused: (info) => logger.info(info, "rate limit refused a call"),
      })
    : undefined;
  // Outermost first: observe → map errors → limit → authenticate → limit per caller → validate → authorise.
  const interceptors: Interceptor[] = [
    observeInterceptor(logger),
    errorInterceptor(logger, isUnavailableError),
    ...(limits ? [limits.beforeAuth] : []),
    authInterceptor(features.identity, policies),
    ...(limits ? [limits.afterAuth] : []),
    validationInterceptor(config.maxRequestBytes),
    authorizeInterceptor({ policies, roleOf: deps.roleOf, recentAuthMaxAgeMs: config.mfa.recentAuthMaxAgeMs }),
  ];
  const health = createHealth();
  // Health checkers name the services (Kubernetes gRPC probes, Envoy, grpc-health-probe -service).
  for (const service of GOVERNED_SERVICES) health.setStatus(service.typeName, "SERVING");
  const identityImpl = identityHandlers(features.identity, deps.clock);
  const adminImpl = adminHandlers(features.admin);
  const emailImpl = emailHandlers(features.email, deps.clock);
  const invoke = createUnaryInvoker(
    [
      createServiceImplSpec<typeof IdentityServiceDesc>(IdentityServiceDesc, identityImpl),
      createServiceImplSpec<typeof EmailServiceDesc>(EmailServiceDesc, emailImpl),
      createServiceImplSpec<typeof AdminServiceDesc>(AdminServiceDesc, adminImpl),
      createServiceImplSpec<typeof Health>(Health, health.impl),
    ],
    interceptors,
  );
  return {
    interceptors,
    invoke,
    health,
    routes(router) {
      router.service(IdentityServiceDesc, identityImpl);
      router.service(EmailServiceDesc, emailImpl);
      router.service(AdminServiceDesc, adminImpl);
      health.register(router);
      registerReflection(
        router,
        // The error catalogue and the google.rpc details too: clients (grpcurl,
        // dynamic stubs) decode every ErrorInfo the services send.
        [file_identity_v1_identity_service, file_identity_v1_email_service, file_identity_v1_admin_service, file_identity_v1_errors, file_google_rpc_error_details],
        GOVERNED_SERVICES.map((s) => s.typeName),
      );
    },
  };
}
