import * as grpc from "@grpc/grpc-js";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { createArgon2Hasher } from "../../src/hashing/argon2.js";
import { passwordCredentials, profiles, users } from "../../src/storage/schema.js";
import { grpcJsClient, rest, STRONG_PASSWORD, uniqueEmail } from "../support/clients.js";
import { setCookieNames } from "../support/cookies.js";
import { backends } from "../support/databases.js";
import { errorReason, expect4xx, expectGrpcError, expectRestError, grpcFailure } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { ISSUE_USER, issueRegistrationBody, login, registerUser, strongPassword } from "../support/users.js";
import type { PasswordHasher } from "../../src/hashing/ports.js";

// Registration, the password policy (REST and gRPC alike) and hostile input
// that must end in a 4xx with nothing stored.

/** The real argon2id hasher at the test cost, counting calls (proves "no hashing"). */
function countingHasher() {
  const inner = createArgon2Hasher(
    { memoryKib: 8192, timeCost: 1, parallelism: 1 },
    { concurrency: 2, maxQueue: 128, queueTimeoutMs: 5_000 },
  );
  const counts = { hash: 0, verify: 0 };
  const hasher: PasswordHasher = {
    hash: (p) => (counts.hash++, inner.hash(p)),
    verify: (h, p) => (counts.verify++, inner.verify(h, p)),
    needsRehash: (h) => inner.needsRehash(h),
  };
  return { hasher, counts, total: () => counts.hash + counts.verify };
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`identity registration and input handling (${backend.name})`, () => {
    let s: TestServer;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;
    const hashing = countingHasher();

    beforeAll(async () => {
      s = await startTestServer(backend.name, { overrides: { hasher: hashing.hasher } });
      g = grpcJsClient(IdentityService, s.port);
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    async function counts() {
      const db = s.app.database.db;
      const [u] = await db.select({ n: sql<number>`count(*)::int` }).from(users);
      const [p] = await db.select({ n: sql<number>`count(*)::int` }).from(profiles);
      const [c] = await db.select({ n: sql<number>`count(*)::int` }).from(passwordCredentials);
      return { users: Number(u!.n), profiles: Number(p!.n), credentials: Number(c!.n) };
    }

    /** Asserts a failed registration left no trace: no user, no half-record, login fails. */
    async function expectNothingStored(before: Awaited<ReturnType<typeof counts>>, email?: string) {
      const after = await counts();
      expect(after).toEqual(before);
      expect(after.profiles).toBe(after.users);
      expect(after.credentials).toBe(after.users);
      if (email) {
        const r = await rest(s.baseUrl, "POST", "/login", { body: { email, password: STRONG_PASSWORD } });
        expectRestError(r, 401, "INVALID_CREDENTIALS");
      }
    }

    describe("registration", () => {
      it("accepts the exact registration body of the issue with 201 and returns the stored profile", async () => {
        const r = await rest(s.baseUrl, "POST", "/register", { body: issueRegistrationBody() });
        expect(r.status, r.text).toBe(201);
        expect(r.body.user).toMatchObject(ISSUE_USER);
        expect(r.body.user.user_id).toMatch(/^[0-9a-f-]{36}$/);
        expect(r.body.user.create_time).toBeTruthy();
        expect(r.text).not.toContain(STRONG_PASSWORD);
        expect(r.text).not.toMatch(/password|hash|argon/i);
        expect((await login(s, "ngoc.phu@example.com", STRONG_PASSWORD)).userId).toBe(r.body.user.user_id);
      });

      it("refuses a duplicate e-mail, also in another case, with 409 EMAIL_ALREADY_REGISTERED (REST and gRPC)", async () => {
        const { email } = await registerUser(s, { email: uniqueEmail("dup") });
        expectRestError(
          await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: strongPassword() } } }),
          409,
          "EMAIL_ALREADY_REGISTERED",
        );
        expectRestError(
          await rest(s.baseUrl, "POST", "/register", {
            body: { account: { email: email.toUpperCase(), password: strongPassword() } },
          }),
          409,
          "EMAIL_ALREADY_REGISTERED",
        );
        await expectGrpcError(
          g.register({ account: { email: email.toUpperCase(), password: strongPassword() } }),
          grpc.status.ALREADY_EXISTS,
          "EMAIL_ALREADY_REGISTERED",
        );
      });

      it('refuses " NGOC.PHU@EXAMPLE.COM " (case and surrounding spaces) as a duplicate of the issue body: 409', async () => {
        const body = issueRegistrationBody(strongPassword());
        const first = await rest(s.baseUrl, "POST", "/register", { body });
        expect([201, 409]).toContain(first.status); // already there when the first test ran
        const before = await counts();
        const r = await rest(s.baseUrl, "POST", "/register", {
          body: { ...body, account: { ...body.account, email: " NGOC.PHU@EXAMPLE.COM " } },
        });
        expectRestError(r, 409, "EMAIL_ALREADY_REGISTERED");
        await expectNothingStored(before);
      });

      it("10 concurrent registrations of one e-mail: exactly one 201, nine 409, never 500, one account", async () => {
        const email = uniqueEmail("concurrent");
        const passwords = Array.from({ length: 10 }, (_, i) => strongPassword(`n${i}`));
        const results = await Promise.all(
          passwords.map((password) => rest(s.baseUrl, "POST", "/register", { body: { account: { email, password } } })),
        );
        const statuses = results.map((r) => r.status).sort();
        expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
        for (const r of results.filter((x) => x.status === 409)) expect(errorReason(r.body)).toBe("EMAIL_ALREADY_REGISTERED");
        // Exactly one of the ten passwords logs in: the winner's. Each loser
        // is tried alone after a success, so the brute-force delays (which
        // answer 401 too) never stand in for a wrong password.
        const winner = results.findIndex((r) => r.status === 201);
        const statusOf = async (password: string) => (await rest(s.baseUrl, "POST", "/login", { body: { email, password } })).status;
        const logins: number[] = [];
        for (const [i, password] of passwords.entries()) {
          if (i === winner) continue;
          expect(await statusOf(passwords[winner]!)).toBe(201);
          logins[i] = await statusOf(password);
        }
        logins[winner] = await statusOf(passwords[winner]!);
        expect(logins).toEqual(passwords.map((_, i) => (i === winner ? 201 : 401)));
        const rows = await s.app.database.db.select({ id: users.id }).from(users).where(sql`${users.email} = ${email}`);
        expect(rows).toHaveLength(1);
      });

      it("stores the e-mail lower-cased and logs in with any case", async () => {
        const email = uniqueEmail("MiXeD").replace("@example.com", "@Example.COM");
        const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email, password: STRONG_PASSWORD } } });
        expect(r.status, r.text).toBe(201);
        expect(r.body.user.email).toBe(email.toLowerCase());
        expect((await login(s, email.toUpperCase(), STRONG_PASSWORD)).userId).toBe(r.body.user.user_id);
      });

      it("rejects unknown fields in the registration body (mass assignment) and stores nothing", async () => {
        const before = await counts();
        const email = uniqueEmail("mass");
        for (const body of [
          { account: { email, password: STRONG_PASSWORD }, user_id: "00000000-0000-7000-8000-000000000000" },
          { account: { email, password: STRONG_PASSWORD, user_id: "00000000-0000-7000-8000-000000000000" } },
          { account: { email, password: STRONG_PASSWORD }, info_user: { name: "X", email: "other@example.com" } },
          { account: { email, password: STRONG_PASSWORD }, create_time: "2000-01-01T00:00:00Z" },
          { account: { email, password: STRONG_PASSWORD }, role: "admin" },
        ]) {
          const r = await rest(s.baseUrl, "POST", "/register", { body });
          expectRestError(r, 400, "MALFORMED_REQUEST");
        }
        await expectNothingStored(before, email);
      });
    });

    describe("password policy", () => {
      const cases: { name: string; password: (email: string) => string; name_?: string; reason: string }[] = [
        { name: "7 code points", password: () => "Zq7#xw!", reason: "PASSWORD_TOO_SHORT" },
        // 14 UTF-16 units but 7 code points: counted as 7.
        { name: "7 emoji (14 UTF-16 units)", password: () => "🦊🐙🦉🐳🦋🐝🦀", reason: "PASSWORD_TOO_SHORT" },
        { name: "257 characters", password: () => "k9$Vm2#q".repeat(32) + "x", reason: "PASSWORD_TOO_LONG" },
        { name: "common (password123)", password: () => "password123", reason: "PASSWORD_TOO_COMMON" },
        { name: "common, other case (PassWord123)", password: () => "PassWord123", reason: "PASSWORD_TOO_COMMON" },
        {
          name: "contains the e-mail's local part",
          password: (email) => `My ${email.split("@")[0]!.toUpperCase()} key!`,
          reason: "PASSWORD_CONTAINS_CONTEXT",
        },
        {
          name: "contains the name",
          password: () => "bartholomew rides again 7",
          name_: "Bartholomew Quill",
          reason: "PASSWORD_CONTAINS_CONTEXT",
        },
      ];

      for (const c of cases) {
        it(`rejects a password that is ${c.name} with 400 ${c.reason} over REST and INVALID_ARGUMENT over gRPC`, async () => {
          const before = await counts();
          const email = uniqueEmail("policy");
          const info = c.name_ ? { name: c.name_ } : undefined;
          const r = await rest(s.baseUrl, "POST", "/register", {
            body: { account: { email, password: c.password(email) }, ...(info ? { info_user: info } : {}) },
          });
          expectRestError(r, 400, c.reason);
          await expectGrpcError(
            g.register({ account: { email, password: c.password(email) }, ...(info ? { infoUser: info } : {}) }),
            grpc.status.INVALID_ARGUMENT,
            c.reason,
          );
          await expectNothingStored(before, email);
        });
      }

      it("accepts an emoji password of 8 code points (16 UTF-16 units) and one of exactly 256 characters", async () => {
        const emoji = "🦊🐙🦉🐳🦋🐝🦀🐢";
        expect(emoji.length).toBe(16);
        expect([...emoji]).toHaveLength(8);
        const a = await registerUser(s, { password: emoji });
        expect((await login(s, a.email, emoji)).userId).toBe(a.userId);
        const long = "k9$Vm2#q".repeat(32);
        expect(long).toHaveLength(256);
        const b = await registerUser(s, { password: long });
        expect((await login(s, b.email, long)).userId).toBe(b.userId);
      });

      it("applies the same policy to gRPC registration and accepts a strong password there", async () => {
        const email = uniqueEmail("grpcreg");
        const res = await g.register({ account: { email, password: STRONG_PASSWORD }, infoUser: { name: "Grpc User" } });
        expect(res.user?.email).toBe(email);
        expect(res.user?.infoUser?.name).toBe("Grpc User");
        expect((await login(s, email, STRONG_PASSWORD)).userId).toBe(res.user?.userId);
      });
    });

    describe("oversized passwords are refused before any hashing", () => {
      const huge = "A".repeat(1_048_576);

      it("1 MB password on register, login and change password over REST: 413, no hash computed", async () => {
        const user = await registerUser(s);
        const { accessToken } = await login(s, user.email, user.password);
        const before = await counts();
        const hashes = hashing.total();

        const reg = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: uniqueEmail(), password: huge } } });
        expectRestError(reg, 413, "REQUEST_TOO_LARGE");
        const log = await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: huge } });
        expectRestError(log, 413, "REQUEST_TOO_LARGE");
        const chg = await rest(s.baseUrl, "PUT", "/user/password", {
          token: accessToken,
          body: { old_password: huge, new_password: STRONG_PASSWORD },
        });
        expectRestError(chg, 413, "REQUEST_TOO_LARGE");
        const chg2 = await rest(s.baseUrl, "PUT", "/user/password", {
          token: accessToken,
          body: { old_password: user.password, new_password: huge },
        });
        expectRestError(chg2, 413, "REQUEST_TOO_LARGE");

        expect(hashing.total()).toBe(hashes);
        await expectNothingStored(before);
      });

      it("a 60 KB password (under the body cap, over the byte cap): 4xx everywhere, no hash computed", async () => {
        const user = await registerUser(s);
        const { accessToken } = await login(s, user.email, user.password);
        const big = "B".repeat(60_000);
        const hashes = hashing.total();
        for (const r of [
          await rest(s.baseUrl, "POST", "/register", { body: { account: { email: uniqueEmail(), password: big } } }),
          await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: big } }),
          await rest(s.baseUrl, "PUT", "/user/password", {
            token: accessToken,
            body: { old_password: big, new_password: STRONG_PASSWORD },
          }),
          await rest(s.baseUrl, "PUT", "/user/password", {
            token: accessToken,
            body: { old_password: user.password, new_password: big },
          }),
        ]) {
          expect(r.status, r.text).toBe(400);
          expect(["VALIDATION_FAILED", "PASSWORD_TOO_LONG"]).toContain(errorReason(r.body));
        }
        for (const call of [
          g.register({ account: { email: uniqueEmail(), password: big } }),
          g.login({ email: user.email, password: big }),
        ]) {
          const err = await grpcFailure(call);
          expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
          expect(["VALIDATION_FAILED", "PASSWORD_TOO_LONG"]).toContain(errorReason(err));
        }
        expect(hashing.total()).toBe(hashes);
      });

      for (const port of ["main port", "internal grpc-js port"] as const) {
        it(`1 MB password over gRPC (${port}): RESOURCE_EXHAUSTED with reason REQUEST_TOO_LARGE, no hash computed`, async () => {
          const client = port === "main port" ? g : grpcJsClient(IdentityService, s.grpcPort);
          try {
            const hashes = hashing.total();
            await expectGrpcError(
              client.register({ account: { email: uniqueEmail(), password: huge } }),
              grpc.status.RESOURCE_EXHAUSTED,
              "REQUEST_TOO_LARGE",
            );
            await expectGrpcError(client.login({ email: uniqueEmail(), password: huge }), grpc.status.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE");
            expect(hashing.total()).toBe(hashes);
          } finally {
            if (client !== g) client.close();
          }
        });
      }
    });

    describe("bad input: a 4xx, never a 500, nothing stored", () => {
      it("malformed JSON, non-object JSON, wrong types and nulls give 400 MALFORMED_REQUEST", async () => {
        const before = await counts();
        const email = uniqueEmail("bad");
        for (const raw of [
          "{",
          '{"account": {"email": "a@example.com", "password": "x"',
          "[]",
          '"just a string"',
          "42",
          "null",
          '{"account": "not an object"}',
          `{"account": {"email": 5, "password": "${STRONG_PASSWORD}"}}`,
          `{"account": {"email": "${email}", "password": ["${STRONG_PASSWORD}"]}}`,
          `{"account": {"email": "${email}", "password": "${STRONG_PASSWORD}"}, "info_user": {"gender": "yes"}}`,
          `{"account": {"email": "${email}", "password": "${STRONG_PASSWORD}"}, "info_user": {"name": 12}}`,
          `{"account": {"email": "${email}", "password": "${STRONG_PASSWORD}"}, "info_user": []}`,
        ]) {
          const r = await rest(s.baseUrl, "POST", "/register", { raw });
          expect(r.status, `${raw} → ${r.text}`).toBe(400);
          expect(errorReason(r.body), raw).toBe("MALFORMED_REQUEST");
        }
        for (const raw of ['{"email": 5, "password": "x"}', '{"email": "a@example.com", "password": true}', "{,}"]) {
          const r = await rest(s.baseUrl, "POST", "/login", { raw });
          expectRestError(r, 400, "MALFORMED_REQUEST");
        }
        await expectNothingStored(before, email);
      });

      it("missing or empty required fields give 400 VALIDATION_FAILED", async () => {
        const before = await counts();
        for (const body of [
          {},
          { account: null },
          { account: {} },
          { account: { email: "", password: STRONG_PASSWORD } },
          { account: { email: uniqueEmail(), password: "" } },
          { account: { email: "not-an-email", password: STRONG_PASSWORD } },
          { account: { email: "two@@example.com", password: STRONG_PASSWORD } },
        ]) {
          const r = await rest(s.baseUrl, "POST", "/register", { body });
          expect(r.status, `${JSON.stringify(body)} → ${r.text}`).toBe(400);
          expect(errorReason(r.body)).toBe("VALIDATION_FAILED");
        }
        const empty = await rest(s.baseUrl, "POST", "/register");
        expectRestError(empty, 400, "VALIDATION_FAILED");
        await expectNothingStored(before);
      });

      it("an e-mail of 255 characters is refused (400) and one of 254 is accepted", async () => {
        const domain = (len: number) => {
          // labels of up to 63 characters joined by dots, ending in ".com"
          const labels: string[] = [];
          let remaining = len - 4;
          while (remaining > 0) {
            const n = Math.min(63, remaining - (labels.length ? 1 : 0));
            labels.push("d".repeat(n));
            remaining -= n + (labels.length > 1 ? 1 : 0);
          }
          return `${labels.join(".")}.com`;
        };
        const local = "l".repeat(64);
        const e255 = `${local}@${domain(255 - 65)}`;
        const e254 = `${local}@${domain(254 - 65)}`;
        expect(e255).toHaveLength(255);
        expect(e254).toHaveLength(254);
        const before = await counts();
        const r = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: e255, password: STRONG_PASSWORD } } });
        expectRestError(r, 400, "VALIDATION_FAILED");
        await expectGrpcError(
          g.register({ account: { email: e255, password: STRONG_PASSWORD } }),
          grpc.status.INVALID_ARGUMENT,
          "VALIDATION_FAILED",
        );
        await expectNothingStored(before);
        const ok = await rest(s.baseUrl, "POST", "/register", { body: { account: { email: e254, password: STRONG_PASSWORD } } });
        expect(ok.status, ok.text).toBe(201);
        // A 255-character login e-mail is simply wrong credentials (or invalid), never a 500.
        const l = await rest(s.baseUrl, "POST", "/login", { body: { email: e255, password: STRONG_PASSWORD } });
        expect4xx(l);
      });

      it("invalid UTF-8 in the body gives 400 MALFORMED_REQUEST", async () => {
        const before = await counts();
        const email = uniqueEmail("utf8");
        const prefix = Buffer.from(`{"account":{"email":"${email}","password":"abc`);
        const suffix = Buffer.from(`defghijk"},"info_user":{"name":"x"}}`);
        for (const bad of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc0, 0xaf]]) {
          const raw = new Uint8Array(Buffer.concat([prefix, Buffer.from(bad), suffix]));
          const r = await rest(s.baseUrl, "POST", "/register", { raw });
          expectRestError(r, 400, "MALFORMED_REQUEST");
        }
        await expectNothingStored(before, email);
      });

      it("a body over MAX_REQUEST_BYTES gives 413 REQUEST_TOO_LARGE, with or without Content-Length", async () => {
        const before = await counts();
        const email = uniqueEmail("big");
        const body = { account: { email, password: STRONG_PASSWORD }, info_user: { address: "x".repeat(70 * 1024) } };
        const r = await rest(s.baseUrl, "POST", "/register", { body });
        expectRestError(r, 413, "REQUEST_TOO_LARGE");
        // Chunked: no Content-Length, the cap applies while reading.
        const text = JSON.stringify(body);
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            for (let i = 0; i < text.length; i += 8192) controller.enqueue(new TextEncoder().encode(text.slice(i, i + 8192)));
            controller.close();
          },
        });
        const res = await fetch(`${s.baseUrl}/register`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: stream,
          duplex: "half",
        } as RequestInit);
        const chunkedBody = (await res.json()) as unknown;
        expect(res.status).toBe(413);
        expect(errorReason(chunkedBody)).toBe("REQUEST_TOO_LARGE");
        await expectNothingStored(before, email);
      });

      it("a body just under the cap is read normally (and then validated)", async () => {
        const before = await counts();
        const body = { account: { email: uniqueEmail(), password: STRONG_PASSWORD }, info_user: { address: "x".repeat(60 * 1024) } };
        const r = await rest(s.baseUrl, "POST", "/register", { body });
        // address is capped at 500 characters by the contract
        expectRestError(r, 400, "VALIDATION_FAILED");
        await expectNothingStored(before);
      });

      it("a body that is not JSON (form, text) gives 415, not a session", async () => {
        const user = await registerUser(s);
        const form = await rest(s.baseUrl, "POST", "/login", {
          raw: `email=${encodeURIComponent(user.email)}&password=${encodeURIComponent(user.password)}`,
          headers: { "content-type": "application/x-www-form-urlencoded" },
        });
        expect(form.status, form.text).toBe(415);
        expect(setCookieNames(form)).toEqual([]);
        const plain = await rest(s.baseUrl, "POST", "/login", {
          raw: JSON.stringify({ email: user.email, password: user.password }),
          headers: { "content-type": "text/plain" },
        });
        expect(plain.status, plain.text).toBe(415);
        expect(setCookieNames(plain)).toEqual([]);
      });

      it("unknown route gives 404, wrong method 405 with Allow", async () => {
        for (const [method, path] of [
          ["GET", "/nope"],
          ["POST", "/user"],
          ["GET", "/user/profile/extra"],
          ["POST", "/registerx"],
          ["GET", "/identity.v1.IdentityService/Nope"],
        ] as const) {
          const r = await rest(s.baseUrl, method, path);
          expect(r.status, `${method} ${path}`).toBe(404);
          // The same error JSON as every other error.
          expect(r.body, `${method} ${path}`).toMatchObject({ code: "not_found", message: "no such route" });
          expect(errorReason(r.body), `${method} ${path}`).toBe("ROUTE_NOT_FOUND");
          expect(r.headers.get("cache-control")).toBe("no-store");
        }
        for (const [method, path, allow] of [
          ["GET", "/register", "POST"],
          ["PUT", "/login", "POST"],
          ["DELETE", "/user/profile", "GET, PUT"],
          ["POST", "/user/password", "PUT"],
          ["GET", "/logout", "POST"],
        ] as const) {
          const r = await rest(s.baseUrl, method, path);
          expect(r.status, `${method} ${path}`).toBe(405);
          expect(r.headers.get("allow")).toBe(allow);
          expect(errorReason(r.body), `${method} ${path}`).toBe("METHOD_NOT_ALLOWED");
        }
      });
    });
  });
}
