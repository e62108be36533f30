// google.api.http path templates. Parsed once at start-up; matching is then
// plain string compares, without regexes or backtracking. The grammar
// (google/api/http.proto):
//   Template = "/" Segments [ Verb ] ;  Segments = Segment { "/" Segment } ;
//   Segment  = "*" | "**" | LITERAL | Variable ;
//   Variable = "{" FieldPath [ "=" Segments ] "}" ;  Verb = ":" LITERAL ;

type Segment = { kind: "literal"; value: string } | { kind: "any" } | { kind: "deep" };

interface TemplateVariable {
  fieldPath: string;
  /** Range of template segments the variable covers. */
  start: number;
  end: number;
  /** Spans more than one path segment: "/" inside the value stays %2F-encoded. */
  multi: boolean;
}

export interface PathTemplate {
  readonly template: string;
  readonly verb: string | undefined;
  /** Field paths of the variables, in template order. */
  readonly variables: readonly string[];
  /**
   * Matches a path already split on "/" (without the leading slash). Returns
   * one still percent-encoded capture per variable, or undefined.
   */
  matchSegments(segments: readonly string[]): string[] | undefined;
  /** Percent-decodes the captures of matchSegments. Throws URIError on bad encoding. */
  decode(captures: readonly string[]): string[];
  /** Matches a path ("/a/b:verb"); values are percent-decoded. Throws URIError on bad encoding. */
  match(path: string): Record<string, string> | undefined;
}

/** Compiles a google.api.http path template once; matching then costs a few string compares. */
export function compilePathTemplate(template: string): PathTemplate {
  const { segments, variables, verb } = parseTemplate(template);
  const last = segments.length - 1;
  const deep = segments[last]?.kind === "deep";
  const fixed = deep ? last : segments.length;
  const verbSuffix = verb === undefined ? undefined : `:${verb}`;

  function decode(captures: readonly string[]): string[] {
    return captures.map((raw, i) => decodeCapture(raw, variables[i]!.multi));
  }

  function matchSegments(input: readonly string[]): string[] | undefined {
    let segs = input;
    if (verbSuffix !== undefined) {
      const tail = segs[segs.length - 1];
      if (tail === undefined || !tail.endsWith(verbSuffix)) return undefined;
      segs = [...segs.slice(0, -1), tail.slice(0, -verbSuffix.length)];
    }
    if (deep ? segs.length < fixed : segs.length !== fixed) return undefined;
    for (let i = 0; i < fixed; i++) {
      const want = segments[i]!;
      const got = segs[i]!;
      if (want.kind === "literal" ? got !== want.value : got === "") return undefined;
    }
    return variables.map((v) =>
      v.end - v.start === 1 && !(deep && v.end === segments.length)
        ? segs[v.start]!
        : segs.slice(v.start, deep && v.end === segments.length ? undefined : v.end).join("/"),
    );
  }

  return {
    template,
    verb,
    variables: variables.map((v) => v.fieldPath),
    matchSegments,
    decode,
    match(path) {
      if (!path.startsWith("/")) return undefined;
      const captures = matchSegments(path.slice(1).split("/"));
      if (captures === undefined) return undefined;
      const values = decode(captures);
      return Object.fromEntries(variables.map((v, i) => [v.fieldPath, values[i]!]));
    },
  };
}

function parseTemplate(template: string): { segments: Segment[]; variables: TemplateVariable[]; verb: string | undefined } {
  const fail = (why: string): never => {
    throw new Error(`invalid path template "${template}": ${why}`);
  };
  if (!template.startsWith("/")) fail("must start with /");
  const segments: Segment[] = [];
  const variables: TemplateVariable[] = [];
  let verb: string | undefined;
  let pos = 1;
  for (;;) {
    if (template[pos] === "{") {
      const close = template.indexOf("}", pos);
      if (close < 0) fail("unclosed {");
      const inner = template.slice(pos + 1, close);
      const eq = inner.indexOf("=");
      const fieldPath = eq < 0 ? inner : inner.slice(0, eq);
      if (!/^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(fieldPath)) fail(`bad field path "${fieldPath}"`);
      if (variables.some((v) => v.fieldPath === fieldPath)) fail(`"${fieldPath}" bound twice`);
      const start = segments.length;
      for (const part of (eq < 0 ? "*" : inner.slice(eq + 1)).split("/")) segments.push(parseSegment(part, fail));
      const covered = segments.slice(start);
      variables.push({
        fieldPath,
        start,
        end: segments.length,
        multi: covered.length > 1 || covered[0]?.kind === "deep",
      });
      pos = close + 1;
    } else {
      let end = pos;
      while (end < template.length && template[end] !== "/" && template[end] !== ":") end++;
      segments.push(parseSegment(template.slice(pos, end), fail));
      pos = end;
    }
    if (pos === template.length) break;
    if (template[pos] === "/") {
      pos++;
      continue;
    }
    if (template[pos] === ":") {
      verb = template.slice(pos + 1);
      if (!/^[^/{}*:]+$/.test(verb)) fail(`bad verb "${verb}"`);
      break;
    }
    fail(`unexpected "${template[pos]}"`);
  }
  // "**" must end the path, or matching would need backtracking.
  if (segments.slice(0, -1).some((s) => s.kind === "deep")) fail("** must be the last segment");
  return { segments, variables, verb };
}

function parseSegment(text: string, fail: (why: string) => never): Segment {
  if (text === "*") return { kind: "any" };
  if (text === "**") return { kind: "deep" };
  if (text === "") fail("empty segment");
  if (/[{}*=]/.test(text)) fail(`bad segment "${text}"`);
  return { kind: "literal", value: text };
}

// Single segments decode fully; multi-segment values keep "/" unambiguous
// (RFC 6570 reserved expansion, as http.proto describes).
function decodeCapture(raw: string, multi: boolean): string {
  if (!multi) return decodeURIComponent(raw);
  return raw
    .split("/")
    .map((s) => decodeURIComponent(s).replaceAll("/", "%2F"))
    .join("/");
}
