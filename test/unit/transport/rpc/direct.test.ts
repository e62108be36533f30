import { Code, ConnectError, createClient, createContextKey, createContextValues, createServiceImplSpec, type Interceptor } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { IdentityService } from "../../../../gen/identity/v1/identity_service_pb.js";
import { createDirectTransport, createUnaryInvoker } from "../../../../src/transport/rpc/direct.js";

const kAddress = createContextKey("", { description: "address" });

describe("direct transport", () => {
  const order: string[] = [];
  const tag =
    (name: string): Interceptor =>
    (next) =>
    async (req) => {
      order.push(`${name}>`);
      req.header.set("x-seen", `${req.header.get("x-seen") ?? ""}${name}`);
      const res = await next(req);
      order.push(`<${name}`);
      res.header.set("x-out", name);
      return res;
    };
  const invoke = createUnaryInvoker(
    [
      createServiceImplSpec<typeof IdentityService>(IdentityService, {
        getProfile: (_req, ctx) => ({ user: { email: ctx.values.get(kAddress), userId: ctx.requestHeader.get("x-seen") ?? "" } }),
        logout() {
          throw new ConnectError("slow down", Code.ResourceExhausted, { "retry-after": "3" });
        },
      }),
    ],
    [tag("a"), tag("b")],
  );
  const client = createClient(IdentityService, createDirectTransport(invoke, "test"));

  it("runs the interceptors outermost first and hands contextValues to the handler", async () => {
    order.length = 0;
    let header: Headers | undefined;
    const res = await client.getProfile(
      {},
      { contextValues: createContextValues().set(kAddress, "203.0.113.7"), onHeader: (h) => (header = h) },
    );
    expect(res.user?.email).toBe("203.0.113.7");
    expect(res.user?.userId).toBe("ab");
    expect(order).toEqual(["a>", "b>", "<b", "<a"]);
    expect(header?.get("x-out")).toBe("a");
  });

  it("passes errors through with their code and metadata", async () => {
    const err = await client.logout({}).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.ResourceExhausted);
    expect(err?.metadata.get("retry-after")).toBe("3");
  });

  it("answers UNIMPLEMENTED for a method without implementation", async () => {
    const err = await client.login({ email: "a@b.co", password: "x" }).then(() => undefined, (e: unknown) => ConnectError.from(e));
    expect(err?.code).toBe(Code.Unimplemented);
  });
});
