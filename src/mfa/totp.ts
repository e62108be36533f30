import { generate as otpGenerate, generateSecret as otpGenerateSecret, verify as otpVerify } from "otplib";
import { toDataURL } from "qrcode";

export interface Totp {
  /** A new random secret of 20 bytes (160 bits), base32 (no padding). */
  generateSecret(): string;
  /** otpauth://totp/<issuer>:<account>?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30 (labels URI-encoded). */
  uri(input: { secret: string; account: string; issuer: string }): string;
  /** PNG data URL of the URI as a QR code. */
  qrDataUrl(uri: string): Promise<string>;
  /** Verifies a 6-digit code at `now` within ±1 step of 30 s, refusing any step <= afterStep (replay protection: the caller stores the returned step atomically). Returns the matched time step (floor(unix seconds / 30) of the matching window) or undefined. Rejects non-digit/wrong-length input without computing. */
  verify(input: { secret: string; code: string; now: Date; afterStep?: number | undefined }): Promise<number | undefined>;
  /** The code for `now` (tests and the enrolment screen's self-check). */
  generate(input: { secret: string; now: Date }): Promise<string>;
}

const SECRET_BYTES = 20;

// The options are literal types on purpose: authenticator apps widely ignore
// anything but SHA-1, 6 digits and 30 s, and a wider window only helps
// attackers. They are parameters so the choice is visible where it is made.
export function createTotp(opts: { digits?: 6; periodSec?: 30; window?: 1 } = {}): Totp {
  const digits = opts.digits ?? 6;
  const period = opts.periodSec ?? 30;
  const window = opts.window ?? 1;
  // ASCII digits only: fullwidth or other script digits are refused, not folded.
  const codeShape = new RegExp(`^[0-9]{${digits}}$`);

  const epochOf = (now: Date) => Math.floor(now.getTime() / 1000);

  return {
    generateSecret() {
      // Base32 of 20 bytes is exactly 32 characters, so never padded.
      return otpGenerateSecret({ length: SECRET_BYTES });
    },

    uri({ secret, account, issuer }) {
      // Built by hand: the library's builder leaves ":" unencoded inside the
      // issuer and omits default parameters, which some apps then guess.
      const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`;
      const query = [
        `secret=${encodeURIComponent(secret)}`,
        `issuer=${encodeURIComponent(issuer)}`,
        "algorithm=SHA1",
        `digits=${digits}`,
        `period=${period}`,
      ].join("&");
      return `otpauth://totp/${label}?${query}`;
    },

    qrDataUrl(uri) {
      return toDataURL(uri, { type: "image/png", errorCorrectionLevel: "M" });
    },

    async verify({ secret, code, now, afterStep }) {
      if (!codeShape.test(code)) return undefined;
      const epoch = epochOf(now);
      const currentStep = Math.floor(epoch / period);
      if (afterStep !== undefined) {
        if (!Number.isSafeInteger(afterStep)) throw new RangeError("totp: afterStep must be an integer time step");
        // Every step in the window is already used (the library would throw here, not refuse).
        if (afterStep >= currentStep + window) return undefined;
      }
      const result = await otpVerify({
        secret,
        token: code,
        digits,
        period,
        epoch,
        // In seconds: ±period covers exactly the previous and next step.
        epochTolerance: window * period,
        // Steps are never negative, so a negative bound refuses nothing.
        afterTimeStep: afterStep !== undefined && afterStep >= 0 ? afterStep : undefined,
      });
      // The result type also covers HOTP, which has no time step.
      return result.valid && "timeStep" in result ? result.timeStep : undefined;
    },

    generate({ secret, now }) {
      return otpGenerate({ secret, digits, period, epoch: epochOf(now) });
    },
  };
}
