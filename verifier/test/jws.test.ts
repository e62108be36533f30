import { createPrivateKey, sign as edSign } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createVerifier, VerificationError, type Verifier } from "../src/index.js";
import { AUDIENCE, b64url, claimsAt, codeOf, createTestKey, ISSUER, parts, startJwksServer, type JwksServer, type TestKey } from "./support.js";

// The compact JWS parsing and signature check done by the verifier itself
// (node:crypto Ed25519 over a KeyObject per JWKS key, no WebCrypto).

const NOW_MS = Date.parse("2025-06-15T12:00:00.000Z");
const nowS = NOW_MS / 1000;
const HEADER = { alg: "EdDSA", typ: "at+jwt" };
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

describe("compact JWS handling", () => {
  let ours: TestKey;
  let jwks: JwksServer;
  let verifier: Verifier;
  let hitsBefore: number;

  const claims = () => claimsAt(nowS);
  const codeFor = (token: string) => codeOf(verifier.verify(token));
  const header = (extra: Record<string, unknown> = {}) => ({ ...HEADER, kid: ours.kid, ...extra });

  beforeAll(async () => {
    ours = await createTestKey();
    jwks = await startJwksServer([ours.publicJwk]);
  });
  afterAll(() => jwks.close());
  beforeEach(async () => {
    verifier = createVerifier({ jwksUrl: jwks.url, issuer: ISSUER, audience: AUDIENCE, now: () => NOW_MS });
    await verifier.ready();
    hitsBefore = jwks.hits;
  });
  afterEach(async () => {
    // Nothing here has an unknown kid: no test may cause a JWKS fetch.
    expect(jwks.hits).toBe(hitsBefore);
    vi.restoreAllMocks();
    await verifier.close();
  });

  it("verifies with node:crypto, never WebCrypto", async () => {
    const subtle = vi.spyOn(globalThis.crypto.subtle, "verify");
    await expect(verifier.verify(await ours.sign(claims()))).resolves.toBeDefined();
    expect(await codeFor(`${parts(await ours.sign(claims())).slice(0, 2).join(".")}.${"A".repeat(86)}`)).toBe("TOKEN_INVALID");
    expect(subtle).not.toHaveBeenCalled();
  });

  describe("signature length: exactly 64 bytes, or TOKEN_INVALID", () => {
    it.each([0, 1, 32, 63, 65, 128])("%i bytes", async (n) => {
      const [h, p, s] = parts(await ours.sign(claims()));
      const genuine = Buffer.from(s, "base64url");
      const sig = Buffer.alloc(n);
      genuine.copy(sig, 0, 0, Math.min(n, 64));
      expect(await codeFor(`${h}.${p}.${sig.toString("base64url")}`)).toBe("TOKEN_INVALID");
    });

    it("the genuine 64 bytes followed by one more", async () => {
      const [h, p, s] = parts(await ours.sign(claims()));
      const longer = Buffer.concat([Buffer.from(s, "base64url"), Buffer.from([0])]);
      expect(await codeFor(`${h}.${p}.${longer.toString("base64url")}`)).toBe("TOKEN_INVALID");
    });

    it("a signature part of 1 mod 4 characters is not base64url: TOKEN_MALFORMED", async () => {
      const [h, p, s] = parts(await ours.sign(claims()));
      expect(await codeFor(`${h}.${p}.${s.slice(0, 85)}`)).toBe("TOKEN_MALFORMED");
      expect(await codeFor(`${h}.${p}.${s}AAA`)).toBe("TOKEN_MALFORMED"); // 89 characters
      expect(await codeFor(`${h}.${p}.A`)).toBe("TOKEN_MALFORMED");
    });
  });

  it("only the canonical spelling of a genuine signature verifies", async () => {
    const token = await ours.sign(claims());
    const [h, p, s] = parts(token);
    await expect(verifier.verify(token)).resolves.toBeDefined();
    // The last of 86 characters carries 2 data bits and 4 unused ones; a
    // lenient decoder maps all 16 variants to the same 64 bytes.
    const last = B64URL.indexOf(s.at(-1)!);
    expect(last & 0x0f).toBe(0);
    for (let low = 1; low < 16; low++) {
      const variant = `${h}.${p}.${s.slice(0, -1)}${B64URL[last | low]}`;
      expect(Buffer.from(variant.split(".")[2]!, "base64url").equals(Buffer.from(s, "base64url"))).toBe(true);
      expect(await codeFor(variant)).toBe("TOKEN_INVALID");
    }
  });

  describe("strict base64url: padding and other characters are TOKEN_MALFORMED", () => {
    it.each(["=", "==", "+", "/", " ", "%3D", "\n", "\u00e9"])("%j appended to or inside a part", async (junk) => {
      const [h, p, s] = parts(await ours.sign(claims()));
      for (const token of [`${h}${junk}.${p}.${s}`, `${h}.${p}${junk}.${s}`, `${h}.${p}.${s}${junk}`, `${h}.${p.slice(0, 5)}${junk}${p.slice(5)}.${s}`]) {
        expect(await codeFor(token)).toBe("TOKEN_MALFORMED");
      }
    });

    it("a header or payload of 1 mod 4 characters", async () => {
      const [h, p, s] = parts(await ours.sign(claims()));
      const pad = (x: string) => (x.length % 4 === 0 ? `${x}A` : x.length % 4 === 3 ? `${x}AA` : `${x}AAA`);
      expect(pad(h).length % 4).toBe(1);
      expect(await codeFor(`${pad(h)}.${p}.${s}`)).toBe("TOKEN_MALFORMED");
      // The payload is decoded after the signature check, which covers it as
      // encoded: tampering is a bad signature, a signed one is malformed.
      expect(await codeFor(`${h}.${pad(p)}.${s}`)).toBe("TOKEN_INVALID");
      const input = `${h}.${pad(p)}`;
      const signed = edSign(null, Buffer.from(input), createPrivateKey({ key: ours.privateJwk as never, format: "jwk" }));
      expect(await codeFor(`${input}.${signed.toString("base64url")}`)).toBe("TOKEN_MALFORMED");
    });
  });

  it.each([
    ["a doubled first dot", (h: string, p: string, s: string) => `${h}..${p}.${s}`],
    ["a doubled second dot", (h: string, p: string, s: string) => `${h}.${p}..${s}`],
    ["a leading dot", (h: string, p: string, s: string) => `.${h}.${p}.${s}`],
    ["a trailing dot", (h: string, p: string, s: string) => `${h}.${p}.${s}.`],
    ["four parts", (h: string, p: string, s: string) => `${h}.${p}.${s}.${s}`],
    ["an empty header", (_h: string, p: string, s: string) => `.${p}.${s}`],
    ["an empty payload", (h: string, _p: string, s: string) => `${h}..${s}`],
    ["two parts", (h: string, p: string) => `${h}.${p}`],
  ])("%s: TOKEN_MALFORMED", async (_what, shape) => {
    const [h, p, s] = parts(await ours.sign(claims()));
    expect(await codeFor(shape(h, p, s))).toBe("TOKEN_MALFORMED");
  });

  describe("the protected header must be a JSON object", () => {
    it.each([
      ["an array", [{ ...HEADER }]],
      ["a string", "EdDSA"],
      ["a number", 1],
      ["null", null],
      ["true", true],
    ])("%s: TOKEN_MALFORMED", async (_what, value) => {
      const [, p, s] = parts(await ours.sign(claims()));
      expect(await codeFor(`${b64url(value)}.${p}.${s}`)).toBe("TOKEN_MALFORMED");
      expect(await codeFor(ours.signRaw(value as never, claims()))).toBe("TOKEN_MALFORMED");
    });

    it("not JSON, or not UTF-8: TOKEN_MALFORMED", async () => {
      const [, p, s] = parts(await ours.sign(claims()));
      expect(await codeFor(`${b64url("{alg:EdDSA}")}.${p}.${s}`)).toBe("TOKEN_MALFORMED");
      const latin1 = Buffer.from(`{"alg":"EdDSA","typ":"at+jwt","kid":"${ours.kid}","x":"\u00e9"}`, "latin1");
      expect(await codeFor(`${latin1.toString("base64url")}.${p}.${s}`)).toBe("TOKEN_MALFORMED");
    });

    it("alg missing or not a string: TOKEN_MALFORMED; any other alg: TOKEN_INVALID", async () => {
      expect(await codeFor(ours.signRaw({ typ: "at+jwt", kid: ours.kid }, claims()))).toBe("TOKEN_MALFORMED");
      expect(await codeFor(ours.signRaw(header({ alg: ["EdDSA"] }), claims()))).toBe("TOKEN_MALFORMED");
      expect(await codeFor(ours.signRaw(header({ alg: "" }), claims()))).toBe("TOKEN_MALFORMED");
      for (const alg of ["eddsa", "EDDSA", "EdDSA ", "ES256", "RS256"]) expect(await codeFor(ours.signRaw(header({ alg }), claims()))).toBe("TOKEN_INVALID");
    });

    it("key-locating headers are refused whatever their value, null included", async () => {
      for (const name of ["jku", "jwk", "x5u", "x5c"]) {
        for (const value of [null, "", {}, []]) expect(await codeFor(ours.signRaw(header({ [name]: value }), claims()))).toBe("TOKEN_INVALID");
      }
    });

    it("typ is compared as a media type, case-insensitively", async () => {
      for (const typ of ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"]) {
        await expect(verifier.verify(ours.signRaw(header({ typ }), claims()))).resolves.toBeDefined();
      }
      for (const typ of ["application/jwt", "text/at+jwt", "at+jwt;x=1", 1, null]) {
        expect(await codeFor(ours.signRaw(header({ typ }), claims()))).toBe("TOKEN_INVALID");
      }
    });

    it("crit: refused in any form, even b64 (which jose would honour)", async () => {
      expect(await codeFor(ours.signRaw(header({ crit: ["b64"], b64: true }), claims()))).toBe("TOKEN_INVALID");
      expect(await codeFor(ours.signRaw(header({ crit: ["b64"], b64: false }), claims()))).toBe("TOKEN_INVALID");
      expect(await codeFor(ours.signRaw(header({ crit: ["exp"], exp: 1 }), claims()))).toBe("TOKEN_INVALID");
      // Malformed crit values stay TOKEN_MALFORMED, as before.
      for (const crit of ["b64", [], [""], [1], {}]) expect(await codeFor(ours.signRaw(header({ crit }), claims()))).toBe("TOKEN_MALFORMED");
      expect(await codeFor(ours.signRaw(header({ crit: ["b64"] }), claims()))).toBe("TOKEN_MALFORMED");
    });
  });

  it("claims: the payload must be a JSON object, checked after the signature", async () => {
    for (const payload of [null, 1, "x", [claims()]]) expect(await codeFor(ours.signRaw(header(), payload))).toBe("TOKEN_MALFORMED");
    // A forged token with a garbage payload is a bad signature, not malformed.
    const [h] = parts(await ours.sign(claims()));
    expect(await codeFor(`${h}.${b64url("not json")}.${"A".repeat(86)}`)).toBe("TOKEN_INVALID");
  });

  it("failures carry a reason on err.cause for logs, never in the message", async () => {
    const err = (await verifier.verify(ours.signRaw(header({ alg: "HS256" }), claims())).catch((e: unknown) => e)) as VerificationError;
    expect(err).toBeInstanceOf(VerificationError);
    expect(err.message).toBe("access token is invalid");
    expect(err.cause).toBeInstanceOf(Error);
  });
});
