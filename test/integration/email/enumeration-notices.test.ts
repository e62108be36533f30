import { and, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { outbox } from "../../../src/storage/schema.js";
import { rest, type RestResponse, uniqueEmail } from "../../support/clients.js";
import { setCookieOf } from "../../support/cookies.js";
import { backends } from "../../support/databases.js";
import { expectRestError } from "../../support/error-info.js";
import type { TestServer } from "../../support/server.js";
import type { ReceivedMail, TestSmtp } from "../../support/smtp.js";
import { expectEventually, sleep } from "../../support/timing.js";
import { enrolTotp, login, registerUser, strongPassword, userWithSession } from "../../support/users.js";
import { SECRET_SHAPE, startMailServer } from "./email-login-helpers.js";

// What someone who does not own an address can learn from the flows that
// take one: StartEmailLogin and ForgotPassword answer the same (status,
// body, headers, time) whether the address has an account, each writing
// exactly one outbox row; only the dispatcher tells them apart, and an
// unknown address gets no mail. Then the security notices the account's
// owner gets by mail, none of which ever holds a password.

/** Headers compared between two answers: all but the per-request ones (and the cookie, whose value is the attempt). */
function stableHeaders(r: RestResponse): Record<string, string> {
  const out: Record<string, string> = {};
  r.headers.forEach((value, key) => {
    if (!["x-request-id", "date", "set-cookie"].includes(key)) out[key] = value;
  });
  return out;
}

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

describe.each(backends)("enumeration safety and security notices ($name)", ({ name, skip }) => {
  let s: TestServer;
  let smtp: TestSmtp;
  let stop: () => Promise<void>;

  beforeAll(async () => {
    if (skip) return;
    // The lockout at its minimum and no progressive delay: ten wrong passwords lock an account at once.
    ({ s, smtp, stop } = await startMailServer(name, { env: { BRUTE_FORCE_BASE_DELAY: "0", BRUTE_FORCE_LOCKOUT: "10" } }));
  });
  afterAll(async () => {
    await stop?.();
  });

  const rowIds = async (kind: string) =>
    new Set((await s.app.database.db.select({ id: outbox.id }).from(outbox).where(eq(outbox.kind, kind))).map((r) => r.id));
  /** Makes the call and returns the outbox rows of `kind` it wrote. */
  async function withRows(kind: string, call: () => Promise<RestResponse>): Promise<{ r: RestResponse; rows: string[] }> {
    const before = await rowIds(kind);
    const r = await call();
    return { r, rows: [...(await rowIds(kind))].filter((id) => !before.has(id)) };
  }
  const rowsById = (ids: string[]) => s.app.database.db.select().from(outbox).where(inArray(outbox.id, ids));
  /** Waits until the rows are finished; returns their [status, last_error] by id, in `ids` order. */
  async function finished(ids: string[]) {
    await expectEventually("the dispatcher to finish the rows", async () => (await rowsById(ids)).every((r) => !["pending", "sending"].includes(r.status)), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const rows = await rowsById(ids);
    return ids.map((id) => rows.find((r) => r.id === id)!).map((r) => ({ status: r.status, lastError: r.lastError, address: r.address }));
  }

  describe("no enumeration", () => {
    it.skipIf(skip)("POST /login/email answers a registered and an unknown address alike (the attempt aside), one outbox row each; only the registered one gets mail", async () => {
      const user = await registerUser(s);
      const ghost = uniqueEmail("ghost");
      const known = await withRows("email_login", () => rest(s.baseUrl, "POST", "/login/email", { body: { email: user.email } }));
      const unknown = await withRows("email_login", () => rest(s.baseUrl, "POST", "/login/email", { body: { email: ghost } }));
      for (const { r, rows } of [known, unknown]) {
        expect(r.status, r.text).toBe(202);
        expect(Object.keys(r.body)).toEqual(["attempt"]);
        expect(r.body.attempt).toMatch(SECRET_SHAPE);
        expect(rows).toHaveLength(1);
        expect(setCookieOf(r, "email_login")!.value).toBe(r.body.attempt);
      }
      expect(unknown.r.text.length).toBe(known.r.text.length);
      expect(unknown.r.text.replace(unknown.r.body.attempt, "")).toBe(known.r.text.replace(known.r.body.attempt, ""));
      expect(stableHeaders(unknown.r)).toEqual(stableHeaders(known.r));
      const cookieAttrs = (r: RestResponse) => Object.fromEntries(setCookieOf(r, "email_login")!.attrs);
      expect(cookieAttrs(unknown.r)).toEqual(cookieAttrs(known.r));

      expect(await finished([known.rows[0]!, unknown.rows[0]!])).toEqual([
        { status: "sent", lastError: null, address: null },
        { status: "dropped", lastError: "no account", address: null },
      ]);
      expect((await smtp.waitFor(user.email, { subject: /login link/ })).to).toBe(user.email);
      expect(smtp.to(ghost)).toEqual([]);
    });

    it.skipIf(skip)("POST /password/forgot answers a registered and an unknown address byte for byte alike, one outbox row each; only the registered one gets mail", async () => {
      const user = await registerUser(s);
      const ghost = uniqueEmail("ghost");
      const known = await withRows("password_reset", () => rest(s.baseUrl, "POST", "/password/forgot", { body: { email: user.email } }));
      const unknown = await withRows("password_reset", () => rest(s.baseUrl, "POST", "/password/forgot", { body: { email: ghost } }));
      expect(known.r.status, known.r.text).toBe(202);
      expect(unknown.r.status).toBe(known.r.status);
      expect(unknown.r.text).toBe(known.r.text);
      expect(stableHeaders(unknown.r)).toEqual(stableHeaders(known.r));
      expect(unknown.r.headers.getSetCookie()).toEqual([]);
      expect([known.rows.length, unknown.rows.length]).toEqual([1, 1]);

      expect(await finished([known.rows[0]!, unknown.rows[0]!])).toEqual([
        { status: "sent", lastError: null, address: null },
        { status: "dropped", lastError: "no account", address: null },
      ]);
      expect((await smtp.waitFor(user.email, { subject: /^Reset your password$/ })).to).toBe(user.email);
      expect(smtp.to(ghost)).toEqual([]);
      // A malformed address is refused alike, whoever asks.
      expectRestError(await rest(s.baseUrl, "POST", "/password/forgot", { body: { email: "no-at-sign" } }), 400, "VALIDATION_FAILED");
    });

    it.skipIf(skip)("the answers take the same time: interleaved calls for a registered and an unknown address have medians within noise", { timeout: 120_000 }, async () => {
      const user = await registerUser(s);
      const ghost = uniqueEmail("ghost");
      const PAIRS = 30;
      for (const path of ["/login/email", "/password/forgot"]) {
        const kind = path === "/login/email" ? "email_login" : "password_reset";
        let calls = 0;
        const rowsBefore = (await rowIds(kind)).size;
        const call = async (email: string) => {
          const started = performance.now();
          const r = await rest(s.baseUrl, "POST", path, { body: { email } });
          const ms = performance.now() - started;
          calls++;
          expect(r.status, r.text).toBe(202);
          return ms;
        };
        // Warm both paths up (JIT, connections, the pool).
        for (let i = 0; i < 5; i++) {
          await call(user.email);
          await call(ghost);
        }
        /** One measurement: the medians of PAIRS interleaved pairs, alternating which goes first (neither always follows the other's background work). */
        const measure = async () => {
          const times = { known: [] as number[], unknown: [] as number[] };
          for (let i = 0; i < PAIRS; i++) {
            const order = i % 2 === 0 ? (["known", "unknown"] as const) : (["unknown", "known"] as const);
            for (const which of order) times[which].push(await call(which === "known" ? user.email : ghost));
          }
          const [known, unknown] = [median(times.known), median(times.unknown)];
          // An account lookup that costs real work in the request (let alone a password hash, or composing the mail) shows;
          // the scheduling noise of a loaded two-core machine must not.
          const ok = unknown / known > 0.5 && unknown / known < 2 && Math.abs(unknown - known) < 6;
          return { ok, what: `median ${known.toFixed(2)} ms with an account, ${unknown.toFixed(2)} ms without` };
        };
        // A stall of the machine can skew one measurement; a difference in the code skews every one.
        const seen: { ok: boolean; what: string }[] = [];
        while (seen.length < 3 && !seen.some((m) => m.ok)) seen.push(await measure());
        expect(seen.some((m) => m.ok), `${path}: ${seen.map((m) => m.what).join("; ")}`).toBe(true);
        // Every call wrote exactly one row.
        expect((await rowIds(kind)).size - rowsBefore).toBe(calls);
      }
    });
  });

  describe("security notices by mail", () => {
    /** Every mail to `email` so far, checked for `secrets` in both parts. */
    function expectNoSecrets(email: string, secrets: string[]) {
      const mails = smtp.to(email);
      expect(mails.length).toBeGreaterThan(0);
      for (const m of mails) {
        for (const secret of secrets) {
          expect(m.text, m.subject).not.toContain(secret);
          expect(m.html, m.subject).not.toContain(secret);
        }
      }
    }
    const noticeRows = (userId: string, event: string) =>
      s.app.database.db
        .select()
        .from(outbox)
        .where(and(eq(outbox.userId, userId), eq(outbox.kind, "security_notice"), sql`${outbox.params}->>'event' = ${event}`));
    const expectNotice = (m: ReceivedMail, line: string) => {
      expect(m.text).toContain(line);
      expect(m.text).toContain("If this was not you, reset your password now");
      expect(m.html).toContain(line);
    };

    it.skipIf(skip)("changing the password mails “Your password was changed”, with neither password in it", async () => {
      const user = await userWithSession(s);
      const next = strongPassword("changed");
      const r = await rest(s.baseUrl, "PUT", "/user/password", { token: user.accessToken, body: { old_password: user.password, new_password: next } });
      expect(r.status, r.text).toBe(200);
      expectNotice(await smtp.waitFor(user.email, { subject: /^Your password was changed$/ }), "The password of your account was changed.");
      expect(await noticeRows(user.userId, "password_changed")).toHaveLength(1);
      expectNoSecrets(user.email, [user.password, next]);
    });

    it.skipIf(skip)("turning TOTP on mails “Two-step verification is on” (after “An authenticator is being added”), with no secret in either", async () => {
      const user = await userWithSession(s);
      const { secret, recoveryCodes } = await enrolTotp(s, user.accessToken, user.password);
      const started = await smtp.waitFor(user.email, { subject: /^An authenticator is being added$/ });
      expectNotice(started, "Someone started adding an authenticator app to your account.");
      expectNotice(await smtp.waitFor(user.email, { subject: /^Two-step verification is on$/ }), "An authenticator app was added to your account");
      expectNoSecrets(user.email, [user.password, secret, ...recoveryCodes]);
    });

    it.skipIf(skip)("locking an account by wrong passwords mails “Your account was locked” once, with none of the passwords tried", async () => {
      const user = await registerUser(s);
      const tried = Array.from({ length: 11 }, (_, i) => `wrong guess ${i} ${Math.random().toString(36).slice(2)}`);
      for (const password of tried) expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password } }), 401, "INVALID_CREDENTIALS");
      expectNotice(await smtp.waitFor(user.email, { subject: /^Your account was locked$/ }), "Too many wrong passwords were tried on your account");
      // The right password is refused now, and locks nothing twice.
      expectRestError(await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password } }), 401, "INVALID_CREDENTIALS");
      await sleep(300);
      expect(await noticeRows(user.userId, "account_locked")).toHaveLength(1);
      expectNoSecrets(user.email, [user.password, ...tried]);
    });

    it.skipIf(skip)("a login from a new device mails “New sign-in to your account”, but not the account's first login nor one from a known device", async () => {
      const user = await registerUser(s);
      const first = await login(s, user.email, user.password);
      const device = first.response.body.device_token as string;
      // From the known device: nothing to tell.
      const again = await rest(s.baseUrl, "POST", "/login", { body: { email: user.email, password: user.password, device_id: device } });
      expect(again.status, again.text).toBe(201);
      await sleep(300);
      expect(await noticeRows(user.userId, "new_device_login")).toEqual([]);

      // Another device (no device token): the owner hears of it.
      await login(s, user.email, user.password);
      const m = await smtp.waitFor(user.email, { subject: /^New sign-in to your account$/ });
      expectNotice(m, "Your account was signed in to from a device or place we had not seen before.");
      expect(await noticeRows(user.userId, "new_device_login")).toHaveLength(1);
      expectNoSecrets(user.email, [user.password]);
    });
  });
});
