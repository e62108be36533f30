import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createSiteverifyCaptcha, type CaptchaProvider } from "../../../src/abuse/captcha.js";
import { closeServer, listenLocal, readText } from "../../support/local-http.js";

// A local siteverify endpoint: it records what it was sent and answers by token.

const SECRET = "0x4AAAAAAAtest-secret-value";

interface Received {
  path: string;
  method: string;
  contentType: string | undefined;
  form: Record<string, string>;
}

let server: Server;
let base: string;
let received: Received[] = [];

function answerFor(token: string): { status: number; body: string; delayMs?: number } {
  const ok = { success: true, hostname: "login.example.test", action: "login", challenge_ts: "2026-01-01T00:00:00Z" };
  const json = (value: unknown) => ({ status: 200, body: JSON.stringify(value) });
  switch (token) {
    case "good":
      return json(ok);
    case "bad":
      return json({ success: false, "error-codes": ["invalid-input-response"] });
    case "dup":
      return json({ success: false, "error-codes": ["timeout-or-duplicate"] });
    case "no-codes":
      return json({ success: false });
    case "internal":
      return json({ success: false, "error-codes": ["internal-error"] });
    case "echo-secret":
      return json({ success: false, "error-codes": [SECRET, `x-${SECRET}`, "invalid-input-response"] });
    case "slow":
      return { ...json(ok), delayMs: 1_000 };
    case "500":
      return { status: 500, body: "oops" };
    case "garbage":
      return { status: 200, body: "<html>not json</html>" };
    case "array":
      return { status: 200, body: "[true]" };
    case "score-high":
      return json({ ...ok, score: 0.9 });
    case "score-low":
      return json({ ...ok, score: 0.1 });
    case "score-string":
      return json({ ...ok, score: "0.9" });
    case "other-host":
      return json({ ...ok, hostname: "evil.example.test" });
    case "no-host":
      return json({ success: true, action: "login" });
    case "upper-host":
      return json({ ...ok, hostname: "LOGIN.Example.TEST" });
    case "other-action":
      return json({ ...ok, action: "signup" });
    default:
      return json({ success: false, "error-codes": ["invalid-input-response"] });
  }
}

beforeAll(async () => {
  server = createServer((req, res) => {
    void (async () => {
      const body = await readText(req);
      const form = Object.fromEntries(new URLSearchParams(body));
      received.push({ path: req.url ?? "", method: req.method ?? "", contentType: req.headers["content-type"], form });
      const { status, body: answer, delayMs } = answerFor(form.response ?? "");
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      if (res.destroyed) return;
      res.writeHead(status, { "content-type": status === 200 ? "application/json" : "text/plain" });
      res.end(answer);
    })();
  });
  base = await listenLocal(server);
});

afterAll(() => closeServer(server));

beforeEach(() => {
  received = [];
});

function verifier(extra: Partial<Parameters<typeof createSiteverifyCaptcha>[0]> = {}) {
  return createSiteverifyCaptcha({ provider: "turnstile", secret: SECRET, verifyUrl: `${base}/siteverify`, timeoutMs: 2_000, ...extra });
}

describe("createSiteverifyCaptcha", () => {
  it.each<CaptchaProvider>(["turnstile", "hcaptcha", "recaptcha"])("%s posts the siteverify form to the given URL", async (provider) => {
    const captcha = createSiteverifyCaptcha({ provider, secret: SECRET, verifyUrl: `${base}/${provider}/siteverify` });
    expect(captcha.provider).toBe(provider);
    expect(await captcha.verify("good", "203.0.113.7")).toEqual({ ok: true });
    expect(received).toEqual([
      {
        path: `/${provider}/siteverify`,
        method: "POST",
        contentType: expect.stringContaining("application/x-www-form-urlencoded"),
        form: { secret: SECRET, response: "good", remoteip: "203.0.113.7" },
      },
    ]);
  });

  it("leaves remoteip out when it is not known", async () => {
    expect(await verifier().verify("good")).toEqual({ ok: true });
    expect(received[0]?.form).toEqual({ secret: SECRET, response: "good" });
  });

  it("rejects an empty or oversized token without calling the provider", async () => {
    const captcha = verifier();
    expect(await captcha.verify("")).toEqual({ ok: false, reason: "missing", errorCodes: ["missing-input-response"] });
    expect(await captcha.verify("x".repeat(2049))).toMatchObject({ ok: false, reason: "invalid" });
    expect(received).toHaveLength(0);
    // The limit itself is accepted and sent.
    await captcha.verify("x".repeat(2048));
    expect(received).toHaveLength(1);
  });

  it("passes the provider's error codes on for a refused token", async () => {
    const captcha = verifier();
    expect(await captcha.verify("bad")).toEqual({ ok: false, reason: "invalid", errorCodes: ["invalid-input-response"] });
    expect(await captcha.verify("dup")).toEqual({ ok: false, reason: "invalid", errorCodes: ["timeout-or-duplicate"] });
    expect(await captcha.verify("no-codes")).toMatchObject({ ok: false, reason: "invalid" });
  });

  it("treats the provider's own internal error as unavailable", async () => {
    expect(await verifier().verify("internal")).toEqual({ ok: false, reason: "unavailable", errorCodes: ["internal-error"] });
  });

  it("reports unavailable on timeout, 5xx, non-JSON and a refused connection", async () => {
    const captcha = verifier({ timeoutMs: 100 });
    expect(await captcha.verify("slow")).toMatchObject({ ok: false, reason: "unavailable", errorCodes: ["timeout"] });
    expect(await captcha.verify("500")).toMatchObject({ ok: false, reason: "unavailable", errorCodes: ["http-500"] });
    expect(await captcha.verify("garbage")).toMatchObject({ ok: false, reason: "unavailable" });
    expect(await captcha.verify("array")).toMatchObject({ ok: false, reason: "unavailable" });

    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const offline = verifier({ verifyUrl: `http://127.0.0.1:${port}/siteverify` });
    expect(await offline.verify("good")).toMatchObject({ ok: false, reason: "unavailable", errorCodes: ["network-error"] });
  });

  it("checks the hostname against the expected list, case-insensitively", async () => {
    const captcha = verifier({ expectedHostnames: ["login.example.test", "www.example.test"] });
    expect(await captcha.verify("good")).toEqual({ ok: true });
    expect(await captcha.verify("upper-host")).toEqual({ ok: true });
    expect(await captcha.verify("other-host")).toEqual({ ok: false, reason: "invalid", errorCodes: ["hostname-mismatch"] });
    expect(await captcha.verify("no-host")).toEqual({ ok: false, reason: "invalid", errorCodes: ["hostname-mismatch"] });
    // Without an expectation any hostname is accepted.
    expect(await verifier().verify("other-host")).toEqual({ ok: true });
  });

  it("checks the action when one is expected", async () => {
    const captcha = verifier({ expectedAction: "login" });
    expect(await captcha.verify("good")).toEqual({ ok: true });
    expect(await captcha.verify("other-action")).toEqual({ ok: false, reason: "invalid", errorCodes: ["action-mismatch"] });
  });

  it("applies the reCAPTCHA v3 score threshold", async () => {
    const v3 = verifier({ provider: "recaptcha" });
    expect(await v3.verify("score-high")).toEqual({ ok: true });
    expect(await v3.verify("score-low")).toEqual({ ok: false, reason: "invalid", errorCodes: ["score-too-low"] });
    expect(await v3.verify("score-string")).toEqual({ ok: false, reason: "invalid", errorCodes: ["score-too-low"] });
    // v2 answers carry no score and pass on success alone.
    expect(await v3.verify("good")).toEqual({ ok: true });

    const strict = verifier({ provider: "recaptcha", minScore: 0.95 });
    expect(await strict.verify("score-high")).toMatchObject({ ok: false, errorCodes: ["score-too-low"] });
    const lenient = verifier({ provider: "recaptcha", minScore: 0.05 });
    expect(await lenient.verify("score-low")).toEqual({ ok: true });
  });

  it("does not read an hCaptcha risk score as a reCAPTCHA score", async () => {
    expect(await verifier({ provider: "hcaptcha" }).verify("score-low")).toEqual({ ok: true });
  });

  it("never returns the secret, even when the provider echoes it", async () => {
    const results = [];
    const captcha = verifier({ timeoutMs: 100 });
    for (const token of ["good", "bad", "echo-secret", "slow", "500", "garbage", "", "x".repeat(3000)]) {
      results.push(await captcha.verify(token, "198.51.100.1"));
    }
    results.push(await verifier({ verifyUrl: "http://127.0.0.1:1/siteverify" }).verify("good"));
    expect(results[2]).toEqual({ ok: false, reason: "invalid", errorCodes: ["invalid-input-response"] });
    expect(JSON.stringify(results)).not.toContain(SECRET);
  });

  it("refuses an empty secret or an unknown provider at construction", () => {
    expect(() => createSiteverifyCaptcha({ provider: "turnstile", secret: "" })).toThrow();
    expect(() => createSiteverifyCaptcha({ provider: "nope" as CaptchaProvider, secret: SECRET })).toThrow();
    expect(() => createSiteverifyCaptcha({ provider: "turnstile", secret: SECRET, verifyUrl: "not a url" })).toThrow();
  });
});
