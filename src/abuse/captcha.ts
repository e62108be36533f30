// Server-side CAPTCHA verification over the "siteverify" protocol that
// Cloudflare Turnstile, hCaptcha and reCAPTCHA (v2 and v3) share: a form POST
// of secret, response and remoteip answered by JSON with `success`.

export type CaptchaProvider = "turnstile" | "hcaptcha" | "recaptcha";

export type CaptchaResult =
  | { ok: true }
  | { ok: false; reason: "missing" | "invalid" | "unavailable"; errorCodes: string[] };

export interface CaptchaVerifier {
  readonly provider: CaptchaProvider;
  /** Never throws; `unavailable` leaves fail-open or fail-closed to the caller. */
  verify(token: string, remoteIp?: string): Promise<CaptchaResult>;
}

export const defaultSiteverifyUrls: Record<CaptchaProvider, string> = Object.freeze({
  turnstile: "https://challenges.cloudflare.com/turnstile/v0/siteverify",
  hcaptcha: "https://api.hcaptcha.com/siteverify",
  recaptcha: "https://www.google.com/recaptcha/api/siteverify",
});

// Turnstile documents 2048 characters as the maximum; the others stay below it.
const MAX_TOKEN_LENGTH = 2048;
const MAX_ANSWER_BYTES = 64 * 1024;
const DEFAULT_MIN_SCORE = 0.5;

export function createSiteverifyCaptcha(opts: {
  provider: CaptchaProvider;
  secret: string;
  /** Overrides the provider's endpoint, e.g. for tests or an egress proxy. */
  verifyUrl?: string;
  /** Per verification, default 3000. */
  timeoutMs?: number;
  expectedHostnames?: readonly string[];
  expectedAction?: string;
  /** reCAPTCHA v3 only, default 0.5 when the answer carries a score. */
  minScore?: number;
}): CaptchaVerifier {
  const { provider, secret } = opts;
  if (!Object.hasOwn(defaultSiteverifyUrls, provider)) throw new Error(`unknown CAPTCHA provider: ${String(provider)}`);
  if (secret.length === 0) throw new Error("CAPTCHA secret must not be empty");
  const url = opts.verifyUrl ?? defaultSiteverifyUrls[provider];
  new URL(url); // fail at boot on a malformed override, not on the first login
  const timeoutMs = opts.timeoutMs ?? 3000;
  const hostnames = opts.expectedHostnames?.map((h) => h.toLowerCase());
  const minScore = opts.minScore ?? DEFAULT_MIN_SCORE;

  function judge(answer: SiteverifyAnswer): CaptchaResult {
    if (answer.success !== true) {
      const codes = errorCodesOf(answer, secret);
      // Turnstile's "internal-error" is its own failure, not the visitor's.
      if (codes.length > 0 && codes.every((c) => c === "internal-error")) {
        return { ok: false, reason: "unavailable", errorCodes: codes };
      }
      return { ok: false, reason: "invalid", errorCodes: codes.length > 0 ? codes : ["verification-failed"] };
    }
    if (hostnames && hostnames.length > 0) {
      const hostname = typeof answer.hostname === "string" ? answer.hostname.toLowerCase() : undefined;
      if (hostname === undefined || !hostnames.includes(hostname)) return invalid("hostname-mismatch");
    }
    if (opts.expectedAction !== undefined && answer.action !== opts.expectedAction) {
      return invalid("action-mismatch");
    }
    // Only reCAPTCHA's score means "likely human"; hCaptcha Enterprise's score
    // is a risk score where higher is worse, so it is not compared here.
    if (provider === "recaptcha" && answer.score !== undefined) {
      if (typeof answer.score !== "number" || !(answer.score >= minScore)) return invalid("score-too-low");
    }
    return { ok: true };
  }

  return {
    provider,
    async verify(token, remoteIp) {
      if (typeof token !== "string" || token.length === 0) {
        return { ok: false, reason: "missing", errorCodes: ["missing-input-response"] };
      }
      if (token.length > MAX_TOKEN_LENGTH) return invalid("invalid-input-response");

      const form = new URLSearchParams({ secret, response: token });
      if (remoteIp) form.set("remoteip", remoteIp);

      let answer: SiteverifyAnswer;
      try {
        const res = await fetch(url, {
          method: "POST",
          body: form,
          headers: { accept: "application/json" },
          redirect: "error",
          signal: AbortSignal.timeout(timeoutMs),
        });
        if (!res.ok) {
          await res.body?.cancel().catch(() => undefined);
          return unavailable(`http-${res.status}`);
        }
        const text = await res.text();
        if (text.length > MAX_ANSWER_BYTES) return unavailable("bad-response");
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return unavailable("bad-response");
        answer = parsed as SiteverifyAnswer;
      } catch (err) {
        // Only a code leaves this function: fetch errors can quote the request.
        const name = err instanceof Error ? err.name : "";
        if (name === "TimeoutError" || name === "AbortError") return unavailable("timeout");
        if (err instanceof SyntaxError) return unavailable("bad-response");
        return unavailable("network-error");
      }
      return judge(answer);
    },
  };
}

interface SiteverifyAnswer {
  success?: unknown;
  "error-codes"?: unknown;
  hostname?: unknown;
  action?: unknown;
  score?: unknown;
  challenge_ts?: unknown;
}

// The provider's codes are passed on for logging, so only short code-like strings are kept.
function errorCodesOf(answer: SiteverifyAnswer, secret: string): string[] {
  const raw = answer["error-codes"];
  if (!Array.isArray(raw)) return [];
  return raw
    .filter((c): c is string => typeof c === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(c) && !c.includes(secret))
    .slice(0, 10);
}

function invalid(code: string): CaptchaResult {
  return { ok: false, reason: "invalid", errorCodes: [code] };
}

function unavailable(code: string): CaptchaResult {
  return { ok: false, reason: "unavailable", errorCodes: [code] };
}
