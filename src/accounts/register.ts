import type { LoginDefence } from "../abuse/login-defence.js";
import type { AuditTrail } from "../audit/trail.js";
import type { PasswordHasher } from "../hashing/ports.js";
import { mailEntry, type OnQueued } from "../mail/outbox.js";
import type { OutboxStore } from "../mail/ports.js";
import { verificationMail } from "../recovery/verification.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { isDomainError } from "../shared/errors.js";
import { uuidv7 } from "../shared/uuid.js";
import { refuseDisposable } from "./account.js";
import { normalizeEmail } from "./email.js";
import { normalizePassword, type PasswordPolicy } from "./password-policy.js";
import type { Profile, User, UserStore } from "./ports.js";

export interface RegisterInput {
  email: string;
  password: string;
  profile: Profile;
  captchaToken?: string | undefined;
}

// Register: a dot-atom e-mail from a real mail domain, a password the
// policy accepts, a CAPTCHA when configured; then one transaction creates
// the user, profile and credential and writes the verification mail.
//
// With `enumerationSafe` (REQUIRE_EMAIL_VERIFICATION), an address that
// already has an account is answered like a new one (same status, shape
// and work: the hash, one failed insert and one outbox row), and its owner
// gets a "someone tried to register with your address" mail instead.
export function createRegister(deps: {
  users: Pick<UserStore, "create">;
  outbox: Pick<OutboxStore, "enqueue">;
  policy: Pick<PasswordPolicy, "check">;
  hasher: Pick<PasswordHasher, "hash">;
  defence: Pick<LoginDefence, "admitRegistration" | "accountKey">;
  /** Refuses registrations from disposable-mail domains; undefined = any domain. */
  emailDomains?: { isDisposable(email: string): boolean } | undefined;
  enumerationSafe: boolean;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
  onQueued: OnQueued;
}): (input: RegisterInput, call: CallContext) => Promise<User> {
  return async (input, call) => {
    try {
      const email = normalizeEmail(input.email);
      refuseDisposable(deps.emailDomains, email, "account.email");
      deps.policy.check(input.password, { email, name: input.profile.name });
      await deps.defence.admitRegistration(input.captchaToken, call);
      const passwordHash = await deps.hasher.hash(normalizePassword(input.password));
      const now = deps.clock.now();
      const id = uuidv7(now);
      let user: User;
      try {
        // Failures on the address before it had an owner (a lock included) are not the owner's.
        user = await deps.users.create({
          id,
          email,
          passwordHash,
          profile: input.profile,
          now,
          throttleKey: deps.defence.accountKey(email),
          mail: verificationMail(id, email, now),
        });
      } catch (err) {
        if (!deps.enumerationSafe || !isDomainError(err) || err.reason !== "EMAIL_ALREADY_REGISTERED") throw err;
        await deps.outbox.enqueue(mailEntry("registration_attempt", now, { address: email }));
        deps.onQueued();
        await deps.trail.record({ type: "register", outcome: "failure", reason: "EMAIL_ALREADY_REGISTERED" }, call);
        // What a new account would have looked like; nothing of it is stored.
        return { id, email, profile: { ...input.profile }, emailVerified: false, createdAt: now, updatedAt: now };
      }
      deps.onQueued();
      await deps.trail.record({ type: "register", outcome: "success", userId: user.id }, call);
      return user;
    } catch (err) {
      return deps.trail.failed("register", err, call);
    }
  };
}
