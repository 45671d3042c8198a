// Shared arbitraries and helpers for the wire tests. Every property runs
// with a fixed seed so a run replays the same way (STYLE.md rule 12).
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { isRillError } from '../../src/base/index.ts'
import type { RecordInput } from '../../src/wire/index.ts'

/** fast-check parameters: fixed seed, bounded runs. */
export const fcParams = (numRuns = 200): fc.Parameters<unknown> => ({ seed: 0x5eed, numRuns })

/** Bytes from a short string, for readable tests. */
export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

/** Runs `fn`; asserts it throws a RillError with one of `codes`; returns the error. */
export function expectRillError(fn: () => unknown, codes: readonly string[] = ['INVALID_REQUEST']): Error {
  try {
    fn()
  } catch (error) {
    if (!isRillError(error) || !codes.includes(error.code)) {
      assert.fail(`expected a RillError ${codes.join('|')}, got ${String(error)}`)
    }
    return error
  }
  assert.fail('expected a RillError, nothing was thrown')
}

/** Timestamps in a realistic window, so deltas are small but not always zero. */
const baseMs = 1_700_000_000_000

export const headerArb = fc.record({
  key: fc.string({ unit: 'binary', maxLength: 12 }),
  value: fc.uint8Array({ maxLength: 16 }),
})

export const recordArb: fc.Arbitrary<RecordInput> = fc.record(
  {
    key: fc.option(fc.uint8Array({ maxLength: 24 }), { nil: null }),
    value: fc.uint8Array({ maxLength: 200 }),
    headers: fc.array(headerArb, { maxLength: 3 }),
    timestampMs: fc.integer({ min: baseMs - 100_000, max: baseMs + 100_000 }),
  },
  { requiredKeys: ['value'] },
)

export const producerArb = fc.option(
  fc.record({
    producerId: fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constant(Number.MAX_SAFE_INTEGER)),
    producerEpoch: fc.integer({ min: 0, max: 0x7fff }),
    baseSequence: fc.integer({ min: 0, max: 0x7fffffff }),
  }),
  { nil: undefined },
)

export const batchArgsArb = fc.record({
  records: fc.array(recordArb, { minLength: 1, maxLength: 20 }),
  producer: producerArb,
  timestampMs: fc.constant(baseMs),
})
