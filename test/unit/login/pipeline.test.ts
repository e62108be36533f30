import { describe, expect, it } from "vitest";
import type { Admission } from "../../../src/abuse/login-defence.js";
import type { TrailEvent } from "../../../src/audit/trail.js";
import type { FirstFactorResult, LoginRequestExtras } from "../../../src/login/attempt.js";
import { createLoginPipeline } from "../../../src/login/pipeline.js";
import { createSecondFactorCheck, mfaCodeInvalid, type SecondFactors } from "../../../src/login/second-factor.js";
import type { SecurityAlert } from "../../../src/notify/ports.js";
import type { RiskContext } from "../../../src/risk/assessor.js";
import type { RiskDecision } from "../../../src/risk/engine.js";
import { DomainError } from "../../../src/shared/errors.js";
import { expectRejected } from "../../support/thrown.js";

// The login decision table, case by case, with fakes around the pipeline:
// which error or session each combination of risk decision, second factor,
// trusted device, role and CAPTCHA gives, and what the attempt leaves behind
// (brute-force count cleared or failed, risk_decision row, device history,
// alerts).

const NOW = new Date("2026-06-01T12:00:00Z");
const DAY = 86_400_000;
const TRUSTED_TTL = 30 * DAY;
const GOOD_TOTP = "123456";
const GOOD_RECOVERY = "abcd-efgh";
const KNOWN_DEVICE = "k".repeat(43);

interface Case {
  decision?: RiskDecision;
  role?: "customer" | "admin";
  mfaOn?: boolean;
  /** The device passed MFA this long ago (undefined: a device never seen). */
  deviceMfaAgoMs?: number;
  firstLogin?: boolean;
  extras?: Partial<LoginRequestExtras>;
  captcha?: "not_configured" | "passed" | "refused";
  captchaAtAdmission?: boolean;
  /** REQUIRE_EMAIL_VERIFICATION, and whether the first factor found the address verified. */
  requireVerified?: boolean;
  emailVerified?: boolean;
  /** The first factor's amr (default ["pwd"]). */
  amr?: string[];
  /** The first factor has a single-use proof to spend (an e-mail link or code). */
  spendable?: boolean;
}

function harness(c: Case = {}) {
  const trail: TrailEvent[] = [];
  const alerts: SecurityAlert[] = [];
  const defence: string[] = [];
  const remembered: { mfa: boolean; deviceHash?: Uint8Array | undefined }[] = [];
  const started: { role: string; amr: readonly string[]; emailVerified?: boolean | undefined }[] = [];
  const challenges: string[] = [];
  const challengeAmr: (readonly string[] | undefined)[] = [];
  // What happened, in order: when the proof was spent against the challenge and the session.
  const events: string[] = [];
  const knownDevice = c.deviceMfaAgoMs !== undefined;
  const risk: RiskContext = {
    userId: "u1",
    deviceHash: knownDevice ? new Uint8Array([1]) : undefined,
    history: {
      hasHistory: !c.firstLogin,
      device: knownDevice ? { mfaAt: new Date(NOW.getTime() - c.deviceMfaAgoMs!) } : undefined,
      networkKnown: true,
      countries: [],
    },
    signals: { newDevice: !knownDevice, newNetwork: false, newCountry: false, recentFailures: 0, flaggedSource: false, firstLogin: c.firstLogin ?? false },
    assessment: { score: 0, decision: c.decision ?? "allow", reasons: knownDevice ? [] : ["new_device"] },
  };
  const factors: SecondFactors = {
    enabled: async () => c.mfaOn ?? false,
    methods: [
      {
        name: "totp",
        amr: ["otp"],
        presented: (i) => (i.mfaCode ?? "") !== "",
        verify: async (_u, i) => {
          if (i.mfaCode !== GOOD_TOTP) throw mfaCodeInvalid();
        },
      },
      {
        name: "recovery_code",
        amr: ["kba"],
        presented: (i) => (i.recoveryCode ?? "") !== "",
        verify: async (_u, i) => {
          if (i.recoveryCode !== GOOD_RECOVERY) throw mfaCodeInvalid();
        },
      },
    ],
  };
  const defenceFake = {
    succeeded: async () => void defence.push("succeeded"),
    failed: async (_a: Admission, input: { factor: string }) => void defence.push(`failed:${input.factor}`),
    challengeCaptcha: async () => {
      if (c.captcha === "refused") throw new DomainError("invalid_argument", "CAPTCHA_INVALID", "captcha refused");
      return c.captcha === "passed";
    },
  };
  const pipeline = createLoginPipeline({
    risk: {
      assess: async () => risk,
      newDeviceToken: () => ({ token: "n".repeat(43), hash: new Uint8Array([2]) }),
      remember: async (input) => void remembered.push(input),
    },
    factors,
    checkSecondFactor: createSecondFactorCheck({ factors, defence: defenceFake }),
    challenges: {
      issue: async (userId, _device, firstFactorAmr) => {
        challenges.push(userId);
        challengeAmr.push(firstFactorAmr);
        events.push("challenge");
        return { token: "challenge-token", expiresAt: new Date(NOW.getTime() + 300_000) };
      },
    },
    defence: defenceFake,
    sessions: {
      start: async (userId, role, auth) => {
        started.push({ role, amr: auth.amr, ...(auth.emailVerified !== undefined ? { emailVerified: auth.emailVerified } : {}) });
        events.push("session");
        return {
          accessToken: "at",
          accessTokenExpiresAt: NOW,
          refreshToken: "rt",
          refreshTokenExpiresAt: NOW,
          sessionId: "s1",
          userId,
        };
      },
    },
    alerts: { notify: (a) => void alerts.push(a) },
    trail: { record: async (e) => void trail.push(e) },
    clock: { now: () => NOW },
    trustedDeviceTtlMs: TRUSTED_TTL,
    requireVerifiedEmail: c.requireVerified ?? false,
  });
  const first: FirstFactorResult = {
    userId: "u1",
    role: c.role ?? "customer",
    admission: { accountKey: new Uint8Array(32), failuresBefore: 0, captchaPassed: c.captchaAtAdmission ?? false },
    amr: c.amr ?? ["pwd"],
    ...(c.emailVerified !== undefined ? { emailVerified: c.emailVerified } : {}),
    ...(c.spendable ? { spend: async () => void events.push("spent") } : {}),
  };
  const extras: LoginRequestExtras = {
    secondFactor: {},
    ...(knownDevice ? { deviceToken: KNOWN_DEVICE } : {}),
    ...c.extras,
  };
  const run = () => pipeline.complete(first, extras, { client: { ip: "203.0.113.5" } });
  const decisions = () => trail.filter((e) => e.type === "risk_decision").map((e) => `${e.outcome}:${e.reason}`);
  return { run, pipeline, trail, decisions, alerts, defence, remembered, started, challenges, challengeAmr, events };
}

describe("login pipeline: the decision table", () => {
  it("allow, no second factor: a session with amr pwd, the count cleared, the device remembered without MFA", async () => {
    const h = harness();
    const pair = await h.run();
    expect(pair.sessionId).toBe("s1");
    expect(h.started).toEqual([{ role: "customer", amr: ["pwd"] }]);
    expect(h.decisions()).toEqual(["success:allow"]);
    expect(h.defence).toEqual(["succeeded"]);
    expect(h.remembered).toMatchObject([{ mfa: false }]);
    // A device never seen gets a new token.
    expect(pair.deviceToken).toBe("n".repeat(43));
  });

  it("second factor on, none sent, unknown device: MFA_REQUIRED with a challenge; nothing cleared, no session", async () => {
    const h = harness({ mfaOn: true });
    const err = await expectRejected(DomainError, h.run());
    expect(err.reason).toBe("MFA_REQUIRED");
    expect(err.metadata).toMatchObject({ mfa_challenge: "challenge-token", methods: "totp,recovery_code", expires_in_seconds: "300" });
    expect(h.challenges).toEqual(["u1"]);
    expect(h.decisions()).toEqual(["success:mfa_required"]);
    expect(h.trail.some((e) => e.type === "mfa_challenge" && e.outcome === "success")).toBe(true);
    // The attempt stays counted until the second step succeeds.
    expect(h.defence).toEqual([]);
    expect(h.started).toEqual([]);
  });

  it("second factor on, a device that passed MFA within the TTL: no second factor asked", async () => {
    const h = harness({ mfaOn: true, deviceMfaAgoMs: 10 * DAY });
    const pair = await h.run();
    expect(h.started).toEqual([{ role: "customer", amr: ["pwd"] }]);
    expect(h.decisions()).toEqual(["success:allow"]);
    // A known device keeps its token.
    expect(pair.deviceToken).toBe(KNOWN_DEVICE);
  });

  it("second factor on, the device's MFA older than the TTL: asked again", async () => {
    const err = await expectRejected(DomainError, harness({ mfaOn: true, deviceMfaAgoMs: 31 * DAY }).run());
    expect(err.reason).toBe("MFA_REQUIRED");
  });

  it("administrators never skip the second factor, even on a trusted device", async () => {
    const err = await expectRejected(DomainError, harness({ mfaOn: true, role: "admin", deviceMfaAgoMs: DAY }).run());
    expect(err.reason).toBe("MFA_REQUIRED");
  });

  it("a risk step-up overrides a trusted device", async () => {
    const err = await expectRejected(DomainError, harness({ mfaOn: true, deviceMfaAgoMs: DAY, decision: "require_mfa" }).run());
    expect(err.reason).toBe("MFA_REQUIRED");
  });

  it("a right TOTP code in the same request: amr pwd otp mfa, decision mfa_passed, the device remembered with MFA", async () => {
    const h = harness({ mfaOn: true, extras: { secondFactor: { mfaCode: GOOD_TOTP } } });
    await h.run();
    expect(h.started).toEqual([{ role: "customer", amr: ["pwd", "otp", "mfa"] }]);
    expect(h.decisions()).toEqual(["success:mfa_passed"]);
    expect(h.remembered).toMatchObject([{ mfa: true }]);
  });

  it("a recovery code: amr pwd kba mfa", async () => {
    const h = harness({ mfaOn: true, extras: { secondFactor: { recoveryCode: GOOD_RECOVERY } } });
    await h.run();
    expect(h.started).toEqual([{ role: "customer", amr: ["pwd", "kba", "mfa"] }]);
  });

  it("a TOTP code is judged alone: a wrong one fails even beside a right recovery code, and counts as a failed login", async () => {
    const h = harness({ mfaOn: true, extras: { secondFactor: { mfaCode: "000000", recoveryCode: GOOD_RECOVERY } } });
    const err = await expectRejected(DomainError, h.run());
    expect(err.reason).toBe("MFA_CODE_INVALID");
    expect(h.defence).toEqual(["failed:mfa"]);
    expect(h.started).toEqual([]);
  });

  it("an administrator without a second factor: MFA_ENROLLMENT_REQUIRED; the right password clears the count", async () => {
    const h = harness({ role: "admin" });
    const err = await expectRejected(DomainError, h.run());
    expect([err.kind, err.reason]).toEqual(["permission_denied", "MFA_ENROLLMENT_REQUIRED"]);
    expect(h.defence).toEqual(["succeeded"]);
    expect(h.decisions()).toEqual(["failure:MFA_ENROLLMENT_REQUIRED"]);
    expect(h.started).toEqual([]);
  });

  it("deny: the wrong-password answer, counted as a failed password", async () => {
    const h = harness({ decision: "deny", mfaOn: true, extras: { secondFactor: { mfaCode: GOOD_TOTP } } });
    const err = await expectRejected(DomainError, h.run());
    expect(err.reason).toBe("INVALID_CREDENTIALS");
    expect(h.defence).toEqual(["failed:password"]);
    expect(h.decisions()).toEqual(["failure:deny"]);
    expect(h.started).toEqual([]);
  });

  it("require_captcha without a CAPTCHA provider and no second factor: allowed, recorded as allow_no_second_factor", async () => {
    const h = harness({ decision: "require_captcha", captcha: "not_configured" });
    await h.run();
    expect(h.decisions()).toEqual(["success:allow_no_second_factor"]);
  });

  it("require_captcha without a CAPTCHA provider and a second factor: the second factor is the step-up", async () => {
    const err = await expectRejected(DomainError, harness({ decision: "require_captcha", captcha: "not_configured", mfaOn: true, deviceMfaAgoMs: DAY }).run());
    expect(err.reason).toBe("MFA_REQUIRED");
  });

  it("require_captcha solved now, or already at admission: no step-up, so a trusted device skips MFA", async () => {
    for (const c of [{ captcha: "passed" as const }, { captcha: "refused" as const, captchaAtAdmission: true }]) {
      const h = harness({ decision: "require_captcha", mfaOn: true, deviceMfaAgoMs: DAY, ...c });
      await h.run();
      expect(h.decisions()).toEqual(["success:allow"]);
    }
  });

  it("require_captcha refused: the CAPTCHA's error, recorded as the decision's failure", async () => {
    const h = harness({ decision: "require_captcha", captcha: "refused" });
    const err = await expectRejected(DomainError, h.run());
    expect(err.reason).toBe("CAPTCHA_INVALID");
    expect(h.decisions()).toEqual(["failure:CAPTCHA_INVALID"]);
    expect(h.started).toEqual([]);
  });

  it("a new device of an account that logged in before is alerted; the first login ever is not", async () => {
    const seen = harness();
    await seen.run();
    expect(seen.alerts).toMatchObject([{ type: "new_device_login", userId: "u1", details: { ip: "203.0.113.5", reasons: ["new_device"] } }]);
    const first = harness({ firstLogin: true });
    await first.run();
    expect(first.alerts).toEqual([]);
  });

  it("REQUIRE_EMAIL_VERIFICATION: an unverified address gets EMAIL_NOT_VERIFIED before anything is decided or cleared", async () => {
    const h = harness({ requireVerified: true, emailVerified: false, mfaOn: true });
    const err = await expectRejected(DomainError, h.run());
    expect(err.reason).toBe("EMAIL_NOT_VERIFIED");
    expect(err.kind).toBe("permission_denied");
    expect(h.decisions()).toEqual([]);
    expect(h.defence).toEqual([]);
    expect(h.challenges).toEqual([]);
    expect(h.started).toEqual([]);
  });

  it("REQUIRE_EMAIL_VERIFICATION: a verified address logs in, and the session says so", async () => {
    const h = harness({ requireVerified: true, emailVerified: true });
    await h.run();
    expect(h.started).toEqual([{ role: "customer", amr: ["pwd"], emailVerified: true }]);
  });

  it("without REQUIRE_EMAIL_VERIFICATION an unverified address logs in (email_verified false in its tokens)", async () => {
    const h = harness({ emailVerified: false });
    await h.run();
    expect(h.started).toEqual([{ role: "customer", amr: ["pwd"], emailVerified: false }]);
  });

  it("an e-mail first factor with MFA: the challenge remembers the first factor's amr, and a one-shot session combines both", async () => {
    const twoStep = harness({ amr: ["email"], mfaOn: true });
    expect((await expectRejected(DomainError, twoStep.run())).reason).toBe("MFA_REQUIRED");
    expect(twoStep.challengeAmr).toEqual([["email"]]);
    const oneShot = harness({ amr: ["email"], mfaOn: true, extras: { secondFactor: { mfaCode: GOOD_TOTP } } });
    await oneShot.run();
    expect(oneShot.started).toEqual([{ role: "customer", amr: ["email", "otp", "mfa"] }]);
  });

  describe("a first factor's single-use proof (an e-mail link or code) is spent when the login is decided", () => {
    it("before the session of a successful login, once", async () => {
      const h = harness({ spendable: true, amr: ["email"] });
      await h.run();
      expect(h.events).toEqual(["spent", "session"]);
    });

    it("before the MFA challenge that stands for it", async () => {
      const h = harness({ spendable: true, amr: ["email"], mfaOn: true });
      expect((await expectRejected(DomainError, h.run())).reason).toBe("MFA_REQUIRED");
      expect(h.events).toEqual(["spent", "challenge"]);
    });

    it("never on a refusal: a wrong second factor, a refused CAPTCHA, a denial, an unverified address", async () => {
      const refusals: Case[] = [
        { mfaOn: true, extras: { secondFactor: { mfaCode: "000000" } } },
        { decision: "require_captcha", captcha: "refused" },
        { decision: "deny" },
        { requireVerified: true, emailVerified: false },
      ];
      for (const c of refusals) {
        const h = harness({ ...c, spendable: true, amr: ["email"] });
        await expectRejected(DomainError, h.run());
        expect(h.events, JSON.stringify(c)).toEqual([]);
      }
    });
  });
});
