import { createRequire } from "node:module";
import { domainToASCII } from "node:url";

export interface EmailDomainPolicy {
  /** True when the address's domain (or a parent domain for wildcard entries, and sub-domains of listed domains) is a known disposable-mail domain and is not allowed explicitly. */
  isDisposable(email: string): boolean;
}

// The disposable-email-domains package (MIT): index.json lists exact domains,
// wildcard.json domains whose every sub-domain is disposable. Every entry is
// matched with its sub-domains anyway (x.mailinator.com is a bypass attempt),
// so the two lists merge into one Set, loaded on first use.
let listed: ReadonlySet<string> | undefined;

function disposableDomains(): ReadonlySet<string> {
  if (listed) return listed;
  const require = createRequire(import.meta.url);
  const exact = require("disposable-email-domains/index.json") as unknown;
  const wildcard = require("disposable-email-domains/wildcard.json") as unknown;
  if (!Array.isArray(exact) || exact.length < 10_000 || !Array.isArray(wildcard)) {
    throw new Error("disposable e-mail domain list missing or too short");
  }
  const set = new Set<string>();
  for (const entry of [...exact, ...wildcard]) {
    if (typeof entry !== "string") continue;
    // The list holds some Unicode spellings; compare in ASCII (punycode) form.
    const domain = /^[\x21-\x7e]+$/.test(entry) ? entry.toLowerCase() : normalizeDomain(entry);
    if (domain) set.add(domain);
  }
  listed = set;
  return set;
}

/** Lower-cased ASCII form without the trailing dot, or "" when not a valid domain. */
function normalizeDomain(raw: string): string {
  const trimmed = raw.trim().replace(/\.+$/, "");
  if (trimmed === "") return "";
  // UTS #46 mapping: case, full-width dots and Unicode spellings become punycode.
  return domainToASCII(trimmed);
}

export function createDisposableEmailPolicy(opts: {
  /** Operator overrides: domains never treated as disposable (with their sub-domains). */
  allow?: readonly string[];
  /** Extra domains to refuse (with their sub-domains). */
  deny?: readonly string[];
} = {}): EmailDomainPolicy {
  const allow = overrideSet(opts.allow ?? [], "allow");
  const deny = overrideSet(opts.deny ?? [], "deny");

  return {
    isDisposable(email) {
      if (typeof email !== "string") return false;
      const domain = normalizeDomain(email.slice(email.lastIndexOf("@") + 1));
      if (domain === "") return false; // not an address this policy can judge
      const list = disposableDomains();
      // From the full domain up to its last label: the most specific entry wins,
      // so allowing good.example.test still works under a denied example.test.
      const labels = domain.split(".");
      for (let i = 0; i < labels.length; i++) {
        const candidate = labels.slice(i).join(".");
        if (allow.has(candidate)) return false;
        if (deny.has(candidate)) return true;
        // A few entries are registries (edu.pl); a parent match there would
        // refuse every university under it. They match only exactly.
        if (list.has(candidate) && (i === 0 || !isRegistryLike(labels.slice(i)))) return true;
      }
      return false;
    },
  };
}

const REGISTRY_LABELS = new Set(["ac", "co", "com", "edu", "gov", "mil", "net", "nic", "org", "sch", "ltd", "plc"]);

function isRegistryLike(labels: readonly string[]): boolean {
  return labels.length === 2 && REGISTRY_LABELS.has(labels[0]!);
}

function overrideSet(domains: readonly string[], name: string): ReadonlySet<string> {
  const set = new Set<string>();
  for (const raw of domains) {
    const domain = normalizeDomain(raw);
    if (domain === "") throw new Error(`invalid domain in disposable-email ${name} list: ${JSON.stringify(raw)}`);
    set.add(domain);
  }
  return set;
}
