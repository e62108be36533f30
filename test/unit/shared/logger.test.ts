import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../../src/shared/logger.js";

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { logger: createLogger("info", stream), lines };
}

const phc = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo";

describe("logger", () => {
  it("never writes the SQL parameters of a failed query (drizzle puts them in the message)", () => {
    const { logger, lines } = capture();
    const cause = Object.assign(new Error("duplicate key value violates unique constraint"), {
      code: "23505",
      detail: "Key (email)=(victim@example.com) already exists.",
    });
    const err = Object.assign(new Error(`Failed query: insert into "password_credentials" values ($1, $2)\nparams: victim@example.com,${phc}`), {
      name: "DrizzleQueryError",
      query: 'insert into "password_credentials" values ($1, $2)',
      params: ["victim@example.com", phc],
      cause,
    });
    logger.error({ err }, "rpc failed");
    const out = lines.join("");
    expect(out).not.toContain("victim@example.com");
    expect(out).not.toContain(phc);
    expect(out).toContain("23505");
    expect(out).toContain("database query failed");
  });

  it("redacts secret-looking fields", () => {
    const { logger, lines } = capture();
    logger.info({ password: "hunter2hunter2", headers: { authorization: "Bearer abc.def.ghi" }, refresh_token: "r" }, "x");
    const out = lines.join("");
    expect(out).not.toContain("hunter2hunter2");
    expect(out).not.toContain("abc.def.ghi");
    expect(out).toContain("[redacted]");
  });

  it("keeps ordinary errors readable", () => {
    const { logger, lines } = capture();
    logger.error({ err: new Error("boom") }, "failed");
    expect(lines.join("")).toContain("boom");
  });
});
