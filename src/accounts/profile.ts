import { DomainError } from "../shared/errors.js";
import type { Profile, ProfilePatch } from "./ports.js";

// Personal details as the user typed them, made consistent: trimmed text,
// a real calendar date of birth (the time of day, if sent, is dropped:
// minimal collection), empty meaning "none".

export interface ProfileInput {
  name?: string | undefined;
  phoneNumber?: string | undefined;
  dateOfBirth?: string | undefined;
  gender?: boolean | undefined;
  address?: string | undefined;
  locale?: string | undefined;
}

const DATE_PREFIX = /^(\d{4})-(\d{2})-(\d{2})(?:$|[T ])/;

function invalid(field: string, message: string): DomainError {
  return new DomainError("invalid_argument", "VALIDATION_FAILED", `${field}: ${message}`, { field });
}

export function parseDateOfBirth(raw: string, today: Date): string {
  const m = DATE_PREFIX.exec(raw.trim());
  if (!m) throw invalid("info_user.date_of_birth", "must be an ISO 8601 date");
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) {
    throw invalid("info_user.date_of_birth", "is not a calendar date");
  }
  if (year < 1900 || date.getTime() > today.getTime()) {
    throw invalid("info_user.date_of_birth", "must be between 1900-01-01 and today");
  }
  return `${m[1]}-${m[2]}-${m[3]}`;
}

// Bidi controls: embeddings and overrides (U+202A–U+202E), isolates
// (U+2066–U+2069) and the marks LRM, RLM and ALM. They make a name display
// other than it reads ("Trojan Source"): "evil\u202Egnp.exe" shows as
// "evilexe.png". Ordinary right-to-left text needs none of them.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
// Control characters (C0, C1) and the line and paragraph separators would
// turn into log or header injection, or a line break, somewhere downstream.
const BREAKS_AND_CONTROLS = /[\p{Cc}\u2028\u2029]+/gu;

function text(raw: string | undefined): string | null | undefined {
  if (raw === undefined) return undefined;
  const cleaned = raw.normalize("NFC").replace(BIDI_CONTROLS, "").replace(BREAKS_AND_CONTROLS, " ").trim();
  return cleaned === "" ? null : cleaned;
}

function canonicalLocale(tag: string): string {
  try {
    return Intl.getCanonicalLocales(tag)[0] ?? tag.toLowerCase();
  } catch {
    throw invalid("info_user.locale", "is not a BCP 47 language tag");
  }
}

/** A patch: absent fields stay, empty ones are cleared. */
export function toProfilePatch(input: ProfileInput, today: Date): ProfilePatch {
  const patch: ProfilePatch = {};
  const name = text(input.name);
  if (name !== undefined) patch.name = name;
  const phone = text(input.phoneNumber);
  if (phone !== undefined) patch.phoneNumber = phone;
  const address = text(input.address);
  if (address !== undefined) patch.address = address;
  if (input.dateOfBirth !== undefined) {
    patch.dateOfBirth = input.dateOfBirth.trim() === "" ? null : parseDateOfBirth(input.dateOfBirth, today);
  }
  if (input.gender !== undefined) patch.gender = input.gender;
  // A BCP 47 tag (the proto's pattern checked its shape): stored as the
  // usual spelling, language lower-case ("VI-vn" → "vi-VN").
  if (input.locale !== undefined) patch.locale = input.locale.trim() === "" ? null : canonicalLocale(input.locale.trim());
  return patch;
}

/** A new profile: only what was given and not empty. */
export function toProfile(input: ProfileInput, today: Date): Profile {
  const profile: Profile = {};
  for (const [key, value] of Object.entries(toProfilePatch(input, today))) {
    if (value !== null && value !== undefined) (profile as Record<string, unknown>)[key] = value;
  }
  return profile;
}
