import { BlockList, isIP, isIPv6 } from "node:net";
import type { ClientInfo } from "../../shared/call.js";

const MAX_USER_AGENT = 512;

interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
  socket: { remoteAddress?: string | undefined };
}

function family(ip: string): "ipv4" | "ipv6" {
  return isIPv6(ip) ? "ipv6" : "ipv4";
}

function stripMapped(ip: string): string {
  return ip.startsWith("::ffff:") && ip.includes(".") ? ip.slice(7) : ip;
}

/** Whether an address (plain or IPv4-mapped) is one of the configured proxies (addresses or CIDR ranges). */
export function createProxyMatcher(trustedProxies: readonly string[]): (ip: string) => boolean {
  const trusted = new BlockList();
  for (const entry of trustedProxies) {
    const [addr = "", bits] = entry.split("/");
    const ip = stripMapped(addr);
    if (bits === undefined) trusted.addAddress(ip, family(ip));
    else trusted.addSubnet(ip, Number(bits), family(ip));
  }
  return (raw) => {
    const ip = stripMapped(raw);
    return trustedProxies.length > 0 && isIP(ip) !== 0 && trusted.check(ip, family(ip));
  };
}

/** The client of a request: address (through trusted proxies only) and user agent. */
export type ClientInfoResolver = (req: RequestLike) => ClientInfo;

/**
 * Resolves the client address: X-Forwarded-For is believed only hop by hop
 * from the right, and only while the hop that appended it is a configured
 * proxy. A forged header from anyone else changes nothing.
 */
export function createClientInfoResolver(trustedProxies: readonly string[]): ClientInfoResolver {
  const isTrusted = createProxyMatcher(trustedProxies);

  return (req) => {
    let ip = req.socket.remoteAddress ? stripMapped(req.socket.remoteAddress) : undefined;
    if (ip && isTrusted(ip)) {
      const header = req.headers["x-forwarded-for"];
      const hops = (Array.isArray(header) ? header.join(",") : (header ?? ""))
        .split(",")
        .map((h) => stripMapped(h.trim()))
        .filter(Boolean);
      while (ip && isTrusted(ip) && hops.length > 0) ip = hops.pop();
    }
    const ua = req.headers["user-agent"];
    const userAgent = typeof ua === "string" && ua !== "" ? sanitize(ua).slice(0, MAX_USER_AGENT) : undefined;
    return { ip: ip && isIP(ip) !== 0 ? ip : undefined, userAgent };
  };
}

 
const sanitize = (s: string) => s.replace(/\p{Cc}/gu, "?");
