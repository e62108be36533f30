import type { MailKind } from "../ports.js";
import type { Catalogue, MailContent, MailVars } from "./catalogue.js";
import { en } from "./en.js";
import { vi } from "./vi.js";

// One layout for every mail: a plain-text part and an HTML part with the
// same words. Every variable is escaped in the HTML; links are only ever
// APP_URL-based URLs the service built.

const catalogues: Record<string, Catalogue> = { en, vi };

/** The languages mails exist in. */
export const mailLocales = Object.keys(catalogues);

/** The catalogue language for a BCP 47 tag ("vi-VN" → "vi"); English when there is none. */
export function mailLocale(tag: string | undefined): string {
  const primary = (tag ?? "").toLowerCase().split("-")[0] ?? "";
  // Own keys only: "constructor" is `in` every object.
  return Object.hasOwn(catalogues, primary) ? primary : "en";
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");

function text(c: MailContent): string {
  const lines = [...c.paragraphs.flatMap((p) => [p, ""])];
  if (c.code) lines.push(`    ${c.code}`, "");
  if (c.action) lines.push(`${c.action.label}:`, c.action.url, "");
  lines.push(...c.footer);
  return `${lines.join("\n")}\n`;
}

function html(c: MailContent, lang: string): string {
  const p = (s: string) => `<p style="margin:0 0 16px">${escapeHtml(s)}</p>`;
  const parts = c.paragraphs.map(p);
  if (c.code) parts.push(`<p style="margin:0 0 16px;font-size:28px;letter-spacing:6px;font-weight:bold">${escapeHtml(c.code)}</p>`);
  if (c.action) {
    const url = escapeHtml(c.action.url);
    parts.push(
      `<p style="margin:0 0 16px"><a href="${url}" style="display:inline-block;padding:10px 18px;background:#1a56db;color:#ffffff;text-decoration:none;border-radius:4px">${escapeHtml(c.action.label)}</a></p>`,
      `<p style="margin:0 0 16px;font-size:12px;color:#555555">${url}</p>`,
    );
  }
  const footer = c.footer.map((s) => `<p style="margin:0 0 8px;font-size:12px;color:#555555">${escapeHtml(s)}</p>`).join("");
  return `<!doctype html><html lang="${lang}"><head><meta charset="utf-8"><title>${escapeHtml(c.subject)}</title></head><body style="font-family:Arial,sans-serif;font-size:15px;color:#111111"><div style="max-width:560px;margin:0 auto;padding:24px">${parts.join("")}${footer}</div></body></html>`;
}

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
  links: string[];
}

export function renderMail(kind: MailKind, locale: string, vars: MailVars): RenderedMail {
  const lang = mailLocale(locale);
  const content = catalogues[lang]![kind](vars);
  return { subject: content.subject, text: text(content), html: html(content, lang), links: content.action ? [content.action.url] : [] };
}
