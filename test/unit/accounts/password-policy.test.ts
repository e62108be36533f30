import { describe, expect, it } from "vitest";
import { DomainError, type ErrorReason } from "../../../src/shared/errors.js";
import { createPasswordPolicy, type PasswordContext, type PasswordPolicyOptions } from "../../../src/accounts/password-policy.js";
import { loadCommonPasswords } from "../../../src/accounts/password-blocklist.js";
import { expectThrown } from "../../support/thrown.js";

// The real list, loaded once for the file: the policy is only as good as it.
const commonPasswords = loadCommonPasswords();

function policy(overrides: Partial<PasswordPolicyOptions> = {}) {
  // The production shape: maxBytes is 4 bytes per allowed code point (config.ts).
  return createPasswordPolicy({ minLength: 8, maxLength: 64, maxBytes: 256, blocklist: commonPasswords, ...overrides });
}

function reasonFor(password: string, context: PasswordContext = {}, p = policy()): ErrorReason | "OK" {
  try {
    p.check(password, context);
    return "OK";
  } catch (err) {
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).kind).toBe("invalid_argument");
    return (err as DomainError).reason;
  }
}

describe("password policy: length", () => {
  it("accepts exactly the minimum and refuses one code point less", () => {
    expect(reasonFor("zq7#Lm2x")).toBe("OK");
    expect(reasonFor("zq7#Lm2")).toBe("PASSWORD_TOO_SHORT");
    expect(reasonFor("")).toBe("PASSWORD_TOO_SHORT");
  });

  it("reports the minimum in metadata", () => {
    expect(expectThrown(DomainError, () => policy().check("short", {})).metadata).toMatchObject({ min_length: "8" });
  });

  it("counts code points of the NFC form: composed and decomposed é count the same", () => {
    const composed = "\u00e9";
    const decomposed = "e\u0301";
    // 7 code points once composed, although the decomposed spelling has 8 UTF-16 units and 8 code points.
    expect(reasonFor(`xqzvkw${composed}`)).toBe("PASSWORD_TOO_SHORT");
    expect(reasonFor(`xqzvkw${decomposed}`)).toBe("PASSWORD_TOO_SHORT");
    expect(reasonFor(`xqzvkwj${composed}`)).toBe("OK");
    expect(reasonFor(`xqzvkwj${decomposed}`)).toBe("OK");
  });

  it("counts an astral character (emoji) as one code point, not two UTF-16 units", () => {
    expect(reasonFor("\u{1F600}".repeat(8))).toBe("OK");
    expect(reasonFor("\u{1F600}".repeat(7))).toBe("PASSWORD_TOO_SHORT");
  });

  it("accepts exactly the maximum and refuses one more", () => {
    const p = policy({ maxLength: 64, maxBytes: 1024 });
    expect(reasonFor("xk".repeat(32), {}, p)).toBe("OK");
    const err = expectThrown(DomainError, () => p.check(`${"xk".repeat(32)}j`, {}));
    expect(err.reason).toBe("PASSWORD_TOO_LONG");
    expect(err.metadata).toMatchObject({ max_length: "64" });
  });

  it("lets multi-byte passwords reach the maximum length under the production byte cap", () => {
    // 64 four-byte code points = 256 bytes = maxBytes.
    expect(reasonFor("\u{1F600}".repeat(64))).toBe("OK");
    expect(reasonFor("\u{1F600}".repeat(65))).toBe("PASSWORD_TOO_LONG");
  });
});

describe("password policy: byte cap", () => {
  it("refuses a 1 MB password with PASSWORD_TOO_LONG from the byte rule", () => {
    const huge = "a".repeat(1_048_576);
    const err = expectThrown(DomainError, () => policy().check(huge, {}));
    expect(err.reason).toBe("PASSWORD_TOO_LONG");
    expect(err.metadata).toMatchObject({ max_bytes: "256" });
    expect(expectThrown(DomainError, () => policy().checkSize(huge)).reason).toBe("PASSWORD_TOO_LONG");
  });

  it("checks bytes before length, blocklist or context", () => {
    // 30 code points (within maxLength) but 120 bytes (over maxBytes), and on the blocklist too.
    const p = policy({ maxLength: 64, maxBytes: 100 });
    const err = expectThrown(DomainError, () => p.check("\u{1F600}".repeat(30), { name: "\u{1F600}\u{1F600}\u{1F600}\u{1F600}" }));
    expect(err.reason).toBe("PASSWORD_TOO_LONG");
    expect(err.metadata).toHaveProperty("max_bytes");
    const common = expectThrown(DomainError, () => policy({ maxBytes: 10 }).check("password123", {}));
    expect(common.reason).toBe("PASSWORD_TOO_LONG");
  });

  it("counts UTF-8 bytes, not UTF-16 units", () => {
    const p = policy({ maxLength: 64, maxBytes: 16 });
    // 8 × "é" = 8 UTF-16 units but 16 bytes: fits exactly.
    expect(reasonFor("\u00e9".repeat(8), {}, p)).toBe("OK");
    expect(reasonFor("\u00e9".repeat(8) + "x", {}, p)).toBe("PASSWORD_TOO_LONG");
  });

  it("checkSize passes anything under the cap, however weak (it is for verification only)", () => {
    expect(() => policy().checkSize("")).not.toThrow();
    expect(() => policy().checkSize("password123")).not.toThrow();
  });
});

describe("password policy: blocklist", () => {
  it("uses the real common-password list with at least 10,000 entries", () => {
    expect(commonPasswords.size).toBeGreaterThanOrEqual(10_000);
    expect(commonPasswords.has("password123")).toBe(true);
    expect(commonPasswords.has("qwertyuiop")).toBe(true);
  });

  it.each(["password123", "PASSWORD123", "Password123", "qwertyuiop", "QwErTyUiOp", "QWERTYUIOP"])(
    "refuses %s case-insensitively",
    (password) => {
      expect(reasonFor(password)).toBe("PASSWORD_TOO_COMMON");
    },
  );

  it("only refuses exact entries, not passwords that merely contain one", () => {
    expect(reasonFor("password123 is what I will never use")).toBe("OK");
  });
});

describe("password policy: context words", () => {
  const context = { email: "jonathan.smith+shop@example.com", name: "Renée Marie Lee" };

  it.each([
    ["a local-part segment", "iamjonathan!42", context],
    ["another local-part segment, any case", "Mr-SMITH-1990", context],
    ["a name part of 4 or more characters", "i-love-marie-99", context],
    ["a name part with an accent", "ren\u00e9e-forever-1", context],
    // Parts too short on their own: only the whole is a context word.
    ["the whole local part", "xx-AB.CD-xx-zz", { email: "ab.cd@example.com" }],
    ["the name without spaces", "xx-BoLee-77", { name: "Bo Lee" }],
  ])("refuses a password containing %s", (_what, password, ctx) => {
    expect(reasonFor(password, ctx)).toBe("PASSWORD_CONTAINS_CONTEXT");
  });

  it("ignores context words shorter than 4 characters", () => {
    expect(reasonFor("xx-ab-cd-bo-lee-zz", { email: "ab.cd@example.com", name: "Bo Lee" })).toBe("OK");
  });

  it("matches a name whatever its Unicode normalisation", () => {
    const decomposedName = "Rene\u0301e Dupont";
    expect(reasonFor("ren\u00e9e-forever-1", { name: decomposedName })).toBe("PASSWORD_CONTAINS_CONTEXT");
    expect(reasonFor("rene\u0301e-forever-1", { name: "Ren\u00e9e Dupont" })).toBe("PASSWORD_CONTAINS_CONTEXT");
  });

  it("accepts passwords unrelated to the context, and any password without context", () => {
    expect(reasonFor("correct horse battery staple", context)).toBe("OK");
    expect(reasonFor("iamjonathan!42", {})).toBe("OK");
  });
});

describe("password policy: no composition rules", () => {
  it("accepts a long passphrase of lower-case words and spaces", () => {
    expect(reasonFor("correct horse battery staple", { email: "alice@example.com", name: "Alice Doe" })).toBe("OK");
  });

  it("accepts a repeated character when it is not on the blocklist", () => {
    expect(commonPasswords.has("aaaaaaaaaaaaaaaa")).toBe(false);
    expect(reasonFor("aaaaaaaaaaaaaaaa")).toBe("OK");
  });

  it("asks for no digit, upper-case letter or symbol", () => {
    expect(reasonFor("lowercaseonlybutlong")).toBe("OK");
  });
});
