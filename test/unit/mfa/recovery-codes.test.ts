import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from "../../../src/mfa/recovery-codes.js";

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SHAPE = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/;
const key = new Uint8Array(randomBytes(32));

describe("generateRecoveryCodes", () => {
  it("makes ten codes by default, or the count asked for", () => {
    expect(generateRecoveryCodes()).toHaveLength(10);
    expect(generateRecoveryCodes(1)).toHaveLength(1);
    expect(generateRecoveryCodes(16)).toHaveLength(16);
  });

  it("refuses silly counts", () => {
    for (const count of [0, -1, 1.5, Number.NaN, 101]) expect(() => generateRecoveryCodes(count)).toThrow(RangeError);
  });

  it("writes 16 Crockford characters in four groups, each its own canonical form", () => {
    for (const code of generateRecoveryCodes(50)) {
      expect(code).toMatch(SHAPE);
      expect(normalizeRecoveryCode(code)).toBe(code.replace(/-/g, ""));
    }
  });

  it("never repeats", () => {
    const all = Array.from({ length: 100 }, () => generateRecoveryCodes()).flat();
    expect(new Set(all).size).toBe(all.length);
  });

  it("uses the whole alphabet evenly in every position (80 random bits)", () => {
    // 2000 codes × 16 positions: each symbol is expected 1000 times overall;
    // a stuck bit or a short alphabet would leave symbols at 0 or double.
    const counts = new Map<string, number>();
    const perPosition = Array.from({ length: 16 }, () => new Set<string>());
    for (let i = 0; i < 200; i++) {
      for (const code of generateRecoveryCodes(10)) {
        [...code.replace(/-/g, "")].forEach((ch, pos) => {
          counts.set(ch, (counts.get(ch) ?? 0) + 1);
          perPosition[pos]?.add(ch);
        });
      }
    }
    expect([...counts.keys()].sort().join("")).toBe(CROCKFORD);
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(800);
      expect(n).toBeLessThan(1200);
    }
    // 2000 draws of 32 symbols per position: every symbol shows up.
    for (const seen of perPosition) expect(seen.size).toBe(32);
  });
});

describe("normalizeRecoveryCode", () => {
  const canonical = "ABCD0FGH1JKM2PQR";

  it.each([
    ["as issued", "ABCD-0FGH-1JKM-2PQR"],
    ["lower case", "abcd-0fgh-1jkm-2pqr"],
    ["mixed case", "AbCd-0fGh-1JkM-2pQr"],
    ["no hyphens", "ABCD0FGH1JKM2PQR"],
    ["extra hyphens", "-AB-CD--0FGH-1JKM-2PQR-"],
    ["spaces", " ABCD 0FGH 1JKM 2PQR "],
    ["tabs and newline", "ABCD\t0FGH\n1JKM 2PQR"],
    ["O for zero", "ABCD-OFGH-1JKM-2PQR"],
    ["lower o for zero", "abcd-ofgh-1jkm-2pqr"],
    ["I for one", "ABCD-0FGH-IJKM-2PQR"],
    ["L for one", "ABCD-0FGH-LJKM-2PQR"],
    ["lower l for one", "abcd-0fgh-ljkm-2pqr"],
  ])("accepts %s", (_name, input) => {
    expect(normalizeRecoveryCode(input)).toBe(canonical);
  });

  it.each([
    ["empty", ""],
    ["15 characters", "ABCD-0FGH-1JKM-2PQ"],
    ["17 characters", "ABCD-0FGH-1JKM-2PQRS"],
    ["U is not in the alphabet", "ABCD-0FGH-1JKM-2PQU"],
    ["punctuation", "ABCD-0FGH-1JKM-2PQ!"],
    ["underscore separator", "ABCD_0FGH_1JKM_2PQR"],
    ["dotless i folds to I only after upper-casing", "ABCD-0FGH-ıJKM-2PQR"],
    ["fullwidth letters", "ＡＢＣＤ-0FGH-1JKM-2PQR"],
    ["very long input", "A".repeat(10_000)],
  ])("refuses %s", (_name, input) => {
    expect(normalizeRecoveryCode(input)).toBeUndefined();
  });
});

describe("hashRecoveryCode", () => {
  const code = "ABCD0FGH1JKM2PQR";

  it("is a 32-byte HMAC, the same for every spelling of the code under one key", () => {
    const h = hashRecoveryCode(code, key);
    expect(h).toBeInstanceOf(Uint8Array);
    expect(h).toHaveLength(32);
    const sloppy = code.toLowerCase().replace(/0/g, "o").replace(/1/g, "l");
    expect(hashRecoveryCode(normalizeRecoveryCode(sloppy) as string, key)).toEqual(h);
  });

  it("differs across keys and across codes", () => {
    const other = new Uint8Array(randomBytes(32));
    expect(hashRecoveryCode(code, other)).not.toEqual(hashRecoveryCode(code, key));
    const another = normalizeRecoveryCode(generateRecoveryCodes(1)[0] as string) as string;
    expect(hashRecoveryCode(another, key)).not.toEqual(hashRecoveryCode(code, key));
  });

  it("refuses input that was not normalised, and short keys", () => {
    expect(() => hashRecoveryCode(`${code.slice(0, 4)}-${code.slice(4)}`, key)).toThrow();
    expect(() => hashRecoveryCode(code.toLowerCase(), key)).toThrow();
    expect(() => hashRecoveryCode(code, new Uint8Array(16))).toThrow();
  });
});
