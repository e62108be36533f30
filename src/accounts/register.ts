import type { LoginDefence } from "../abuse/login-defence.js";
import type { AuditTrail } from "../audit/trail.js";
import type { PasswordHasher } from "../hashing/ports.js";
import type { CallContext } from "../shared/call.js";
import type { Clock } from "../shared/clock.js";
import { DomainError } from "../shared/errors.js";
import { uuidv7 } from "../shared/uuid.js";
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
// the user, profile and credential.
export function createRegister(deps: {
  users: Pick<UserStore, "create">;
  policy: Pick<PasswordPolicy, "check">;
  hasher: Pick<PasswordHasher, "hash">;
  defence: Pick<LoginDefence, "admitRegistration" | "accountKey">;
  /** Refuses registrations from disposable-mail domains; undefined = any domain. */
  emailDomains?: { isDisposable(email: string): boolean } | undefined;
  trail: Pick<AuditTrail, "record" | "failed">;
  clock: Clock;
}): (input: RegisterInput, call: CallContext) => Promise<User> {
  return async (input, call) => {
    try {
      const email = normalizeEmail(input.email);
      if (deps.emailDomains?.isDisposable(email)) {
        throw new DomainError("invalid_argument", "EMAIL_DOMAIN_NOT_ALLOWED", "e-mail addresses of disposable-mail services are not accepted", {
          field: "account.email",
        });
      }
      deps.policy.check(input.password, { email, name: input.profile.name });
      await deps.defence.admitRegistration(input.captchaToken, call);
      const passwordHash = await deps.hasher.hash(normalizePassword(input.password));
      const now = deps.clock.now();
      // Failures on the address before it had an owner (a lock included) are not the owner's.
      const user = await deps.users.create({ id: uuidv7(now), email, passwordHash, profile: input.profile, now, throttleKey: deps.defence.accountKey(email) });
      await deps.trail.record({ type: "register", outcome: "success", userId: user.id }, call);
      return user;
    } catch (err) {
      return deps.trail.failed("register", err, call);
    }
  };
}
