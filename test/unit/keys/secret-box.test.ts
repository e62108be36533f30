import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createSecretBox, parseSecretBoxKeys, sealedKeyId, SecretBoxError } from "../../../src/keys/secret-box.js";

const k1 = { id: "k1", key: new Uint8Array(randomBytes(32)) };
const k2 = { id: "k2", key: new Uint8Array(randomBytes(32)) };
const secret = new TextEncoder().encode("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
const USER = "0190a1b2-0000-7000-8000-0000000000b1";
const OTHER = "0190a1b2-0000-7000-8000-0000000000b2";

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof SecretBoxError ? err.reason : `not a SecretBoxError: ${String(err)}`;
  }
  return undefined;
}

describe("secret box", () => {
  it("round-trips and does not leak the plaintext into the sealed bytes", () => {
    const box = createSecretBox([k1]);
    const sealed = box.seal(secret, USER);
    expect(Buffer.from(sealed).includes(Buffer.from(secret))).toBe(false);
    expect(box.open(sealed, USER)).toEqual(secret);
    expect(box.open(box.seal(new Uint8Array(0), USER), USER)).toEqual(new Uint8Array(0));
  });

  it("lays out version, key id, nonce, ciphertext and tag", () => {
    const sealed = createSecretBox([k1]).seal(secret, USER);
    expect(sealed[0]).toBe(1);
    expect(sealed[1]).toBe(2);
    expect(Buffer.from(sealed.subarray(2, 4)).toString("ascii")).toBe("k1");
    expect(sealed.length).toBe(1 + 1 + 2 + 12 + secret.length + 16);
  });

  it("refuses another owner's aad", () => {
    const box = createSecretBox([k1]);
    const sealed = box.seal(secret, USER);
    expect(reasonOf(() => box.open(sealed, OTHER))).toBe("DECRYPT_FAILED");
    expect(reasonOf(() => box.open(sealed, ""))).toBe("DECRYPT_FAILED");
  });

  it("refuses any flipped bit in nonce, ciphertext or tag", () => {
    const box = createSecretBox([k1]);
    const sealed = box.seal(secret, USER);
    const headerLength = 4;
    for (let i = headerLength; i < sealed.length; i++) {
      const bad = Uint8Array.from(sealed);
      bad[i] = (bad[i] as number) ^ (1 << (i % 8));
      expect(reasonOf(() => box.open(bad, USER)), `byte ${i}`).toBe("DECRYPT_FAILED");
    }
  });

  it("refuses a header whose key id was swapped to another configured key", () => {
    const kx = { id: "kx", key: k1.key }; // same key bytes, other id: the header is authenticated too
    const box = createSecretBox([k1, kx]);
    const sealed = box.seal(secret, USER);
    const swapped = Uint8Array.from(sealed);
    swapped.set(Buffer.from("kx"), 2);
    expect(reasonOf(() => box.open(swapped, USER))).toBe("DECRYPT_FAILED");
  });

  it("names an unknown key id and malformed input", () => {
    const sealed = createSecretBox([k1]).seal(secret, USER);
    const box2 = createSecretBox([k2]);
    expect(reasonOf(() => box2.open(sealed, USER))).toBe("UNKNOWN_KEY");
    expect(reasonOf(() => box2.open(new Uint8Array(0), USER))).toBe("MALFORMED");
    expect(reasonOf(() => box2.open(sealed.subarray(0, 20), USER))).toBe("MALFORMED");
    const badVersion = Uint8Array.from(sealed);
    badVersion[0] = 2;
    expect(reasonOf(() => box2.open(badVersion, USER))).toBe("MALFORMED");
    expect(reasonOf(() => box2.needsReseal(new Uint8Array([1, 0])))).toBe("MALFORMED");
    // The id a sealed value needs, for error messages; malformed input is no id.
    expect(sealedKeyId(sealed)).toBe("k1");
    expect(reasonOf(() => sealedKeyId(badVersion))).toBe("MALFORMED");
  });

  it("opens old ciphertexts after rotation and asks for a re-seal", () => {
    const old = createSecretBox([k1]);
    const sealedOld = old.seal(secret, USER);
    expect(old.needsReseal(sealedOld)).toBe(false);

    const rotated = createSecretBox([k2, k1]);
    expect(rotated.currentKeyId).toBe("k2");
    expect(rotated.open(sealedOld, USER)).toEqual(secret);
    expect(rotated.needsReseal(sealedOld)).toBe(true);

    const resealed = rotated.seal(rotated.open(sealedOld, USER), USER);
    expect(rotated.needsReseal(resealed)).toBe(false);
    expect(rotated.open(resealed, USER)).toEqual(secret);
    // Once k1 is retired, only the re-sealed copy still opens.
    const retired = createSecretBox([k2]);
    expect(retired.open(resealed, USER)).toEqual(secret);
    expect(reasonOf(() => retired.open(sealedOld, USER))).toBe("UNKNOWN_KEY");
  });

  it("uses a fresh nonce for every seal", () => {
    const box = createSecretBox([k1]);
    const nonces = new Set<string>();
    for (let i = 0; i < 1000; i++) nonces.add(Buffer.from(box.seal(secret, USER).subarray(4, 16)).toString("hex"));
    expect(nonces.size).toBe(1000);
  });

  it("keeps its own copy of the key", () => {
    const key = new Uint8Array(randomBytes(32));
    const box = createSecretBox([{ id: "k", key }]);
    const sealed = box.seal(secret, USER);
    key.fill(0);
    expect(box.open(sealed, USER)).toEqual(secret);
  });

  it("refuses bad key lists", () => {
    expect(() => createSecretBox([])).toThrow();
    expect(() => createSecretBox([{ id: "k1", key: new Uint8Array(16) }])).toThrow();
    expect(() => createSecretBox([k1, { ...k2, id: "k1" }])).toThrow();
    expect(() => createSecretBox([{ id: "bad id", key: k1.key }])).toThrow();
  });
});

describe("parseSecretBoxKeys", () => {
  const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
  const b64url = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64url");

  it("parses base64 and base64url, first is current", () => {
    // Bytes chosen so the two encodings differ (+/ versus -_).
    const tricky = new Uint8Array(32).fill(0xfb);
    const keys = parseSecretBoxKeys(` k2:${b64url(tricky)} , k1:${b64(k1.key)}`);
    expect(keys.map((k) => k.id)).toEqual(["k2", "k1"]);
    expect(keys[0]?.key).toEqual(tricky);
    expect(keys[1]?.key).toEqual(k1.key);
    expect(b64(tricky)).toContain("+");
    expect(parseSecretBoxKeys(`k:${b64(tricky)}`)[0]?.key).toEqual(tricky);
    const box = createSecretBox(keys);
    expect(box.currentKeyId).toBe("k2");
  });

  it("accepts the longest id and every allowed character", () => {
    expect(parseSecretBoxKeys(`aZ09_-aZ09_-aZ09:${b64(k1.key)}`)[0]?.id).toBe("aZ09_-aZ09_-aZ09");
  });

  it.each([
    ["empty", ""],
    ["no colon", b64(k1.key)],
    ["short key", `k1:${b64(new Uint8Array(31))}`],
    ["long key", `k1:${b64(new Uint8Array(33))}`],
    ["not base64", `k1:${"!".repeat(43)}=`],
    ["duplicate id", `k1:${b64(k1.key)},k1:${b64(k2.key)}`],
    ["empty id", `:${b64(k1.key)}`],
    ["id with a space", `k 1:${b64(k1.key)}`],
    ["id with a dot", `k.1:${b64(k1.key)}`],
    ["id too long", `${"a".repeat(17)}:${b64(k1.key)}`],
    ["trailing comma", `k1:${b64(k1.key)},`],
  ])("refuses %s", (_name, value) => {
    expect(() => parseSecretBoxKeys(value)).toThrow(Error);
  });

  it("never echoes key material in its errors", () => {
    const encoded = b64(new Uint8Array(randomBytes(31)));
    try {
      parseSecretBoxKeys(`k1:${encoded}`);
      expect.unreachable();
    } catch (err) {
      expect(String(err)).not.toContain(encoded);
    }
  });
});
