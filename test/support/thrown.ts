import { expect } from "vitest";

// The error a call must fail with, of the class the test names: returned
// for the test to look into, or the test fails (nothing thrown, or
// something else).

type ErrorClass<E> = abstract new (...args: never[]) => E;

/** The `type` error that `fn` throws. */
export function expectThrown<E>(type: ErrorClass<E>, fn: () => unknown): E {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  expect.fail(`expected a ${type.name} to be thrown`);
}

/** The `type` error that `promise` rejects with. */
export async function expectRejected<E>(type: ErrorClass<E>, promise: Promise<unknown>): Promise<E> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as E;
  }
  expect.fail(`expected a rejection with a ${type.name}`);
}
