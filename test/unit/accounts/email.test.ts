import { describe, expect, it } from "vitest";
import { normalizeEmail, normalizeEmailForLookup } from "../../../src/accounts/email.js";
import { DomainError } from "../../../src/shared/errors.js";
import { expectThrown } from "../../support/thrown.js";

const rejection = (raw: string) => expectThrown(DomainError, () => normalizeEmail(raw));

describe("normalizeEmail", () => {
  it.each([
    ["Alice@Example.COM", "alice@example.com"],
    ["  bob@example.com\t", "bob@example.com"],
    ["\n CAROL.Smith+Shop@Sub.Example.org \r\n", "carol.smith+shop@sub.example.org"],
    ["o'brien@example.ie", "o'brien@example.ie"],
    ["user@xn--bcher-kva.example", "user@xn--bcher-kva.example"],
  ])("normalises %j to %j", (raw, expected) => {
    expect(normalizeEmail(raw)).toBe(expected);
  });

  it("accepts every atext character of a dot-atom local part (RFC 5322)", () => {
    const atext = "!#$%&'*+/=?^_`{|}~-";
    expect(normalizeEmail(`a${atext}z@example.com`)).toBe(`a${atext}z@example.com`);
    expect(normalizeEmail("first.middle.last@example.com")).toBe("first.middle.last@example.com");
    expect(normalizeEmail("-@example.com")).toBe("-@example.com");
  });

  it("maps every spelling differing only in case to one address", () => {
    expect(normalizeEmail("JOHN@EXAMPLE.COM")).toBe(normalizeEmail("john@example.com"));
  });

  it.each([
    ["Kelvin sign K (lower-cases to ASCII k)", "\u212Aelvin@example.com"],
    ["Kelvin sign in the domain", "kelvin@\u212Aexample.com"],
    ["dotless ı", "\u0131nfo@example.com"],
    ["capital I with dot (lower-cases to i + combining dot)", "\u0130nfo@example.com"],
    ["sharp s ß", "stra\u00dfe@example.com"],
    ["long s ſ", "\u017Fam@example.com"],
    ["Cyrillic а homoglyph", "\u0430lice@example.com"],
    ["a non-ASCII domain (must arrive as punycode)", "user@b\u00fccher.example"],
  ])("rejects non-ASCII: %s", (_what, raw) => {
    const err = rejection(raw);
    expect(err.kind).toBe("invalid_argument");
    expect(err.reason).toBe("VALIDATION_FAILED");
    expect(err.metadata).toMatchObject({ field: "email" });
  });

  it("accepts 254 characters and rejects 255", () => {
    const domain = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.com`; // 195
    const at254 = `${"x".repeat(254 - domain.length - 1)}@${domain}`;
    expect(at254).toHaveLength(254);
    expect(normalizeEmail(at254)).toBe(at254);
    const at255 = `x${at254}`;
    expect(rejection(at255).reason).toBe("VALIDATION_FAILED");
  });

  it("rejects a very long input without trouble", () => {
    expect(rejection(`${"a".repeat(100_000)}@example.com`).reason).toBe("VALIDATION_FAILED");
  });

  it.each([
    ["no @", "alice.example.com"],
    ["two @", "alice@bob@example.com"],
    ["empty local part", "@example.com"],
    ["empty domain", "alice@"],
    ["undotted domain", "alice@localhost"],
    ["empty string", ""],
    ["only spaces", "   "],
    ["a space in the local part", "alice smith@example.com"],
    ["a space in the domain", "alice@exa mple.com"],
    ["a NUL", "alice\u0000@example.com"],
    ["a line feed inside", "alice\n@example.com"],
    ["a CR LF header injection", "alice@example.com\r\nBcc: victim@example.com"],
    ["a tab inside", "ali\tce@example.com"],
    ["DEL", "alice\u007f@example.com"],
    ["a trailing NUL (not trimmed)", "alice@example.com\u0000"],
    ["a domain label starting with a hyphen", "alice@-example.com"],
    ["a local part over 64 characters", `${"a".repeat(65)}@example.com`],
  ])("rejects %s", (_what, raw) => {
    expect(rejection(raw).reason).toBe("VALIDATION_FAILED");
  });

  // One mailbox, one account: a quoted local part names the same mailbox as
  // its unquoted form, and the specials are not atext.
  it.each([
    ["a quoted local part", '"alice"@example.com'],
    ["a quoted local part with a dot", '"alice.smith"@example.com'],
    ["a quoted local part with a space", '"alice smith"@example.com'],
    ["a quoted empty local part", '""@example.com'],
    ["a partly quoted local part", 'alice."smith"@example.com'],
    ["a double quote inside", 'ali"ce@example.com'],
    ["<", "a<b@example.com"],
    [">", "a>b@example.com"],
    ["a comment", "alice(comment)@example.com"],
    ["(", "a(b@example.com"],
    [")", "a)b@example.com"],
    [";", "a;b@example.com"],
    ["a backslash", "a\\b@example.com"],
    ["a quoted-pair", '"a\\"b"@example.com'],
    [",", "a,b@example.com"],
    [":", "a:b@example.com"],
    ["[", "a[b@example.com"],
    ["]", "a]b@example.com"],
    ["a leading dot", ".alice@example.com"],
    ["a trailing dot", "alice.@example.com"],
    ["two dots in a row", "al..ice@example.com"],
    ["only a dot", ".@example.com"],
  ])("rejects %s in the local part", (_what, raw) => {
    const err = rejection(raw);
    expect(err.kind).toBe("invalid_argument");
    expect(err.reason).toBe("VALIDATION_FAILED");
    expect(err.metadata).toMatchObject({ field: "email" });
  });
});

describe("normalizeEmailForLookup", () => {
  it("returns the normalised address for a valid one", () => {
    expect(normalizeEmailForLookup("  Alice@Example.com ")).toBe("alice@example.com");
  });

  it.each([
    ["the empty string", ""],
    ["no @", "no-at-sign"],
    ["a Kelvin sign", "\u212Aelvin@example.com"],
    ["a sharp s", "stra\u00dfe@example.com"],
    ["over 254 characters", `${"a".repeat(300)}@example.com`],
    ["a space", "a b@example.com"],
    ["a control character", "a\u0000b@example.com"],
  ])("returns undefined for %s instead of throwing", (_what, raw) => {
    expect(() => normalizeEmailForLookup(raw)).not.toThrow();
    expect(normalizeEmailForLookup(raw)).toBeUndefined();
  });

  it("agrees with normalizeEmail on every address that can be registered", () => {
    for (const raw of ["Alice@Example.com", " o'brien@example.ie ", "a!#$%&'*+/=?^_`{|}~-z@sub.example.org"]) {
      expect(normalizeEmailForLookup(raw)).toBe(normalizeEmail(raw));
    }
  });

  it("finds addresses registered before the dot-atom rule as they were stored, never unquoted", () => {
    // Such an account can still log in; a quoted spelling reaches only an
    // account registered with exactly that spelling, not alice@example.com's.
    expect(normalizeEmailForLookup(' "Alice"@Example.com ')).toBe('"alice"@example.com');
    expect(normalizeEmailForLookup("a<b@example.com")).toBe("a<b@example.com");
    expect(normalizeEmailForLookup("al..ice@example.com")).toBe("al..ice@example.com");
    // Still nothing outside the old shape.
    expect(normalizeEmailForLookup('"alice smith"@example.com')).toBeUndefined();
    expect(normalizeEmailForLookup("alice@localhost")).toBeUndefined();
  });
});
