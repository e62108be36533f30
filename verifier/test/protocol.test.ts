import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  decodeRevocation,
  decodeRevocationUntil,
  encodeRevocation,
  isValidRedisPrefix,
  REVOCATION_CHANNEL,
  REVOCATION_KEY_PREFIX,
  revocationFeedNames,
  revocationKey,
} from "../src/index.js";

describe("revocation feed protocol", () => {
  it("names the channel and keys as the service publishes them", () => {
    expect(REVOCATION_CHANNEL).toBe("identity:revocations");
    expect(REVOCATION_KEY_PREFIX).toBe("identity:revoked:");
    expect(revocationKey("abc")).toBe("identity:revoked:abc");
    expect(revocationFeedNames()).toEqual({ channel: REVOCATION_CHANNEL, keyPrefix: REVOCATION_KEY_PREFIX });
  });

  it("names them under a deployment's REDIS_PREFIX", () => {
    expect(revocationFeedNames("shop-a:")).toEqual({ channel: "shop-a:revocations", keyPrefix: "shop-a:revoked:" });
    for (const prefix of ["", " ", "a b:", "{x}:", "x}", "\u00e9:", "x".repeat(65)]) {
      expect(isValidRedisPrefix(prefix), JSON.stringify(prefix)).toBe(false);
      expect(() => revocationFeedNames(prefix)).toThrow(TypeError);
    }
    expect(isValidRedisPrefix("x".repeat(64))).toBe(true);
  });

  it("encodes and decodes a revocation", () => {
    const sid = randomUUID();
    const wire = encodeRevocation({ sid, until: 1_750_000_000 });
    expect(JSON.parse(wire)).toEqual({ sid, until: 1_750_000_000 });
    expect(decodeRevocation(wire)).toEqual({ sid, until: 1_750_000_000 });
    expect(decodeRevocation(Buffer.from(wire))).toEqual({ sid, until: 1_750_000_000 });
  });

  it("ignores unknown extra fields (an older verifier still honours a newer message)", () => {
    expect(decodeRevocation('{"sid":"s1","until":5,"reason":"logout","v":2}')).toEqual({ sid: "s1", until: 5 });
  });

  it.each([
    "",
    "not json",
    "null",
    "42",
    '"s1"',
    "[]",
    '["s1",5]',
    "{}",
    '{"sid":"s1"}',
    '{"until":5}',
    '{"sid":5,"until":5}',
    '{"sid":"","until":5}',
    '{"sid":"has space","until":5}',
    '{"sid":"tab\\there","until":5}',
    '{"sid":"ünïcode","until":5}',
    `{"sid":"${"s".repeat(129)}","until":5}`,
    '{"sid":"s1","until":"5"}',
    '{"sid":"s1","until":5.5}',
    '{"sid":"s1","until":0}',
    '{"sid":"s1","until":-5}',
    '{"sid":"s1","until":1e300}',
    '{"sid":"s1","until":null}',
    '{"sid":"s1","until":true}',
    `{"sid":"s1","until":5,"pad":"${"x".repeat(600)}"}`,
    '{"__proto__":{"sid":"s1","until":5}}',
  ])("decodeRevocation refuses %j", (message) => {
    expect(decodeRevocation(message)).toBeUndefined();
  });

  it("encodeRevocation refuses what decodeRevocation would", () => {
    expect(() => encodeRevocation({ sid: "", until: 5 })).toThrow(TypeError);
    expect(() => encodeRevocation({ sid: "a b", until: 5 })).toThrow(TypeError);
    expect(() => encodeRevocation({ sid: "s", until: 5.5 })).toThrow(TypeError);
    expect(() => encodeRevocation({ sid: "s", until: 0 })).toThrow(TypeError);
  });

  it.each([
    ["1750000000", 1_750_000_000],
    ["5", 5],
    ["0", undefined],
    ["0123", undefined],
    ["-1", undefined],
    ["1.5", undefined],
    ["1e9", undefined],
    [" 5", undefined],
    ["", undefined],
    ["99999999999999999", undefined],
    [null, undefined],
  ])("decodeRevocationUntil(%j) is %j", (value, expected) => {
    expect(decodeRevocationUntil(value)).toBe(expected);
  });
});
