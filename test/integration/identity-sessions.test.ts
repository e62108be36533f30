import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { bearer, bearerMd, connectClient, grpcJsClient, rest, uniqueEmail } from "../support/clients.js";
import { setCookieNames, setCookieOf } from "../support/cookies.js";
import { backends } from "../support/databases.js";
import { connectFailure, errorReason, expectConnectError, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { login, registerUser, strongPassword, userWithSession } from "../support/users.js";

// Sessions end to end, as each kind of caller sees them: log in, prove who
// you are, refresh, log out, change the password.

for (const backend of backends) {
  describe.skipIf(backend.skip)(`identity sessions (${backend.name})`, () => {
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    let c: ReturnType<typeof connectClient>;

    beforeAll(async () => {
      s = await startTestServer(backend.name);
      g = grpcJsClient(IdentityService, s.port);
      c = connectClient(s.baseUrl, "connect");
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    const profile = (opts: { token?: string; cookie?: string; headers?: Record<string, string> }) =>
      rest(s.baseUrl, "GET", "/user/profile", opts);

    /** Over grpc-js `client`: a retired refresh token presented again is REFRESH_TOKEN_REUSED and the session ends. */
    async function expectGrpcReuseDetected(client: typeof g): Promise<void> {
      const u = await userWithSession(s);
      const next = await client.refreshToken({ refreshToken: u.refreshToken });
      // Its successor already used: past any concurrent-refresh grace.
      const newest = await client.refreshToken({ refreshToken: next.refreshToken });
      await expectGrpcError(client.refreshToken({ refreshToken: u.refreshToken }), grpc.status.UNAUTHENTICATED, "REFRESH_TOKEN_REUSED");
      await expectGrpcError(client.getProfile({}, bearerMd(newest.accessToken)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
    }

    describe("login", () => {
      it("over REST: 201 with a token pair and an HttpOnly, SameSite=Strict, Path=/ cookie (no Secure when COOKIE_SECURE=false)", async () => {
        const user = await registerUser(s);
        const r = await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password } });
        expect(r.status, r.text).toBe(201);
        expect(r.body).toMatchObject({ token_type: "Bearer", user_id: user.userId });
        expect(typeof r.body.access_token).toBe("string");
        expect(r.body.refresh_token).toMatch(/^[A-Za-z0-9_-]{22,}$/); // >= 128 bits
        expect(r.body.session_id).toBeTruthy();
        expect(r.body.expires_in).toBeGreaterThan(890);
        expect(r.body.expires_in).toBeLessThanOrEqual(900);
        expect(Date.parse(r.body.refresh_token_expire_time)).toBeGreaterThan(Date.now());
        expect(r.headers.get("cache-control")).toBe("no-store");
        expect(r.text).not.toContain(user.password);

        const cookie = setCookieOf(r, "access_token");
        expect(cookie).toBeDefined();
        expect(cookie!.value).toBe(r.body.access_token);
        expect(cookie!.attrs.has("httponly")).toBe(true);
        expect(cookie!.attrs.get("samesite")?.toLowerCase()).toBe("strict");
        expect(cookie!.attrs.get("path")).toBe("/");
        expect(cookie!.attrs.has("secure")).toBe(false);
        expect(Number(cookie!.attrs.get("max-age"))).toBeGreaterThan(0);

        // The cookie alone authenticates.
        const p = await profile({ cookie: `access_token=${cookie!.value}` });
        expect(p.status, p.text).toBe(200);
        expect(p.body.user.user_id).toBe(user.userId);
      });

      it("sets Secure on the cookie when COOKIE_SECURE=true", async () => {
        // A second instance on the same database: only the configuration differs.
        const secure = await startTestServer(backend.name, {
          env: { COOKIE_SECURE: "true" },
          overrides: { database: s.app.database },
        });
        try {
          const user = await registerUser(secure);
          const r = await login(secure, user.email, user.password);
          const cookie = setCookieOf(r.response, "access_token");
          expect(cookie?.attrs.has("secure")).toBe(true);
          expect(cookie?.attrs.has("httponly")).toBe(true);
          expect(cookie?.attrs.get("samesite")?.toLowerCase()).toBe("strict");
        } finally {
          await secure.destroy();
        }
      });

      it("over gRPC (grpc-js) and Connect (connect, grpc, grpc-web): tokens that work everywhere", async () => {
        const user = await registerUser(s);
        const viaGrpc = await g.login({ email: user.email, password: user.password });
        expect(viaGrpc).toMatchObject({ tokenType: "Bearer", userId: user.userId });
        expect(viaGrpc.accessToken && viaGrpc.refreshToken && viaGrpc.sessionId).toBeTruthy();
        for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
          const client = connectClient(s.baseUrl, protocol);
          const res = await client.login({ email: user.email, password: user.password });
          expect(res.userId, protocol).toBe(user.userId);
          expect(res.sessionId).not.toBe(viaGrpc.sessionId);
          const me = await client.getProfile({}, bearer(viaGrpc.accessToken));
          expect(me.user?.userId).toBe(user.userId);
          const rp = await profile({ token: res.accessToken });
          expect(rp.status).toBe(200);
        }
        const me = await g.getProfile({}, bearerMd(viaGrpc.accessToken));
        expect(me.user?.email).toBe(user.email);
      });

      it("is case-insensitive and trims the e-mail", async () => {
        const user = await registerUser(s);
        expect((await login(s, user.email.toUpperCase(), user.password)).userId).toBe(user.userId);
        expect((await login(s, `  ${user.email.replace(/^./, (ch) => ch.toUpperCase())}  `, user.password)).userId).toBe(user.userId);
        const res = await g.login({ email: user.email.toUpperCase(), password: user.password });
        expect(res.userId).toBe(user.userId);
      });

      it("verifies a password typed in NFD against one registered in NFC", async () => {
        const nfc = "Crème brûlée au café 42".normalize("NFC");
        const nfd = nfc.normalize("NFD");
        expect(nfd).not.toBe(nfc);
        const user = await registerUser(s, { password: nfc });
        expect((await login(s, user.email, nfd)).userId).toBe(user.userId);
      });

      it("resists enumeration: unknown e-mail and wrong password look identical over REST, gRPC and Connect", async () => {
        const user = await registerUser(s);
        const attempts = {
          wrongPassword: { email: user.email, password: "wrong but long enough" },
          unknownEmail: { email: uniqueEmail("ghost"), password: "wrong but long enough" },
          malformedEmail: { email: "not-an-email", password: "wrong but long enough" },
          wrongPasswordOtherLength: { email: user.email, password: "x" },
        };
        const restRes = await Promise.all(
          Object.values(attempts).map((body) => rest(s.baseUrl, "POST", "/login", { body })),
        );
        const headerShape = (h: Headers) =>
          [...h.entries()]
            .filter(([k]) => !["date", "x-request-id"].includes(k))
            .map(([k, v]) => `${k}: ${v}`)
            .sort();
        for (const r of restRes) {
          expectRestError(r, 401, "INVALID_CREDENTIALS");
          expect(r.text).toBe(restRes[0]!.text); // byte for byte
          expect(headerShape(r.headers)).toEqual(headerShape(restRes[0]!.headers));
          expect(setCookieNames(r)).toEqual([]);
        }

        const grpcErrs = await Promise.all(Object.values(attempts).map((a) => grpcFailure(g.login(a))));
        const grpcShape = (e: (typeof grpcErrs)[number]) => ({
          code: e.code,
          reason: errorReason(e),
          details: e.details,
          metadataKeys: Object.keys(e.metadata.getMap())
            .filter((k) => k !== "x-request-id")
            .sort(),
        });
        for (const e of grpcErrs) {
          expect(grpcShape(e)).toEqual(grpcShape(grpcErrs[0]!));
          expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
          expect(errorReason(e)).toBe("INVALID_CREDENTIALS");
        }

        const connectErrs = await Promise.all(Object.values(attempts).map((a) => connectFailure(c.login(a))));
        for (const e of connectErrs) {
          expect({ code: e.code, reason: errorReason(e), message: e.rawMessage }).toEqual({
            code: Code.Unauthenticated,
            reason: "INVALID_CREDENTIALS",
            message: connectErrs[0]!.rawMessage,
          });
        }
      });
    });

    describe("authentication", () => {
      it("accepts the access token as cookie, as Bearer (any case of the scheme), and as gRPC/Connect metadata", async () => {
        const u = await userWithSession(s);
        for (const opts of [
          { cookie: `access_token=${u.accessToken}` },
          { cookie: `theme=dark; access_token=${u.accessToken}; lang=vi` },
          { token: u.accessToken },
          { headers: { authorization: `bearer ${u.accessToken}` } },
        ]) {
          const r = await profile(opts);
          expect(r.status, JSON.stringify(opts).slice(0, 40)).toBe(200);
          expect(r.body.user.user_id).toBe(u.userId);
        }
        expect((await g.getProfile({}, bearerMd(u.accessToken))).user?.userId).toBe(u.userId);
        expect((await c.getProfile({}, bearer(u.accessToken))).user?.userId).toBe(u.userId);
      });

      it("no token: 401 TOKEN_MISSING over REST, gRPC and Connect", async () => {
        expectRestError(await profile({}), 401, "TOKEN_MISSING");
        expectRestError(await profile({ cookie: "theme=dark" }), 401, "TOKEN_MISSING");
        expectRestError(await profile({ headers: { authorization: "Bearer " } }), 401, "TOKEN_MISSING");
        expectRestError(await rest(s.baseUrl, "POST", "/logout"), 401, "TOKEN_MISSING");
        expectRestError(
          await rest(s.baseUrl, "PUT", "/user/profile", { body: { info_user: { name: "x" } } }),
          401,
          "TOKEN_MISSING",
        );
        expectRestError(
          await rest(s.baseUrl, "PUT", "/user/password", { body: { old_password: "a", new_password: "b" } }),
          401,
          "TOKEN_MISSING",
        );
        await expectGrpcError(g.getProfile({}), grpc.status.UNAUTHENTICATED, "TOKEN_MISSING");
        await expectGrpcError(g.logout({}), grpc.status.UNAUTHENTICATED, "TOKEN_MISSING");
        await expectConnectError(c.getProfile({}), Code.Unauthenticated, "TOKEN_MISSING");
      });

      it("garbage, forged and tampered tokens: 401 TOKEN_INVALID over REST, gRPC and Connect", async () => {
        const u = await userWithSession(s);
        const [h, p, sig] = u.accessToken.split(".") as [string, string, string];
        const claims = decodeJwt(u.accessToken);
        const other = await registerUser(s);
        const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const flip = (str: string, i: number) => str.slice(0, i) + (str[i] === "A" ? "B" : "A") + str.slice(i + 1);
        const bad = {
          garbage: "garbage",
          threeDots: "a.b.c",
          tokenWithoutSignature: `${h}.${p}.`,
          signatureChanged: `${h}.${p}.${flip(sig, 10)}`,
          signatureOfAnotherToken: `${h}.${p}.${u.refreshToken}`,
          payloadTampered: `${h}.${b64({ ...claims, sub: other.userId })}.${sig}`,
          expiryExtended: `${h}.${b64({ ...claims, exp: (claims.exp ?? 0) + 86_400 })}.${sig}`,
          headerTampered: `${b64({ alg: "EdDSA", typ: "at+jwt", kid: "other" })}.${p}.${sig}`,
          refreshTokenAsAccessToken: u.refreshToken,
          truncated: u.accessToken.slice(0, -5),
        };
        for (const [name, token] of Object.entries(bad)) {
          const r = await profile({ token });
          expect({ name, status: r.status, reason: errorReason(r.body) }).toEqual({ name, status: 401, reason: "TOKEN_INVALID" });
          const rc = await profile({ cookie: `access_token=${token}` });
          expect({ name, status: rc.status, reason: errorReason(rc.body) }).toEqual({ name, status: 401, reason: "TOKEN_INVALID" });
          await expectGrpcError(g.getProfile({}, bearerMd(token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
          await expectConnectError(c.getProfile({}, bearer(token)), Code.Unauthenticated, "TOKEN_INVALID");
        }
        // The genuine token is unaffected by all of that.
        expect((await profile({ token: u.accessToken })).status).toBe(200);
      });

      it("a presented but malformed token (characters outside the token syntax) is TOKEN_INVALID, not TOKEN_MISSING", async () => {
        // errors.proto: TOKEN_MISSING = "No access token was presented";
        // TOKEN_INVALID = "The access token is malformed, forged, expired or revoked".
        for (const token of ["!!!", "not a token", "eyJ%%.%%.%%", "<script>"]) {
          const r = await profile({ headers: { authorization: `Bearer ${token}` } });
          expect({ token, status: r.status, reason: errorReason(r.body) }).toEqual({ token, status: 401, reason: "TOKEN_INVALID" });
          await expectGrpcError(g.getProfile({}, bearerMd(token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        }
      });
    });

    describe("logout", () => {
      it("204, clears the cookie; the access token then fails everywhere (TOKEN_INVALID), the refresh token too; twice → 401", async () => {
        const u = await userWithSession(s);
        const out = await rest(s.baseUrl, "POST", "/logout", { token: u.accessToken });
        expect(out.status, out.text).toBe(204);
        expect(out.text).toBe("");
        const cleared = setCookieOf(out, "access_token");
        expect(cleared?.value).toBe("");
        expect(cleared?.attrs.get("max-age")).toBe("0");

        expectRestError(await profile({ token: u.accessToken }), 401, "TOKEN_INVALID");
        expectRestError(await profile({ cookie: `access_token=${u.accessToken}` }), 401, "TOKEN_INVALID");
        await expectGrpcError(g.getProfile({}, bearerMd(u.accessToken)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
          await expectConnectError(
            connectClient(s.baseUrl, protocol).getProfile({}, bearer(u.accessToken)),
            Code.Unauthenticated,
            "TOKEN_INVALID",
          );
        }
        expectRestError(
          await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: u.refreshToken } }),
          401,
          "REFRESH_TOKEN_INVALID",
        );
        expectRestError(await rest(s.baseUrl, "POST", "/logout", { token: u.accessToken }), 401, "TOKEN_INVALID");
        await expectGrpcError(g.logout({}, bearerMd(u.accessToken)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
      });

      it("ends only the caller's session; works over the cookie, gRPC and Connect", async () => {
        const user = await registerUser(s);
        const a = await login(s, user.email, user.password);
        const b = await login(s, user.email, user.password);
        const cSess = await login(s, user.email, user.password);
        const d = await login(s, user.email, user.password);

        // A cookie logout from our own page: it passes the CSRF checks (identity-browser.test.ts).
        const fromOurPage = { "sec-fetch-site": "same-origin", "x-requested-with": "fetch" };
        expect((await rest(s.baseUrl, "POST", "/logout", { cookie: `access_token=${a.accessToken}`, headers: fromOurPage })).status).toBe(204);
        await g.logout({}, bearerMd(b.accessToken));
        await c.logout({}, bearer(cSess.accessToken));
        for (const t of [a, b, cSess]) expectRestError(await profile({ token: t.accessToken }), 401, "TOKEN_INVALID");
        expect((await profile({ token: d.accessToken })).status).toBe(200);
      });
    });

    describe("refresh", () => {
      const refresh = (token: string) => rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: token } });

      it("returns a new pair for the same session and retires the old refresh token", async () => {
        const u = await userWithSession(s);
        const r = await refresh(u.refreshToken);
        expect(r.status, r.text).toBe(200);
        expect(r.body).toMatchObject({ token_type: "Bearer", session_id: u.sessionId });
        expect(r.body.access_token).not.toBe(u.accessToken);
        expect(r.body.refresh_token).not.toBe(u.refreshToken);
        expect(r.body.expires_in).toBeGreaterThan(890);
        expect(setCookieOf(r, "access_token")?.value).toBe(r.body.access_token);
        expect(r.headers.get("cache-control")).toBe("no-store");
        expect(decodeJwt(r.body.access_token)).toMatchObject({ sub: u.userId, sid: u.sessionId });
        expect((await profile({ token: r.body.access_token })).status).toBe(200);
        // Chained rotation keeps working.
        const r2 = await refresh(r.body.refresh_token);
        expect(r2.status, r2.text).toBe(200);
        const viaGrpc = await g.refreshToken({ refreshToken: r2.body.refresh_token });
        expect(viaGrpc.sessionId).toBe(u.sessionId);
        const viaConnect = await c.refreshToken({ refreshToken: viaGrpc.refreshToken });
        expect(viaConnect.sessionId).toBe(u.sessionId);
        expect((await profile({ token: viaConnect.accessToken })).status).toBe(200);
      });

      it("reuse of a retired refresh token → 401 REFRESH_TOKEN_REUSED and the whole session ends", async () => {
        const u = await userWithSession(s);
        const r1 = await refresh(u.refreshToken);
        expect(r1.status).toBe(200);
        const r2 = await refresh(r1.body.refresh_token);
        expect(r2.status).toBe(200);

        expectRestError(await refresh(u.refreshToken), 401, "REFRESH_TOKEN_REUSED");
        // Newest access and refresh tokens of the session fail from now on, as do older ones.
        expectRestError(await profile({ token: r2.body.access_token }), 401, "TOKEN_INVALID");
        expectRestError(await profile({ token: u.accessToken }), 401, "TOKEN_INVALID");
        expectRestError(await refresh(r2.body.refresh_token), 401, "REFRESH_TOKEN_INVALID");
        await expectGrpcError(g.getProfile({}, bearerMd(r2.body.access_token)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        // Other sessions of the same user are untouched.
        const other = await login(s, u.email, u.password);
        expect((await profile({ token: other.accessToken })).status).toBe(200);
      });

      it("reuse is detected over gRPC too", () => expectGrpcReuseDetected(g));

      it("concurrent refreshes of one token: exactly one succeeds, the rest 401 REFRESH_TOKEN_SUPERSEDED (grace window), never 500", async () => {
        const u = await userWithSession(s);
        const results = await Promise.all(Array.from({ length: 5 }, () => refresh(u.refreshToken)));
        expect(results.filter((r) => r.status === 200)).toHaveLength(1);
        for (const r of results.filter((x) => x.status !== 200)) {
          expect(r.status).toBe(401);
          expect(errorReason(r.body)).toBe("REFRESH_TOKEN_SUPERSEDED");
        }
        // The race did not end the session.
        expect((await profile({ token: results.find((r) => r.status === 200)!.body.access_token })).status).toBe(200);
      });

      it("malformed, unknown, empty and access-token-as-refresh-token: 4xx with the right reason", async () => {
        const u = await userWithSession(s);
        for (const token of ["not-a-token", "A".repeat(43), u.accessToken.slice(0, 200), `${u.refreshToken}x`, "' OR 1=1 --"]) {
          expectRestError(await refresh(token), 401, "REFRESH_TOKEN_INVALID");
        }
        expectRestError(await refresh(""), 400, "VALIDATION_FAILED");
        expectRestError(await refresh(u.accessToken), 400, "VALIDATION_FAILED"); // longer than 256
        expectRestError(await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: 5 } }), 400, "MALFORMED_REQUEST");
        await expectGrpcError(g.refreshToken({ refreshToken: "nope" }), grpc.status.UNAUTHENTICATED, "REFRESH_TOKEN_INVALID");
        // None of that harmed the real session.
        expect((await refresh(u.refreshToken)).status).toBe(200);
      });
    });

    describe("internal gRPC port (grpc-js server)", () => {
      let gi: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
      beforeAll(() => {
        gi = grpcJsClient(IdentityService, s.grpcPort);
      });
      afterAll(() => gi?.close());

      it("logs in and reads the profile; the tokens are interchangeable with the main port", async () => {
        const user = await registerUser(s);
        const res = await gi.login({ email: user.email.toUpperCase(), password: user.password });
        expect(res.userId).toBe(user.userId);
        expect((await gi.getProfile({}, bearerMd(res.accessToken))).user?.email).toBe(user.email);
        expect((await g.getProfile({}, bearerMd(res.accessToken))).user?.userId).toBe(user.userId);
        expect((await profile({ token: res.accessToken })).status).toBe(200);
      });

      it("gives the same codes and reasons as the main port (enumeration, missing and revoked tokens)", async () => {
        const u = await userWithSession(s);
        const cases: [string, (cl: typeof g) => Promise<unknown>][] = [
          ["wrong password", (cl) => cl.login({ email: u.email, password: "wrong but long enough" })],
          ["unknown e-mail", (cl) => cl.login({ email: uniqueEmail("ghost"), password: "wrong but long enough" })],
          ["no token", (cl) => cl.getProfile({})],
          ["garbage token", (cl) => cl.getProfile({}, bearerMd("garbage"))],
          ["weak password", (cl) => cl.register({ account: { email: uniqueEmail(), password: "password123" } })],
          ["bad refresh token", (cl) => cl.refreshToken({ refreshToken: "nope" })],
        ];
        for (const [name, run] of cases) {
          const [main, internal] = [await grpcFailure(run(g)), await grpcFailure(run(gi))];
          expect({ name, code: internal.code, reason: errorReason(internal) }).toEqual({
            name,
            code: main.code,
            reason: errorReason(main),
          });
        }
        const [a, b] = [
          await grpcFailure(gi.login({ email: u.email, password: "wrong but long enough" })),
          await grpcFailure(gi.login({ email: uniqueEmail("ghost"), password: "wrong but long enough" })),
        ];
        expect({ code: a.code, reason: errorReason(a), details: a.details }).toEqual({
          code: b.code,
          reason: errorReason(b),
          details: b.details,
        });

        await gi.logout({}, bearerMd(u.accessToken));
        await expectGrpcError(gi.getProfile({}, bearerMd(u.accessToken)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        await expectGrpcError(g.getProfile({}, bearerMd(u.accessToken)), grpc.status.UNAUTHENTICATED, "TOKEN_INVALID");
        expectRestError(await profile({ token: u.accessToken }), 401, "TOKEN_INVALID");
      });

      it("detects refresh-token reuse and ends the session", () => expectGrpcReuseDetected(gi));
    });

    describe("change password", () => {
      const change = (token: string, body: Record<string, unknown>) => rest(s.baseUrl, "PUT", "/user/password", { token, body });

      it("rejects a wrong old password (401 INVALID_CREDENTIALS), a weak new one (400 + reason), an unchanged one (400 PASSWORD_UNCHANGED)", async () => {
        const user = await registerUser(s, { email: uniqueEmail("pwchange"), info: { name: "Marguerite Okafor" } });
        const a = await login(s, user.email, user.password);
        const b = await login(s, user.email, user.password);

        expectRestError(await change(a.accessToken, { old_password: "not my password", new_password: strongPassword() }), 401, "INVALID_CREDENTIALS");
        for (const [next, reason] of [
          ["short", "PASSWORD_TOO_SHORT"],
          ["x".repeat(257), "PASSWORD_TOO_LONG"],
          ["password123", "PASSWORD_TOO_COMMON"],
          ["QWERTY123", "PASSWORD_TOO_COMMON"],
          ["pwchange forever", "PASSWORD_CONTAINS_CONTEXT"],
          ["okafor is my name", "PASSWORD_CONTAINS_CONTEXT"],
          [user.password, "PASSWORD_UNCHANGED"],
        ] as const) {
          const r = await change(a.accessToken, { old_password: user.password, new_password: next });
          expect({ next: next.slice(0, 20), status: r.status, reason: errorReason(r.body) }).toEqual({
            next: next.slice(0, 20),
            status: 400,
            reason,
          });
        }
        await expectGrpcError(
          g.changePassword({ oldPassword: user.password, newPassword: "password123" }, bearerMd(a.accessToken)),
          grpc.status.INVALID_ARGUMENT,
          "PASSWORD_TOO_COMMON",
        );
        await expectGrpcError(
          g.changePassword({ oldPassword: "wrong wrong wrong", newPassword: strongPassword() }, bearerMd(a.accessToken)),
          grpc.status.UNAUTHENTICATED,
          "INVALID_CREDENTIALS",
        );
        // Failed attempts changed nothing: the old password and every session still work.
        expect((await login(s, user.email, user.password)).userId).toBe(user.userId);
        expect((await profile({ token: b.accessToken })).status).toBe(200);
        expect((await profile({ token: a.accessToken })).status).toBe(200);
      });

      it("success ends the other sessions (revoked_session_count), keeps the current one, swaps the passwords", async () => {
        const user = await registerUser(s);
        const current = await login(s, user.email, user.password);
        const others = [await login(s, user.email, user.password), await login(s, user.email, user.password)];
        const loggedOut = await login(s, user.email, user.password);
        expect((await rest(s.baseUrl, "POST", "/logout", { token: loggedOut.accessToken })).status).toBe(204);
        const next = strongPassword("new");

        const r = await change(current.accessToken, { old_password: user.password, new_password: next });
        expect(r.status, r.text).toBe(200);
        expect(r.body.revoked_session_count).toBe(2); // the already ended session does not count

        for (const o of others) {
          expectRestError(await profile({ token: o.accessToken }), 401, "TOKEN_INVALID");
          expectRestError(
            await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: o.refreshToken } }),
            401,
            "REFRESH_TOKEN_INVALID",
          );
        }
        expect((await profile({ token: current.accessToken })).status).toBe(200);
        expect((await rest(s.baseUrl, "POST", "/token/refresh", { body: { refresh_token: current.refreshToken } })).status).toBe(200);

        expectRestError(
          await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password } }),
          401,
          "INVALID_CREDENTIALS",
        );
        expect((await login(s, user.email, next)).userId).toBe(user.userId);
      });

      it("revoke_other_sessions=false keeps the other sessions; over gRPC the default revokes them", async () => {
        const user = await registerUser(s);
        const current = await login(s, user.email, user.password);
        const other = await login(s, user.email, user.password);
        const next = strongPassword("keep");
        const r = await change(current.accessToken, { old_password: user.password, new_password: next, revoke_other_sessions: false });
        expect(r.status, r.text).toBe(200);
        expect(r.body.revoked_session_count ?? 0).toBe(0);
        expect((await profile({ token: other.accessToken })).status).toBe(200);
        expect((await profile({ token: current.accessToken })).status).toBe(200);
        expect((await login(s, user.email, next)).userId).toBe(user.userId);

        const third = strongPassword("third");
        const res = await g.changePassword({ oldPassword: next, newPassword: third }, bearerMd(other.accessToken));
        // current, and the session of the login just above
        expect(res.revokedSessionCount).toBe(2);
        expectRestError(await profile({ token: current.accessToken }), 401, "TOKEN_INVALID");
        expect((await profile({ token: other.accessToken })).status).toBe(200);
        expect((await login(s, user.email, third)).userId).toBe(user.userId);
      });
    });
  });
}
