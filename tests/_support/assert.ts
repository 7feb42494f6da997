/**
 * Minimal assertions for tests (JSR's @std/assert is unreachable here).
 *
 * @module
 */
import { inspect, isDeepStrictEqual } from "node:util";

/** Thrown when an assertion fails. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Assert a condition. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

/** Assert deep equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new AssertionError(
      `${msg ? msg + "\n" : ""}values differ\nactual:   ${
        inspect(actual, { depth: 6 })
      }\nexpected: ${inspect(expected, { depth: 6 })}`,
    );
  }
}

/** Assert inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  if (isDeepStrictEqual(actual, expected)) {
    throw new AssertionError(msg ?? `values are equal: ${inspect(actual)}`);
  }
}

/** Assert `s` contains `part`. */
export function assertStringIncludes(s: string, part: string, msg?: string): void {
  if (!s.includes(part)) {
    throw new AssertionError(
      msg ?? `expected ${JSON.stringify(s)} to include ${JSON.stringify(part)}`,
    );
  }
}

/** Assert a value is an instance of a class. */
export function assertInstanceOf<T>(
  v: unknown,
  // deno-lint-ignore no-explicit-any
  cls: abstract new (...args: any[]) => T,
  msg?: string,
): asserts v is T {
  if (!(v instanceof cls)) {
    throw new AssertionError(msg ?? `expected instance of ${cls.name}, got ${inspect(v)}`);
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass = abstract new (...args: any[]) => Error;

/** Assert `fn` throws (optionally of a class, with a message part); returns the error. */
export function assertThrows(fn: () => unknown, cls?: ErrorClass, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    checkError(e, cls, includes);
    return e as Error;
  }
  throw new AssertionError("expected function to throw");
}

/** Assert the promise rejects (optionally of a class, with a message part); returns the error. */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  cls?: abstract new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    checkError(e, cls, includes);
    return e as E;
  }
  throw new AssertionError("expected promise to reject");
}

function checkError(e: unknown, cls?: ErrorClass, includes?: string): void {
  if (cls && !(e instanceof cls)) {
    throw new AssertionError(`expected ${cls.name}, got ${inspect(e)}`);
  }
  if (includes && !(e instanceof Error && e.message.includes(includes))) {
    throw new AssertionError(
      `expected error message to include ${JSON.stringify(includes)}, got ${inspect(e)}`,
    );
  }
}
