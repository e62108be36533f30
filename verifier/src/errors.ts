// One error type with a stable code. Callers switch on `code`; the message is
// fixed per code so nothing about keys, claims or infrastructure reaches a
// client that echoes it. The underlying cause (an Error naming the failed
// check, a fetch failure) rides on `cause` for logs only.

export const VERIFICATION_ERROR_CODES = [
  "TOKEN_MALFORMED",
  "TOKEN_INVALID",
  "TOKEN_EXPIRED",
  "TOKEN_REVOKED",
  "KEYS_UNAVAILABLE",
  "REVOCATION_UNAVAILABLE",
] as const;

export type VerificationErrorCode = (typeof VERIFICATION_ERROR_CODES)[number];

const MESSAGES = {
  TOKEN_MALFORMED: "access token is malformed",
  TOKEN_INVALID: "access token is invalid",
  TOKEN_EXPIRED: "access token has expired",
  TOKEN_REVOKED: "access token has been revoked",
  KEYS_UNAVAILABLE: "signing keys are unavailable",
  REVOCATION_UNAVAILABLE: "revocation feed is unavailable",
} satisfies Record<VerificationErrorCode, string>;

// The first four mean "this caller is not authenticated" (401); the last two
// mean "we cannot tell right now" (503, retry).
const UNAVAILABLE = new Set<VerificationErrorCode>(["KEYS_UNAVAILABLE", "REVOCATION_UNAVAILABLE"]);

export class VerificationError extends Error {
  override readonly name = "VerificationError";
  readonly code: VerificationErrorCode;
  /** True when the token may be fine and a dependency is down: answer 503, not 401. */
  readonly retryable: boolean;

  constructor(code: VerificationErrorCode, options?: { cause?: unknown }) {
    super(MESSAGES[code], options);
    this.code = code;
    this.retryable = UNAVAILABLE.has(code);
  }
}

export function isVerificationError(err: unknown): err is VerificationError {
  return err instanceof VerificationError;
}
