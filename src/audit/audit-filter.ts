import { DomainError } from "../shared/errors.js";
import { isUuid } from "../shared/uuid.js";

// The AIP-160 subset ListAuditEvents accepts: comparisons joined by AND.
//   user_id = "…"   event_type = "login"   outcome = "failure"   ip = "…"
//   occur_time >= "2026-11-01T00:00:00Z" (also >, <, <=)
// Anything else is INVALID_ARGUMENT naming what was not understood.

export interface AuditFilter {
  userId?: string;
  type?: string;
  outcome?: "success" | "failure";
  ip?: string;
  /** Inclusive. */
  since?: Date;
  /** Exclusive. */
  until?: Date;
}

const TOKEN = /\s*(?:(AND)\b|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|=|>|<)|"((?:[^"\\]|\\.)*)"|(\S))/y;
const EVENT_TYPE = /^[a-z_]{1,40}$/;
const MAX_TERMS = 8;

function invalid(message: string): DomainError {
  return new DomainError("invalid_argument", "VALIDATION_FAILED", `filter: ${message}`, { field: "filter" });
}

type Token = { kind: "and" | "ident" | "op" | "string"; text: string };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < input.length) {
    const start = TOKEN.lastIndex;
    const m = TOKEN.exec(input);
    if (!m) {
      if (input.slice(start).trim() === "") break;
      throw invalid(`cannot read "${input.slice(start, start + 20)}"`);
    }
    if (m[1]) tokens.push({ kind: "and", text: m[1] });
    else if (m[2]) tokens.push({ kind: "ident", text: m[2] });
    else if (m[3]) tokens.push({ kind: "op", text: m[3] });
    else if (m[4] !== undefined) tokens.push({ kind: "string", text: m[4].replace(/\\(.)/g, "$1") });
    else if (m[5]) throw invalid(`unexpected "${m[5]}"`);
    else break;
  }
  return tokens;
}

export function parseAuditFilter(input: string): AuditFilter {
  const filter: AuditFilter = {};
  const tokens = tokenize(input);
  if (tokens.length === 0) return filter;
  const seen = new Set<string>();
  let i = 0;
  let terms = 0;
  for (;;) {
    const [field, op, value] = [tokens[i], tokens[i + 1], tokens[i + 2]];
    if (field?.kind !== "ident" || op?.kind !== "op" || (value?.kind !== "string" && value?.kind !== "ident")) {
      throw invalid('expected comparisons like event_type = "login" joined by AND');
    }
    if (++terms > MAX_TERMS) throw invalid(`at most ${MAX_TERMS} comparisons`);
    const key = `${field.text}${op.text}`;
    if (seen.has(key)) throw invalid(`${field.text} ${op.text} given twice`);
    seen.add(key);
    apply(filter, field.text, op.text, value.text);
    i += 3;
    if (i === tokens.length) break;
    if (tokens[i]?.kind !== "and") throw invalid("only AND joins comparisons");
    i += 1;
  }
  if (filter.since && filter.until && filter.since >= filter.until) throw invalid("the occur_time range is empty");
  return filter;
}

function apply(filter: AuditFilter, field: string, op: string, value: string): void {
  const equalsOnly = () => {
    if (op !== "=") throw invalid(`${field} supports only =`);
  };
  switch (field) {
    case "user_id":
      equalsOnly();
      if (!isUuid(value.toLowerCase(), { anyCase: true })) throw invalid("user_id must be a UUID");
      filter.userId = value.toLowerCase();
      return;
    case "event_type":
      equalsOnly();
      if (!EVENT_TYPE.test(value)) throw invalid("event_type must be an event name like login");
      filter.type = value;
      return;
    case "outcome":
      equalsOnly();
      if (value !== "success" && value !== "failure") throw invalid('outcome is "success" or "failure"');
      filter.outcome = value;
      return;
    case "ip":
      equalsOnly();
      if (value.length > 64) throw invalid("ip is too long");
      filter.ip = value;
      return;
    case "occur_time": {
      const at = new Date(value);
      if (!/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(at.getTime())) throw invalid("occur_time takes an RFC 3339 time");
      if (op === ">=") filter.since = at;
      else if (op === ">") filter.since = new Date(at.getTime() + 1);
      else if (op === "<") filter.until = at;
      else if (op === "<=") filter.until = new Date(at.getTime() + 1);
      else throw invalid("occur_time supports >=, >, < and <=");
      return;
    }
    default:
      throw invalid(`unknown field "${field}" (user_id, event_type, outcome, ip, occur_time)`);
  }
}
