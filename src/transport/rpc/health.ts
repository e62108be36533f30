// The standard grpc.health.v1.Health service (connect-es has none,
// connectrpc/connect-es#797). Semantics follow grpc-go's health server:
// "" is the whole server, unknown services are NOT_FOUND for Check and
// SERVICE_UNKNOWN for Watch, and after shutdown() statuses stay NOT_SERVING.
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code } from "@connectrpc/connect";
import { connectErrorOf } from "./errors.js";
import { create } from "@bufbuild/protobuf";
import type { HealthCheckRequest, HealthCheckResponse } from "../../../gen/grpc/health/v1/health_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../../gen/grpc/health/v1/health_pb.js";

export type HealthStatus = "SERVING" | "NOT_SERVING";

export interface HealthService {
  /** The grpc.health.v1.Health implementation (for other servers than the router). */
  readonly impl: ServiceImpl<typeof Health>;
  register(router: ConnectRouter): void;
  /** Sets the status of `service` ("" = the whole server). Ignored after shutdown. */
  setStatus(service: string, status: HealthStatus): void;
  /** Marks everything NOT_SERVING, tells watchers, and ends their streams. */
  shutdown(): void;
}

interface Watcher {
  readonly service: string;
  update(status: ServingStatus): void;
  end(): void;
}

export function createHealth(): HealthService {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  const watchers = new Set<Watcher>();
  let closed = false;

  const put = (service: string, status: ServingStatus): void => {
    statuses.set(service, status);
    for (const watcher of watchers) {
      if (watcher.service === service) watcher.update(status);
    }
  };

  const response = (status: ServingStatus): HealthCheckResponse => create(HealthCheckResponseSchema, { status });

  async function* watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
    // Latest status wins: a slow reader skips intermediate states instead of
    // queueing them without bound (as grpc-go does).
    let pending: ServingStatus | undefined = statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
    let ended = closed;
    let wake: (() => void) | undefined;
    const watcher: Watcher = {
      service: req.service,
      update(status) {
        pending = status;
        wake?.();
      },
      end() {
        ended = true;
        wake?.();
      },
    };
    const onAbort = (): void => watcher.end();
    watchers.add(watcher);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      let last: ServingStatus | undefined;
      while (!ctx.signal.aborted) {
        if (pending !== undefined) {
          const status: ServingStatus = pending;
          pending = undefined;
          if (status !== last) {
            last = status;
            yield response(status);
          }
          continue;
        }
        if (ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      watchers.delete(watcher);
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  const impl: ServiceImpl<typeof Health> = {
    check(req) {
      const status = statuses.get(req.service);
      // A reason from the catalogue (health checkers and operators branch on it), never INTERNAL_ERROR.
      if (status === undefined) throw connectErrorOf(Code.NotFound, "HEALTH_SERVICE_UNKNOWN", "this server does not serve that service", { service: req.service.slice(0, 200) });
      return response(status);
    },
    watch,
    list() {
      return create(HealthListResponseSchema, {
        statuses: Object.fromEntries([...statuses].map(([name, status]) => [name, response(status)])),
      });
    },
  };

  return {
    impl,
    register(router) {
      router.service(Health, impl);
    },
    setStatus(service, status) {
      if (closed) return;
      put(service, status === "SERVING" ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    },
    shutdown() {
      if (closed) return;
      closed = true;
      for (const service of statuses.keys()) put(service, ServingStatus.NOT_SERVING);
      for (const watcher of watchers) watcher.end();
    },
  };
}
