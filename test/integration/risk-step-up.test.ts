import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { createStaticGeoLocator } from "../../src/risk/geo.js";
import { auditOf, type AuditRow } from "../support/audit.js";
import { grpcJsClient, rest } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorInfo, grpcFailure } from "../support/error-info.js";
import { authClaims, completeMfaRest, controlledClock, deviceTokenOf, expectMfaRequired, loginRest, MINUTE, STEP } from "../support/mfa.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { enrolTotp, registerUser, type SeededUser } from "../support/users.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";

// Risk-based step-up at login: a device that passed MFA skips it from a
// familiar place, a new device or an impossible journey asks for the second
// factor again, and an account without MFA is let in but audited and
// alerted. A device is known only by the device_token a login returned to
// it (sent back as device_id); a client-chosen device_id is a new device.
// The client's address comes from X-Forwarded-For (the test process is the
// trusted proxy) and a fixed GeoIP table places it.

const PARIS = "198.51.100.7";
const PARIS_OTHER_HOST = "198.51.100.42";
const SYDNEY = "203.0.113.9";
const HOUR = 60 * MINUTE;

const geo = createStaticGeoLocator([
  { cidr: "198.51.100.0/24", point: { country: "FR", lat: 48.85, lon: 2.35 } },
  { cidr: "203.0.113.0/24", point: { country: "AU", lat: -33.87, lon: 151.21 } },
]);

const from = (ip: string) => ({ "x-forwarded-for": ip });
let deviceCounter = 0;
/** A client-chosen device id: the service never issued it, so it is always a new device. */
const newDeviceId = () => `device-${process.pid}-${++deviceCounter}-${Math.random().toString(36).slice(2, 8)}`;

/** The last risk decision audited for a user. */
async function lastDecision(s: TestServer, userId: string): Promise<AuditRow> {
  const rows = await auditOf(s, userId, "risk_decision");
  expect(rows.length).toBeGreaterThan(0);
  return rows.at(-1)!;
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`risk step-up (${backend.name})`, () => {
    const c = controlledClock();
    let s: TestServer;
    let hooks: Awaited<ReturnType<typeof startWebhookReceiver>>;

    beforeAll(async () => {
      hooks = await startWebhookReceiver();
      s = await startTestServer(backend.name, {
        env: { TRUSTED_PROXIES: "127.0.0.1", ...hooks.env },
        overrides: { clock: c.clock, geo },
      });
    });
    afterAll(async () => {
      await s?.destroy();
      await hooks?.close();
    });

    const creds = (u: SeededUser) => ({ email: u.email, password: u.password });

    /**
     * A user who logged in once from Paris (the first login: nothing to
     * compare with) and got device token D, turned TOTP on, and passed MFA
     * with D from Paris, which makes D a device that skips the code from there.
     */
    async function userWithTrustedDevice() {
      const user = await registerUser(s);
      const first = await loginRest(s, creds(user), from(PARIS));
      const device = deviceTokenOf(first);
      expect((await lastDecision(s, user.userId)).details).toMatchObject({ reasons: ["first_login"], score: 0, decision: "allow" });
      const { secret } = await enrolTotp(s, first.body.access_token, user.password, c.now());
      c.advance(STEP);
      // Known device, but it never passed MFA: the code is needed once.
      expectMfaRequired(await loginRest(s, { ...creds(user), device_id: device }, from(PARIS)));
      expect((await lastDecision(s, user.userId)).details).toMatchObject({ reasons: [], score: 0, decision: "allow" });
      const withCode = await loginRest(s, { ...creds(user), device_id: device, mfa_code: await c.code(secret) }, from(PARIS));
      // A known device keeps its token.
      expect(deviceTokenOf(withCode)).toBe(device);
      expect(await lastDecision(s, user.userId)).toMatchObject({ outcome: "success", reason: "mfa_passed" });
      return { ...user, device, secret, accessToken: withCode.body.access_token as string };
    }

    describe("REST", () => {
      it("the device that passed MFA logs in from the same place without a code (allow, amr pwd); the session shows the forwarded address", async () => {
        const u = await userWithTrustedDevice();
        c.advance(MINUTE);
        const r = await loginRest(s, { ...creds(u), device_id: u.device }, from(PARIS_OTHER_HOST));
        expect(deviceTokenOf(r)).toBe(u.device);
        expect(authClaims(r.body.access_token)).toMatchObject({ amr: ["pwd"], acr: "aal1" });
        const decision = await lastDecision(s, u.userId);
        expect(decision).toMatchObject({ outcome: "success", reason: "allow", ip: PARIS_OTHER_HOST });
        expect(decision.details).toEqual({ score: 0, decision: "allow", reasons: [], mfa_enabled: true, country: "FR" });
        const listed = await rest(s.baseUrl, "GET", "/user/sessions", { token: r.body.access_token });
        expect(listed.body.sessions[0]).toMatchObject({ session_id: r.body.session_id, ip: PARIS_OTHER_HOST, current: true });
      });

      it("a device id the service did not issue, or none, from the same place: MFA_REQUIRED (new_device, score 40); once it passes MFA its new token is trusted too", async () => {
        const u = await userWithTrustedDevice();
        c.advance(MINUTE);
        const other = newDeviceId();
        const challenge = expectMfaRequired(await loginRest(s, { ...creds(u), device_id: other }, from(PARIS)));
        const decision = await lastDecision(s, u.userId);
        expect(decision).toMatchObject({ outcome: "success", reason: "mfa_required" });
        expect(decision.details).toEqual({ score: 40, decision: "require_mfa", reasons: ["new_device"], mfa_enabled: true, country: "FR" });
        expectMfaRequired(await loginRest(s, creds(u), from(PARIS)));
        // The unfinished login before stays counted as a failed attempt until
        // a second step succeeds, so it adds to the score (5 per failure).
        expect((await lastDecision(s, u.userId)).details).toMatchObject({ reasons: ["new_device", "recent_failures"], score: 45 });

        // The two-step login gives the device a token of its own, trusted from now on.
        c.advance(STEP);
        const done = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }, from(PARIS));
        const issued = deviceTokenOf(done);
        expect(issued).not.toBe(u.device);
        expect(issued).not.toBe(other);
        c.advance(MINUTE);
        const again = await loginRest(s, { ...creds(u), device_id: issued }, from(PARIS));
        expect(deviceTokenOf(again)).toBe(issued);
        expect(authClaims(again.body.access_token).amr).toEqual(["pwd"]);
        expect(await lastDecision(s, u.userId)).toMatchObject({ reason: "allow" });
        // The id the client chose is still nobody's device.
        expectMfaRequired(await loginRest(s, { ...creds(u), device_id: other }, from(PARIS)));
        expect((await lastDecision(s, u.userId)).details).toMatchObject({ reasons: ["new_device"], score: 40, decision: "require_mfa" });
      });

      it("the trusted device from Sydney ten minutes after Paris: MFA_REQUIRED (impossible travel, score 60); the code lets it in", async () => {
        const u = await userWithTrustedDevice();
        c.advance(10 * MINUTE);
        expectMfaRequired(await loginRest(s, { ...creds(u), device_id: u.device }, from(SYDNEY)));
        const decision = await lastDecision(s, u.userId);
        expect(decision).toMatchObject({ outcome: "success", reason: "mfa_required", ip: SYDNEY });
        expect(decision.details).toMatchObject({
          score: 60,
          decision: "require_mfa",
          reasons: ["new_network", "new_country", "impossible_travel"],
          mfa_enabled: true,
          country: "AU",
        });
        // About 16 960 km in 10 minutes.
        expect(decision.details!.travel_kmh).toBeGreaterThan(90_000);
        expect(decision.details!.travel_kmh).toBeLessThan(110_000);

        const ok = await loginRest(s, { ...creds(u), device_id: u.device, mfa_code: await c.code(u.secret) }, from(SYDNEY));
        expect(ok.status, ok.text).toBe(201);
        expect(authClaims(ok.body.access_token).amr).toEqual(["pwd", "otp", "mfa"]);
        expect(await lastDecision(s, u.userId)).toMatchObject({ reason: "mfa_passed" });
      });

      it("the same journey a day later is plausible: the trusted device gets in without a code (new network and country score 20)", async () => {
        const u = await userWithTrustedDevice();
        c.advance(24 * HOUR);
        const r = await loginRest(s, { ...creds(u), device_id: u.device }, from(SYDNEY));
        expect(deviceTokenOf(r)).toBe(u.device);
        expect(authClaims(r.body.access_token).amr).toEqual(["pwd"]);
        expect((await lastDecision(s, u.userId)).details).toEqual({
          score: 20,
          decision: "allow",
          reasons: ["new_network", "new_country"],
          mfa_enabled: true,
          country: "AU",
        });
      });

      it("without X-Forwarded-For from a trusted proxy there is no place: the trusted device is simply allowed", async () => {
        const u = await userWithTrustedDevice();
        c.advance(MINUTE);
        // Straight from 127.0.0.1, which the table does not place (no travel, no country).
        const r = await loginRest(s, { ...creds(u), device_id: u.device });
        expect(deviceTokenOf(r)).toBe(u.device);
        const decision = await lastDecision(s, u.userId);
        expect(decision).toMatchObject({ ip: "127.0.0.1" });
        expect(decision.details).toMatchObject({ reasons: ["new_network"], score: 5, decision: "allow" });
        expect(decision.details!.country).toBeUndefined();
      });

      it("a user without MFA on a new device is let in: audited allow_no_second_factor and alerted (new_device_login webhook)", async () => {
        const user = await registerUser(s);
        const first = await loginRest(s, creds(user), from(PARIS));
        const home = deviceTokenOf(first);
        c.advance(MINUTE);
        const known = await loginRest(s, { ...creds(user), device_id: home }, from(PARIS));
        expect(deviceTokenOf(known)).toBe(home);
        expect(await lastDecision(s, user.userId)).toMatchObject({ reason: "allow" });

        c.advance(MINUTE);
        const fresh = await loginRest(s, { ...creds(user), device_id: newDeviceId() }, from(PARIS_OTHER_HOST));
        // A new device gets a new token (not the id it sent).
        expect(deviceTokenOf(fresh)).not.toBe(home);
        expect(authClaims(fresh.body.access_token)).toMatchObject({ amr: ["pwd"], acr: "aal1" });
        const decision = await lastDecision(s, user.userId);
        expect(decision).toMatchObject({ outcome: "success", reason: "allow_no_second_factor" });
        expect(decision.details).toEqual({ score: 40, decision: "require_mfa", reasons: ["new_device"], mfa_enabled: false, country: "FR" });

        const [alert] = await hooks.waitFor("new_device_login", user.userId);
        expect(alert).toMatchObject({ verified: true, data: { user_id: user.userId, ip: PARIS_OTHER_HOST, reasons: ["new_device"] } });
        // The first login and the known device sent none: exactly one, still, a moment later.
        await new Promise((r) => setTimeout(r, 200));
        expect(hooks.ofType("new_device_login", user.userId)).toHaveLength(1);
      });
    });

    describe("new_device_login alerts of MFA users", () => {
      it("one-shot login with a code from a new device: alerted", async () => {
        const u = await userWithTrustedDevice();
        expect(hooks.ofType("new_device_login", u.userId)).toEqual([]);
        c.advance(MINUTE);
        const r = await loginRest(s, { ...creds(u), device_id: newDeviceId(), mfa_code: await c.code(u.secret) }, from(PARIS));
        expect(r.status, r.text).toBe(201);
        const [alert] = await hooks.waitFor("new_device_login", u.userId);
        expect(alert).toMatchObject({ verified: true, data: { ip: PARIS, reasons: ["new_device"] } });
      });

      it("two-step login (MFA_REQUIRED, then CompleteMfaLogin) from a new device: alerted as well", async () => {
        const u = await userWithTrustedDevice();
        c.advance(MINUTE);
        const challenge = expectMfaRequired(await loginRest(s, { ...creds(u), device_id: newDeviceId() }, from(PARIS)));
        const done = await completeMfaRest(s, { mfa_challenge: challenge, mfa_code: await c.code(u.secret) }, from(PARIS));
        expect(done.status, done.text).toBe(201);
        const [alert] = await hooks.waitFor("new_device_login", u.userId, { timeoutMs: 1_000 });
        expect(alert).toMatchObject({ verified: true, data: { ip: PARIS } });
      });
    });

    describe("gRPC (grpc-js, x-forwarded-for metadata)", () => {
      for (const port of ["main", "internal"] as const) {
        it(`${port} port: known device allowed, new device and impossible travel step up with a challenge; CompleteMfaLogin`, async () => {
          const client = grpcJsClient(IdentityService, port === "main" ? s.port : s.grpcPort);
          try {
            const u = await userWithTrustedDevice();
            c.advance(MINUTE);
            const ok = await client.login({ ...creds(u), deviceId: u.device }, from(PARIS));
            expect(ok.deviceToken).toBe(u.device);
            expect(authClaims(ok.accessToken).amr).toEqual(["pwd"]);
            expect(await lastDecision(s, u.userId)).toMatchObject({ reason: "allow", ip: PARIS });

            const err = await grpcFailure(client.login({ ...creds(u), deviceId: newDeviceId() }, from(PARIS)));
            const info = errorInfo(err);
            expect({ code: err.code, reason: info.reason }).toEqual({ code: grpc.status.UNAUTHENTICATED, reason: "MFA_REQUIRED" });
            expect(info.metadata).toMatchObject({ mfa_challenge: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), methods: "totp,recovery_code" });
            expect((await lastDecision(s, u.userId)).details).toMatchObject({ reasons: ["new_device"], score: 40, decision: "require_mfa" });
            const done = await client.completeMfaLogin({ mfaChallenge: info.metadata.mfa_challenge!, mfaCode: await c.code(u.secret) }, from(PARIS));
            expect(done.userId).toBe(u.userId);
            expect(authClaims(done.accessToken)).toMatchObject({ amr: ["pwd", "otp", "mfa"], acr: "aal2" });
            expect(done.deviceToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
            expect(done.deviceToken).not.toBe(u.device);

            c.advance(10 * MINUTE);
            const travel = await grpcFailure(client.login({ ...creds(u), deviceId: u.device }, from(SYDNEY)));
            expect({ code: travel.code, reason: errorInfo(travel).reason }).toEqual({ code: grpc.status.UNAUTHENTICATED, reason: "MFA_REQUIRED" });
            const decision = await lastDecision(s, u.userId);
            expect(decision).toMatchObject({ reason: "mfa_required", ip: SYDNEY });
            expect(decision.details).toMatchObject({ reasons: ["new_network", "new_country", "impossible_travel"], score: 60, country: "AU" });
            const withCode = await client.login({ ...creds(u), deviceId: u.device, mfaCode: await c.code(u.secret) }, from(SYDNEY));
            expect(authClaims(withCode.accessToken).amr).toEqual(["pwd", "otp", "mfa"]);
            expect(withCode.deviceToken).toBe(u.device);
            expect(await lastDecision(s, u.userId)).toMatchObject({ reason: "mfa_passed", ip: SYDNEY });
          } finally {
            client.close();
          }
        });
      }
    });
  });
}
