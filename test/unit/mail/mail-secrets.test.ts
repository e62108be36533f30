import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createMailSecrets, hashMailToken, isMailTokenShape } from "../../../src/mail/mail-secrets.js";
import { uuidv7 } from "../../../src/shared/uuid.js";

// A mail's link token and code, derived from its outbox id with a server
// key: a resend carries the same ones, another mail or key other ones.

const KEY = new Uint8Array(32).fill(7);
const OTHER_KEY = new Uint8Array(32).fill(8);
const ids = Array.from({ length: 200 }, (_, i) => uuidv7(new Date(Date.UTC(2026, 0, 1) + i)));

describe("mail secrets", () => {
  const secrets = createMailSecrets(KEY);

  it("a token is 43 base64url characters (256 bits) that pass the shape check", () => {
    for (const id of ids) {
      const token = secrets.token(id);
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(token, "base64url")).toHaveLength(32);
      expect(isMailTokenShape(token)).toBe(true);
    }
  });

  it("is deterministic per id and key, different per id and per key", () => {
    const again = createMailSecrets(new Uint8Array(KEY));
    const other = createMailSecrets(OTHER_KEY);
    for (const id of ids) {
      expect(again.token(id)).toBe(secrets.token(id));
      expect(again.code(id)).toBe(secrets.code(id));
      expect(other.token(id)).not.toBe(secrets.token(id));
    }
    expect(new Set(ids.map((id) => secrets.token(id))).size).toBe(ids.length);
    // Codes have 10^6 values: a few of 200 may collide, not most.
    expect(new Set(ids.map((id) => secrets.code(id))).size).toBeGreaterThan(190);
    // Token and code of one mail are not the same derivation.
    expect(secrets.token(ids[0]!)).not.toContain(secrets.code(ids[0]!));
  });

  it("a code is 6 digits, leading zeros kept, spread over the range", () => {
    const codes = ids.map((id) => secrets.code(id));
    for (const code of codes) expect(code).toMatch(/^\d{6}$/);
    const firstDigits = new Set(codes.map((c) => c[0]));
    expect(firstDigits.size).toBeGreaterThanOrEqual(8);
    expect(firstDigits.has("0")).toBe(true);
  });

  it("codeMatches takes the code with spaces or dashes, and refuses other codes and wrong lengths", () => {
    const id = ids[3]!;
    const code = secrets.code(id);
    const spaced = `${code.slice(0, 3)} ${code.slice(3)}`;
    expect(secrets.codeMatches(id, code)).toBe(true);
    expect(secrets.codeMatches(id, spaced)).toBe(true);
    expect(secrets.codeMatches(id, `${code.slice(0, 3)}-${code.slice(3)}`)).toBe(true);
    expect(secrets.codeMatches(id, ` ${code.split("").join(" ")}\t`)).toBe(true);
    const wrong = ((Number(code) + 1) % 1_000_000).toString().padStart(6, "0");
    expect(secrets.codeMatches(id, wrong)).toBe(false);
    expect(secrets.codeMatches(id, code.slice(0, 5))).toBe(false);
    expect(secrets.codeMatches(id, `${code}0`)).toBe(false);
    expect(secrets.codeMatches(id, `0${code}`)).toBe(false);
    expect(secrets.codeMatches(id, "")).toBe(false);
    expect(secrets.codeMatches(id, "------")).toBe(false);
    // Another mail's code is not this one's.
    const otherId = ids.find((o) => secrets.code(o) !== code)!;
    expect(secrets.codeMatches(otherId, code)).toBe(false);
    // Nor is the code under another key.
    expect(createMailSecrets(OTHER_KEY).codeMatches(id, code)).toBe(createMailSecrets(OTHER_KEY).code(id) === code);
  });

  it("refuses a key shorter than 32 bytes", () => {
    expect(() => createMailSecrets(new Uint8Array(31))).toThrow(/at least 32 bytes/);
    expect(() => createMailSecrets(new Uint8Array(64))).not.toThrow();
  });

  it("stores a token as its SHA-256, and the shape check refuses anything else", () => {
    const token = secrets.token(ids[0]!);
    expect(Buffer.from(hashMailToken(token))).toEqual(createHash("sha256").update(token).digest());
    for (const bad of ["", token.slice(1), `${token}A`, `${token.slice(0, 42)}=`, `${token.slice(0, 42)}+`, `${token.slice(0, 42)}/`, ` ${token.slice(1)}`]) {
      expect(isMailTokenShape(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});
