import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { createDisposableEmailPolicy } from "../../../src/abuse/disposable-email.js";

const policy = createDisposableEmailPolicy();

describe("createDisposableEmailPolicy", () => {
  it("flags domains from the exact list", () => {
    expect(policy.isDisposable("someone@mailinator.com")).toBe(true);
    expect(policy.isDisposable("someone@guerrillamail.com")).toBe(true);
    expect(policy.isDisposable("someone@10minutemail.com")).toBe(true);
  });

  it("flags any sub-domain of a wildcard entry", () => {
    const wildcard = createRequire(import.meta.url)("disposable-email-domains/wildcard.json") as string[];
    expect(wildcard).toContain("33mail.com");
    expect(policy.isDisposable("alias@shop.33mail.com")).toBe(true);
    expect(policy.isDisposable("alias@a.b.33mail.com")).toBe(true);
  });

  it("flags a sub-domain of an exact entry as a bypass attempt", () => {
    expect(policy.isDisposable("x@x.mailinator.com")).toBe(true);
    expect(policy.isDisposable("x@deep.sub.mailinator.com")).toBe(true);
    // A look-alike that only ends with the same letters is a different domain.
    expect(policy.isDisposable("x@realmailinator.com")).toBe(false);
    expect(policy.isDisposable("x@mailinator.com.example.test")).toBe(false);
  });

  it("ignores case, surrounding space and a trailing dot", () => {
    expect(policy.isDisposable("Someone@MAILINATOR.COM")).toBe(true);
    expect(policy.isDisposable("someone@mailinator.com.")).toBe(true);
    expect(policy.isDisposable(" someone@Mailinator.Com. ")).toBe(true);
  });

  it("takes the domain after the last @", () => {
    expect(policy.isDisposable('"a@gmail.com"@mailinator.com')).toBe(true);
    expect(policy.isDisposable('"a@mailinator.com"@gmail.com')).toBe(false);
  });

  it("catches Unicode and punycode spellings of a listed domain", () => {
    // Listed in Unicode form; an address may arrive in either form.
    expect(policy.isDisposable("x@instágram.com")).toBe(true);
    expect(policy.isDisposable("x@INSTÁGRAM.COM")).toBe(true);
    expect(policy.isDisposable("x@xn--instgram-cza.com")).toBe(true);
    // Full-width letters and an ideographic full stop map to mailinator.com.
    expect(policy.isDisposable("x@ｍａｉｌｉｎａｔｏｒ.com")).toBe(true);
    expect(policy.isDisposable("x@mailinator。com")).toBe(true);
  });

  it("does not flag common real providers", () => {
    for (const domain of ["gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "proton.me", "gmx.de"]) {
      expect(policy.isDisposable(`someone@${domain}`), domain).toBe(false);
    }
  });

  it("does not judge what is not an address", () => {
    expect(policy.isDisposable("")).toBe(false);
    expect(policy.isDisposable("someone@")).toBe(false);
    expect(policy.isDisposable("someone@bad domain")).toBe(false);
  });

  it("lets the operator allow a listed domain, with its sub-domains", () => {
    const allowing = createDisposableEmailPolicy({ allow: ["Mailinator.com."] });
    expect(allowing.isDisposable("x@mailinator.com")).toBe(false);
    expect(allowing.isDisposable("x@team.mailinator.com")).toBe(false);
    expect(allowing.isDisposable("x@yopmail.com")).toBe(true);
    // The shared list is not changed by one policy's overrides.
    expect(policy.isDisposable("x@mailinator.com")).toBe(true);
  });

  it("lets the operator deny extra domains, with their sub-domains", () => {
    const denying = createDisposableEmailPolicy({ deny: ["burner.example.test", "bücher.example"] });
    expect(denying.isDisposable("x@burner.example.test")).toBe(true);
    expect(denying.isDisposable("x@eu.burner.example.test")).toBe(true);
    expect(denying.isDisposable("x@example.test")).toBe(false);
    expect(denying.isDisposable("x@xn--bcher-kva.example")).toBe(true);
    expect(policy.isDisposable("x@burner.example.test")).toBe(false);
  });

  it("applies the most specific override", () => {
    const mixed = createDisposableEmailPolicy({ deny: ["example.test"], allow: ["good.example.test"] });
    expect(mixed.isDisposable("x@other.example.test")).toBe(true);
    expect(mixed.isDisposable("x@good.example.test")).toBe(false);
    expect(mixed.isDisposable("x@mail.good.example.test")).toBe(false);
  });

  it("refuses an invalid override domain", () => {
    expect(() => createDisposableEmailPolicy({ allow: [""] })).toThrow();
    expect(() => createDisposableEmailPolicy({ deny: ["not a domain"] })).toThrow();
  });

  it("does not refuse everything under a registry-like entry (edu.pl), only the entry itself", () => {
    const policy = createDisposableEmailPolicy();
    expect(policy.isDisposable("student@uw.edu.pl")).toBe(false);
    expect(policy.isDisposable("x@edu.pl")).toBe(true);
    // Ordinary entries still catch their sub-domains.
    expect(policy.isDisposable("x@inbox.mailinator.com")).toBe(true);
  });
});
