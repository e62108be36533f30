import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { auditRows } from "../support/audit.js";
import { connectClient, grpcJsClient, rest, type RestResponse, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { expectConnectError, expectGrpcError, expectRestError, grpcOutcome } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { expectEventually } from "../support/timing.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";
import { CAPTCHA_SECRET, expectGrpc429, expectRest429, rateLimitedInfo, startSiteverify, uniqueIp, xff } from "./abuse-helpers.js";

// Password spraying and credential stuffing from one source: detected,
// audited with evidence, alerted, and the source blocked while everyone
// else logs in. CAPTCHA end to end against a local siteverify endpoint, for
// each provider: registrations, and logins in surge mode.

const PERMISSION_DENIED = 7;

// The block is enforced by the rate-limit interceptor, so limits are on,
// far above anything these tests reach.
const HIGH_LIMITS = "login.ip=10000/1m:10000,login.account=10000/1m:10000,login.ip_account=10000/1m:10000,register.ip=10000/1m:10000";

let wrongCount = 0;
const distinctPassword = () => `leaked-pass ${process.pid}.${++wrongCount}`;

for (const backend of backends) {
  describe.skipIf(backend.skip)(`spray and stuffing from one source (${backend.name})`, () => {
    let s: TestServer;
    let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      hooks = await startWebhookReceiver();
      s = await startTestServer(backend.name, { env: { TRUSTED_PROXIES: "127.0.0.1", RATE_LIMITS: HIGH_LIMITS, ...hooks.env } });
      g = grpcJsClient(IdentityService, s.grpcPort);
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
      await hooks?.close();
    });

    /** 200 failed logins from `source` on 200 accounts; the answers in order. */
    async function run(source: string, password: () => string, meanwhile: () => Promise<void>): Promise<RestResponse[]> {
      const answers: RestResponse[] = [];
      for (let i = 0; i < 200; i++) {
        answers.push(await rest(s.baseUrl, "POST", "/login", { body: { email: uniqueEmail("target"), password: password() }, headers: xff(source) }));
        if (i % 50 === 25) await meanwhile();
      }
      return answers;
    }

    /** Asserts: wrong-password answers, then (from the first block on) only source_blocked; returns the index of the first block. */
    function blockedFrom(answers: RestResponse[]): number {
      const first = answers.findIndex((r) => r.status === 429);
      expect(first).toBeGreaterThan(0);
      answers.slice(0, first).forEach((r) => expectRestError(r, 401, "INVALID_CREDENTIALS"));
      for (const r of answers.slice(first)) {
        expect(expectRest429(r, "source_blocked")).toBeGreaterThan(29 * 60); // SPRAY_BLOCK_DURATION 30 min
      }
      return first;
    }

    it("a spray over 200 accounts with one password is detected and blocked, while another source logs in", async () => {
      const a = uniqueIp();
      const b = uniqueIp();
      const email = uniqueEmail("bystander");
      expect((await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } }, headers: xff(b) })).status).toBe(201);
      let bystanderLogins = 0;
      const answers = await run(
        a,
        () => "Spring2026!common",
        async () => {
          const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD }, headers: xff(b) });
          expect(r.status, r.text).toBe(201);
          bystanderLogins++;
        },
      );
      expect(bystanderLogins).toBe(4);
      // Blocked no later than the per-source threshold (20 accounts).
      expect(blockedFrom(answers)).toBeLessThanOrEqual(20);
      // Every public RPC from the source is refused, on every protocol.
      expectGrpc429((await grpcOutcome(g.login({ email, password: STRONG_PASSWORD }, xff(a))))!, "source_blocked");
      expectRest429(await rest(s.baseUrl, "POST", "/register", { body: { account: { email: uniqueEmail(), password: STRONG_PASSWORD } }, headers: xff(a) }), "source_blocked");
      const viaConnect = await connectClient(s.baseUrl).login({ email, password: STRONG_PASSWORD }, { headers: xff(a) }).catch((e: unknown) => e);
      expect((viaConnect as { code?: number }).code).toBe(Code.ResourceExhausted);
      // Even the right password of a real account.
      expectRest429(await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD }, headers: xff(a) }), "source_blocked");

      // The detection with its evidence.
      const detected = await auditRows(s, "spray_detected", { ip: a });
      expect(detected.length).toBeGreaterThanOrEqual(1);
      for (const d of detected) {
        expect(d.reason).toBe("password_spray");
        expect(d.details).toMatchObject({ kind: "password_spray", source_ip: a });
        expect(Number(d.details!.distinct_accounts)).toBeGreaterThanOrEqual(Number(d.details!.threshold));
      }
      expect(JSON.stringify(detected)).not.toContain("Spring2026");
      // ...and alerted, signed.
      const alerts = (await hooks.waitFor("password_spray")).filter((w) => w.data.source_ip === a);
      expect(alerts).toHaveLength(1);
      expect(alerts[0]!.verified).toBe(true);
      expect(Number(alerts[0]!.data.distinct_accounts)).toBeGreaterThanOrEqual(Number(alerts[0]!.data.threshold));

      // The bystander is still fine afterwards, over gRPC too.
      await expect(g.login({ email, password: STRONG_PASSWORD }, xff(b))).resolves.toMatchObject({ accessToken: expect.any(String) });
    });

    it("the block of a one-password spray is audited and alerted as source_blocked", async () => {
      const a = uniqueIp();
      const answers = await run(a, () => "Autumn2026!common", async () => {});
      blockedFrom(answers);
      const blocked = await auditRows(s, "source_blocked", { ip: a });
      expect(blocked.map((e) => [e.reason, e.details])).toEqual([["password_spray", expect.objectContaining({ kind: "password_spray", source_ip: a })]]);
      await expectEventually("a source_blocked alert", () => hooks.ofType("source_blocked").some((w) => w.data.source_ip === a), { timeoutMs: 2_000 });
      const alerts = hooks.ofType("source_blocked").filter((w) => w.data.source_ip === a);
      expect(alerts.map((w) => w.verified)).toEqual([true]);
    });

    it("credential stuffing (a different password per account) is told apart, blocked after 20 accounts, audited and alerted", async () => {
      const c = uniqueIp();
      const answers = await run(c, distinctPassword, async () => {});
      expect(blockedFrom(answers)).toBe(20);
      const evidence = { kind: "credential_stuffing", source_ip: c, distinct_accounts: 20, distinct_passwords: 20, threshold: 20, window_seconds: 900, block_seconds: 1800 };
      const detected = await auditRows(s, "spray_detected", { ip: c });
      expect(detected.map((d) => [d.reason, d.details])).toEqual([["credential_stuffing", evidence]]);
      const blocked = await auditRows(s, "source_blocked", { ip: c });
      expect(blocked.map((d) => [d.reason, d.details])).toEqual([["credential_stuffing", evidence]]);
      for (const type of ["credential_stuffing", "source_blocked"]) {
        const alerts = (await hooks.waitFor(type)).filter((w) => w.data.source_ip === c);
        expect(alerts.map((w) => [w.verified, w.data])).toEqual([[true, evidence]]);
      }
    });
  });
}

const providers = ["turnstile", "hcaptcha", "recaptcha"] as const;

for (const backend of backends) {
  for (const provider of providers) {
    describe.skipIf(backend.skip)(`CAPTCHA via ${provider} (${backend.name})`, () => {
      let s: TestServer;
      let sv: Awaited<ReturnType<typeof startSiteverify>>;
      let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;
      let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

      beforeAll(async () => {
        sv = await startSiteverify();
        hooks = await startWebhookReceiver();
        s = await startTestServer(backend.name, {
          env: {
            CAPTCHA_PROVIDER: provider,
            CAPTCHA_SECRET,
            CAPTCHA_VERIFY_URL: sv.url,
            TRUSTED_PROXIES: "127.0.0.1",
            SURGE_FAILURES_PER_MINUTE: "10",
            ...hooks.env,
          },
        });
        g = grpcJsClient(IdentityService, s.grpcPort);
      });
      afterAll(async () => {
        g?.close();
        await s?.destroy();
        await sv?.close();
        await hooks?.close();
      });

      const register = (email: string, captcha_token?: string, ip = uniqueIp()) =>
        rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD }, ...(captcha_token === undefined ? {} : { captcha_token }) }, headers: xff(ip) });

      it("registration: no token → 403 CAPTCHA_REQUIRED, refused token → 403 CAPTCHA_INVALID, solved → 201; siteverify gets secret, token and client address", async () => {
        expectRestError(await register(uniqueEmail()), 403, "CAPTCHA_REQUIRED");
        await expectGrpcError(g.register({ account: { email: uniqueEmail(), password: STRONG_PASSWORD } }, xff(uniqueIp())), PERMISSION_DENIED, "CAPTCHA_REQUIRED");
        await expectConnectError(
          connectClient(s.baseUrl).register({ account: { email: uniqueEmail(), password: STRONG_PASSWORD } }, { headers: xff(uniqueIp()) }),
          Code.PermissionDenied,
          "CAPTCHA_REQUIRED",
        );
        expect(sv.requests).toEqual([]);

        const ip = uniqueIp();
        const email = uniqueEmail();
        expectRestError(await register(email, "forged-token", ip), 403, "CAPTCHA_INVALID");
        expect(sv.requests.at(-1)).toEqual({ secret: CAPTCHA_SECRET, response: "forged-token", remoteip: ip });
        const ok = await register(email, "pass-token-1", ip);
        expect(ok.status, ok.text).toBe(201);
        expect(sv.requests.at(-1)).toEqual({ secret: CAPTCHA_SECRET, response: "pass-token-1", remoteip: ip });
        // The refusals are audited (without the token).
        const captcha = await auditRows(s, "captcha", { ip });
        expect(captcha.map((e) => [e.outcome, e.reason])).toEqual([["failure", "CAPTCHA_INVALID"]]);
        expect(JSON.stringify(captcha)).not.toContain("forged-token");
      });

      it(`a low reCAPTCHA v3 score is ${provider === "recaptcha" ? "refused" : "not compared"} for ${provider}`, async () => {
        const r = await register(uniqueEmail(), "pass-lowscore");
        if (provider === "recaptcha") expectRestError(r, 403, "CAPTCHA_INVALID");
        else expect(r.status, r.text).toBe(201);
      });

      it("provider down: 503 / UNAVAILABLE DEPENDENCY_UNAVAILABLE (fail closed)", async () => {
        sv.down();
        try {
          expectRestError(await register(uniqueEmail(), "pass-token-2"), 503, "DEPENDENCY_UNAVAILABLE");
          await expectGrpcError(
            g.register({ account: { email: uniqueEmail(), password: STRONG_PASSWORD }, captchaToken: "pass-token-3" }, xff(uniqueIp())),
            grpc.status.UNAVAILABLE,
            "DEPENDENCY_UNAVAILABLE",
          );
        } finally {
          sv.up();
        }
        expect((await register(uniqueEmail(), "pass-token-4")).status).toBe(201);
      });

      it("logins need no CAPTCHA until a failure surge; then they must solve one (surge audited and alerted)", async () => {
        const email = uniqueEmail();
        expect((await register(email, "pass-token-5")).status).toBe(201);
        // A login before the surge makes the device known: it keeps the device token it got.
        const before = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD }, headers: xff(uniqueIp()) });
        expect(before.status, before.text).toBe(201);
        const deviceToken = before.body.device_token as string;
        expect(deviceToken, `no device_token in the login response: ${before.text}`).toMatch(/^[A-Za-z0-9_-]{43}$/);

        // Ten failures (SURGE_FAILURES_PER_MINUTE) from ten sources on ten accounts with ten passwords: no spray, a surge.
        for (let i = 0; i < 10; i++) {
          const r = await rest(s.baseUrl, "POST", "/login", { body: { email: uniqueEmail("nobody"), password: distinctPassword() }, headers: xff(uniqueIp()) });
          expectRestError(r, 401, "INVALID_CREDENTIALS");
        }
        const surge = await auditRows(s, "failure_surge");
        expect(surge.map((e) => e.details)).toEqual([{ failures_last_minute: 10, threshold: 10, mode_seconds: 900 }]);
        expect(await auditRows(s, "spray_detected")).toEqual([]);
        const [alert] = await hooks.waitFor("failure_surge");
        expect(alert!.verified).toBe(true);
        expect(alert!.data).toEqual({ failures_last_minute: 10, threshold: 10, mode_seconds: 900 });

        const loginWith = (captcha_token?: string) =>
          rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD, ...(captcha_token === undefined ? {} : { captcha_token }) }, headers: xff(uniqueIp()) });
        expectRestError(await loginWith(), 403, "CAPTCHA_REQUIRED");
        // The known device is not asked; another device of the same account is, and so
        // is a device id the service did not issue (a guessed or invented one).
        const known = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD, device_id: deviceToken }, headers: xff(uniqueIp()) });
        expect(known.status, known.text).toBe(201);
        expect(known.body.device_token).toBe(deviceToken);
        for (const device_id of [`${deviceToken.slice(0, 42)}${deviceToken.endsWith("A") ? "B" : "A"}`, `device-${process.pid}-${Date.now()}`]) {
          expectRestError(
            await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD, device_id }, headers: xff(uniqueIp()) }),
            403,
            "CAPTCHA_REQUIRED",
          );
        }
        await expectGrpcError(g.login({ email, password: STRONG_PASSWORD }, xff(uniqueIp())), PERMISSION_DENIED, "CAPTCHA_REQUIRED");
        expectRestError(await loginWith("forged-token"), 403, "CAPTCHA_INVALID");
        const ok = await loginWith("pass-token-6");
        expect(ok.status, ok.text).toBe(201);
        // Tokens are good once (the provider says timeout-or-duplicate).
        expectRestError(await loginWith("pass-token-6"), 403, "CAPTCHA_INVALID");
        await expect(g.login({ email, password: STRONG_PASSWORD, captchaToken: "pass-token-7" }, xff(uniqueIp()))).resolves.toMatchObject({
          accessToken: expect.any(String),
        });
        // A wrong password with a solved CAPTCHA is still just a wrong password.
        expectRestError(
          await rest(s.baseUrl, "POST", "/login", { body: { email, password: distinctPassword(), captcha_token: "pass-token-8" }, headers: xff(uniqueIp()) }),
          401,
          "INVALID_CREDENTIALS",
        );
        // One surge, one alert.
        expect(await auditRows(s, "failure_surge")).toHaveLength(1);
        expect(hooks.ofType("failure_surge")).toHaveLength(1);
      });
    });
  }

  describe.skipIf(backend.skip)(`CAPTCHA demanded by the risk score (${backend.name})`, () => {
    let s: TestServer;
    let sv: Awaited<ReturnType<typeof startSiteverify>>;
    beforeAll(async () => {
      sv = await startSiteverify();
      s = await startTestServer(backend.name, {
        // A new device on a new network scores 45 (40 + 5): require_captcha with this threshold.
        env: { CAPTCHA_PROVIDER: "turnstile", CAPTCHA_SECRET, CAPTCHA_VERIFY_URL: sv.url, TRUSTED_PROXIES: "127.0.0.1", RISK_REQUIRE_CAPTCHA_AT: "45" },
      });
    });
    afterAll(async () => {
      await s?.destroy();
      await sv?.close();
    });

    const login = (email: string, extra: { captcha_token?: string; device_id?: string } = {}) =>
      rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD, ...extra }, headers: xff(uniqueIp()) });

    it("a risky login must solve a CAPTCHA, verified once although admission and risk check both see it; a spent token is refused", async () => {
      const email = uniqueEmail();
      const reg = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD }, captcha_token: "pass-reg-1" }, headers: xff(uniqueIp()) });
      expect(reg.status, reg.text).toBe(201);
      const userId = reg.body.user.user_id as string;
      const decisions = async () => (await auditRows(s, "risk_decision")).filter((e) => e.userId === userId);

      // The first login has nothing to compare with: no CAPTCHA.
      const first = await login(email);
      expect(first.status, first.text).toBe(201);
      const deviceToken = first.body.device_token as string;
      expect(deviceToken, `no device_token in the login response: ${first.text}`).toMatch(/^[A-Za-z0-9_-]{43}$/);

      // Another device on another network: score 45, a CAPTCHA is due.
      expectRestError(await login(email), 403, "CAPTCHA_REQUIRED");
      expect((await auditRows(s, "captcha")).at(-1)).toMatchObject({ outcome: "failure", reason: "CAPTCHA_REQUIRED", details: { context: "login" } });
      const solved = await login(email, { captcha_token: "pass-risk-1" });
      expect(solved.status, solved.text).toBe(201);
      // Checked at admission (a token sent is always checked), not a second time by the risk step:
      // a provider answers a second check of one token with timeout-or-duplicate.
      expect(sv.requests.filter((r) => r.response === "pass-risk-1")).toHaveLength(1);
      // (The refused attempt before stayed counted: one recent failure, 5 more.)
      expect((await decisions()).at(-1)).toMatchObject({
        outcome: "success",
        reason: "allow",
        details: { decision: "require_captcha", reasons: ["new_device", "new_network", "recent_failures"], score: 50, mfa_enabled: false },
      });

      // The known device on yet another network scores 5: no CAPTCHA.
      const known = await login(email, { device_id: deviceToken });
      expect(known.status, known.text).toBe(201);
      expect((await decisions()).at(-1)!.details).toMatchObject({ decision: "allow", reasons: ["new_network"], score: 5 });

      // The spent token does not solve the next one.
      expectRestError(await login(email, { captcha_token: "pass-risk-1" }), 403, "CAPTCHA_INVALID");
      const refused = (await auditRows(s, "captcha")).at(-1);
      expect(refused).toMatchObject({ outcome: "failure", reason: "CAPTCHA_INVALID", details: { context: "login", error_codes: ["timeout-or-duplicate"] } });
    });
  });

  describe.skipIf(backend.skip)(`CAPTCHA fail-open (${backend.name})`, () => {
    let s: TestServer;
    let sv: Awaited<ReturnType<typeof startSiteverify>>;
    beforeAll(async () => {
      sv = await startSiteverify();
      s = await startTestServer(backend.name, {
        env: { CAPTCHA_PROVIDER: "turnstile", CAPTCHA_SECRET, CAPTCHA_VERIFY_URL: sv.url, CAPTCHA_FAIL_OPEN: "true", TRUSTED_PROXIES: "127.0.0.1" },
      });
    });
    afterAll(async () => {
      await s?.destroy();
      await sv?.close();
    });

    it("with the provider down a token is let through (and audited); a missing or refused token is still refused", async () => {
      const ip = uniqueIp();
      sv.down();
      try {
        const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: uniqueEmail(), password: STRONG_PASSWORD }, captcha_token: "any" }, headers: xff(ip) });
        expect(r.status, r.text).toBe(201);
        expectRestError(await rest(s.baseUrl, "POST", "/register", { body: { account: { email: uniqueEmail(), password: STRONG_PASSWORD } }, headers: xff(uniqueIp()) }), 403, "CAPTCHA_REQUIRED");
      } finally {
        sv.up();
      }
      expect((await auditRows(s, "captcha", { ip })).map((e) => [e.outcome, e.reason])).toEqual([["success", "provider_unavailable_fail_open"]]);
      const refused = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: uniqueEmail(), password: STRONG_PASSWORD }, captcha_token: "forged" }, headers: xff(uniqueIp()) });
      expectRestError(refused, 403, "CAPTCHA_INVALID");
      expect(rateLimitedInfo(refused.body).reason).toBe("CAPTCHA_INVALID");
    });
  });
}
