import { createHash, randomBytes } from "node:crypto";

// Refresh tokens: 256 random bits, base64url (far above the 128 bits ASVS
// 7.2.3 asks for), stored only as their SHA-256.

const REFRESH_TOKEN_BYTES = 32;
// The shape every refresh token has; anything else is refused before any I/O.
const REFRESH_TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

export function isRefreshTokenShape(token: string): boolean {
  return REFRESH_TOKEN_SHAPE.test(token);
}

export function hashRefreshToken(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

export function newRefreshToken(): { token: string; hash: Uint8Array } {
  const token = randomBytes(REFRESH_TOKEN_BYTES).toString("base64url");
  return { token, hash: hashRefreshToken(token) };
}
