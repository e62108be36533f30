import * as grpc from "@grpc/grpc-js";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../../gen/identity/v1/admin_service_pb.js";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { verifyWebhookSignature } from "../../src/notify/webhook.js";
import { auditRows } from "../support/audit.js";
import { bearer, bearerMd, connectClient, grpcJsClient, rest, type RestResponse, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { connectFailure, errorReason, expectGrpcError, expectRestError, grpcOutcome, statusDetailsBytes } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { registerUser } from "../support/users.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";
import { makeAdmin, uniqueIp, xff } from "./abuse-helpers.js";

// Per-account brute-force defence end to end: the hard lockout after 100
// consecutive failures whatever addresses and protocols they come from, the
// administrator's unlock, and the progressive delay on a controlled clock,
// whose refusals are indistinguishable from a wrong password.

let wrongCount = 0;
/** A new wrong password per attempt (one password on many accounts would look like a spray). */
const wrong = () => `wrong guess ${process.pid}.${++wrongCount}`;

/** Headers compared between two answers: all but the per-request ones. */
function stableHeaders(r: RestResponse): Record<string, string> {
  const out: Record<string, string> = {};
  r.headers.forEach((value, key) => {
    if (!["x-request-id", "date", "content-length"].includes(key)) out[key] = value;
  });
  return out;
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`account lockout (${backend.name})`, () => {
    let s: TestServer;
    let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let admin: ReturnType<typeof grpcJsClient<typeof AdminService>>;

    beforeAll(async () => {
      hooks = await startWebhookReceiver();
      s = await startTestServer(backend.name, {
        env: { TRUSTED_PROXIES: "127.0.0.1", BRUTE_FORCE_BASE_DELAY: "0", ...hooks.env },
      });
      g = grpcJsClient(IdentityService, s.grpcPort);
      admin = grpcJsClient(AdminService, s.port);
    });
    afterAll(async () => {
      g?.close();
      admin?.close();
      await s?.destroy();
      await hooks?.close();
    });

    it("101 wrong passwords from 101 addresses over REST and gRPC lock the account; only an admin unlock opens it", { timeout: 60_000 }, async () => {
      const victim = await registerUser(s);
      for (let i = 0; i < 101; i++) {
        const ip = uniqueIp();
        if (i % 2 === 0) {
          expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: victim.email, password: wrong() }, headers: xff(ip) }), 401, "INVALID_CREDENTIALS");
        } else {
          await expectGrpcError(g.login({ email: victim.email, password: wrong() }, xff(ip)), grpc.status.UNAUTHENTICATED, "INVALID_CREDENTIALS");
        }
      }
      // The right password, from yet another address, on every protocol: the wrong-password answer.
      expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: victim.email, password: victim.password }, headers: xff(uniqueIp()) }), 401, "INVALID_CREDENTIALS");
      await expectGrpcError(g.login({ email: victim.email, password: victim.password }, xff(uniqueIp())), grpc.status.UNAUTHENTICATED, "INVALID_CREDENTIALS");
      const viaConnect = await connectFailure(connectClient(s.baseUrl).login({ email: victim.email, password: victim.password }, { headers: xff(uniqueIp()) }));
      expect(viaConnect.code).toBe(Code.Unauthenticated);

      // Exactly one account_locked event, for the victim, with the evidence.
      const locked = await auditRows(s, "account_locked");
      expect(locked).toHaveLength(1);
      expect(locked[0]).toMatchObject({ userId: victim.userId, outcome: "success", details: { failures: 100, threshold: 100 } });
      expect((await auditRows(s, "login_throttled")).filter((e) => e.reason === "account_locked").length).toBeGreaterThanOrEqual(4);

      // One signed account_locked alert.
      const [alert, ...more] = await hooks.waitFor("account_locked");
      expect(more).toEqual([]);
      expect(alert!.verified).toBe(true);
      expect(alert!.data).toMatchObject({ user_id: victim.userId, failures: 100, threshold: 100 });
      expect(alert!.body).not.toContain(victim.email);
      // A tampered body does not verify with that signature.
      expect(verifyWebhookSignature({ secret: hooks.env.WEBHOOK_SECRET!, id: alert!.id, timestamp: alert!.timestamp, signature: alert!.signature, body: alert!.body.replace("100", "101") })).toBe(false);

      // The administrator unlocks (the e-mail in any case); the right password works again.
      const token = await makeAdmin(s);
      const unlocked = await rest(s.baseUrl, "POST", "/admin/accounts:unlock", { token, body: { email: victim.email.toUpperCase() } });
      expect(unlocked.status, unlocked.text).toBe(200);
      expect(unlocked.body).toEqual({ cleared_failures: 100, was_locked: true });
      const ok = await rest(s.baseUrl, "POST", "/login", { body: { email: victim.email, password: victim.password }, headers: xff(uniqueIp()) });
      expect(ok.status, ok.text).toBe(201);
      // The unlock is audited with the administrator as the actor.
      const unlocks = await auditRows(s, "account_unlock");
      expect(unlocks).toEqual([expect.objectContaining({ userId: victim.userId, actorUserId: expect.any(String), details: { cleared_failures: 100, was_locked: true } })]);
      expect(unlocks[0]!.actorUserId).not.toBe(victim.userId);
      // Idempotent, over gRPC too.
      const again = await admin.unlockAccount({ email: victim.email }, bearerMd(token));
      expect({ cleared: again.clearedFailures, wasLocked: again.wasLocked }).toEqual({ cleared: 0, wasLocked: false });
    });

    it("UnlockAccount is for administrators only", async () => {
      const user = await registerUser(s);
      const login = await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password } });
      const token = login.body.access_token as string;
      expectRestError(await rest(s.baseUrl, "POST", "/admin/accounts:unlock", { token, body: { email: user.email } }), 403, "ADMIN_ROLE_REQUIRED");
      await expectGrpcError(admin.unlockAccount({ email: user.email }, bearerMd(token)), 7, "ADMIN_ROLE_REQUIRED");
      const viaConnect = await connectFailure(createAdminConnect(s).unlockAccount({ email: user.email }, bearer(token)));
      expect(viaConnect.code).toBe(Code.PermissionDenied);
      expectRestError(await rest(s.baseUrl, "POST", "/admin/accounts:unlock", { body: { email: user.email } }), 401, "TOKEN_MISSING");
    });
  });

  describe.skipIf(backend.skip)(`progressive delay on a controlled clock (${backend.name})`, () => {
    let t = Date.now();
    const clock = { now: () => new Date(t) };
    const advance = (ms: number) => void (t += ms);
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      // The defaults: 5 free attempts, then 1 s doubling.
      s = await startTestServer(backend.name, { overrides: { clock } });
      g = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    const restLogin = (email: string, password: string) => rest(s.baseUrl, "POST", "/login", { body: { email, password } });

    it("REST: the 6th attempt at the same instant is refused even with the right password, byte for byte as a wrong password; 1 s later it passes and the count restarts", async () => {
      const user = await registerUser(s);
      let lastWrong: RestResponse | undefined;
      for (let i = 0; i < 5; i++) {
        lastWrong = await restLogin(user.email, wrong());
        expectRestError(lastWrong, 401, "INVALID_CREDENTIALS");
      }
      const throttled = await restLogin(user.email, user.password);
      expect(throttled.status).toBe(lastWrong!.status);
      expect(throttled.text).toBe(lastWrong!.text);
      expect(stableHeaders(throttled)).toEqual(stableHeaders(lastWrong!));
      expect(throttled.headers.get("retry-after")).toBeNull();
      const events = await auditRows(s, "login_throttled");
      expect(events.at(-1)).toMatchObject({ reason: "progressive_delay", details: { failures: 5, retry_after_seconds: 1 } });

      advance(999);
      expectRestError(await restLogin(user.email, user.password), 401, "INVALID_CREDENTIALS");
      advance(1);
      const ok = await restLogin(user.email, user.password);
      expect(ok.status, ok.text).toBe(201);

      // Reset: four wrong, then the right one at the same instant (the fifth free attempt) passes...
      for (let i = 0; i < 4; i++) expectRestError(await restLogin(user.email, wrong()), 401, "INVALID_CREDENTIALS");
      expect((await restLogin(user.email, user.password)).status).toBe(201);
      // ...and five wrong then the right one at the same instant is refused again.
      for (let i = 0; i < 5; i++) expectRestError(await restLogin(user.email, wrong()), 401, "INVALID_CREDENTIALS");
      expectRestError(await restLogin(user.email, user.password), 401, "INVALID_CREDENTIALS");
      advance(1_000);
      expect((await restLogin(user.email, user.password)).status).toBe(201);
    });

    it("the waits double: 1 s, 2 s, 4 s after each further failure", async () => {
      const user = await registerUser(s);
      for (let i = 0; i < 5; i++) await restLogin(user.email, wrong());
      for (const wait of [1_000, 2_000, 4_000]) {
        advance(wait - 1);
        expectRestError(await restLogin(user.email, user.password), 401, "INVALID_CREDENTIALS");
        advance(1);
        expectRestError(await restLogin(user.email, wrong()), 401, "INVALID_CREDENTIALS"); // counted
      }
      advance(8_000 - 1);
      expectRestError(await restLogin(user.email, user.password), 401, "INVALID_CREDENTIALS");
      advance(1);
      expect((await restLogin(user.email, user.password)).status).toBe(201);
    });

    it("gRPC: the throttled answer has the same code, message and status details bytes as a wrong password", async () => {
      const user = await registerUser(s);
      let lastWrong;
      for (let i = 0; i < 5; i++) lastWrong = await grpcOutcome(g.login({ email: user.email, password: wrong() }));
      const throttled = await grpcOutcome(g.login({ email: user.email, password: user.password }));
      expect(lastWrong?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(throttled?.code).toBe(lastWrong!.code);
      expect(throttled!.details).toBe(lastWrong!.details);
      expect(errorReason(throttled)).toBe("INVALID_CREDENTIALS");
      expect(statusDetailsBytes(throttled!)).toEqual(statusDetailsBytes(lastWrong!));
      expect(statusDetailsBytes(throttled!)).toBeDefined();
      expect(throttled!.metadata.get("retry-after")).toEqual([]);
      advance(1_000);
      await expect(g.login({ email: user.email, password: user.password })).resolves.toMatchObject({ userId: user.userId });
    });

    it("an e-mail without an account is throttled the same way, with the same answer", async () => {
      const ghost = uniqueEmail("ghost");
      const registered = await registerUser(s);
      const answers: RestResponse[] = [];
      for (const email of [ghost, registered.email]) {
        for (let i = 0; i < 5; i++) await restLogin(email, wrong());
        answers.push(await restLogin(email, email === ghost ? STRONG_PASSWORD : registered.password));
      }
      expect(answers[0]!.status).toBe(401);
      expect(answers[0]!.text).toBe(answers[1]!.text);
      expect(stableHeaders(answers[0]!)).toEqual(stableHeaders(answers[1]!));
      const throttled = (await auditRows(s, "login_throttled")).slice(-2);
      expect(throttled.map((e) => [e.reason, e.details])).toEqual([
        ["progressive_delay", { failures: 5, retry_after_seconds: 1 }],
        ["progressive_delay", { failures: 5, retry_after_seconds: 1 }],
      ]);
      advance(1_000);
    });
  });
}

/** A Connect client of the admin service. */
function createAdminConnect(s: TestServer) {
  return createClient(AdminService, createConnectTransport({ baseUrl: s.baseUrl, httpVersion: "1.1" }));
}
