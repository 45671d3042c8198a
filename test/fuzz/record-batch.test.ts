/**
 * Fuzzing the check every client batch passes before it is stored
 * (validateBatch, DESIGN.md decision 3: a stored-format batch is appended
 * without re-encoding, so what it lets through is what every fetch must
 * read). Valid batches are bent (header fields, 64-bit fields set whole,
 * varints made overlong or huge, bytes flipped, inserted, cut) with the
 * checksum fixed up so the mutation reaches the checks behind it.
 *
 *   validateBatch(bytes) ──throws──▶ only INVALID_REQUEST or TOO_LARGE (a RillError)
 *                        ──passes──▶ stamped with a base offset, decodeBatch reads every record,
 *                                    and the fetch answer's JSON (base64) can be built
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ErrorCode, isRillError } from '../../src/base/index.ts'
import { batchField, decodeBatch, defaultBatchLimits, recordsToJson, stampBaseOffset, validateBatch } from '../../src/wire/index.ts'
import { fixCrc, validBatch } from './generators.ts'
import { fuzzParams } from './helpers.ts'

type Bend =
  | { kind: 'u64'; field: number; value: bigint }
  | { kind: 'u32'; field: number; value: number }
  | { kind: 'byte'; at: number; value: number }
  | { kind: 'varint'; at: number; bytes: readonly number[] }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; value: number }

const u64Fields = [batchField.baseOffset, batchField.firstTimestampMs, batchField.maxTimestampMs, batchField.producerId]
const u32Fields = [batchField.batchLength, batchField.recordCount, batchField.baseSequence, batchField.producerEpoch]

const bend: fc.Arbitrary<Bend> = fc.oneof(
  fc.record({
    kind: fc.constant('u64' as const),
    field: fc.constantFrom(...u64Fields),
    value: fc.oneof(fc.constantFrom(0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 1_700_000_000_000n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  }),
  fc.record({ kind: fc.constant('u32' as const), field: fc.constantFrom(...u32Fields), value: fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 5, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0xffffffff), fc.nat()) }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    kind: fc.constant('varint' as const),
    at: fc.nat(),
    bytes: fc.constantFrom([0xff, 0xff, 0xff, 0xff, 0x0f], [0xfe, 0xff, 0xff, 0xff, 0x0f], [0x80, 0x80, 0x80, 0x80, 0x80, 0x01], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], [0x01], [0x03], [0x80], [0x80, 0x00]),
  }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
)

function apply(bytes: Uint8Array, bends: readonly Bend[]): Uint8Array {
  let out = bytes.slice()
  for (const b of bends) {
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
    if (b.kind === 'u64' && b.field + 8 <= out.byteLength) view.setBigUint64(b.field, b.value, true)
    else if (b.kind === 'u32' && b.field + 4 <= out.byteLength) view.setUint32(b.field, b.value >>> 0, true)
    else if (b.kind === 'byte' && out.byteLength > 0) out[b.at % out.byteLength] = b.value
    else if (b.kind === 'varint' && out.byteLength > 52) {
      // Into the records region: a length, delta or count read from here is now overlong or huge.
      const at = 52 + (b.at % (out.byteLength - 52))
      const next = new Uint8Array(out.byteLength - 1 + b.bytes.length)
      next.set(out.subarray(0, at))
      next.set(b.bytes, at)
      next.set(out.subarray(at + 1), at + b.bytes.length)
      out = next
    } else if (b.kind === 'cut') out = out.slice(0, b.at % (out.byteLength + 1))
    else if (b.kind === 'insert') {
      const at = b.at % (out.byteLength + 1)
      const next = new Uint8Array(out.byteLength + 1)
      next.set(out.subarray(0, at))
      next[at] = b.value
      next.set(out.subarray(at), at + 1)
      out = next
    }
  }
  return out
}

test('a bent batch is refused with INVALID_REQUEST or TOO_LARGE, or it is accepted and every record of it reads back', () => {
  let accepted = 0
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.array(bend, { minLength: 1, maxLength: 3 }),
      fc.constantFrom('fix', 'fix', 'fix', 'length-and-fix', 'none'),
      (count, bends, finish) => {
        const bytes = apply(validBatch(count), bends)
        if (finish === 'length-and-fix' && bytes.byteLength >= 12) new DataView(bytes.buffer, bytes.byteOffset).setUint32(batchField.batchLength, bytes.byteLength, true)
        if (finish !== 'none') fixCrc(bytes)
        let info
        try {
          info = validateBatch(bytes, defaultBatchLimits)
        } catch (error) {
          assert.ok(isRillError(error, ErrorCode.INVALID_REQUEST) || isRillError(error, ErrorCode.TOO_LARGE), `refused with ${String(error)}`)
          return
        }
        accepted++
        // What the leader then does with it, and what every fetch of it does.
        const stored = bytes.slice()
        stampBaseOffset(stored, 1_000)
        const decoded = decodeBatch(stored)
        assert.equal(decoded.records.length, info.recordCount)
        assert.deepEqual(decoded.records.map((r) => r.offset), Array.from({ length: info.recordCount }, (_, i) => 1_000 + i))
        recordsToJson(decoded.records, 'base64')
      },
    ),
    fuzzParams(2000),
  )
  // Not a test of nothing: some bends (a timestamp, a producer field, a value byte) leave a valid batch.
  assert.ok(accepted > 0, 'some bent batches are still valid')
})
