// The one error type of the domain. `kind` mirrors the gRPC code the transport
// will use; `reason` is a stable UPPER_SNAKE identifier that clients branch on
// (google.rpc.ErrorInfo.reason). The catalogue must match identity.v1.ErrorReason
// in proto/identity/v1/errors.proto (a contract test checks it).

export const errorReasons = [
  "VALIDATION_FAILED",
  "MALFORMED_REQUEST",
  "REQUEST_TOO_LARGE",
  "INVALID_CREDENTIALS",
  "EMAIL_ALREADY_REGISTERED",
  "TOKEN_MISSING",
  "TOKEN_INVALID",
  "REFRESH_TOKEN_INVALID",
  "REFRESH_TOKEN_REUSED",
  "PASSWORD_TOO_SHORT",
  "PASSWORD_TOO_LONG",
  "PASSWORD_TOO_COMMON",
  "PASSWORD_CONTAINS_CONTEXT",
  "PASSWORD_UNCHANGED",
  "OVERLOADED",
  "RATE_LIMITED",
  "DEPENDENCY_UNAVAILABLE",
  "ACCOUNT_NOT_FOUND",
  "INTERNAL_ERROR",
  "REFRESH_TOKEN_SUPERSEDED",
  "SESSION_NOT_FOUND",
  "CSRF_REJECTED",
  "CAPTCHA_REQUIRED",
  "CAPTCHA_INVALID",
  "EMAIL_DOMAIN_NOT_ALLOWED",
  "ADMIN_ROLE_REQUIRED",
  "MFA_REQUIRED",
  "MFA_CODE_INVALID",
  "MFA_CHALLENGE_INVALID",
  "MFA_NOT_ENABLED",
  "MFA_ALREADY_ENABLED",
  "RECENT_AUTH_REQUIRED",
  "MFA_ENROLLMENT_REQUIRED",
  "METHOD_NOT_ALLOWED",
  "ROUTE_NOT_FOUND",
  "EMAIL_NOT_VERIFIED",
  "EMAIL_TOKEN_INVALID",
  "EMAIL_LOGIN_CONFIRMATION_REQUIRED",
  "HEALTH_SERVICE_UNKNOWN",
] as const;

export type ErrorReason = (typeof errorReasons)[number];

export type ErrorKind =
  | "invalid_argument"
  | "already_exists"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "failed_precondition"
  | "resource_exhausted"
  | "unavailable"
  | "internal";

export class DomainError extends Error {
  override readonly name = "DomainError";
  constructor(
    readonly kind: ErrorKind,
    readonly reason: ErrorReason,
    message: string,
    readonly metadata: Readonly<Record<string, string>> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isDomainError(err: unknown): err is DomainError {
  return err instanceof DomainError;
}

// The single answer for every failed password login, whatever the cause.
export function invalidCredentials(): DomainError {
  return new DomainError("unauthenticated", "INVALID_CREDENTIALS", "invalid email or password");
}
