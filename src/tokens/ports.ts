import type { Role } from "../accounts/ports.js";

// Access tokens as the domain needs them: issue and verify.

export interface AccessClaims {
  userId: string;
  sessionId: string;
  tokenId: string;
  issuedAt: Date;
  expiresAt: Date;
  /** The `role` claim; absent in tokens issued before roles existed. */
  role?: Role | undefined;
  /** `auth_time`: when the user last proved who they are on this session. */
  authTime?: Date | undefined;
  /** `amr` (RFC 8176): how, e.g. ["pwd"] or ["pwd", "otp", "mfa"]. */
  amr?: readonly string[] | undefined;
  /** `acr`: "aal1" (one factor) or "aal2" (two), after NIST SP 800-63B. */
  acr?: string | undefined;
}

export interface TokenIssuer {
  /** Signs an access token for the session; returns it with its lifetime (`ttlMs`, else the configured one). */
  issueAccessToken(input: {
    userId: string;
    sessionId: string;
    now: Date;
    role?: Role | undefined;
    ttlMs?: number | undefined;
    authTime?: Date | undefined;
    amr?: readonly string[] | undefined;
    /** The `email_verified` claim (OpenID Connect Core 5.1); left out when undefined. */
    emailVerified?: boolean | undefined;
  }): Promise<{ token: string; expiresAt: Date }>;
  /** Claims of a valid token (signature, alg, iss, aud, typ, exp), or undefined. */
  verifyAccessToken(token: string, now: Date): Promise<AccessClaims | undefined>;
}
