import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../../../src/config/config.js";
import { createClientInfoResolver } from "../../../../src/transport/rpc/client-info.js";

function request(remoteAddress: string | undefined, headers: Record<string, string | string[] | undefined> = {}) {
  return { headers, socket: { remoteAddress } };
}

describe("client address without trusted proxies", () => {
  const resolve = createClientInfoResolver([]);

  it("uses the socket address", () => {
    expect(resolve(request("203.0.113.7")).ip).toBe("203.0.113.7");
    expect(resolve(request("2001:db8::1")).ip).toBe("2001:db8::1");
  });

  it("ignores X-Forwarded-For entirely, whoever sends it", () => {
    expect(resolve(request("203.0.113.7", { "x-forwarded-for": "1.2.3.4" })).ip).toBe("203.0.113.7");
    expect(resolve(request("10.0.0.5", { "x-forwarded-for": "1.2.3.4, 5.6.7.8" })).ip).toBe("10.0.0.5");
    expect(resolve(request("127.0.0.1", { "x-forwarded-for": ["1.2.3.4", "5.6.7.8"] })).ip).toBe("127.0.0.1");
  });

  it("normalises an IPv4-mapped IPv6 socket address", () => {
    expect(resolve(request("::ffff:127.0.0.1")).ip).toBe("127.0.0.1");
    expect(resolve(request("::ffff:203.0.113.7")).ip).toBe("203.0.113.7");
  });

  it("has no address when the socket has none", () => {
    expect(resolve(request(undefined)).ip).toBeUndefined();
    expect(resolve(request(undefined, { "x-forwarded-for": "1.2.3.4" })).ip).toBeUndefined();
  });
});

describe("client address behind a trusted proxy (10.0.0.0/8)", () => {
  const resolve = createClientInfoResolver(["10.0.0.0/8"]);

  it("takes the hop the proxy appended", () => {
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("203.0.113.7");
  });

  it("ignores forged entries the client put to the left", () => {
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "6.6.6.6, 203.0.113.7" })).ip).toBe("203.0.113.7");
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "127.0.0.1, 10.9.9.9, 198.51.100.1, 203.0.113.7" })).ip).toBe(
      "203.0.113.7",
    );
  });

  it("skips every trusted hop from the right and stops at the first untrusted one", () => {
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.0.0.9, 10.0.0.8" })).ip).toBe(
      "203.0.113.7",
    );
  });

  it("ignores a forged trusted-looking entry left of the real client", () => {
    // The client claims to be a proxy: it is still the rightmost untrusted hop that counts.
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "10.0.0.1, 203.0.113.7" })).ip).toBe("203.0.113.7");
  });

  it("joins repeated X-Forwarded-For headers in order", () => {
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": ["6.6.6.6", "203.0.113.7"] })).ip).toBe("203.0.113.7");
  });

  it("ignores X-Forwarded-For from a socket outside the trusted range", () => {
    expect(resolve(request("198.51.100.1", { "x-forwarded-for": "6.6.6.6" })).ip).toBe("198.51.100.1");
    expect(resolve(request("11.0.0.1", { "x-forwarded-for": "6.6.6.6" })).ip).toBe("11.0.0.1");
  });

  it("uses the proxy's own address when it sends no X-Forwarded-For", () => {
    expect(resolve(request("10.1.2.3")).ip).toBe("10.1.2.3");
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "" })).ip).toBe("10.1.2.3");
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": " , ," })).ip).toBe("10.1.2.3");
  });

  it("trusts an IPv4-mapped socket address in the range and normalises mapped hops", () => {
    expect(resolve(request("::ffff:10.1.2.3", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("203.0.113.7");
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "::ffff:203.0.113.7" })).ip).toBe("203.0.113.7");
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "::ffff:127.0.0.1" })).ip).toBe("127.0.0.1");
  });

  it("accepts an IPv6 client hop", () => {
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "2001:db8::7" })).ip).toBe("2001:db8::7");
  });

  it.each([
    "garbage",
    "unknown",
    "203.0.113.7:4711",
    "[2001:db8::7]",
    "999.1.1.1",
    "<script>alert(1)</script>",
    "203.0.113.7\r\nX-Evil: 1",
    "1.2.3.4, garbage",
    "'; DROP TABLE sessions; --",
    "a".repeat(10_000),
  ])("never returns garbage from X-Forwarded-For %#", (header) => {
    const ip = resolve(request("10.1.2.3", { "x-forwarded-for": header })).ip;
    expect(ip === undefined || ip === "10.1.2.3").toBe(true);
  });
});

describe("trusted proxies by address, IPv6 range and mapped notation", () => {
  it("trusts a single address", () => {
    const resolve = createClientInfoResolver(["192.168.1.1"]);
    expect(resolve(request("192.168.1.1", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("203.0.113.7");
    expect(resolve(request("192.168.1.2", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("192.168.1.2");
  });

  it("trusts an IPv6 range", () => {
    const resolve = createClientInfoResolver(["fd00::/8"]);
    expect(resolve(request("fd12::1", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("203.0.113.7");
    expect(resolve(request("2001:db8::1", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("2001:db8::1");
  });

  it("accepts a mapped address in the trusted list", () => {
    const resolve = createClientInfoResolver(["::ffff:127.0.0.1"]);
    expect(resolve(request("::ffff:127.0.0.1", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("203.0.113.7");
  });
});

describe("trusted proxies as validated by config", () => {
  /** The resolver built from TRUSTED_PROXIES=value, or undefined if config refuses the value with a ConfigError. */
  function resolverFromConfig(value: string): ReturnType<typeof createClientInfoResolver> | undefined {
    let proxies: readonly string[];
    try {
      proxies = loadConfig({ TRUSTED_PROXIES: value }).trustedProxies;
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return undefined;
    }
    return createClientInfoResolver(proxies);
  }

  it.each(["10.0.0.0/8", "192.168.1.1", "fd00::/8", "::1", "::ffff:10.0.0.1"])("%s builds a resolver", (value) => {
    expect(resolverFromConfig(value)).toBeTypeOf("function");
  });

  it("::ffff:10.0.0.0/104 is refused by config or read as the IPv4 range 10.0.0.0/8, never a crash at boot", () => {
    const resolve = resolverFromConfig("::ffff:10.0.0.0/104");
    if (resolve === undefined) return;
    expect(resolve(request("10.1.2.3", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("203.0.113.7");
    expect(resolve(request("11.1.2.3", { "x-forwarded-for": "203.0.113.7" })).ip).toBe("11.1.2.3");
  });
});

describe("user agent", () => {
  const resolve = createClientInfoResolver([]);

  it("is kept as sent when short and clean", () => {
    expect(resolve(request("127.0.0.1", { "user-agent": "curl/8.5.0" })).userAgent).toBe("curl/8.5.0");
  });

  it("is absent when not sent or empty", () => {
    expect(resolve(request("127.0.0.1")).userAgent).toBeUndefined();
    expect(resolve(request("127.0.0.1", { "user-agent": "" })).userAgent).toBeUndefined();
  });

  it("is truncated to 512 characters", () => {
    const ua = resolve(request("127.0.0.1", { "user-agent": "M".repeat(100_000) })).userAgent;
    expect(ua).toHaveLength(512);
    expect(resolve(request("127.0.0.1", { "user-agent": "M".repeat(512) })).userAgent).toHaveLength(512);
  });

  it("has control characters replaced (C0 and DEL), keeping its length", () => {
    const ua = resolve(request("127.0.0.1", { "user-agent": "Evil\r\nX-Injected: 1\u0000\u001b[31m\u007f" })).userAgent!;
    expect(ua).not.toMatch(/[\u0000-\u001f\u007f]/);
    expect(ua.startsWith("Evil")).toBe(true);
    expect(ua).toContain("X-Injected: 1");
    expect(ua).toHaveLength("Evil\r\nX-Injected: 1\u0000\u001b[31m\u007f".length);
  });

  it("has C1 control characters replaced too (NEL, 8-bit CSI), as Node passes obs-text bytes through as latin1", () => {
    const ua = resolve(request("127.0.0.1", { "user-agent": "Evil\u0085Line\u009b31m" })).userAgent!;
    expect(ua).not.toMatch(/\p{Cc}/u);
  });

  it("is truncated after sanitising, so the cap holds with control characters", () => {
    const ua = resolve(request("127.0.0.1", { "user-agent": "\n".repeat(1_000) })).userAgent!;
    expect(ua).toHaveLength(512);
    expect(ua).not.toMatch(/[\u0000-\u001f]/);
  });
});
