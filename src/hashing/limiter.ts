import { DomainError } from "../shared/errors.js";

// Bounds concurrent password hashes to the cores that can run them and the
// queue in front of them. Past the queue a caller is refused at once
// (RESOURCE_EXHAUSTED); a caller that waited too long gives up (UNAVAILABLE).
// Either way a login flood costs bounded memory and answers quickly instead
// of piling work onto the libuv pool until the process falls over.

export interface LimiterOptions {
  concurrency: number;
  maxQueue: number;
  queueTimeoutMs: number;
}

export interface Limiter {
  run<T>(task: () => Promise<T>): Promise<T>;
  stats(): { running: number; queued: number };
}

interface Waiter {
  start: () => void;
  timer: NodeJS.Timeout;
}

export function createLimiter(opts: LimiterOptions): Limiter {
  let running = 0;
  const queue: Waiter[] = [];

  function release(): void {
    const next = queue.shift();
    if (next) {
      clearTimeout(next.timer);
      next.start();
    } else {
      running--;
    }
  }

  return {
    async run(task) {
      if (running >= opts.concurrency) {
        if (queue.length >= opts.maxQueue) {
          throw new DomainError("resource_exhausted", "OVERLOADED", "too many concurrent sign-ins; retry shortly");
        }
        await new Promise<void>((resolve, reject) => {
          const waiter: Waiter = {
            start: resolve,
            timer: setTimeout(() => {
              const i = queue.indexOf(waiter);
              if (i >= 0) queue.splice(i, 1);
              reject(new DomainError("unavailable", "OVERLOADED", "the service is busy; retry shortly"));
            }, opts.queueTimeoutMs),
          };
          queue.push(waiter);
        });
      } else {
        running++;
      }
      try {
        return await task();
      } finally {
        release();
      }
    },
    stats: () => ({ running, queued: queue.length }),
  };
}
