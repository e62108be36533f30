import * as grpc from "@grpc/grpc-js";
import { createVerifier, type Verifier } from "@platform/identity-verifier";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { rotateSigningKey } from "../../src/cli/rotate-signing-key.js";
import { announceKeysChanged } from "../../src/sessions/redis-revocation-feed.js";
import { grpcJsClient, rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { postgresAvailable } from "../support/databases.js";
import { errorReason, grpcFailure } from "../support/error-info.js";
import { redisAvailable, redisServerBinary, startPrivateRedis } from "../support/redis.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { expectEventually } from "../support/timing.js";

// Two instances on one PostgreSQL and one Redis. Each caches "session
// active" for a minute here, so only the revocation feed can make instance B
// refuse a token that instance A revoked within the one-second bound.

const canRun = postgresAvailable && redisAvailable && redisServerBinary;
if (!canRun && process.env.CI) throw new Error("CI must run the revocation fan-out suite (PostgreSQL, Redis and redis-server needed)");

async function loginAt(s: TestServer, email: string) {
  const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD } });
  expect(r.status).toBe(201);
  return r.body as { access_token: string; refresh_token: string; session_id: string };
}

/** Whether the verifier library refuses `token` as revoked. */
const revokedFor = (verifier: Verifier, token: string) =>
  verifier.verify(token).then(
    () => false,
    (e: { code?: string }) => e.code === "TOKEN_REVOKED",
  );
const refusedBy = async (s: TestServer, token: string) => (await rest(s.baseUrl, "GET", "/user/profile", { token })).status === 401;

describe.skipIf(!canRun)("revocation fan-out across instances (postgres + redis)", () => {
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  let a: TestServer;
  let b: TestServer;
  let verifier: Verifier;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    const env = { REDIS_URL: redis.url, SESSION_CACHE_TTL: "60s" };
    a = await startTestServer("postgres", { env });
    b = await startTestServer("postgres", { env, shareDatabaseWith: a });
    await Promise.all([a.app.feed!.ready(5_000), b.app.feed!.ready(5_000)]);
    verifier = createVerifier({
      jwksUrl: `${a.baseUrl}/.well-known/jwks.json`,
      issuer: a.config.jwt.issuer,
      audience: a.config.jwt.audience,
      revocation: { redis: redis.url, prefix: a.config.redisPrefix },
    });
    await verifier.ready();
  });
  afterAll(async () => {
    await verifier?.close();
    await b?.destroy();
    await a?.destroy();
    await redis?.stop();
  });

  it("a logout on A is refused on B, over gRPC and REST, and by the verifier library, within 1 s", async () => {
    const email = uniqueEmail();
    expect((await rest(a.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } })).status).toBe(201);
    const t = await loginAt(a, email);
    // B has seen the session active (and caches that for a minute).
    expect((await rest(b.baseUrl, "GET", "/user/profile", { token: t.access_token })).status).toBe(200);
    expect((await verifier.verify(t.access_token)).sessionId).toBe(t.session_id);

    expect((await rest(a.baseUrl, "POST", "/logout", { token: t.access_token })).status).toBe(204);
    const restDelay = await expectEventually("B to refuse the token", () => refusedBy(b, t.access_token), { timeoutMs: 1_000, intervalMs: 10 });
    const verifierDelay = await expectEventually("the verifier to see the revocation", () => revokedFor(verifier, t.access_token), {
      timeoutMs: 1_000,
      intervalMs: 10,
    });
    const g = grpcJsClient(IdentityService, b.grpcPort);
    const err = await grpcFailure(g.getProfile({}, { authorization: `Bearer ${t.access_token}` }));
    g.close();
    expect({ code: err.code, reason: errorReason(err) }).toEqual({ code: grpc.status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
    expect(restDelay).toBeLessThan(1_000);
    expect(verifierDelay).toBeLessThan(1_000);
  });

  it("a password change on B ends A's view of the other sessions too", async () => {
    const email = uniqueEmail();
    expect((await rest(b.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } })).status).toBe(201);
    const first = await loginAt(a, email);
    const second = await loginAt(b, email);
    expect((await rest(a.baseUrl, "GET", "/user/profile", { token: first.access_token })).status).toBe(200);
    const r = await rest(b.baseUrl, "PUT", "/user/password", {
      token: second.access_token,
      body: { old_password: STRONG_PASSWORD, new_password: "an entirely new passphrase 7" },
    });
    expect(r.status).toBe(200);
    await expectEventually("A to refuse the other session's token", () => refusedBy(a, first.access_token), { timeoutMs: 1_000, intervalMs: 10 });
    // The session that changed the password lives on, on both.
    for (const s of [a, b]) expect((await rest(s.baseUrl, "GET", "/user/profile", { token: second.access_token })).status).toBe(200);
  });

  it("with Redis down, revoked stays revoked on this service and reaches verifiers when Redis returns", async () => {
    const email = uniqueEmail();
    expect((await rest(a.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } })).status).toBe(201);
    const t = await loginAt(a, email);
    expect((await verifier.verify(t.access_token)).userId).toBeTruthy();
    await redis.stop();
    await expectEventually("A's feed to see Redis down", () => a.app.feed!.state() === "down", { timeoutMs: 5_000 });

    const out = await rest(a.baseUrl, "POST", "/logout", { token: t.access_token });
    expect(out.status).toBe(204);
    // The instance that revoked refuses at once: the database is the source of truth.
    const again = await rest(a.baseUrl, "GET", "/user/profile", { token: t.access_token });
    expect(again.status).toBe(401);
    expect(errorReason(again.body)).toBe("TOKEN_INVALID");
    // Readiness does not depend on Redis.
    const ready = await rest(a.baseUrl, "GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body.redis).toBe("down");

    await redis.start();
    // The queued publication goes out; the verifier's rescan or the message delivers it.
    await expectEventually("the verifier to see the revocation made while Redis was down", () => revokedFor(verifier, t.access_token), { timeoutMs: 10_000 });
  });

  it("an emergency key rotation announced on Redis makes every instance refuse the old key's tokens at once", async () => {
    // Runs last: it retires the key the verifier above knows, and needs Redis back up.
    await expectEventually("both feeds back up", () => a.app.feed!.state() === "up" && b.app.feed!.state() === "up", { timeoutMs: 10_000 });
    const email = uniqueEmail();
    expect((await rest(a.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } })).status).toBe(201);
    const t = await loginAt(b, email);
    // Both instances have verified (and cached) the token.
    expect((await rest(a.baseUrl, "GET", "/user/profile", { token: t.access_token })).status).toBe(200);
    expect((await rest(b.baseUrl, "GET", "/user/profile", { token: t.access_token })).status).toBe(200);
    const rotated = await rotateSigningKey({ config: a.config, immediate: true, database: a.app.database });
    expect(rotated.rotated).toBe(true);
    expect(await announceKeysChanged(redis.url, a.config.redisPrefix)).toBeGreaterThanOrEqual(2);
    for (const s of [a, b]) {
      await expectEventually("every instance to refuse the old key's token", () => refusedBy(s, t.access_token), { timeoutMs: 1_000, intervalMs: 10 });
    }
    // A new login is signed with the new key and works on both.
    const fresh = await loginAt(a, email);
    expect((await rest(b.baseUrl, "GET", "/user/profile", { token: fresh.access_token })).status).toBe(200);
  });
});
