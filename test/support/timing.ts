import { expect } from "vitest";

// Time in tests that must hold on a loaded two-core machine. A deadline is
// asserted near its configured value: never much before it (a timer does
// not fire early, give or take libuv's cached loop time), and not after it
// by more than the enforcing mechanism's granularity plus the scheduling
// delay of a busy machine (the process waits for a core, the event loop
// for other callbacks). Conditions that become true "soon" are polled with
// a bound and fail with an assertion that says what was awaited.

/** How much before its delay a timer can seem to fire, measured from the caller's clock (libuv's loop time is cached per iteration). */
export const TIMER_EARLY_MS = 20;

/** How late a process may run a due timer on a loaded two-core machine. */
export const SCHEDULING_SLACK_MS = 600;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `f`, timing it with the monotonic clock. */
export async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await f();
  return { value, ms: performance.now() - started };
}

/**
 * Asserts that a deadline of `configuredMs` fired on time: at `elapsedMs`
 * no earlier than TIMER_EARLY_MS before it, and before `configuredMs` plus
 * `granularityMs` (how coarsely the mechanism checks, e.g. Node's
 * once-a-second HTTP deadline sweep; 0 for a plain timer) plus
 * SCHEDULING_SLACK_MS.
 */
export function expectNear(elapsedMs: number, configuredMs: number, opts: { granularityMs?: number; what?: string } = {}): void {
  const { granularityMs = 0, what = "deadline" } = opts;
  const message = `${what}: fired after ${Math.round(elapsedMs)} ms, configured ${configuredMs} ms`;
  expect(elapsedMs, message).toBeGreaterThanOrEqual(configuredMs - TIMER_EARLY_MS);
  expect(elapsedMs, message).toBeLessThan(configuredMs + granularityMs + SCHEDULING_SLACK_MS);
}

/** Asserts that what a budget of `budgetMs` bounds (a command timeout, say) took no longer than it, give or take the scheduling slack. */
export function expectWithin(elapsedMs: number, budgetMs: number, what = "answer"): void {
  expect(elapsedMs, `${what}: took ${Math.round(elapsedMs)} ms, budget ${budgetMs} ms`).toBeLessThan(budgetMs + SCHEDULING_SLACK_MS);
}

/**
 * Polls `check` every `intervalMs` until it holds and returns how long that
 * took; fails the test, naming `what`, when it still does not after `timeoutMs`.
 */
export async function expectEventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number },
): Promise<number> {
  const { timeoutMs, intervalMs = 20 } = opts;
  const started = performance.now();
  for (;;) {
    const held = await check();
    const ms = performance.now() - started;
    if (held) return ms;
    if (ms >= timeoutMs) expect.fail(`expected ${what} within ${timeoutMs} ms; still not after ${Math.round(ms)} ms`);
    await sleep(intervalMs);
  }
}
