import { pino, type Logger } from "pino";

export type { Logger };

// Structured JSON logs. Anything that could carry a secret is redacted by
// path as a second line of defence; the first is never logging bodies.
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "identity" },
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
