import { createRequire } from "node:module";
import type { lookup as geoIpLookup } from "geoip-lite";

export interface GeoPoint {
  country?: string | undefined;
  lat: number;
  lon: number;
  accuracyKm?: number | undefined;
}

export interface GeoLocator {
  locate(ip: string): GeoPoint | undefined;
}

/** geoip-lite, loaded lazily on first locate(). Private, loopback, link-local and unknown addresses → undefined. */
export function createGeoIpLocator(): GeoLocator {
  // The package reads ~110 MB of data synchronously when required: only pay
  // for it when risk scoring is enabled and a public address shows up.
  let lookup: typeof geoIpLookup | undefined;
  return {
    locate(ip) {
      const addr = parseIp(ip);
      if (addr === undefined || isNonPublic(addr)) return undefined;
      lookup ??= (createRequire(import.meta.url)("geoip-lite") as { lookup: typeof geoIpLookup }).lookup;
      const hit = lookup(formatAddress(addr));
      // Records without a location carry ll = [null, null].
      const lat = hit?.ll[0];
      const lon = hit?.ll[1];
      if (hit == null || typeof lat !== "number" || typeof lon !== "number") return undefined;
      return {
        country: hit.country || undefined,
        lat,
        lon,
        accuracyKm: hit.area > 0 ? hit.area : undefined,
      };
    },
  };
}

/** A fixed table (tests and offline fixtures): exact IPs or CIDR prefixes → point. */
export function createStaticGeoLocator(entries: readonly { cidr: string; point: GeoPoint }[]): GeoLocator {
  const table = entries
    .map(({ cidr, point }) => {
      const net = parseCidr(cidr);
      if (net === undefined) throw new Error(`static geo locator: invalid address or CIDR "${cidr}"`);
      return { ...net, point: { ...point } };
    })
    // Longest prefix first, so the most specific entry wins.
    .sort((a, b) => b.bits - a.bits);
  return {
    locate(ip) {
      const addr = parseIp(ip);
      if (addr === undefined) return undefined;
      const hit = table.find((entry) => inPrefix(addr, entry.bytes, entry.bits));
      return hit === undefined ? undefined : { ...hit.point };
    },
  };
}

const EARTH_RADIUS_KM = 6371.0088; // IUGG mean radius
const RAD = Math.PI / 180;

/** Great-circle distance in km (haversine). */
export function distanceKm(a: GeoPoint, b: GeoPoint): number {
  const dLat = (b.lat - a.lat) * RAD;
  const dLon = (b.lon - a.lon) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * RAD) * Math.cos(b.lat * RAD) * Math.sin(dLon / 2) ** 2;
  // min() guards against rounding just above 1 for antipodal points.
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** The /24 (IPv4) or /48 (IPv6) network of an address, for network-novelty signals ("203.0.113.0/24"); undefined when not an IP. Handle ::ffff:-mapped IPv4. */
export function networkPrefix(ip: string): string | undefined {
  const addr = parseIp(ip);
  if (addr === undefined) return undefined;
  if (isMappedV4(addr)) return `${addr[12]}.${addr[13]}.${addr[14]}.0/24`;
  const net = new Uint8Array(16);
  net.set(addr.subarray(0, 6));
  return `${formatV6(net)}/48`;
}

/**
 * The key of a client for per-source limits and blocks: the IPv4 address
 * itself, or the /64 of an IPv6 one (a subscriber usually holds a whole /64,
 * so keying by the full address would let one client rotate through 2^64
 * identities). Undefined when not an IP.
 */
export function sourcePrefix(ip: string): string | undefined {
  const addr = parseIp(ip);
  if (addr === undefined) return undefined;
  if (isMappedV4(addr)) return `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`;
  const net = new Uint8Array(16);
  net.set(addr.subarray(0, 8));
  return `${formatV6(net)}/64`;
}

// Addresses are held as 16 bytes; IPv4 becomes ::ffff:a.b.c.d, so mapped and
// plain forms of the same address compare equal and one matcher serves both.
type Address = Uint8Array;

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function isMappedV4(addr: Address): boolean {
  for (let i = 0; i < 12; i++) if (addr[i] !== V4_MAPPED_PREFIX[i]) return false;
  return true;
}

const V4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const V4 = new RegExp(`^${V4_OCTET}(?:\\.${V4_OCTET}){3}$`);
const HEXTET = /^[0-9A-Fa-f]{1,4}$/;

function parseIp(input: string): Address | undefined {
  if (input.length > 64) return undefined;
  if (V4.test(input)) {
    const addr = new Uint8Array(16);
    addr.set(V4_MAPPED_PREFIX);
    input.split(".").forEach((octet, i) => (addr[12 + i] = Number(octet)));
    return addr;
  }
  return parseV6(input);
}

function parseV6(input: string): Address | undefined {
  // A zone ("fe80::1%eth0") names an interface, not part of the address.
  const zone = input.indexOf("%");
  const text = zone >= 0 ? input.slice(0, zone) : input;
  if (!text.includes(":")) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  // Dotted IPv4 may only end the whole address ("::ffff:192.0.2.1").
  const words = (half: string, v4Tail: boolean): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      if (v4Tail && i === parts.length - 1 && V4.test(part)) {
        const [a, b, c, d] = part.split(".").map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else if (HEXTET.test(part)) {
        out.push(parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = words(halves[0] as string, halves.length === 1);
  const tail = halves.length === 2 ? words(halves[1] as string, true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  // "::" stands for at least one zero group; without it there must be exactly eight.
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const addr = new Uint8Array(16);
  all.forEach((word, i) => {
    addr[2 * i] = word >> 8;
    addr[2 * i + 1] = word & 0xff;
  });
  return addr;
}

function parseCidr(cidr: string): { bytes: Address; bits: number } | undefined {
  const slash = cidr.indexOf("/");
  const ip = slash >= 0 ? cidr.slice(0, slash) : cidr;
  const addr = parseIp(ip);
  if (addr === undefined) return undefined;
  const v4 = V4.test(ip);
  const max = v4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const suffix = cidr.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(suffix) || Number(suffix) > max) return undefined;
    bits = Number(suffix);
  }
  return { bytes: addr, bits: v4 ? 96 + bits : bits };
}

function inPrefix(addr: Address, net: Address, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (addr[i] !== net[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((addr[whole] as number) & mask) === ((net[whole] as number) & mask);
}

// Not routable on the public internet, or not a single host: geolocating
// them would only place every office NAT or test address somewhere arbitrary.
const NON_PUBLIC = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10", // carrier-grade NAT
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "::/128",
  "::1/128",
  "100::/64",
  "2001:db8::/32",
  "fc00::/7",
  "fe80::/10",
  "ff00::/8",
].map((cidr) => parseCidr(cidr) as { bytes: Address; bits: number });

function isNonPublic(addr: Address): boolean {
  return NON_PUBLIC.some((net) => inPrefix(addr, net.bytes, net.bits));
}

function formatAddress(addr: Address): string {
  return isMappedV4(addr) ? `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}` : formatV6(addr);
}

// RFC 5952: lower-case hex, no leading zeros, the longest run (two or more)
// of zero groups written as "::".
function formatV6(addr: Address): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((addr[i] as number) << 8) | (addr[i + 1] as number));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => words.slice(from, to).map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}
