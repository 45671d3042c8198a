/** Fetch answers with stored batches: records below the offset skipped, damage refused. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeFetchAnswer } from '../../consumer/decode.ts'
import { encodeBatch, stampBaseOffset } from '../../src/wire/index.ts'
import { isRillError } from '../../src/base/index.ts'

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

function stored(baseOffset: number, values: string[]): Uint8Array {
  const b = encodeBatch({ records: values.map((v) => ({ value: bytes(v), key: bytes('k') })), timestampMs: 1_700_000_000_000 })
  stampBaseOffset(b, baseOffset)
  return b
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

test('skips records below the requested offset in the first batch', () => {
  const batches = concat(stored(10, ['a', 'b', 'c']), stored(13, ['d']))
  const records = decodeFetchAnswer({ partition: 0, nextOffset: 14, highWatermark: 14, logStartOffset: 0, batches }, 11)
  assert.deepEqual(records.map((r) => [r.offset, new TextDecoder().decode(r.value)]), [[11, 'b'], [12, 'c'], [13, 'd']])
  assert.equal(records[0]!.timestamp, 1_700_000_000_000)
  assert.deepEqual(decodeFetchAnswer({ partition: 0, nextOffset: 5, highWatermark: 5, logStartOffset: 0, batches: new Uint8Array(0) }, 5), [])
})

test('a damaged batch is refused (end-to-end checksum)', () => {
  const b = stored(0, ['hello'])
  b[b.length - 3] ^= 0xff
  assert.throws(() => decodeFetchAnswer({ partition: 0, nextOffset: 1, highWatermark: 1, logStartOffset: 0, batches: b }, 0), (e) => isRillError(e, 'INVALID_REQUEST'))
})
