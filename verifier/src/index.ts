export {
  ACCESS_TOKEN_ALG,
  ACCESS_TOKEN_TYP,
  createVerifier,
  type RevocationOptions,
  type VerifiedToken,
  type Verifier,
  type VerifierOptions,
  type VerifierStats,
} from "./verifier.js";
export { VERIFICATION_ERROR_CODES, VerificationError, isVerificationError, type VerificationErrorCode } from "./errors.js";
export type { FeedState, RevocationFeedStats } from "./revocation-feed.js";
export type { KeySetStats } from "./key-set.js";
export {
  DEFAULT_REDIS_PREFIX,
  REVOCATION_CHANNEL,
  REVOCATION_KEY_GRACE_SEC,
  REVOCATION_KEY_PREFIX,
  REVOCATION_MESSAGE_MAX_LENGTH,
  decodeRevocation,
  decodeRevocationUntil,
  encodeRevocation,
  isValidRedisPrefix,
  isValidSessionId,
  publishRevocation,
  revocationFeedNames,
  revocationKey,
  type Revocation,
  type RevocationFeedNames,
} from "./protocol.js";
