import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../src/shared/errors.js";
import { createLimiter, type Limiter } from "../../../src/hashing/limiter.js";
import { expectNear } from "../../support/timing.js";
import { expectRejected } from "../../support/thrown.js";

// Real timers, small values: the limiter's contract is about time and order.

interface Deferred<T = void> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Runs a task that holds its slot until released; `started` resolves once it runs. */
function hold(limiter: Limiter): { result: Promise<string>; started: Promise<void>; release(): void } {
  const started = deferred();
  const gate = deferred();
  const result = limiter.run(async () => {
    started.resolve();
    await gate.promise;
    return "done";
  });
  return { result, started: started.promise, release: () => gate.resolve() };
}

describe("createLimiter", () => {
  it("never runs more than `concurrency` tasks at once, and runs them all", async () => {
    const limiter = createLimiter({ concurrency: 3, maxQueue: 100, queueTimeoutMs: 5_000 });
    let running = 0;
    let peak = 0;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        limiter.run(async () => {
          running++;
          peak = Math.max(peak, running);
          expect(limiter.stats().running).toBeLessThanOrEqual(3);
          await sleep(5 + (i % 4) * 3);
          running--;
          return i;
        }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(peak).toBe(3);
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
  });

  it("starts queued tasks in arrival order", async () => {
    const limiter = createLimiter({ concurrency: 1, maxQueue: 10, queueTimeoutMs: 5_000 });
    const order: number[] = [];
    const first = hold(limiter);
    await first.started;
    const rest = [1, 2, 3, 4].map((i) => limiter.run(async () => void order.push(i)));
    expect(limiter.stats()).toEqual({ running: 1, queued: 4 });
    first.release();
    await Promise.all([first.result, ...rest]);
    expect(order).toEqual([1, 2, 3, 4]);
  });

  it("refuses at once with resource_exhausted / OVERLOADED when the queue is full", async () => {
    const limiter = createLimiter({ concurrency: 1, maxQueue: 2, queueTimeoutMs: 5_000 });
    const busy = hold(limiter);
    await busy.started;
    const queued = [limiter.run(async () => "q1"), limiter.run(async () => "q2")];
    expect(limiter.stats()).toEqual({ running: 1, queued: 2 });

    let ran = false;
    const startedAt = performance.now();
    // Rejects while the running task still holds its slot: no waiting involved.
    const err = await expectRejected(DomainError, limiter.run(async () => void (ran = true)));
    expect(performance.now() - startedAt).toBeLessThan(50);
    expect(err.kind).toBe("resource_exhausted");
    expect(err.reason).toBe("OVERLOADED");
    expect(ran).toBe(false);
    expect(limiter.stats()).toEqual({ running: 1, queued: 2 });

    busy.release();
    await expect(Promise.all([busy.result, ...queued])).resolves.toEqual(["done", "q1", "q2"]);
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
  });

  it("with maxQueue 0 refuses whenever every slot is busy", async () => {
    const limiter = createLimiter({ concurrency: 1, maxQueue: 0, queueTimeoutMs: 5_000 });
    const busy = hold(limiter);
    await busy.started;
    const err = await expectRejected(DomainError, limiter.run(async () => "x"));
    expect([err.kind, err.reason]).toEqual(["resource_exhausted", "OVERLOADED"]);
    busy.release();
    await busy.result;
    await expect(limiter.run(async () => "free again")).resolves.toBe("free again");
  });

  it("gives up on a queued task after queueTimeoutMs with unavailable / OVERLOADED, never running it", async () => {
    // Long enough that the timer's few milliseconds of jitter are small beside it.
    const limiter = createLimiter({ concurrency: 1, maxQueue: 5, queueTimeoutMs: 200 });
    const busy = hold(limiter);
    await busy.started;
    let ran = false;
    const startedAt = performance.now();
    const err = await expectRejected(DomainError, limiter.run(async () => void (ran = true)));
    const waited = performance.now() - startedAt;
    expect(err.kind).toBe("unavailable");
    expect(err.reason).toBe("OVERLOADED");
    // The limiter's own timer gives up on the waiter: no coarser mechanism involved.
    expectNear(waited, 200, { what: "queued task given up" });
    // The timed-out waiter left the queue and holds no slot.
    expect(limiter.stats()).toEqual({ running: 1, queued: 0 });

    busy.release();
    await busy.result;
    await sleep(5);
    expect(ran).toBe(false);
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
  });

  it("a timed-out waiter does not stop the ones behind it from running", async () => {
    // Long enough that the timer's few milliseconds of jitter are small beside it.
    const limiter = createLimiter({ concurrency: 1, maxQueue: 5, queueTimeoutMs: 200 });
    const busy = hold(limiter);
    await busy.started;
    const early = limiter.run(async () => "early");
    await sleep(15);
    const late = limiter.run(async () => "late");
    await expect(expectRejected(DomainError, early)).resolves.toMatchObject({ kind: "unavailable", reason: "OVERLOADED" });
    busy.release();
    await expect(late).resolves.toBe("late");
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
  });

  it("releases the slot when a task rejects, and passes the task's error through", async () => {
    const limiter = createLimiter({ concurrency: 1, maxQueue: 5, queueTimeoutMs: 1_000 });
    const boom = new Error("task failed");
    let queuedBehind: Promise<string> | undefined;
    const failing = limiter.run(async () => {
      queuedBehind = limiter.run(async () => "after failure");
      expect(limiter.stats()).toEqual({ running: 1, queued: 1 });
      await sleep(5);
      throw boom;
    });
    await expect(failing).rejects.toBe(boom);
    await expect(queuedBehind).resolves.toBe("after failure");
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
  });

  it("releases the slot when a task throws synchronously", async () => {
    const limiter = createLimiter({ concurrency: 1, maxQueue: 0, queueTimeoutMs: 1_000 });
    const boom = new Error("sync");
    await expect(
      limiter.run((() => {
        throw boom;
      }) as () => Promise<never>),
    ).rejects.toBe(boom);
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
    await expect(limiter.run(async () => 1)).resolves.toBe(1);
  });

  it("keeps the bound through a mix of failures, successes and timeouts", async () => {
    const limiter = createLimiter({ concurrency: 2, maxQueue: 50, queueTimeoutMs: 200 });
    let running = 0;
    let peak = 0;
    const outcomes = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        limiter.run(async () => {
          running++;
          peak = Math.max(peak, running);
          await sleep(2);
          running--;
          if (i % 3 === 0) throw new Error(`task ${i}`);
          return i;
        }),
      ),
    );
    expect(peak).toBeLessThanOrEqual(2);
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(20);
    expect(limiter.stats()).toEqual({ running: 0, queued: 0 });
  });
});
