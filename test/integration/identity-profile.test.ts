import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IdentityService } from "../../gen/identity/v1/identity_service_pb.js";
import { bearer, bearerMd, connectClient, grpcJsClient, rest, STRONG_PASSWORD } from "../support/clients.js";
import { backends } from "../support/databases.js";
import { errorReason, expectConnectError, expectGrpcError, expectRestError } from "../support/error-info.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { ISSUE_USER, issueRegistrationBody, login, userWithSession } from "../support/users.js";

// GetProfile / UpdateProfile: what was registered comes back, only the
// fields present change, invalid values and extra fields change nothing.

for (const backend of backends) {
  describe.skipIf(backend.skip)(`identity profile (${backend.name})`, () => {
    let s: TestServer;
    let token: string;
    let userId: string;
    let g: ReturnType<typeof grpcJsClient<typeof IdentityService>>;

    beforeAll(async () => {
      s = await startTestServer(backend.name);
      g = grpcJsClient(IdentityService, s.port);
      const r = await rest(s.baseUrl, "POST", "/register", { body: issueRegistrationBody() });
      expect(r.status, r.text).toBe(201);
      userId = r.body.user.user_id;
      token = (await login(s, "ngoc.phu@example.com", STRONG_PASSWORD)).accessToken;
    });
    afterAll(async () => {
      g?.close();
      await s?.destroy();
    });

    const get = async (t = token) => {
      const r = await rest(s.baseUrl, "GET", "/user/profile", { token: t });
      expect(r.status, r.text).toBe(200);
      return r.body.user;
    };
    const put = (body: unknown, t = token) => rest(s.baseUrl, "PUT", "/user/profile", { token: t, body });
    const putRaw = (raw: string, t = token) => rest(s.baseUrl, "PUT", "/user/profile", { token: t, raw });
    /** Everything but update_time, which any successful write may move. */
    const stable = (u: any) => ({ user_id: u.user_id, email: u.email, info_user: u.info_user, create_time: u.create_time });

    it("GET returns what was registered (REST snake_case, gRPC and Connect)", async () => {
      const u = await get();
      expect(u).toMatchObject({ user_id: userId, ...ISSUE_USER });
      expect(Date.parse(u.create_time)).not.toBeNaN();
      expect(Date.parse(u.update_time)).not.toBeNaN();
      expect(JSON.stringify(u)).not.toMatch(/password|hash|session/i);

      const viaGrpc = await g.getProfile({}, bearerMd(token));
      expect(viaGrpc.user?.infoUser).toMatchObject({ name: "Ngoc Phu", dateOfBirth: "2023-11-12", gender: true, address: "Ha Noi" });
      const viaConnect = await connectClient(s.baseUrl).getProfile({}, bearer(token));
      expect(viaConnect.user?.userId).toBe(userId);
      expect(viaConnect.user?.infoUser?.phoneNumber).toBe("1234567890");
    });

    it('PUT {"info_user":{"address":"X"}} changes only the address', async () => {
      const before = await get();
      const r = await put({ info_user: { address: "X" } });
      expect(r.status, r.text).toBe(200);
      expect(r.body.user.info_user).toEqual({ ...before.info_user, address: "X" });
      const after = await get();
      expect(stable(after)).toEqual({ ...stable(before), info_user: { ...before.info_user, address: "X" } });
      expect(Date.parse(after.update_time)).toBeGreaterThanOrEqual(Date.parse(before.update_time));
    });

    it("an empty body object changes nothing; gender false is kept as false", async () => {
      const before = await get();
      expect((await put({ info_user: {} })).status).toBe(200);
      expect(stable(await get())).toEqual(stable(before));
      const r = await put({ info_user: { gender: false } });
      expect(r.status, r.text).toBe(200);
      expect((await get()).info_user).toEqual({ ...before.info_user, gender: false });
      expect((await put({ info_user: { gender: true } })).status).toBe(200);
    });

    it("an empty string clears a field (address, phone, date of birth)", async () => {
      const before = await get();
      const r = await put({ info_user: { address: "", phone_number: "", date_of_birth: "" } });
      expect(r.status, r.text).toBe(200);
      const after = await get();
      expect(after.info_user).not.toHaveProperty("address");
      expect(after.info_user).not.toHaveProperty("phone_number");
      expect(after.info_user).not.toHaveProperty("date_of_birth");
      expect(after.info_user.name).toBe(before.info_user.name);
      expect(after.info_user.gender).toBe(before.info_user.gender);
      // and they can be set again
      const { address, phone_number, date_of_birth } = before.info_user;
      expect((await put({ info_user: { address, phone_number, date_of_birth } })).status).toBe(200);
      expect((await get()).info_user).toEqual(before.info_user);
    });

    it("accepts valid dates (leap day, date-time) and returns only the date", async () => {
      for (const [input, stored] of [
        ["2024-02-29", "2024-02-29"],
        ["1990-04-01T23:59:59Z", "1990-04-01"],
        ["2023-11-12T08:00:23.719000", "2023-11-12"],
      ] as const) {
        const r = await put({ info_user: { date_of_birth: input } });
        expect(r.status, r.text).toBe(200);
        expect((await get()).info_user.date_of_birth).toBe(stored);
      }
      expect((await put({ info_user: { date_of_birth: "2023-11-12" } })).status).toBe(200);
    });

    it("invalid values → 400 VALIDATION_FAILED and nothing changes", async () => {
      const before = await get();
      const nextYear = new Date().getUTCFullYear() + 1;
      const tomorrow = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
      const invalid: Record<string, unknown>[] = [
        { date_of_birth: "2023-02-30" },
        { date_of_birth: "2023-13-01" },
        { date_of_birth: "2023-00-10" },
        { date_of_birth: `${nextYear}-01-01` },
        { date_of_birth: tomorrow },
        { date_of_birth: "1899-12-31" },
        { date_of_birth: "12/11/2023" },
        { date_of_birth: "yesterday" },
        { phone_number: "12345abcde" },
        { phone_number: "call me maybe" },
        { phone_number: "1234567890; DROP TABLE users" },
        { phone_number: "9".repeat(33) },
        { name: "N".repeat(201) },
        { address: "A".repeat(501) },
        // valid fields in the same request do not get through either
        { address: "Should not be stored", date_of_birth: "2023-02-30" },
        { name: "Should not be stored", phone_number: "abc" },
      ];
      for (const info of invalid) {
        const r = await put({ info_user: info });
        expect({ info, status: r.status, reason: errorReason(r.body) }).toEqual({ info, status: 400, reason: "VALIDATION_FAILED" });
      }
      await expectGrpcError(
        g.updateProfile({ infoUser: { dateOfBirth: "2023-02-30" } }, bearerMd(token)),
        grpc.status.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
      );
      await expectConnectError(
        connectClient(s.baseUrl).updateProfile({ infoUser: { phoneNumber: "abc" } }, bearer(token)),
        Code.InvalidArgument,
        "VALIDATION_FAILED",
      );
      const after = await get();
      expect(after).toEqual(before);
    });

    it("boundary lengths are accepted: name of 200 characters (code points), address of 500", async () => {
      const before = await get();
      const name = "ễ".repeat(200);
      const r = await put({ info_user: { name, address: "A".repeat(500) } });
      expect(r.status, r.text).toBe(200);
      expect((await get()).info_user.name).toBe(name);
      expect((await put({ info_user: { name: before.info_user.name, address: before.info_user.address } })).status).toBe(200);
      expect(stable(await get())).toEqual(stable(before));
    });

    it("mass assignment: unknown fields (email, user_id, …) → 400 and nothing changes", async () => {
      const before = await get();
      const other = "00000000-0000-7000-8000-000000000000";
      for (const body of [
        { info_user: { address: "Hacked", email: "attacker@example.com" } },
        { info_user: { address: "Hacked", user_id: other } },
        { info_user: { address: "Hacked", create_time: "2000-01-01T00:00:00Z" } },
        { info_user: { address: "Hacked" }, user_id: other },
        { info_user: { address: "Hacked" }, email: "attacker@example.com" },
        { info_user: { address: "Hacked" }, user: { email: "attacker@example.com" } },
        { info_user: { address: "Hacked", password_hash: "x" } },
      ]) {
        const r = await put(body);
        expect({ body, status: r.status, reason: errorReason(r.body) }).toEqual({ body, status: 400, reason: "MALFORMED_REQUEST" });
      }
      // A JSON object given twice for one key: the last one wins in JSON.parse; still no extra field.
      const dup = await putRaw('{"info_user":{"address":"Hacked"},"info_user":{"address":"Hacked","email":"a@b.co"}}');
      expectRestError(dup, 400, "MALFORMED_REQUEST");
      expect(await get()).toEqual(before);
    });

    it("over Connect JSON, unknown fields are rejected or ignored, never applied", async () => {
      const before = await get();
      const res = await fetch(`${s.baseUrl}/identity.v1.IdentityService/UpdateProfile`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({
          infoUser: { address: before.info_user.address, email: "attacker@example.com", userId: "x" },
          userId: "00000000-0000-7000-8000-000000000000",
          email: "attacker@example.com",
        }),
      });
      expect(res.status).toBeLessThan(500);
      const after = await get();
      expect(stable(after)).toEqual(stable(before));
    });

    it("over gRPC only the fields set change", async () => {
      const before = await get();
      const res = await g.updateProfile({ infoUser: { phoneNumber: "+84 (24) 3826-1234" } }, bearerMd(token));
      expect(res.user?.infoUser?.phoneNumber).toBe("+84 (24) 3826-1234");
      const after = await get();
      expect(after.info_user).toEqual({ ...before.info_user, phone_number: "+84 (24) 3826-1234" });
      await g.updateProfile({ infoUser: { phoneNumber: before.info_user.phone_number } }, bearerMd(token));
    });

    it("control characters (NUL, BEL, newline) in text fields never reach the database raw, and never 500", async () => {
      const u = await userWithSession(s);
      const r = await put({ info_user: { name: "Ngoc\u0000Phu\u0007", address: "line1\nline2\r\n" } }, u.accessToken);
      expect(r.status, r.text).toBe(200);
      const info = (await get(u.accessToken)).info_user;
      expect(info.name).not.toMatch(/[\u0000-\u001f]/);
      expect(info.address).not.toMatch(/[\u0000-\u001f]/);
      expect(info.name).toContain("Ngoc");
    });

    it("each caller sees and changes only their own profile", async () => {
      const mine = await get();
      const other = await userWithSession(s, { info: { name: "Someone Else" } });
      expect((await put({ info_user: { address: "Elsewhere" } }, other.accessToken)).status).toBe(200);
      expect((await get(other.accessToken)).info_user).toEqual({ name: "Someone Else", address: "Elsewhere" });
      expect(stable(await get())).toEqual(stable(mine));
    });

    it("401 without a valid token; nothing changes", async () => {
      const before = await get();
      expectRestError(await rest(s.baseUrl, "PUT", "/user/profile", { body: { info_user: { address: "Nope" } } }), 401, "TOKEN_MISSING");
      expectRestError(await put({ info_user: { address: "Nope" } }, "garbage"), 401, "TOKEN_INVALID");
      expect(await get()).toEqual(before);
    });
  });
}
