import type { Config } from "../config/config.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { Db } from "../storage/db.js";
import { pruneExpiredChallenges } from "../storage/mfa-store.js";
import { pruneLoginThrottle } from "../storage/throttle-store.js";

// Hourly: forgotten failure counts, spent MFA challenges, finished mails and
// expired mail tokens are pruned, and
// the dummy hashes follow the parameter sets still in use. Every instance
// may run it; the deletes are idempotent.

const PRUNE_INTERVAL_MS = 3_600_000;

export function startHousekeeping(
  config: Config,
  deps: { db: Db; clock: Clock; logger: Logger; refreshDummyHashes(): Promise<void>; pruneMail(now: Date): Promise<{ mails: number; tokens: number }> },
): { stop(): void } {
  const { db, clock, logger } = deps;
  const run = () => {
    const now = clock.now();
    deps.refreshDummyHashes().catch((err: unknown) => logger.warn({ err }, "refreshing the dummy hashes failed"));
    Promise.all([pruneLoginThrottle(db, now, config.bruteForce), pruneExpiredChallenges(db, now)]).then(
      ([throttles, challenges]) => {
        if (throttles + challenges > 0) logger.info({ throttles, challenges }, "pruned expired abuse-defence rows");
      },
      (err: unknown) => logger.warn({ err }, "pruning expired abuse-defence rows failed"),
    );
    deps.pruneMail(now).then(
      (pruned) => {
        if (pruned.mails + pruned.tokens > 0) logger.info(pruned, "pruned finished mails and expired mail tokens");
      },
      (err: unknown) => logger.warn({ err }, "pruning the mail outbox failed"),
    );
  };
  const timer = setInterval(run, PRUNE_INTERVAL_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
