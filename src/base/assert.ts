/**
 * Assertions for programmer errors (TigerBeetle style): a failed assertion is
 * a bug, never an operating condition, so it throws and nobody catches it.
 * Operating errors (bad input, lost quorum, full disk) are `RillError`s.
 */

/** Thrown when an invariant does not hold. Carries the context it was given. */
export class AssertionError extends Error {
  override name = 'AssertionError'
}

/** Throws an AssertionError with `message` unless `condition` holds. */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (condition) return
  throw new AssertionError(typeof message === 'string' ? message : message())
}

/** Marks a branch the type system proves unreachable (exhaustive switches). */
export function unreachable(value: never, what: string): never {
  throw new AssertionError(`unreachable ${what}: ${String(value)}`)
}
