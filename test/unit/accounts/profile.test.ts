import { describe, expect, it } from "vitest";
import { DomainError } from "../../../src/shared/errors.js";
import { parseDateOfBirth, toProfile, toProfilePatch } from "../../../src/accounts/profile.js";
import { expectThrown } from "../../support/thrown.js";

const today = new Date("2025-06-15T12:00:00.000Z");

const dobRejection = (raw: string, at: Date = today) => expectThrown(DomainError, () => parseDateOfBirth(raw, at));

describe("parseDateOfBirth", () => {
  it.each([
    ["2023-11-12T08:00:23.719000", "2023-11-12"],
    ["2023-11-12T08:00:23Z", "2023-11-12"],
    ["2023-11-12 08:00:23", "2023-11-12"],
    ["1990-04-01", "1990-04-01"],
    ["  1990-04-01  ", "1990-04-01"],
    ["1900-01-01", "1900-01-01"],
    ["2024-02-29", "2024-02-29"],
    ["2025-06-15", "2025-06-15"],
  ])("accepts %j as %j", (raw, expected) => {
    expect(parseDateOfBirth(raw, today)).toBe(expected);
  });

  it.each([
    ["February 30th", "2023-02-30"],
    ["February 29th of a common year", "2023-02-29"],
    ["month 13", "1990-13-01"],
    ["month 0", "1990-00-10"],
    ["day 0", "1990-01-00"],
    ["day 32", "1990-01-32"],
    ["tomorrow", "2025-06-16"],
    ["the far future", "3000-01-01"],
    ["before 1900", "1899-12-31"],
    ["year 0099 (Date.UTC maps it to 1999)", "0099-01-01"],
    ["garbage", "not a date"],
    ["the empty string", ""],
    ["a US-style date", "04/01/1990"],
    ["a compact date", "19900401"],
    ["an unpadded date", "1990-4-1"],
    ["trailing garbage", "1990-04-01garbage"],
    ["a five-digit year", "19900-04-01"],
  ])("rejects %s", (_what, raw) => {
    const err = dobRejection(raw);
    expect(err.kind).toBe("invalid_argument");
    expect(err.reason).toBe("VALIDATION_FAILED");
    expect(err.metadata).toMatchObject({ field: "info_user.date_of_birth" });
  });
});

describe("toProfilePatch", () => {
  it("leaves absent fields absent", () => {
    const patch = toProfilePatch({}, today);
    expect(patch).toEqual({});
    expect(Object.keys(patch)).toEqual([]);
    expect(Object.keys(toProfilePatch({ name: "Alice" }, today))).toEqual(["name"]);
  });

  it("turns an empty or blank field into null (clear it)", () => {
    expect(toProfilePatch({ name: "", phoneNumber: "   ", address: "\t\n", dateOfBirth: "" }, today)).toEqual({
      name: null,
      phoneNumber: null,
      address: null,
      dateOfBirth: null,
    });
    expect(toProfilePatch({ dateOfBirth: "  " }, today)).toEqual({ dateOfBirth: null });
  });

  it("trims and normalises text to NFC", () => {
    expect(toProfilePatch({ name: "  Rene\u0301e  ", address: " 1 Main St " }, today)).toEqual({
      name: "Ren\u00e9e",
      address: "1 Main St",
    });
  });

  it("replaces control characters (C0 and DEL) instead of storing them", () => {
    const patch = toProfilePatch({ name: "Eve\r\nX-Injected: 1", address: "a\u0000b\u001bc\u007fd", phoneNumber: "\u0007+1 555" }, today);
    for (const value of Object.values(patch)) {
      expect(value).toBeTypeOf("string");
      expect(value as string).not.toMatch(/[\u0000-\u001f\u007f]/);
    }
    expect(patch.name).toContain("Eve");
    expect(patch.name).toContain("X-Injected: 1");
    expect(patch.phoneNumber).toBe("+1 555");
  });

  it("replaces C1 control characters too (U+0080–U+009F, e.g. NEL and 8-bit CSI)", () => {
    // Unicode general category Cc includes C1; NEL is a line break and CSI
    // starts a terminal escape sequence, the same injection C0 opens.
    const patch = toProfilePatch({ name: "Eve\u0085Mallory\u009b31m" }, today);
    expect(patch.name).not.toMatch(/\p{Cc}/u);
  });

  it.each([
    ["RLO (the Trojan Source extension swap)", "evil\u202Egnp.exe", "evilgnp.exe"],
    ["LRE, RLE, PDF, LRO", "a\u202Ab\u202Bc\u202Cd\u202De", "abcde"],
    ["isolates LRI, RLI, FSI, PDI", "a\u2066b\u2067c\u2068d\u2069e", "abcde"],
    ["the marks LRM, RLM and ALM", "a\u200Eb\u200Fc\u061Cd", "abcd"],
    ["a value of nothing but bidi controls (cleared)", "\u202E\u2066\u2069", null],
  ])("removes bidi controls: %s", (_what, raw, expected) => {
    expect(toProfilePatch({ name: raw, address: raw }, today)).toEqual({ name: expected, address: expected });
  });

  it("turns line and paragraph separators (U+2028, U+2029) into spaces", () => {
    expect(toProfilePatch({ address: "1 Main St\u2028Springfield\u2029\u2028USA\u2028" }, today)).toEqual({ address: "1 Main St Springfield USA" });
  });

  it("keeps the letters, marks and punctuation of every script, right-to-left ones included", () => {
    for (const name of ["Nguyễn Văn An", "محمد عبد الله", "דוד כהן", "Ψυχή", "山田 太郎", "Иван Петров", "O'Brien-Smith", "हिन्दी", "ZWJ 👩‍💻 family"]) {
      expect(toProfilePatch({ name }, today).name).toBe(name.normalize("NFC"));
    }
  });

  it("keeps gender false and true as given", () => {
    expect(toProfilePatch({ gender: false }, today)).toEqual({ gender: false });
    expect(toProfilePatch({ gender: true }, today)).toEqual({ gender: true });
  });

  it("parses the date of birth, dropping a time of day", () => {
    expect(toProfilePatch({ dateOfBirth: "2023-11-12T08:00:23.719000" }, today)).toEqual({ dateOfBirth: "2023-11-12" });
  });

  it("rejects an invalid date of birth with VALIDATION_FAILED", () => {
    expect(() => toProfilePatch({ dateOfBirth: "2023-02-30" }, today)).toThrow(DomainError);
    try {
      toProfilePatch({ dateOfBirth: "2023-02-30" }, today);
    } catch (err) {
      expect((err as DomainError).reason).toBe("VALIDATION_FAILED");
    }
  });
});

describe("toProfile", () => {
  it("keeps what was given and drops empty fields", () => {
    expect(
      toProfile({ name: " Alice ", phoneNumber: "", address: "  ", dateOfBirth: "", gender: false }, today),
    ).toEqual({ name: "Alice", gender: false });
  });

  it("has no keys for empty or absent fields", () => {
    const profile = toProfile({ name: "", phoneNumber: undefined, dateOfBirth: "1990-04-01" }, today);
    expect(Object.keys(profile)).toEqual(["dateOfBirth"]);
    expect(profile).toEqual({ dateOfBirth: "1990-04-01" });
  });

  it("is empty for an empty input", () => {
    expect(toProfile({}, today)).toEqual({});
  });
});
