import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { createGeoIpLocator, createStaticGeoLocator, distanceKm, networkPrefix, sourcePrefix, type GeoPoint } from "../../../src/risk/geo.js";

const LONDON: GeoPoint = { lat: 51.5074, lon: -0.1278 };
const NEW_YORK: GeoPoint = { lat: 40.7128, lon: -74.006 };
const PARIS: GeoPoint = { lat: 48.8566, lon: 2.3522 };
const SYDNEY: GeoPoint = { lat: -33.8688, lon: 151.2093 };

describe("distanceKm", () => {
  it.each([
    ["London–New York", LONDON, NEW_YORK, 5570],
    ["London–Paris", LONDON, PARIS, 344],
    ["London–Sydney", LONDON, SYDNEY, 16994],
  ])("%s is within 1%% of %i km", (_name, a, b, km) => {
    expect(Math.abs(distanceKm(a, b) - km) / km).toBeLessThan(0.01);
  });

  it("is zero for one point, symmetric, and half the circumference for antipodes", () => {
    expect(distanceKm(LONDON, LONDON)).toBe(0);
    expect(distanceKm(LONDON, NEW_YORK)).toBeCloseTo(distanceKm(NEW_YORK, LONDON), 9);
    expect(distanceKm({ lat: 0, lon: 0 }, { lat: 0, lon: 180 })).toBeCloseTo(Math.PI * 6371.0088, 3);
    expect(distanceKm({ lat: 90, lon: 0 }, { lat: -90, lon: 0 })).toBeCloseTo(Math.PI * 6371.0088, 3);
  });

  it("wraps across the antimeridian", () => {
    // 179.5°E to 179.5°W on the equator is 1° apart, not 359°.
    expect(distanceKm({ lat: 0, lon: 179.5 }, { lat: 0, lon: -179.5 })).toBeCloseTo(111.2, 0);
  });
});

// Not addresses: undefined from networkPrefix and sourcePrefix alike.
const NOT_IPS = [
  "",
  "not-an-ip",
  "example.com",
  "unknown",
  "256.1.1.1",
  "1.2.3",
  "1.2.3.4.5",
  "01.2.3.4",
  "1.2.3.4/24",
  " 1.2.3.4",
  "1.2.3.4 ",
  "1:2:3:4:5:6:7:8:9",
  "1:2:3:4:5:6:7",
  "1::2::3",
  "12345::",
  "1.2.3.4::",
  ":1::",
  "::ffff:1.2.3.256",
  "[::1]",
  "2001:db8::/64",
  "2001:db8:1:2:1",
  `${"1:".repeat(40)}1`,
];

describe("networkPrefix", () => {
  it.each([
    ["203.0.113.77", "203.0.113.0/24"],
    ["0.0.0.0", "0.0.0.0/24"],
    ["255.255.255.255", "255.255.255.0/24"],
    ["::ffff:203.0.113.77", "203.0.113.0/24"],
    ["::FFFF:203.0.113.77", "203.0.113.0/24"],
    ["::ffff:cb00:714d", "203.0.113.0/24"],
    ["0:0:0:0:0:ffff:203.0.113.77", "203.0.113.0/24"],
    ["2001:db8:abcd:12::1", "2001:db8:abcd::/48"],
    ["2001:0DB8:0000:0012:0000:0000:0000:0001", "2001:db8::/48"],
    ["2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::/48"],
    ["1:2:3:4:5:6:7:8", "1:2:3::/48"],
    ["0:1:0::", "0:1::/48"],
    ["::1", "::/48"],
    ["::", "::/48"],
    ["fe80::1%eth0", "fe80::/48"],
    ["64:ff9b::192.0.2.33", "64:ff9b::/48"],
  ])("%s → %s", (ip, prefix) => {
    expect(networkPrefix(ip)).toBe(prefix);
  });

  it.each(NOT_IPS)("%j is not an IP", (ip) => {
    expect(networkPrefix(ip)).toBeUndefined();
  });
});

describe("sourcePrefix (the key of per-source limits, spray counters and blocks)", () => {
  it.each([
    // IPv4: the address itself.
    ["203.0.113.77", "203.0.113.77"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["127.0.0.1", "127.0.0.1"],
    // IPv4-mapped IPv6, in any spelling: the IPv4 address.
    ["::ffff:203.0.113.77", "203.0.113.77"],
    ["::FFFF:203.0.113.77", "203.0.113.77"],
    ["::ffff:cb00:714d", "203.0.113.77"],
    ["0:0:0:0:0:ffff:203.0.113.77", "203.0.113.77"],
    // IPv6: the /64, canonical (RFC 5952).
    ["2001:db8:1:2::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::ffff", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002:0000:0000:0000:0001", "2001:db8:1:2::/64"],
    ["2001:db8:1:3::1", "2001:db8:1:3::/64"],
    ["2001:db8::1", "2001:db8::/64"],
    ["2001:db8:0:0:1::", "2001:db8::/64"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4::/64"],
    ["::1", "::/64"],
    ["::", "::/64"],
    ["fe80::1%eth0", "fe80::/64"],
    ["64:ff9b::192.0.2.33", "64:ff9b::/64"],
  ])("%s → %s", (ip, key) => {
    expect(sourcePrefix(ip)).toBe(key);
  });

  it.each(NOT_IPS)("%j → undefined", (ip) => {
    expect(sourcePrefix(ip)).toBeUndefined();
  });

  it("one key per /64 however the address is spelled; the neighbouring /64s and the other 2^64 − 1 hosts' sets are apart", () => {
    const keys = new Set(["2001:db8:a:b::", "2001:db8:a:b::1", "2001:DB8:A:B:0:0:0:2", "2001:db8:a:b:8000::", "2001:db8:a:b:ffff:ffff:ffff:ffff"].map(sourcePrefix));
    expect([...keys]).toEqual(["2001:db8:a:b::/64"]);
    expect(new Set(["2001:db8:a:a::1", "2001:db8:a:b::1", "2001:db8:a:c::1", "2001:db8:b:b::1"].map(sourcePrefix)).size).toBe(4);
    // IPv4 neighbours are different sources (a /24 is often many customers).
    expect(sourcePrefix("203.0.113.1")).not.toBe(sourcePrefix("203.0.113.2"));
    // A key is never an address that another client could have: /64 keys carry their length.
    expect(sourcePrefix("2001:db8::")).not.toBe("2001:db8::");
  });
});

describe("static locator", () => {
  const A: GeoPoint = { country: "GB", lat: 51.5, lon: -0.13, accuracyKm: 50 };
  const B: GeoPoint = { country: "FR", lat: 48.86, lon: 2.35 };
  const C: GeoPoint = { country: "US", lat: 40.71, lon: -74.0 };
  const D: GeoPoint = { country: "AU", lat: -33.87, lon: 151.21 };
  const geo = createStaticGeoLocator([
    { cidr: "203.0.113.0/24", point: A },
    { cidr: "203.0.113.128/25", point: B }, // more specific: wins whatever the order
    { cidr: "198.51.100.7", point: C },
    { cidr: "2001:db8::/32", point: D },
  ]);

  it("finds exact addresses and the longest matching prefix", () => {
    expect(geo.locate("203.0.113.5")).toEqual(A);
    expect(geo.locate("203.0.113.127")).toEqual(A);
    expect(geo.locate("203.0.113.128")).toEqual(B);
    expect(geo.locate("203.0.113.255")).toEqual(B);
    expect(geo.locate("198.51.100.7")).toEqual(C);
    expect(geo.locate("2001:db8:1::5")).toEqual(D);
  });

  it("matches mapped IPv4 like plain IPv4", () => {
    expect(geo.locate("::ffff:203.0.113.200")).toEqual(B);
    expect(geo.locate("::ffff:198.51.100.7")).toEqual(C);
  });

  it("misses outside the table and on garbage", () => {
    expect(geo.locate("198.51.100.8")).toBeUndefined();
    expect(geo.locate("203.0.114.1")).toBeUndefined();
    expect(geo.locate("2001:db9::1")).toBeUndefined();
    expect(geo.locate("nope")).toBeUndefined();
  });

  it("hands out copies", () => {
    const hit = geo.locate("198.51.100.7") as GeoPoint;
    hit.lat = 0;
    expect(geo.locate("198.51.100.7")).toEqual(C);
  });

  it("handles /0 and odd prefix lengths", () => {
    const world = createStaticGeoLocator([
      { cidr: "0.0.0.0/0", point: A },
      { cidr: "10.0.0.0/9", point: B },
    ]);
    expect(world.locate("8.8.8.8")).toEqual(A);
    expect(world.locate("10.127.255.255")).toEqual(B);
    expect(world.locate("10.128.0.0")).toEqual(A);
    // The IPv4 /0 covers IPv4 only.
    expect(world.locate("2001:db8::1")).toBeUndefined();
  });

  it.each(["203.0.113.0/33", "2001:db8::/129", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/8/8", "nope", ""])("refuses the entry %j", (cidr) => {
    expect(() => createStaticGeoLocator([{ cidr, point: A }])).toThrow();
  });
});

// The only test that loads the real GeoIP data (~150 MB, ~150 ms).
describe("geoip-lite locator", () => {
  const require = createRequire(import.meta.url);
  const loaded = () => Object.keys(require.cache).some((path) => path.includes("geoip-lite"));

  it("refuses non-public addresses without loading the data, then locates public ones", () => {
    const geo = createGeoIpLocator();
    expect(loaded()).toBe(false);
    for (const ip of [
      "10.1.2.3",
      "172.16.5.4",
      "192.168.1.1",
      "127.0.0.1",
      "169.254.10.20",
      "100.64.0.1",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "::1",
      "::",
      "fe80::1",
      "fe80::1%eth0",
      "fc00::1",
      "fd12:3456::1",
      "ff02::1",
      "::ffff:10.0.0.1",
      "::ffff:127.0.0.1",
      "not an ip",
      "",
    ]) {
      expect(geo.locate(ip), ip).toBeUndefined();
    }
    expect(loaded()).toBe(false);

    const google = geo.locate("8.8.8.8");
    expect(loaded()).toBe(true);
    expect(google?.country).toBe("US");
    expect(typeof google?.lat).toBe("number");
    expect(typeof google?.lon).toBe("number");
    expect(Math.abs(google?.lat ?? 999)).toBeLessThanOrEqual(90);
    expect(Math.abs(google?.lon ?? 999)).toBeLessThanOrEqual(180);
    expect(google?.accuracyKm).toBeGreaterThan(0);

    expect(geo.locate("::ffff:8.8.8.8")).toEqual(google);
    expect(geo.locate("2001:4860:4860::8888")?.country).toBe("US");
  });
});
