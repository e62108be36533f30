import { pino, type Logger } from "pino";

export type { Logger };

// Fields of driver errors that can carry bound values (e-mails, PHC hashes)
// or row contents: drizzle's DrizzleQueryError puts the SQL and every
// parameter into `message`, `query` and `params`; PostgreSQL's `detail`
// quotes the offending key ("Key (email)=(…)"). Path redaction cannot see
// inside a message string, so such errors are rebuilt from safe fields.
const UNSAFE_ERROR_FIELDS = ["query", "params", "detail", "where", "parameters", "args"];

export function safeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const fromDriver = err.name === "DrizzleQueryError" || "params" in err || "query" in err;
  if (!fromDriver) {
    const out = pino.stdSerializers.err(err) as Record<string, unknown>;
    for (const field of UNSAFE_ERROR_FIELDS) delete out[field];
    if (err.cause !== undefined) out.cause = safeError(err.cause);
    return out;
  }
  // Only what identifies the failure: its SQLSTATE, the constraint, where in our code.
  const cause = err.cause as { code?: unknown; constraint_name?: unknown; constraint?: unknown } | undefined;
  const code = cause?.code ?? (err as { code?: unknown }).code;
  const constraint = cause?.constraint_name ?? cause?.constraint;
  return {
    type: err.name,
    message: "database query failed",
    ...(typeof code === "string" ? { code } : {}),
    ...(typeof constraint === "string" ? { constraint } : {}),
    stack: (err.stack ?? "")
      .split("\n")
      .filter((line) => /^\s+at /.test(line))
      .join("\n"),
  };
}

// Structured JSON logs. Anything that could carry a secret is redacted by
// path as a second line of defence; the first is never logging bodies.
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "identity" },
      serializers: { err: safeError },
      redact: {
        paths: [
          "password",
          "*.password",
          "*.*.password",
          "old_password",
          "new_password",
          "*.oldPassword",
          "*.newPassword",
          "access_token",
          "refresh_token",
          "*.accessToken",
          "*.refreshToken",
          "mfa_code",
          "*.mfaCode",
          "authorization",
          "*.authorization",
          "cookie",
          "*.cookie",
          "headers.authorization",
          "headers.cookie",
        ],
        censor: "[redacted]",
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
