import { describe, expect, it } from "vitest";
import { createMemoryRateLimiter } from "../../../src/abuse/rate-limiter.js";
import { DomainError, invalidCredentials } from "../../../src/shared/errors.js";
import { sourceBlockKey, sourceOf, type Admission, type LoginDefence } from "../../../src/abuse/login-defence.js";
import { throttleDelayMs, type CaptchaPolicy, type SprayPolicy } from "../../../src/abuse/policies.js";
import { type CaptchaCheck, type CaptchaResult } from "../../../src/abuse/ports.js";
import { type CallContext } from "../../../src/shared/call.js";
import { createTestDefence, testThrottle } from "../../support/fakes.js";

// The login defence on memory stores and a controlled clock: the per-account
// progressive delay and lockout, the spray / stuffing / surge detectors, and
// the CAPTCHA gate. Policy of the fakes: 5 free attempts, 1 s doubling to a
// 15 min cap, lockout at 100, failures forgotten after 24 h; spray window
// 15 min, 20 accounts per source, 10 accounts per password, 30 min blocks.

const T0 = Date.parse("2026-03-01T10:00:00.000Z");
const SECOND = 1_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

const baseSpray: SprayPolicy = {
  windowMs: 15 * MINUTE,
  sourceAccounts: 20,
  passwordAccounts: 10,
  blockMs: 30 * MINUTE,
  surgeFailuresPerMinute: 1_000,
  surgeMs: 15 * MINUTE,
};

function setup(overrides: Parameters<typeof createTestDefence>[1] = {}) {
  let t = T0;
  const clock = { now: () => new Date(t) };
  // The flags are kept here too, to look at the blocks the defence sets.
  const flags = createMemoryRateLimiter({ now: () => t });
  const made = createTestDefence(clock, { flags, ...overrides });
  return {
    ...made,
    flags,
    advance: (ms: number) => void (t += ms),
    now: () => t,
  };
}

const call = (ip = "203.0.113.10"): CallContext => ({ client: { ip, userAgent: "unit/1.0" }, requestId: "req-1" });

/** The attempt's admission, or the error it was refused with. */
async function attempt(
  defence: LoginDefence,
  email: string,
  opts: { ip?: string; captchaToken?: string; knownDevice?: boolean; trustedDevice?: Uint8Array } = {},
): Promise<Admission | DomainError> {
  try {
    return await defence.admit(
      { canonicalEmail: email, captchaToken: opts.captchaToken, knownDevice: opts.knownDevice ?? false, trustedDevice: opts.trustedDevice },
      call(opts.ip),
    );
  } catch (err) {
    if (err instanceof DomainError) return err;
    throw err;
  }
}

/** An admitted attempt whose password turns out wrong. */
async function wrongPassword(
  defence: LoginDefence,
  email: string,
  opts: { ip?: string; password?: string; userId?: string; trustedDevice?: Uint8Array } = {},
): Promise<Admission> {
  const admission = await attempt(defence, email, { ip: opts.ip, knownDevice: true, trustedDevice: opts.trustedDevice });
  if (admission instanceof DomainError) throw new Error(`attempt on ${email} refused: ${admission.reason}`);
  await defence.failed(admission, { password: opts.password ?? "Summer2026!", userId: opts.userId, factor: "password" }, call(opts.ip));
  return admission;
}

function shape(e: DomainError) {
  return { name: e.name, kind: e.kind, reason: e.reason, message: e.message, metadata: e.metadata };
}

/** Refused exactly as a wrong password is. */
function expectWrongPasswordAnswer(result: Admission | DomainError): void {
  expect(result).toBeInstanceOf(DomainError);
  expect(shape(result as DomainError)).toEqual(shape(invalidCredentials()));
}

function expectAdmitted(result: Admission | DomainError, failuresBefore: number): void {
  if (result instanceof DomainError) throw new Error(`expected an admission, got ${result.reason}`);
  expect(result.failuresBefore).toBe(failuresBefore);
}

const throttledEvents = (events: { type: string }[]) => events.filter((e) => e.type === "login_throttled");

describe("per-account progressive delay", () => {
  it("throttleDelayMs: free, then doubling from the base, capped at the maximum", () => {
    const table: [failures: number, ms: number][] = [
      [0, 0],
      [4, 0],
      [5, 1_000],
      [6, 2_000],
      [7, 4_000],
      [14, 512_000],
      [15, 900_000],
      [16, 900_000],
      [99, 900_000],
      [10_000, 900_000],
    ];
    for (const [failures, ms] of table) expect({ failures, ms: throttleDelayMs(failures, testThrottle) }).toEqual({ failures, ms });
  });

  it("five attempts are free; the sixth at the same instant gets exactly the wrong-password error", async () => {
    const { defence, events } = setup();
    for (let i = 0; i < 5; i++) {
      const a = await wrongPassword(defence, "alice@example.com");
      expect(a.failuresBefore).toBe(i);
    }
    expect(throttledEvents(events)).toEqual([]);
    expectWrongPasswordAnswer(await attempt(defence, "alice@example.com"));
    expect(throttledEvents(events)).toEqual([
      expect.objectContaining({
        outcome: "failure",
        reason: "progressive_delay",
        client: { ip: "203.0.113.10", userAgent: "unit/1.0" },
        details: { failures: 5, retry_after_seconds: 1 },
      }),
    ]);
    // The refused attempt was not counted: the wait did not grow.
    expect(events.at(-1)?.details).toEqual({ failures: 5, retry_after_seconds: 1 });
  });

  it("every wait is exactly base·2^(n−5) after the previous attempt, capped at 15 minutes", async () => {
    const { defence, events, advance } = setup();
    for (let i = 0; i < 5; i++) await wrongPassword(defence, "bob@example.com");
    for (let failures = 5; failures <= 20; failures++) {
      const delay = Math.min(SECOND * 2 ** (failures - 5), 15 * MINUTE);
      // At once: refused, and told the whole wait.
      expectWrongPasswordAnswer(await attempt(defence, "bob@example.com"));
      expect({ failures, details: events.at(-1)?.details }).toEqual({
        failures,
        details: { failures, retry_after_seconds: delay / SECOND },
      });
      advance(delay - 1);
      expectWrongPasswordAnswer(await attempt(defence, "bob@example.com"));
      expect(events.at(-1)?.details).toEqual({ failures, retry_after_seconds: 1 });
      advance(1);
      const a = await wrongPassword(defence, "bob@example.com");
      expect({ failures, before: a.failuresBefore }).toEqual({ failures, before: failures });
    }
  });

  it("100 consecutive failures lock the account: one account_locked event and alert; no wait unlocks it; an unlock does", async () => {
    const { defence, events, alerts, advance } = setup();
    const userId = "0190f0aa-0000-7000-8000-000000000001";
    for (let i = 0; i < 100; i++) {
      await wrongPassword(defence, "carol@example.com", { userId });
      advance(15 * MINUTE); // the longest wait: every attempt is due
    }
    expect(events.filter((e) => e.type === "account_locked")).toEqual([
      expect.objectContaining({ outcome: "success", userId, details: { failures: 100, threshold: 100, last_factor: "password" } }),
    ]);
    expect(alerts.filter((a) => a.type === "account_locked")).toEqual([
      expect.objectContaining({ userId, details: { failures: 100, threshold: 100, last_factor: "password" } }),
    ]);

    // Longer than any wait and than the quiet reset: still locked.
    advance(48 * HOUR);
    expectWrongPasswordAnswer(await attempt(defence, "carol@example.com"));
    expect(events.at(-1)).toMatchObject({ type: "login_throttled", reason: "account_locked", details: { failures: 100 } });
    expect(events.filter((e) => e.type === "account_locked")).toHaveLength(1);
    expect(alerts.filter((a) => a.type === "account_locked")).toHaveLength(1);

    await expect(defence.unlock("carol@example.com")).resolves.toEqual({ clearedFailures: 100, wasLocked: true });
    expectAdmitted(await attempt(defence, "carol@example.com"), 0);
    await expect(defence.unlock("carol@example.com")).resolves.toEqual({ clearedFailures: 1, wasLocked: false });
    await expect(defence.unlock("nobody@example.com")).resolves.toEqual({ clearedFailures: 0, wasLocked: false });
  });

  it("the lockout threshold counts second-factor failures too", async () => {
    const { defence, events } = setup({ throttle: { ...testThrottle, baseDelayMs: 0, lockoutThreshold: 10 } });
    for (let i = 0; i < 10; i++) {
      const a = await attempt(defence, "dan@example.com", { knownDevice: true });
      expectAdmitted(a, i);
      await defence.failed(a as Admission, { factor: i === 9 ? "mfa" : "password" }, call());
    }
    expect(events.filter((e) => e.type === "account_locked").map((e) => e.details)).toEqual([
      { failures: 10, threshold: 10, last_factor: "mfa" },
    ]);
    expectWrongPasswordAnswer(await attempt(defence, "dan@example.com"));
  });

  it("a success clears the count: five more free attempts", async () => {
    const { defence, advance } = setup();
    for (let i = 0; i < 5; i++) await wrongPassword(defence, "erin@example.com");
    expectWrongPasswordAnswer(await attempt(defence, "erin@example.com"));
    advance(SECOND);
    const ok = await attempt(defence, "erin@example.com");
    expectAdmitted(ok, 5);
    await defence.succeeded(ok as Admission);
    for (let i = 0; i < 5; i++) expect((await wrongPassword(defence, "erin@example.com")).failuresBefore).toBe(i);
    expectWrongPasswordAnswer(await attempt(defence, "erin@example.com"));
  });

  it("failures are forgotten quietly after resetAfterMs (24 h) without any attempt, not a millisecond earlier", async () => {
    const { defence, advance } = setup();
    for (const email of ["fay@example.com", "gus@example.com"]) {
      for (let i = 0; i < 5; i++) await wrongPassword(defence, email);
    }
    advance(24 * HOUR - 1);
    expectAdmitted(await attempt(defence, "fay@example.com"), 5);
    advance(1);
    expectAdmitted(await attempt(defence, "gus@example.com"), 0);
  });

  it("an e-mail without an account is counted and throttled the same way, separately from every other e-mail", async () => {
    const { defence, events } = setup();
    const registered = "hana@example.com";
    const unknown = "no-such-account@example.com";
    for (let i = 0; i < 5; i++) {
      await wrongPassword(defence, registered, { userId: "0190f0aa-0000-7000-8000-000000000002" });
      await wrongPassword(defence, unknown);
    }
    const a = await attempt(defence, registered);
    const b = await attempt(defence, unknown);
    expectWrongPasswordAnswer(a);
    expectWrongPasswordAnswer(b);
    const [ea, eb] = throttledEvents(events);
    expect(ea).toEqual(eb);
    // Other e-mails are untouched.
    expectAdmitted(await attempt(defence, "ivan@example.com"), 0);
  });

  it("the account key is a keyed hash of the canonical e-mail: stable, 32 bytes, and another key gives another hash", () => {
    const { defence } = setup();
    const other = setup({ hashKey: new Uint8Array(32).fill(8) }).defence;
    const k = defence.accountKey("jo@example.com");
    expect(k).toHaveLength(32);
    expect(Buffer.from(defence.accountKey("jo@example.com")).equals(Buffer.from(k))).toBe(true);
    expect(Buffer.from(defence.accountKey("jo2@example.com")).equals(Buffer.from(k))).toBe(false);
    expect(Buffer.from(other.accountKey("jo@example.com")).equals(Buffer.from(k))).toBe(false);
    expect(Buffer.from(k).toString("latin1")).not.toContain("jo@example.com");
  });
});

describe("known devices are counted apart", () => {
  // The keyed hashes of two device tokens (what the risk assessor hands over).
  const deviceA = new Uint8Array(32).fill(0xa1);
  const deviceB = new Uint8Array(32).fill(0xb2);

  it("failures without the device lock the account; the device's own attempts are admitted from zero", async () => {
    const { defence, events, advance } = setup();
    for (let i = 0; i < 100; i++) {
      await wrongPassword(defence, "victim@example.com", { ip: `192.0.2.${i % 250}`, password: `guess-${i}` });
      advance(15 * MINUTE);
    }
    expect(events.filter((e) => e.type === "account_locked")).toHaveLength(1);
    expectWrongPasswordAnswer(await attempt(defence, "victim@example.com"));
    // Another device's hash is no key to the lock either way: each has a counter of its own.
    expectAdmitted(await attempt(defence, "victim@example.com", { trustedDevice: deviceA }), 0);
    expectAdmitted(await attempt(defence, "victim@example.com", { trustedDevice: deviceB }), 0);
    // The account stays locked.
    expectWrongPasswordAnswer(await attempt(defence, "victim@example.com"));
  });

  it("a device's failures throttle and lock only that device (of that account)", async () => {
    const { defence, advance } = setup();
    for (let i = 0; i < 5; i++) await wrongPassword(defence, "dev@example.com", { trustedDevice: deviceA });
    expectWrongPasswordAnswer(await attempt(defence, "dev@example.com", { trustedDevice: deviceA }));
    // The account's counter, another device's, and the same device on another account are untouched.
    expectAdmitted(await attempt(defence, "dev@example.com"), 0);
    expectAdmitted(await attempt(defence, "dev@example.com", { trustedDevice: deviceB }), 0);
    expectAdmitted(await attempt(defence, "other@example.com", { trustedDevice: deviceA }), 0);
    advance(SECOND);
    const ok = await attempt(defence, "dev@example.com", { trustedDevice: deviceA });
    expectAdmitted(ok, 5);
    // A success clears the device's count only.
    await defence.succeeded(ok as Admission);
    expectAdmitted(await attempt(defence, "dev@example.com", { trustedDevice: deviceA }), 0);
    expectAdmitted(await attempt(defence, "dev@example.com"), 1);
  });

  it("the device key is a keyed hash of e-mail and device, unlike the account key", async () => {
    const { defence } = setup();
    const withDevice = await attempt(defence, "key@example.com", { trustedDevice: deviceA });
    const without = await attempt(defence, "key@example.com");
    expectAdmitted(withDevice, 0);
    expectAdmitted(without, 0);
    const k = Buffer.from((withDevice as Admission).accountKey);
    expect(k).toHaveLength(32);
    expect(k.equals(Buffer.from((without as Admission).accountKey))).toBe(false);
    expect(k.equals(Buffer.from(defence.accountKey("key@example.com")))).toBe(false);
    expect(Buffer.from((without as Admission).accountKey).equals(Buffer.from(defence.accountKey("key@example.com")))).toBe(true);
  });
});

describe("sources: IPv4 by address, IPv6 by /64", () => {
  it("sourceOf and sourceBlockKey: one key per /64 and per IPv4 address (mapped or not); anything else is 'unknown'", () => {
    expect(sourceOf("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(sourceOf("2001:db8:1:2:ffff::9")).toBe("2001:db8:1:2::/64");
    expect(sourceOf("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(sourceOf("203.0.113.7")).toBe("203.0.113.7");
    expect(sourceOf("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(sourceOf(undefined)).toBe("unknown");
    expect(sourceOf("not an address")).toBe("unknown");
    expect(sourceBlockKey("2001:db8:1:2::1")).toBe(sourceBlockKey("2001:db8:1:2::ffff"));
    expect(sourceBlockKey("2001:db8:1:2::1")).not.toBe(sourceBlockKey("2001:db8:1:3::1"));
    expect(sourceBlockKey("::ffff:203.0.113.7")).toBe(sourceBlockKey("203.0.113.7"));
    expect(sourceBlockKey("203.0.113.7")).not.toBe(sourceBlockKey("203.0.113.8"));
    expect(sourceBlockKey(undefined)).toBe(sourceBlockKey("garbage"));
  });

  it("20 accounts failing from 20 addresses of one /64 are one source: detected, and the whole /64 blocked", async () => {
    const { defence, events, flags } = setup({ spray: { ...baseSpray, passwordAccounts: 100_000 } });
    for (let i = 0; i < 20; i++) {
      await wrongPassword(defence, `six${i}@example.com`, { ip: `2001:db8:77:1:${(i + 1).toString(16)}::1`, password: `pw-${i}` });
    }
    const detected = events.filter((e) => e.type === "spray_detected");
    // The evidence names the address of the detecting attempt.
    expect(detected.map((e) => [e.reason, e.details?.source_ip, e.details?.distinct_accounts])).toEqual([
      ["credential_stuffing", "2001:db8:77:1:14::1", 20],
    ]);
    await expect(defence.sourceFlagged("2001:db8:77:1::abcd")).resolves.toBe(true);
    expect(await flags.blockedFor(sourceBlockKey("2001:db8:77:1:dead:beef:0:1"))).toBe(30 * MINUTE);
    await expect(defence.sourceFlagged("2001:db8:77:2::1")).resolves.toBe(false);
  });

  it("failures of neighbouring /64s do not add up", async () => {
    const { defence, events } = setup({ spray: { ...baseSpray, passwordAccounts: 100_000 } });
    for (let i = 0; i < 19; i++) await wrongPassword(defence, `n${i}@example.com`, { ip: `2001:db8:78:1::${i + 1}`, password: `pw-${i}` });
    for (let i = 0; i < 19; i++) await wrongPassword(defence, `m${i}@example.com`, { ip: `2001:db8:78:2::${i + 1}`, password: `pw-${i}` });
    expect(events.filter((e) => e.type === "spray_detected")).toEqual([]);
  });
});

describe("spray and stuffing detection", () => {
  // Only the per-source detector: the per-password one is switched off.
  const sourceOnly = { spray: { ...baseSpray, passwordAccounts: 100_000 } };

  for (const [passwords, kind] of [
    [1, "password_spray"],
    [5, "password_spray"],
    [6, "credential_stuffing"],
    [20, "credential_stuffing"],
  ] as const) {
    it(`20 accounts failing from one source with ${passwords} distinct password(s) is ${kind}: blocked, audited with evidence, alerted once`, async () => {
      const { defence, events, alerts, flags } = setup(sourceOnly);
      const ip = "198.51.100.7";
      for (let i = 0; i < 19; i++) await wrongPassword(defence, `victim${i}@example.com`, { ip, password: `Password-${i % passwords}!` });
      expect(events.filter((e) => e.type !== "login_throttled")).toEqual([]);
      expect(alerts).toEqual([]);
      await expect(defence.sourceFlagged(ip)).resolves.toBe(false);

      await wrongPassword(defence, "victim19@example.com", { ip, password: `Password-${19 % passwords}!` });
      const details = {
        kind,
        source_ip: ip,
        distinct_accounts: 20,
        distinct_passwords: passwords,
        window_seconds: 900,
        threshold: 20,
        block_seconds: 1800,
      };
      expect(events.map((e) => [e.type, e.reason, e.details])).toEqual([
        ["spray_detected", kind, details],
        ["source_blocked", kind, details],
      ]);
      expect(alerts.map((a) => [a.type, a.details])).toEqual([
        [kind, details],
        ["source_blocked", details],
      ]);
      expect(await flags.blockedFor(sourceBlockKey(ip))).toBe(30 * MINUTE);
      await expect(defence.sourceFlagged(ip)).resolves.toBe(true);
      await expect(defence.sourceFlagged("198.51.100.8")).resolves.toBe(false);
      // Nothing that could identify a victim or a password is kept.
      const evidence = JSON.stringify([events, alerts]);
      expect(evidence).not.toMatch(/victim|Password-/);

      // More failures in the same period: no new detection.
      for (let i = 20; i < 40; i++) await wrongPassword(defence, `victim${i}@example.com`, { ip, password: `Password-${i % passwords}!` });
      expect(events).toHaveLength(2);
      expect(alerts).toHaveLength(2);
    });
  }

  it("after the block has run out, a new run from the source is detected (and alerted) again", async () => {
    const { defence, events, alerts, advance } = setup(sourceOnly);
    const ip = "198.51.100.9";
    for (let i = 0; i < 20; i++) await wrongPassword(defence, `a${i}@example.com`, { ip, password: `pw-${i}` });
    expect(alerts.map((a) => a.type)).toEqual(["credential_stuffing", "source_blocked"]);
    advance(30 * MINUTE);
    await expect(defence.sourceFlagged(ip)).resolves.toBe(false);
    for (let i = 0; i < 20; i++) await wrongPassword(defence, `b${i}@example.com`, { ip, password: `pw-${i}` });
    expect(alerts.map((a) => a.type)).toEqual(["credential_stuffing", "source_blocked", "credential_stuffing", "source_blocked"]);
    expect(events.filter((e) => e.type === "spray_detected")).toHaveLength(2);
  });

  it("one password failing on 10 accounts from 10 sources is a password spray, known by a keyed fingerprint only", async () => {
    const { defence, events, alerts, flags } = setup();
    const password = "Autumn2026!!";
    for (let i = 0; i < 9; i++) await wrongPassword(defence, `p${i}@example.com`, { ip: `192.0.2.${i + 1}`, password });
    expect(events.filter((e) => e.type === "spray_detected")).toEqual([]);
    await wrongPassword(defence, "p9@example.com", { ip: "192.0.2.10", password });
    const detected = events.filter((e) => e.type === "spray_detected");
    expect(detected).toEqual([
      expect.objectContaining({
        reason: "password_spray",
        details: {
          kind: "password_spray",
          password_fingerprint: expect.stringMatching(/^[A-Za-z0-9_-]{12}$/),
          distinct_accounts: 10,
          source_ip: "192.0.2.10",
          window_seconds: 900,
          threshold: 10,
          block_seconds: 1800,
        },
      }),
    ]);
    expect(alerts.filter((a) => a.type === "password_spray").map((a) => a.details)).toEqual([detected[0]!.details]);
    expect(JSON.stringify([events, alerts])).not.toContain(password);
    // The source of the detecting attempt is blocked.
    expect(await flags.blockedFor(sourceBlockKey("192.0.2.10"))).toBe(30 * MINUTE);

    // The fingerprint depends on the password and on the server's key.
    const fingerprint = (detected[0]!.details as Record<string, string>).password_fingerprint;
    const other = setup({ hashKey: new Uint8Array(32).fill(9) });
    for (let i = 0; i < 10; i++) await wrongPassword(other.defence, `p${i}@example.com`, { ip: `192.0.2.${i + 1}`, password });
    const otherFingerprint = other.events.find((e) => e.type === "spray_detected")?.details?.password_fingerprint;
    expect(otherFingerprint).toEqual(expect.any(String));
    expect(otherFingerprint).not.toBe(fingerprint);

    // Once per period: more accounts with the same password add no detection.
    for (let i = 10; i < 15; i++) await wrongPassword(defence, `p${i}@example.com`, { ip: `192.0.2.${i + 1}`, password });
    expect(events.filter((e) => e.type === "spray_detected")).toHaveLength(1);
    expect(alerts.filter((a) => a.type === "password_spray")).toHaveLength(1);
  });

  it("a source blocked by the per-password detector is audited and alerted as source_blocked (as the per-source detector does)", async () => {
    // One source, one password, 10 accounts: the per-password detector
    // blocks the source (the per-source one would need 20 accounts).
    const { defence, events, alerts, flags } = setup();
    const ip = "192.0.2.77";
    for (let i = 0; i < 10; i++) await wrongPassword(defence, `q${i}@example.com`, { ip, password: "Winter2026!!" });
    expect(await flags.blockedFor(sourceBlockKey(ip))).toBeDefined();
    expect(events.filter((e) => e.type === "source_blocked")).toEqual([expect.objectContaining({ client: expect.objectContaining({ ip }) })]);
    expect(alerts.filter((a) => a.type === "source_blocked")).toHaveLength(1);
  });

  it("failures of one source do not count against another", async () => {
    const { defence, events } = setup(sourceOnly);
    for (let i = 0; i < 19; i++) await wrongPassword(defence, `r${i}@example.com`, { ip: "192.0.2.200", password: `x${i}` });
    for (let i = 0; i < 19; i++) await wrongPassword(defence, `r${i}@example.com`, { ip: "192.0.2.201", password: `x${i}` });
    expect(events.filter((e) => e.type === "spray_detected")).toEqual([]);
  });

  it("accounts leave the source's count after the window", async () => {
    const { defence, events, advance } = setup(sourceOnly);
    const ip = "192.0.2.210";
    for (let i = 0; i < 15; i++) await wrongPassword(defence, `s${i}@example.com`, { ip, password: `x${i}` });
    advance(15 * MINUTE + 3 * MINUTE); // the window plus more than a bucket (15 min / 6)
    for (let i = 15; i < 30; i++) await wrongPassword(defence, `s${i}@example.com`, { ip, password: `x${i}` });
    expect(events.filter((e) => e.type === "spray_detected")).toEqual([]);
  });
});

/** A CAPTCHA verifier answering `result` and recording what it was asked. */
function fakeCaptcha(result: (token: string) => CaptchaResult) {
  const calls: { token: string; remoteIp: string | undefined }[] = [];
  const verifier: CaptchaCheck = {
    async verify(token, remoteIp) {
      calls.push({ token, remoteIp });
      return result(token);
    },
  };
  return { verifier, calls };
}

const byToken = (token: string): CaptchaResult =>
  token === "good"
    ? { ok: true }
    : token === "down"
      ? { ok: false, reason: "unavailable", errorCodes: ["network-error"] }
      : { ok: false, reason: "invalid", errorCodes: ["invalid-input-response"] };

function captchaPolicy(overrides: Partial<CaptchaPolicy> = {}) {
  const fake = fakeCaptcha(byToken);
  return { fake, policy: { verifier: fake.verifier, onRegister: true, onRiskyLogin: true, failOpen: false, ...overrides } };
}

async function refusal(p: Promise<unknown>): Promise<{ kind: string; reason: string } | "passed"> {
  try {
    await p;
    return "passed";
  } catch (err) {
    if (!(err instanceof DomainError)) throw err;
    return { kind: err.kind, reason: err.reason };
  }
}

describe("surge mode", () => {
  it("fleet-wide failures reaching the per-minute threshold demand a CAPTCHA of unknown devices; audited and alerted once per period", async () => {
    const { fake, policy } = captchaPolicy();
    const { defence, events, alerts, advance } = setup({ captcha: policy, spray: { ...baseSpray, surgeFailuresPerMinute: 10 } });
    // Nine failures on nine accounts from nine sources with nine passwords: no spray.
    for (let i = 0; i < 9; i++) await wrongPassword(defence, `t${i}@example.com`, { ip: `192.0.2.${50 + i}`, password: `pw-${i}` });
    expectAdmitted(await attempt(defence, "user@example.com", { ip: "192.0.2.99" }), 0);
    expect(fake.calls).toEqual([]);

    await wrongPassword(defence, "t9@example.com", { ip: "192.0.2.59", password: "pw-9" });
    const surge = { failures_last_minute: 10, threshold: 10, mode_seconds: 900 };
    expect(events.filter((e) => e.type === "failure_surge").map((e) => e.details)).toEqual([surge]);
    expect(alerts.map((a) => [a.type, a.details])).toEqual([["failure_surge", surge]]);

    // Unknown devices need a CAPTCHA now; known devices do not.
    await expect(refusal(defence.admit({ canonicalEmail: "u1@example.com", knownDevice: false }, call("192.0.2.99")))).resolves.toEqual({
      kind: "permission_denied",
      reason: "CAPTCHA_REQUIRED",
    });
    expect(events.at(-1)).toMatchObject({ type: "captcha", outcome: "failure", reason: "CAPTCHA_REQUIRED", details: { context: "login" } });
    await expect(refusal(defence.admit({ canonicalEmail: "u1@example.com", knownDevice: true }, call("192.0.2.99")))).resolves.toBe("passed");
    await expect(
      refusal(defence.admit({ canonicalEmail: "u1@example.com", knownDevice: false, captchaToken: "good" }, call("192.0.2.99"))),
    ).resolves.toBe("passed");
    expect(fake.calls).toEqual([{ token: "good", remoteIp: "192.0.2.99" }]);

    // More failures within the period: no second alert.
    for (let i = 10; i < 30; i++) await wrongPassword(defence, `t${i}@example.com`, { ip: `192.0.2.${50 + (i % 9)}`, password: `pw-${i}` });
    expect(events.filter((e) => e.type === "failure_surge")).toHaveLength(1);
    expect(alerts.filter((a) => a.type === "failure_surge")).toHaveLength(1);

    // After the period (and a quiet minute) no CAPTCHA; a new surge is alerted again.
    advance(15 * MINUTE);
    await expect(refusal(defence.admit({ canonicalEmail: "u2@example.com", knownDevice: false }, call("192.0.2.99")))).resolves.toBe("passed");
    for (let i = 0; i < 10; i++) await wrongPassword(defence, `v${i}@example.com`, { ip: `192.0.2.${60 + i}`, password: `qw-${i}` });
    expect(alerts.filter((a) => a.type === "failure_surge")).toHaveLength(2);
  });

  it("the known-device lookup runs only when a CAPTCHA could be due; known devices are not asked, unknown ones are", async () => {
    const { policy } = captchaPolicy();
    const { defence } = setup({ captcha: policy, spray: { ...baseSpray, surgeFailuresPerMinute: 10 } });
    let lookups = 0;
    const known = async () => {
      lookups++;
      return true;
    };
    await expect(refusal(defence.admit({ canonicalEmail: "l@example.com", knownDevice: known }, call()))).resolves.toBe("passed");
    expect(lookups).toBe(0);
    for (let i = 0; i < 10; i++) await wrongPassword(defence, `k${i}@example.com`, { ip: `192.0.2.${170 + i}`, password: `pw-${i}` });
    await expect(refusal(defence.admit({ canonicalEmail: "l@example.com", knownDevice: known }, call()))).resolves.toBe("passed");
    expect(lookups).toBe(1);
    await expect(refusal(defence.admit({ canonicalEmail: "l@example.com", knownDevice: async () => false }, call()))).resolves.toEqual({
      kind: "permission_denied",
      reason: "CAPTCHA_REQUIRED",
    });
  });

  it("without a CAPTCHA provider a surge is still audited and alerted but asks nothing of logins", async () => {
    const { defence, events, alerts } = setup({ spray: { ...baseSpray, surgeFailuresPerMinute: 10 } });
    for (let i = 0; i < 10; i++) await wrongPassword(defence, `w${i}@example.com`, { ip: `192.0.2.${100 + i}`, password: `pw-${i}` });
    expect(events.filter((e) => e.type === "failure_surge")).toHaveLength(1);
    expect(alerts.filter((a) => a.type === "failure_surge")).toHaveLength(1);
    expectAdmitted(await attempt(defence, "x@example.com"), 0);
  });

  it("a spray detection demands a CAPTCHA of unknown devices everywhere, not only at the blocked source", async () => {
    const { policy } = captchaPolicy();
    const { defence } = setup({ captcha: policy, spray: { ...baseSpray, passwordAccounts: 100_000 } });
    for (let i = 0; i < 20; i++) await wrongPassword(defence, `y${i}@example.com`, { ip: "192.0.2.150", password: `pw-${i}` });
    await expect(refusal(defence.admit({ canonicalEmail: "z@example.com", knownDevice: false }, call("192.0.2.151")))).resolves.toEqual({
      kind: "permission_denied",
      reason: "CAPTCHA_REQUIRED",
    });
  });
});

describe("CAPTCHA", () => {
  const table: { name: string; token: string | undefined; failOpen: boolean; expected: { kind: string; reason: string } | "passed"; audit: unknown }[] = [
    { name: "missing", token: undefined, failOpen: false, expected: { kind: "permission_denied", reason: "CAPTCHA_REQUIRED" }, audit: ["failure", "CAPTCHA_REQUIRED"] },
    { name: "empty", token: "", failOpen: false, expected: { kind: "permission_denied", reason: "CAPTCHA_REQUIRED" }, audit: ["failure", "CAPTCHA_REQUIRED"] },
    { name: "refused", token: "bad", failOpen: false, expected: { kind: "permission_denied", reason: "CAPTCHA_INVALID" }, audit: ["failure", "CAPTCHA_INVALID"] },
    { name: "provider down, fail closed", token: "down", failOpen: false, expected: { kind: "unavailable", reason: "DEPENDENCY_UNAVAILABLE" }, audit: ["failure", "DEPENDENCY_UNAVAILABLE"] },
    { name: "provider down, fail open", token: "down", failOpen: true, expected: "passed", audit: ["success", "provider_unavailable_fail_open"] },
    { name: "refused, fail open", token: "bad", failOpen: true, expected: { kind: "permission_denied", reason: "CAPTCHA_INVALID" }, audit: ["failure", "CAPTCHA_INVALID"] },
    { name: "accepted", token: "good", failOpen: false, expected: "passed", audit: undefined },
  ];

  for (const row of table) {
    it(`registration with a CAPTCHA ${row.name}`, async () => {
      const { fake, policy } = captchaPolicy({ failOpen: row.failOpen });
      const { defence, events } = setup({ captcha: policy });
      await expect(refusal(defence.admitRegistration(row.token, call("192.0.2.5")))).resolves.toEqual(row.expected);
      const captchaEvents = events.filter((e) => e.type === "captcha");
      if (row.audit === undefined) expect(captchaEvents).toEqual([]);
      else {
        expect(captchaEvents.map((e) => [e.outcome, e.reason])).toEqual([row.audit]);
        expect(captchaEvents[0]).toMatchObject({ client: { ip: "192.0.2.5" }, requestId: "req-1", details: { context: "register" } });
      }
      // Missing tokens never reach the provider; others do, with the client's address.
      expect(fake.calls).toEqual(row.token ? [{ token: row.token, remoteIp: "192.0.2.5" }] : []);
    });
  }

  it("the provider's error codes are kept as evidence (at most five)", async () => {
    const fake = fakeCaptcha(() => ({ ok: false, reason: "invalid", errorCodes: ["a", "b", "c", "d", "e", "f", "g"] }));
    const { defence, events } = setup({ captcha: { verifier: fake.verifier, onRegister: true, onRiskyLogin: true, failOpen: false } });
    await expect(refusal(defence.admitRegistration("x", call()))).resolves.toEqual({ kind: "permission_denied", reason: "CAPTCHA_INVALID" });
    expect(events.at(-1)?.details).toEqual({ context: "register", error_codes: ["a", "b", "c", "d", "e"] });
  });

  it("registration without a provider, or with CAPTCHA_ON_REGISTER off, needs no token", async () => {
    await expect(refusal(setup().defence.admitRegistration(undefined, call()))).resolves.toBe("passed");
    const { fake, policy } = captchaPolicy({ onRegister: false });
    await expect(refusal(setup({ captcha: policy }).defence.admitRegistration(undefined, call()))).resolves.toBe("passed");
    expect(fake.calls).toEqual([]);
  });

  it("login: no CAPTCHA asked outside spray or surge mode, but a token sent unasked is checked", async () => {
    const { fake, policy } = captchaPolicy();
    const { defence } = setup({ captcha: policy });
    expectAdmitted(await attempt(defence, "k@example.com"), 0);
    expect(fake.calls).toEqual([]);
    await expect(refusal(defence.admit({ canonicalEmail: "k@example.com", knownDevice: false, captchaToken: "bad" }, call()))).resolves.toEqual({
      kind: "permission_denied",
      reason: "CAPTCHA_INVALID",
    });
    // A refused CAPTCHA costs the account no attempt.
    expectAdmitted(await attempt(defence, "k@example.com", { captchaToken: "good" }), 1);
  });

  it("the admission says whether a CAPTCHA was solved for the attempt (so the risk step does not verify the token again)", async () => {
    const { fake, policy } = captchaPolicy();
    const { defence } = setup({ captcha: policy, spray: { ...baseSpray, surgeFailuresPerMinute: 10 } });
    const passed = async (input: { knownDevice: boolean; captchaToken?: string }) => {
      const a = await defence.admit({ canonicalEmail: `cp${fake.calls.length}@example.com`, ...input }, call());
      return a.captchaPassed;
    };
    // Outside surge mode: nothing asked, nothing solved; a token sent unasked is verified and counts.
    await expect(passed({ knownDevice: false })).resolves.toBe(false);
    await expect(passed({ knownDevice: false, captchaToken: "good" })).resolves.toBe(true);
    expect(fake.calls).toHaveLength(1);
    for (let i = 0; i < 10; i++) await wrongPassword(defence, `cq${i}@example.com`, { ip: `192.0.2.${120 + i}`, password: `pw-${i}` });
    // Surge mode: a known device is not asked (false); an unknown one solves it (true).
    await expect(passed({ knownDevice: true })).resolves.toBe(false);
    await expect(passed({ knownDevice: false, captchaToken: "good" })).resolves.toBe(true);
    await expect(passed({ knownDevice: true, captchaToken: "good" })).resolves.toBe(true);
    expect(fake.calls).toHaveLength(3);
    // Without a provider nothing is ever solved.
    await expect(setup().defence.admit({ canonicalEmail: "np@example.com", knownDevice: false, captchaToken: "good" }, call())).resolves.toMatchObject({
      captchaPassed: false,
    });
  });

  it("login with CAPTCHA_ON_RISKY_LOGIN off: never asked, even in surge mode", async () => {
    const { fake, policy } = captchaPolicy({ onRiskyLogin: false });
    const { defence } = setup({ captcha: policy, spray: { ...baseSpray, surgeFailuresPerMinute: 10 } });
    for (let i = 0; i < 10; i++) await wrongPassword(defence, `m${i}@example.com`, { ip: `192.0.2.${20 + i}`, password: `pw-${i}` });
    expectAdmitted(await attempt(defence, "n@example.com"), 0);
    expectAdmitted(await attempt(defence, "n2@example.com", { captchaToken: "bad" }), 0);
    expect(fake.calls).toEqual([]);
  });

  it("challengeCaptcha (asked by the risk engine): false without a provider, true when solved, the CAPTCHA errors otherwise", async () => {
    await expect(setup().defence.challengeCaptcha(undefined, call())).resolves.toBe(false);
    const { policy } = captchaPolicy();
    const { defence } = setup({ captcha: policy });
    await expect(defence.challengeCaptcha("good", call())).resolves.toBe(true);
    await expect(refusal(defence.challengeCaptcha(undefined, call()))).resolves.toEqual({ kind: "permission_denied", reason: "CAPTCHA_REQUIRED" });
    await expect(refusal(defence.challengeCaptcha("bad", call()))).resolves.toEqual({ kind: "permission_denied", reason: "CAPTCHA_INVALID" });
    await expect(refusal(defence.challengeCaptcha("down", call()))).resolves.toEqual({ kind: "unavailable", reason: "DEPENDENCY_UNAVAILABLE" });
  });
});

describe("failures of the detectors never fail a login", () => {
  it("a counter store that throws is reported to onError and the failure is still answered", async () => {
    const errors: unknown[] = [];
    const broken = {
      addDistinct: () => Promise.reject(new Error("redis gone")),
      increment: () => Promise.reject(new Error("redis gone")),
      mode: () => "memory" as const,
      close: async () => {},
    };
    const { defence } = setup({ counters: broken, onError: (e) => void errors.push(e) });
    await wrongPassword(defence, "o@example.com");
    expect(errors).toHaveLength(1);
  });
});
