import { describe, expect, it } from "vitest";
import { assessRisk, defaultRiskThresholds, travel, type RiskSignals, type RiskThresholds } from "../../../src/risk/engine.js";
import type { GeoPoint } from "../../../src/risk/geo.js";

const calm: RiskSignals = {
  newDevice: false,
  newNetwork: false,
  newCountry: false,
  impossibleTravel: undefined,
  recentFailures: 0,
  flaggedSource: false,
  firstLogin: false,
};
const signals = (overrides: Partial<RiskSignals>): RiskSignals => ({ ...calm, ...overrides });
const jump = { distanceKm: 5570, hours: 1, speedKmh: 5570 };

describe("assessRisk with the default thresholds", () => {
  it("allows a known device on a known network", () => {
    expect(assessRisk(calm)).toEqual({ score: 0, decision: "allow", reasons: [] });
  });

  it.each<[string, Partial<RiskSignals>, string, string[]]>([
    ["new device alone steps up", { newDevice: true }, "require_mfa", ["new_device"]],
    ["new network alone is normal life", { newNetwork: true }, "allow", ["new_network"]],
    ["new country alone is a holiday", { newCountry: true }, "allow", ["new_country"]],
    ["known device abroad (network + country)", { newNetwork: true, newCountry: true }, "allow", ["new_network", "new_country"]],
    ["impossible travel alone steps up", { impossibleTravel: jump }, "require_mfa", ["impossible_travel"]],
    [
      "known device jumping through a VPN",
      { impossibleTravel: jump, newNetwork: true, newCountry: true },
      "require_mfa",
      ["new_network", "new_country", "impossible_travel"],
    ],
    ["new device on a new network", { newDevice: true, newNetwork: true }, "require_mfa", ["new_device", "new_network"]],
    [
      "new device abroad, plausible travel",
      { newDevice: true, newNetwork: true, newCountry: true },
      "require_mfa",
      ["new_device", "new_network", "new_country"],
    ],
    ["new device + impossible travel", { newDevice: true, impossibleTravel: jump }, "require_captcha", ["new_device", "impossible_travel"]],
    [
      "new device + impossible travel, new network and country",
      { newDevice: true, newNetwork: true, newCountry: true, impossibleTravel: jump },
      "require_captcha",
      ["new_device", "new_network", "new_country", "impossible_travel"],
    ],
    ["flagged source alone", { flaggedSource: true }, "require_captcha", ["flagged_source"]],
    ["flagged source, known device, new network", { flaggedSource: true, newNetwork: true }, "require_captcha", ["new_network", "flagged_source"]],
    ["flagged source + new device: a stuffing hit", { flaggedSource: true, newDevice: true }, "deny", ["new_device", "flagged_source"]],
    ["a few typos on a known device", { recentFailures: 3 }, "allow", ["recent_failures"]],
    ["guessing, capped, on a known device", { recentFailures: 50 }, "allow", ["recent_failures"]],
    ["guessing, then a new device abroad", { recentFailures: 4, newDevice: true, newNetwork: true, newCountry: true }, "require_captcha", ["new_device", "new_network", "new_country", "recent_failures"]],
    [
      "everything stacked",
      { newDevice: true, newNetwork: true, newCountry: true, impossibleTravel: jump, recentFailures: 2 },
      "deny",
      ["new_device", "new_network", "new_country", "impossible_travel", "recent_failures"],
    ],
  ])("%s → %s", (_name, overrides, decision, reasons) => {
    const result = assessRisk(signals(overrides));
    expect(result.decision).toBe(decision);
    expect(result.reasons).toEqual(reasons);
  });

  it("adds the documented weights", () => {
    const w = defaultRiskThresholds.weights;
    expect(assessRisk(signals({ newDevice: true })).score).toBe(w.newDevice);
    expect(assessRisk(signals({ newDevice: true, newNetwork: true, newCountry: true })).score).toBe(w.newDevice + w.newNetwork + w.newCountry);
    expect(assessRisk(signals({ recentFailures: 2 })).score).toBe(2 * w.perRecentFailure);
    expect(assessRisk(signals({ recentFailures: 1000 })).score).toBe(w.maxFailureScore);
    expect(assessRisk(signals({ flaggedSource: true, impossibleTravel: jump })).score).toBe(w.flaggedSource + w.impossibleTravel);
  });

  it("ignores nonsense failure counts", () => {
    for (const recentFailures of [-3, Number.NaN, 0.5]) {
      expect(assessRisk(signals({ recentFailures }))).toEqual({ score: 0, decision: "allow", reasons: [] });
    }
  });

  describe("first login", () => {
    it("does not step up by itself, even though everything looks new", () => {
      const result = assessRisk(signals({ firstLogin: true, newDevice: true, newNetwork: true, newCountry: true }));
      expect(result).toEqual({ score: 0, decision: "allow", reasons: ["first_login"] });
    });

    it("ignores travel (there is no previous login to travel from)", () => {
      expect(assessRisk(signals({ firstLogin: true, impossibleTravel: jump })).decision).toBe("allow");
    });

    it("still counts abuse signals", () => {
      expect(assessRisk(signals({ firstLogin: true, newDevice: true, flaggedSource: true }))).toEqual({
        score: defaultRiskThresholds.weights.flaggedSource,
        decision: "require_captcha",
        reasons: ["first_login", "flagged_source"],
      });
      expect(assessRisk(signals({ firstLogin: true, recentFailures: 3 })).reasons).toEqual(["first_login", "recent_failures"]);
    });
  });

  it("keeps the default thresholds frozen", () => {
    expect(Object.isFrozen(defaultRiskThresholds)).toBe(true);
    expect(Object.isFrozen(defaultRiskThresholds.weights)).toBe(true);
  });
});

describe("assessRisk with custom thresholds", () => {
  const custom: RiskThresholds = {
    weights: { newDevice: 10, newNetwork: 10, newCountry: 10, impossibleTravel: 10, perRecentFailure: 1, maxFailureScore: 3, flaggedSource: 10 },
    requireMfaAt: 10,
    requireCaptchaAt: 20,
    denyAt: 30,
    maxTravelSpeedKmh: 500,
  };

  it("uses the given weights and treats thresholds as inclusive", () => {
    expect(assessRisk(signals({ recentFailures: 9 }), custom)).toMatchObject({ score: 3, decision: "allow" });
    expect(assessRisk(signals({ newNetwork: true }), custom)).toMatchObject({ score: 10, decision: "require_mfa" });
    expect(assessRisk(signals({ newNetwork: true, recentFailures: 9 }), custom)).toMatchObject({ score: 13, decision: "require_mfa" });
    expect(assessRisk(signals({ newNetwork: true, newCountry: true }), custom)).toMatchObject({ score: 20, decision: "require_captcha" });
    expect(assessRisk(signals({ newNetwork: true, newCountry: true, recentFailures: 2 }), custom)).toMatchObject({ score: 22, decision: "require_captcha" });
    expect(assessRisk(signals({ newNetwork: true, newCountry: true, newDevice: true }), custom)).toMatchObject({ score: 30, decision: "deny" });
  });

  it("can switch a signal off while still reporting it", () => {
    const quiet: RiskThresholds = { ...custom, weights: { ...custom.weights, newDevice: 0 } };
    expect(assessRisk(signals({ newDevice: true }), quiet)).toEqual({ score: 0, decision: "allow", reasons: ["new_device"] });
  });

  it("can deny on a single signal", () => {
    const strict: RiskThresholds = { ...custom, weights: { ...custom.weights, flaggedSource: 100 } };
    expect(assessRisk(signals({ flaggedSource: true }), strict).decision).toBe("deny");
  });
});

describe("travel", () => {
  const london: GeoPoint = { lat: 51.5074, lon: -0.1278 };
  const newYork: GeoPoint = { lat: 40.7128, lon: -74.006 };
  const paris: GeoPoint = { lat: 48.8566, lon: 2.3522 };
  const t0 = new Date("2025-06-15T12:00:00Z");
  const later = (hours: number) => new Date(t0.getTime() + hours * 3_600_000);
  const MAX = defaultRiskThresholds.maxTravelSpeedKmh;

  it("flags London → New York in one hour", () => {
    const result = travel({ point: london, at: t0 }, { point: newYork, at: later(1) }, MAX);
    expect(result?.hours).toBe(1);
    expect(result?.distanceKm).toBeCloseTo(5570, -2);
    expect(result?.speedKmh).toBeCloseTo(result?.distanceKm ?? 0, 6);
  });

  it("lets a transatlantic flight's time pass", () => {
    expect(travel({ point: london, at: t0 }, { point: newYork, at: later(7) }, MAX)).toBeUndefined();
  });

  it("decides at the speed limit: just under is plausible, just over is not", () => {
    const d = travel({ point: london, at: t0 }, { point: newYork, at: later(1) }, 0)?.distanceKm as number;
    const hoursAtLimit = d / MAX;
    expect(travel({ point: london, at: t0 }, { point: newYork, at: later(hoursAtLimit * 1.01) }, MAX)).toBeUndefined();
    expect(travel({ point: london, at: t0 }, { point: newYork, at: later(hoursAtLimit * 0.99) }, MAX)).toBeDefined();
  });

  it("reports infinite speed for two far places at the same instant", () => {
    expect(travel({ point: london, at: t0 }, { point: newYork, at: t0 }, MAX)).toEqual({
      distanceKm: expect.closeTo(5570, -2),
      hours: 0,
      speedKmh: Number.POSITIVE_INFINITY,
    });
  });

  it("ignores the same point and small distances, even at zero time", () => {
    expect(travel({ point: london, at: t0 }, { point: london, at: t0 }, MAX)).toBeUndefined();
    expect(travel({ point: london, at: t0 }, { point: { lat: 51.6, lon: -0.2 }, at: t0 }, MAX)).toBeUndefined();
    // London–Paris (~344 km) in a minute: impossible, unless GeoIP noise is assumed larger.
    expect(travel({ point: london, at: t0 }, { point: paris, at: later(1 / 60) }, MAX)).toBeDefined();
    expect(travel({ point: london, at: t0 }, { point: paris, at: later(1 / 60) }, MAX, 400)).toBeUndefined();
    expect(travel({ point: london, at: t0 }, { point: paris, at: later(1 / 60) }, MAX, 0)).toBeDefined();
  });

  it("treats the points' accuracy radii as noise", () => {
    const fuzzyLondon = { ...london, accuracyKm: 200 };
    const fuzzyParis = { ...paris, accuracyKm: 200 };
    expect(travel({ point: fuzzyLondon, at: t0 }, { point: fuzzyParis, at: later(1 / 60) }, MAX)).toBeUndefined();
    expect(travel({ point: fuzzyLondon, at: t0 }, { point: { ...newYork, accuracyKm: 1000 }, at: later(1) }, MAX)).toBeDefined();
  });

  it("does not depend on the order of the two logins", () => {
    const forward = travel({ point: london, at: t0 }, { point: newYork, at: later(2) }, MAX);
    const backward = travel({ point: london, at: later(2) }, { point: newYork, at: t0 }, MAX);
    expect(backward).toEqual(forward);
    expect(forward?.hours).toBe(2);
  });

  it("says nothing about invalid dates", () => {
    expect(travel({ point: london, at: new Date(Number.NaN) }, { point: newYork, at: t0 }, MAX)).toBeUndefined();
  });
});
