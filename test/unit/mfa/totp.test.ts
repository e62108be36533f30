import { generate as otpGenerate } from "otplib";
import { describe, expect, it } from "vitest";
import { createTotp } from "../../../src/mfa/totp.js";

// RFC 6238 Appendix B, SHA-1: the seed is the ASCII string "12345678901234567890".
const RFC_SEED_ASCII = "12345678901234567890";
const RFC_SEED_BASE32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const RFC_VECTORS: [unixSeconds: number, code8: string, step: number][] = [
  [59, "94287082", 1],
  [1111111109, "07081804", 37037036],
  [1111111111, "14050471", 37037037],
  [1234567890, "89005924", 41152263],
  [2000000000, "69279037", 66666666],
  [20000000000, "65353130", 666666666],
];

const totp = createTotp();
const at = (seconds: number) => new Date(seconds * 1000);
// Mid-step, so ±15 s stays in the same step.
const T = 1_750_000_005;
const STEP = Math.floor(T / 30);

function base32Decode(s: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const ch of s) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${ch}`);
    buffer = ((buffer << 5) | v) & 0x3ff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >> bits) & 0xff);
    }
  }
  return new Uint8Array(out);
}

describe("totp: RFC 6238 test vectors", () => {
  it("the base32 seed is the RFC's ASCII seed", () => {
    expect(new TextDecoder().decode(base32Decode(RFC_SEED_BASE32))).toBe(RFC_SEED_ASCII);
  });

  it.each(RFC_VECTORS)("at %i s the library gives the 8-digit code %s", async (seconds, code8) => {
    const code = await otpGenerate({ secret: new TextEncoder().encode(RFC_SEED_ASCII), digits: 8, epoch: seconds });
    expect(code).toBe(code8);
  });

  it.each(RFC_VECTORS)("at %i s generate() gives the last 6 digits of %s and verify() returns step %i", async (seconds, code8, step) => {
    const code6 = code8.slice(-6);
    expect(await totp.generate({ secret: RFC_SEED_BASE32, now: at(seconds) })).toBe(code6);
    expect(await totp.verify({ secret: RFC_SEED_BASE32, code: code6, now: at(seconds) })).toBe(step);
    expect(step).toBe(Math.floor(seconds / 30));
  });
});

describe("totp: window", () => {
  const secret = RFC_SEED_BASE32;
  const codeAt = (seconds: number) => totp.generate({ secret, now: at(seconds) });

  it("accepts the previous, current and next step and says which matched", async () => {
    expect(await totp.verify({ secret, code: await codeAt(T - 30), now: at(T) })).toBe(STEP - 1);
    expect(await totp.verify({ secret, code: await codeAt(T), now: at(T) })).toBe(STEP);
    expect(await totp.verify({ secret, code: await codeAt(T + 30), now: at(T) })).toBe(STEP + 1);
  });

  it("refuses two steps away on either side", async () => {
    const inWindow = await Promise.all([codeAt(T - 30), codeAt(T), codeAt(T + 30)]);
    for (const offset of [-60, 60]) {
      const code = await codeAt(T + offset);
      // Guard the test itself: a coincidental equal code would make it meaningless.
      expect(inWindow).not.toContain(code);
      expect(await totp.verify({ secret, code, now: at(T) })).toBeUndefined();
    }
  });

  it("holds the window at the edges of a step", async () => {
    const start = STEP * 30; // first second of STEP
    const end = start + 29; // last second of STEP
    expect(await totp.verify({ secret, code: await codeAt(start - 30), now: at(start) })).toBe(STEP - 1);
    expect(await totp.verify({ secret, code: await codeAt(start - 31), now: at(start) })).toBeUndefined();
    expect(await totp.verify({ secret, code: await codeAt(end + 30), now: at(end) })).toBe(STEP + 1);
    expect(await totp.verify({ secret, code: await codeAt(end + 31), now: at(end) })).toBeUndefined();
  });

  it("uses the time it is given, not the machine clock", async () => {
    const past = at(1_000_000_000);
    const code = await totp.generate({ secret, now: past });
    expect(await totp.verify({ secret, code, now: past })).toBe(Math.floor(1_000_000_000 / 30));
  });

  it("refuses a wrong code", async () => {
    const right = await codeAt(T);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, "0");
    expect(await totp.verify({ secret, code: wrong, now: at(T) })).toBeUndefined();
  });
});

describe("totp: replay protection", () => {
  const secret = RFC_SEED_BASE32;
  const codeAt = (seconds: number) => totp.generate({ secret, now: at(seconds) });

  it("refuses the step just used and any earlier one, accepts a later one", async () => {
    const code = await codeAt(T);
    const step = await totp.verify({ secret, code, now: at(T) });
    expect(step).toBe(STEP);
    // Replay of the same code within the same step and a few seconds later.
    expect(await totp.verify({ secret, code, now: at(T), afterStep: step })).toBeUndefined();
    expect(await totp.verify({ secret, code, now: at(T + 10), afterStep: step })).toBeUndefined();
    // An older code still inside the window.
    expect(await totp.verify({ secret, code: await codeAt(T - 30), now: at(T), afterStep: step })).toBeUndefined();
    // The next code is fine.
    expect(await totp.verify({ secret, code: await codeAt(T + 30), now: at(T + 30), afterStep: step })).toBe(STEP + 1);
    expect(await totp.verify({ secret, code: await codeAt(T + 30), now: at(T), afterStep: step })).toBe(STEP + 1);
  });

  it("accepts the current step when only an earlier one was used", async () => {
    expect(await totp.verify({ secret, code: await codeAt(T), now: at(T), afterStep: STEP - 1 })).toBe(STEP);
    expect(await totp.verify({ secret, code: await codeAt(T), now: at(T), afterStep: -1 })).toBe(STEP);
  });

  it("refuses, without throwing, when the stored step is ahead of the whole window", async () => {
    const code = await codeAt(T);
    expect(await totp.verify({ secret, code, now: at(T), afterStep: STEP + 1 })).toBeUndefined();
    expect(await totp.verify({ secret, code, now: at(T), afterStep: STEP + 1000 })).toBeUndefined();
  });

  it("throws on a step that is not an integer (a caller bug)", async () => {
    await expect(totp.verify({ secret, code: await codeAt(T), now: at(T), afterStep: 1.5 })).rejects.toThrow(RangeError);
  });
});

describe("totp: malformed codes", () => {
  const secret = RFC_SEED_BASE32;

  it.each([
    ["five digits", "12345"],
    ["seven digits", "1234567"],
    ["empty", ""],
    ["letters", "12a456"],
    ["inner space", "123 456"],
    ["leading space", " 123456"],
    ["trailing newline", "123456\n"],
    ["sign", "+12345"],
    ["fullwidth digits", "１２３４５６"],
    ["Arabic-Indic digits", "١٢٣٤٥٦"],
  ])("refuses %s", async (_name, code) => {
    expect(await totp.verify({ secret, code, now: at(T) })).toBeUndefined();
  });

  it("refuses the right code written in fullwidth digits", async () => {
    const code = await totp.generate({ secret, now: at(T) });
    const fullwidth = [...code].map((d) => String.fromCharCode(0xff10 + Number(d))).join("");
    expect(await totp.verify({ secret, code: fullwidth, now: at(T) })).toBeUndefined();
  });

  it("refuses before computing anything", async () => {
    // An unusable secret makes any computation throw, so only an early refusal resolves.
    const broken = "not base32!";
    await expect(totp.verify({ secret: broken, code: "123456", now: at(T) })).rejects.toThrow();
    expect(await totp.verify({ secret: broken, code: "12345", now: at(T) })).toBeUndefined();
  });
});

describe("totp: enrolment", () => {
  it("generates 160-bit base32 secrets without padding, all different", () => {
    const secrets = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const s = totp.generateSecret();
      expect(s).toMatch(/^[A-Z2-7]{32}$/);
      expect(base32Decode(s)).toHaveLength(20);
      secrets.add(s);
    }
    expect(secrets.size).toBe(100);
  });

  it("works with its own secrets", async () => {
    const secret = totp.generateSecret();
    const code = await totp.generate({ secret, now: at(T) });
    expect(await totp.verify({ secret, code, now: at(T) })).toBe(STEP);
  });

  it("builds an otpauth URI with every parameter, parsed back with URL", () => {
    const secret = totp.generateSecret();
    const uri = totp.uri({ secret, account: "ada@example.com", issuer: "Example" });
    expect(uri).toBe(`otpauth://totp/Example:ada%40example.com?secret=${secret}&issuer=Example&algorithm=SHA1&digits=6&period=30`);
    const url = new URL(uri);
    expect(url.protocol).toBe("otpauth:");
    expect(url.host).toBe("totp");
    expect([...url.searchParams.keys()]).toEqual(["secret", "issuer", "algorithm", "digits", "period"]);
    expect(url.searchParams.get("secret")).toBe(secret);
    expect(url.searchParams.get("issuer")).toBe("Example");
    expect(url.searchParams.get("algorithm")).toBe("SHA1");
    expect(url.searchParams.get("digits")).toBe("6");
    expect(url.searchParams.get("period")).toBe("30");
  });

  it("encodes special characters in the account and issuer", () => {
    const secret = totp.generateSecret();
    const issuer = "ACME & Co: Identity/π?#";
    const account = "jo+hn ü@example.com:x&y=z%";
    const url = new URL(totp.uri({ secret, account, issuer }));
    // Exactly one unencoded ":" separates issuer and account in the label.
    const rawLabel = url.pathname.slice(1);
    expect(rawLabel.split(":")).toHaveLength(2);
    const [rawIssuer, rawAccount] = rawLabel.split(":") as [string, string];
    expect(decodeURIComponent(rawIssuer)).toBe(issuer);
    expect(decodeURIComponent(rawAccount)).toBe(account);
    expect(url.hash).toBe("");
    expect(url.searchParams.get("issuer")).toBe(issuer);
    expect(url.searchParams.get("secret")).toBe(secret);
    expect(url.searchParams.get("period")).toBe("30");
  });

  it("renders the URI as a PNG data URL", async () => {
    const uri = totp.uri({ secret: totp.generateSecret(), account: "ada@example.com", issuer: "Example" });
    const dataUrl = await totp.qrDataUrl(uri);
    expect(dataUrl.startsWith("data:image/png;base64,")).toBe(true);
    const png = Buffer.from(dataUrl.slice("data:image/png;base64,".length), "base64");
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.length).toBeGreaterThan(100);
  });
});
