// Set-Cookie as the service writes it, parsed in one place for every suite:
// each cookie's name, value and attributes (attribute names lower-cased),
// from a response, its headers, or the header lines themselves.

export interface SetCookie {
  name: string;
  value: string;
  /** Attribute name (lower case) → value ("" for a flag such as HttpOnly). */
  attrs: Map<string, string>;
}

/** Where Set-Cookie lines come from: a response with headers, the headers, or the lines. */
export type SetCookieSource = { headers: Headers } | Headers | readonly string[];

/** Parses one Set-Cookie line. */
export function parseSetCookie(line: string): SetCookie {
  const [first = "", ...rest] = line.split(";").map((p) => p.trim());
  const eq = first.indexOf("=");
  const attrs = new Map<string, string>();
  for (const p of rest) {
    const at = p.indexOf("=");
    attrs.set((at < 0 ? p : p.slice(0, at)).toLowerCase(), at < 0 ? "" : p.slice(at + 1));
  }
  return { name: eq < 0 ? first : first.slice(0, eq), value: eq < 0 ? "" : first.slice(eq + 1), attrs };
}

/** Every cookie `source` sets, in order. */
export function setCookies(source: SetCookieSource): SetCookie[] {
  const lines = source instanceof Headers ? source.getSetCookie() : "headers" in source ? source.headers.getSetCookie() : source;
  return lines.map(parseSetCookie);
}

/** The cookie `name` that `source` sets, or undefined. */
export function setCookieOf(source: SetCookieSource, name: string): SetCookie | undefined {
  return setCookies(source).find((c) => c.name === name);
}

/** The names of the cookies `source` sets, in order. */
export function setCookieNames(source: SetCookieSource): string[] {
  return setCookies(source).map((c) => c.name);
}

/** "name=value" of each cookie `source` sets, in order (a cleared cookie is "name="). */
export function setCookiePairs(source: SetCookieSource): string[] {
  return setCookies(source).map((c) => `${c.name}=${c.value}`);
}
