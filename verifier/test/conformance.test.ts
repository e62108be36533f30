import { loadTokenVectors } from "@platform/identity-verifier/conformance";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createVerifier, type Verifier } from "../src/index.js";
import { codeOf, startJwksServer, type JwksServer } from "./support.js";
import { buildTokenVectors } from "./conformance/token-vectors.js";

// The shared token-spelling vectors, from this package's entry point as any
// consumer loads them, through this library; the service runs the same file
// through its auth path (test/unit/tokens/token-conformance.test.ts).

const file = loadTokenVectors();

describe("token-spelling conformance vectors (verifier library)", () => {
  let jwks: JwksServer;
  let verifier: Verifier;

  beforeAll(async () => {
    jwks = await startJwksServer([file.publicJwk]);
    verifier = createVerifier({ jwksUrl: jwks.url, issuer: file.issuer, audience: file.audience, now: () => file.nowSec * 1000 });
    await verifier.ready();
  });
  afterAll(async () => {
    await verifier?.close();
    await jwks?.close();
  });

  it("the JSON file is what the generator builds (regenerate it after changing the generator)", () => {
    expect(file).toEqual(buildTokenVectors());
    expect(file.vectors.filter((v) => v.valid).length).toBeGreaterThanOrEqual(5);
    expect(file.vectors.filter((v) => !v.valid).length).toBeGreaterThanOrEqual(40);
  });

  it.each(file.vectors.map((v) => [v.name, v] as const))("%s", async (_name, vector) => {
    const code = await codeOf(verifier.verify(vector.token));
    // The verdict, as the service's suite asserts it: accepted exactly when valid.
    expect(code === "OK").toBe(vector.valid);
    // Refused as a bad token, never as an outage or a crash.
    if (!vector.valid) expect(["TOKEN_MALFORMED", "TOKEN_INVALID"]).toContain(code);
  });

  it("a refused spelling stays refused after the canonical token was verified (and cached)", async () => {
    const canonical = file.vectors[0]!;
    expect(canonical.valid).toBe(true);
    await expect(verifier.verify(canonical.token)).resolves.toBeDefined();
    for (const v of file.vectors.filter((x) => !x.valid)) expect(await codeOf(verifier.verify(v.token)), v.name).not.toBe("OK");
  });
});
