import { decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rest } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { expectRestError } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { login, registerUser } from "../support/users.js";

// Signing-key rotation as verifiers and clients see it: the JWKS document
// over HTTP, the kid of new tokens, and old tokens until they expire.

const MINUTE = 60_000;

for (const backend of backends) {
  describe.skipIf(backend.skip)(`signing-key rotation over HTTP (${backend.name})`, () => {
    let s: TestServer;
    let t = Date.now();
    const clock = { now: () => new Date(t) };

    beforeAll(async () => {
      s = await startTestServer(backend.name, { overrides: { clock } });
    });
    afterAll(async () => {
      await s?.destroy();
    });

    const jwksKids = async () => {
      const r = await rest(s.baseUrl, "GET", "/.well-known/jwks.json");
      expect(r.headers.get("cache-control")).toBe("public, max-age=300");
      return (r.body.keys as { kid: string }[]).map((k) => k.kid);
    };
    const kid = (token: string) => decodeProtectedHeader(token).kid;

    it("publishes the next key before it signs, switches at activation, and drops the old key after its tokens expired", async () => {
      const user = await registerUser(s);
      const before = await login(s, user.email, user.password);
      const oldKid = kid(before.accessToken)!;
      expect(await jwksKids()).toEqual([oldKid]);

      const rotated = await s.app.tokens.rotate();
      expect(rotated.activatesAt.getTime()).toBe(t + s.config.signingKeys.publishLeadMs);
      expect((await jwksKids()).sort()).toEqual([oldKid, rotated.kid].sort());
      expect(kid((await login(s, user.email, user.password)).accessToken)).toBe(oldKid);

      t = rotated.activatesAt.getTime();
      const after = await login(s, user.email, user.password);
      expect(kid(after.accessToken)).toBe(rotated.kid);
      // Both generations of tokens work side by side.
      for (const token of [before.accessToken, after.accessToken]) {
        expect((await rest(s.baseUrl, "GET", "/user/profile", { token })).status).toBe(200);
      }

      t = rotated.retired[0]!.retiresAt.getTime();
      expect(await jwksKids()).toEqual([rotated.kid]);
      expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { token: before.accessToken }), 401, "TOKEN_INVALID");
    });

    it("an immediate rotation refuses the old key's tokens at once", async () => {
      const user = await registerUser(s);
      const session = await login(s, user.email, user.password);
      expect((await rest(s.baseUrl, "GET", "/user/profile", { token: session.accessToken })).status).toBe(200);
      t += MINUTE;
      const rotated = await s.app.tokens.rotate({ immediate: true });
      expect(await jwksKids()).toEqual([rotated.kid]);
      expectRestError(await rest(s.baseUrl, "GET", "/user/profile", { token: session.accessToken }), 401, "TOKEN_INVALID");
      // The refresh token is not signed: the session goes on with a new-key token.
      const r = await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: session.refreshToken } });
      expect(r.status, r.text).toBe(200);
      expect(kid(r.body.access_token)).toBe(rotated.kid);
    });
  });
}
