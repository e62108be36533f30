import { describe, expect, it } from "vitest";
import { mailKinds, type MailKind } from "../../../src/mail/ports.js";
import { noticeEvents, type MailVars } from "../../../src/mail/templates/catalogue.js";
import { en } from "../../../src/mail/templates/en.js";
import { mailLocale, mailLocales, renderMail } from "../../../src/mail/templates/layout.js";
import { vi } from "../../../src/mail/templates/vi.js";

// Every mail kind in every language: a text and an HTML part with the same
// words and the same link, every variable escaped in the HTML, English
// for a language there is no catalogue of.

const LINK = "https://shop.example/verify-email?token=AbC_dEf-123&lang=vi";
const vars: MailVars = {
  appName: "Shop",
  link: LINK,
  code: "042917",
  event: "password_changed",
  ip: "203.0.113.7",
  at: "2026-02-01T09:00:00.000Z",
  newEmail: "n***@example.org",
};

/** The kinds whose mail carries an action link. */
const withLink: readonly MailKind[] = ["verify_email", "registration_attempt", "password_reset", "email_login", "email_change_notice"];

const unescape = (s: string) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const hrefs = (html: string) => [...html.matchAll(/href="([^"]*)"/g)].map((m) => unescape(m[1]!));
const bodyText = (html: string) => unescape(html.replace(/<[^>]+>/g, " ")).replace(/\s+/g, " ");

describe("renderMail", () => {
  it("has English and Vietnamese", () => {
    expect([...mailLocales].sort()).toEqual(["en", "vi"]);
  });

  for (const locale of ["en", "vi"]) {
    for (const kind of mailKinds) {
      it(`${kind} (${locale}): subject, a text and an HTML part, the same link in both`, () => {
        const m = renderMail(kind, locale, vars);
        expect(m.subject.length).toBeGreaterThan(3);
        expect(m.html).toMatch(new RegExp(`^<!doctype html><html lang="${locale}">`));
        expect(m.html).toContain(`<title>${m.subject}</title>`);
        expect(m.text.endsWith("\n")).toBe(true);
        if (withLink.includes(kind)) {
          expect(m.links).toEqual([LINK]);
          // The text part has the link as is, the HTML part as its button and as visible text.
          expect(m.text.split("\n")).toContain(LINK);
          expect(hrefs(m.html)).toEqual([LINK]);
          expect(bodyText(m.html)).toContain(LINK);
        } else {
          expect(m.links).toEqual([]);
          expect(hrefs(m.html)).toEqual([]);
          expect(m.text).not.toContain("https://");
        }
        // Every paragraph of the text is in the HTML too.
        const html = bodyText(m.html);
        for (const line of m.text.split("\n").map((l) => l.trim()).filter(Boolean)) expect(html).toContain(line.replace(/:$/, ""));
      });
    }
  }

  it("the two languages differ for every kind (the Vietnamese catalogue is not English)", () => {
    for (const kind of mailKinds) expect(renderMail(kind, "vi", vars).subject, kind).not.toBe(renderMail(kind, "en", vars).subject);
  });

  it("every security-notice event has its own sentence in both languages", () => {
    for (const catalogue of [en, vi]) {
      const fallback = catalogue.security_notice({ appName: "Shop", event: "no_such_event" }).subject;
      const subjects = noticeEvents.map((event) => catalogue.security_notice({ appName: "Shop", event }).subject);
      expect(subjects).not.toContain(fallback);
      expect(new Set(subjects).size).toBe(noticeEvents.length);
    }
  });

  it("quotes the code of an e-mail login in both parts, and where and when it was asked for", () => {
    for (const locale of ["en", "vi"]) {
      const m = renderMail("email_login", locale, vars);
      expect(m.text).toMatch(/^\s+042917$/m);
      expect(m.html).toContain(">042917</p>");
      expect(m.text).toContain("203.0.113.7");
    }
  });

  it("escapes every variable in the HTML part", () => {
    const hostile: MailVars = {
      appName: `<script>alert("app")</script>`,
      link: `https://shop.example/x?token=a"><img src=x onerror=alert(1)>&b='c'`,
      code: "<b>1</b>",
      event: "password_changed",
      ip: `<img src=x>`,
      at: `"><svg onload=alert(1)>`,
      newEmail: `<i>new</i>@example.org`,
    };
    for (const locale of ["en", "vi"]) {
      for (const kind of mailKinds) {
        const { html, text } = renderMail(kind, locale, hostile);
        expect(html, `${kind} ${locale}`).not.toMatch(/<script|<img|<svg|<b>|<i>|onerror="|onload="/);
        for (const [name, value] of Object.entries(hostile)) if (/[<>"']/.test(value!)) expect(html, `${kind} ${locale}: ${name} unescaped`).not.toContain(value);
        // The text part is plain text: nothing to escape, the values as given.
        if (kind !== "security_notice") expect(text).toContain(hostile.appName);
      }
      const reset = renderMail("password_reset", locale, hostile);
      expect(hrefs(reset.html)).toEqual([hostile.link]);
      expect(reset.html).toContain("&lt;script&gt;alert(&quot;app&quot;)&lt;/script&gt;");
    }
  });

  it("falls back to English for a language without a catalogue, and takes a region tag's language", () => {
    for (const kind of mailKinds) {
      for (const tag of ["fr", "", "xx-YY", "EN-gb"]) {
        const m = renderMail(kind, tag, vars);
        expect(m, `${kind} ${tag}`).toEqual(renderMail(kind, "en", vars));
      }
      expect(renderMail(kind, "vi-VN", vars)).toEqual(renderMail(kind, "vi", vars));
      expect(renderMail(kind, "VI", vars)).toEqual(renderMail(kind, "vi", vars));
    }
    expect(mailLocale(undefined)).toBe("en");
    expect(mailLocale("vi-VN")).toBe("vi");
    expect(mailLocale("de-DE")).toBe("en");
    // Not a way to reach an object's inherited properties.
    expect(mailLocale("constructor")).toBe("en");
    expect(mailLocale("__proto__")).toBe("en");
  });

  it("without a link there is no button, and no empty href", () => {
    const m = renderMail("verify_email", "en", { appName: "Shop" });
    expect(m.links).toEqual([]);
    expect(m.html).not.toContain("href=");
  });
});
