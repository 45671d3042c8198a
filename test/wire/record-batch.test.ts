// The record batch format: round trips, the pinned example of
// docs/record-batch.md, stamping, limits, splitting, and mutation fuzzing
// (truncated, bit-flipped, lying lengths): always a RillError, never another
// exception, never an out-of-bounds read.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { AssertionError, crc32c, isRillError } from '../../src/base/index.ts'
import {
  batchCrcStart,
  batchField,
  batchHeaderBytes,
  decodeBatch,
  decodeBatches,
  defaultBatchLimits,
  encodeBatch,
  readBatchHeader,
  splitConcatenatedBatches,
  stampBaseOffset,
  validateBatch,
  type BatchLimits,
  type DecodedRecord,
  type RecordInput,
} from '../../src/wire/index.ts'
import { batchArgsArb, expectRillError, fcParams, utf8 } from './helpers.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** The example of docs/record-batch.md. */
function exampleBatch(): Uint8Array {
  const batch = encodeBatch({
    records: [
      { key: utf8('k'), value: utf8('hello'), headers: [{ key: 'h', value: utf8('v') }] },
      { value: utf8('world'), timestampMs: 1_700_000_000_005 },
    ],
    timestampMs: 1_700_000_000_000,
    producerId: 7,
    producerEpoch: 0,
    baseSequence: 0,
  })
  stampBaseOffset(batch, 42)
  return batch
}

/** Recomputes the crc after a test edited covered bytes, so the walk (not the checksum) must catch the edit. */
function fixCrc(batch: Uint8Array): Uint8Array {
  new DataView(batch.buffer, batch.byteOffset).setUint32(batchField.crc, crc32c(0, batch.subarray(batchCrcStart)), true)
  return batch
}

function expectedRecords(records: readonly RecordInput[], baseOffset: number, defaultMs: number): DecodedRecord[] {
  return records.map((r, i) => ({
    offset: baseOffset + i,
    timestampMs: r.timestampMs ?? defaultMs,
    key: r.key ?? null,
    value: r.value,
    headers: r.headers ?? [],
  }))
}

/** Decoded records as plain data (views compare by content). */
function plain(records: readonly DecodedRecord[]): unknown {
  return records.map((r) => ({
    ...r,
    key: r.key && [...r.key],
    value: [...r.value],
    headers: r.headers.map((h) => ({ key: h.key, value: [...h.value] })),
  }))
}

test('the example of docs/record-batch.md, byte for byte', () => {
  const batch = exampleBatch()
  assert.equal(
    hex(batch),
    [
      '2a00000000000000', // baseOffset 42 (u64 LE)
      '4f000000', // batchLength 79
      '0d4b55bf', // crc 0xbf554b0d
      '01', // magic
      '00', // attributes
      '0000', // producerEpoch 0
      '02000000', // recordCount 2
      '0068e5cf8b010000', // firstTimestampMs 1700000000000
      '0568e5cf8b010000', // maxTimestampMs 1700000000005
      '0700000000000000', // producerId 7
      '00000000', // baseSequence 0
      '00' + '00' + '00' + '02' + '6b' + '0a' + '68656c6c6f' + '02' + '02' + '68' + '02' + '76', // record 0
      '00' + '0a' + '02' + '01' + '0a' + '776f726c64' + '00', // record 1
    ].join(''),
  )
  const info = validateBatch(batch)
  assert.deepEqual(info, {
    baseOffset: 42,
    batchBytes: 79,
    crc: 0xbf554b0d,
    magic: 1,
    attributes: 0,
    recordCount: 2,
    firstTimestampMs: 1_700_000_000_000,
    maxTimestampMs: 1_700_000_000_005,
    producerId: 7,
    producerEpoch: 0,
    baseSequence: 0,
  })
  const { records } = decodeBatch(batch)
  assert.deepEqual(plain(records), [
    { offset: 42, timestampMs: 1_700_000_000_000, key: [0x6b], value: [...utf8('hello')], headers: [{ key: 'h', value: [0x76] }] },
    { offset: 43, timestampMs: 1_700_000_000_005, key: null, value: [...utf8('world')], headers: [] },
  ])
})

test('round trip: encode, validate, stamp, decode give back every field (fast-check)', () => {
  fc.assert(
    fc.property(batchArgsArb, fc.integer({ min: 0, max: 2 ** 53 - 1000 }), ({ records, producer, timestampMs }, baseOffset) => {
      const batch = encodeBatch({ records, timestampMs, ...producer })
      const before = validateBatch(batch)
      assert.equal(before.baseOffset, 0)
      assert.equal(before.recordCount, records.length)
      assert.equal(before.producerId, producer?.producerId ?? -1)
      assert.equal(before.producerEpoch, producer?.producerEpoch ?? -1)
      assert.equal(before.baseSequence, producer?.baseSequence ?? -1)
      stampBaseOffset(batch, baseOffset)
      const after = validateBatch(batch)
      assert.deepEqual(after, { ...before, baseOffset })
      const decoded = decodeBatch(batch)
      assert.deepEqual(plain(decoded.records), plain(expectedRecords(records, baseOffset, timestampMs)))
      const stamps = records.map((r) => r.timestampMs ?? timestampMs)
      assert.equal(after.firstTimestampMs, stamps[0])
      assert.equal(after.maxTimestampMs, Math.max(...stamps))
    }),
    fcParams(300),
  )
})

test('a batch inside a larger buffer (non-zero, unaligned byteOffset) validates and decodes', () => {
  const batch = exampleBatch()
  const big = new Uint8Array(batch.length + 7)
  big.set(batch, 3)
  const view = big.subarray(3, 3 + batch.length)
  assert.equal(validateBatch(view).crc, 0xbf554b0d)
  assert.equal(decodeBatch(view).records[1]!.offset, 43)
  stampBaseOffset(view, 1000)
  assert.equal(readBatchHeader(view).baseOffset, 1000)
})

test('stampBaseOffset leaves the checksum valid, up to 2^53 - recordCount, and asserts on a bad offset', () => {
  const batch = exampleBatch()
  const crc = readBatchHeader(batch).crc
  for (const offset of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER - 2]) {
    stampBaseOffset(batch, offset)
    const info = validateBatch(batch)
    assert.equal(info.baseOffset, offset)
    assert.equal(info.crc, crc)
    assert.deepEqual(decodeBatch(batch).records.map((r) => r.offset), [offset, offset + 1])
  }
  assert.throws(() => stampBaseOffset(batch, Number.MAX_SAFE_INTEGER - 1), AssertionError)
  assert.throws(() => stampBaseOffset(batch, -1), AssertionError)
  assert.throws(() => stampBaseOffset(batch, 1.5), AssertionError)
  expectRillError(() => stampBaseOffset(batch.subarray(0, 10), 0))
})

test('timestamps: deltas before and after the first record, and at the ends of the range', () => {
  const records = [
    { value: utf8('a'), timestampMs: 10 ** 12 },
    { value: utf8('b'), timestampMs: 10 ** 12 - 5 },
    { value: utf8('c'), timestampMs: 10 ** 12 + 2 ** 40 },
    { value: utf8('d'), timestampMs: 0 },
  ]
  const batch = encodeBatch({ records })
  const info = validateBatch(batch)
  assert.equal(info.firstTimestampMs, 10 ** 12)
  assert.equal(info.maxTimestampMs, 10 ** 12 + 2 ** 40)
  assert.deepEqual(decodeBatch(batch).records.map((r) => r.timestampMs), records.map((r) => r.timestampMs))
  const far = encodeBatch({ records: [{ value: utf8('x'), timestampMs: 2 ** 52 }, { value: utf8('y'), timestampMs: 1 }] })
  assert.deepEqual(decodeBatch(far).records.map((r) => r.timestampMs), [2 ** 52, 1])
  expectRillError(() => encodeBatch({ records: [{ value: utf8('x'), timestampMs: 0 }, { value: utf8('y'), timestampMs: 2 ** 53 - 1 }] }))
})

test('encodeBatch refuses malformed input with INVALID_REQUEST', () => {
  const v = utf8('v')
  const bad: unknown[] = [
    { records: [] },
    { records: 'x' },
    { records: [null] },
    { records: [{ value: 'string' }] },
    { records: [{ value: v, key: 'k' }] },
    { records: [{ value: v, headers: {} }] },
    { records: [{ value: v, headers: [{ key: 1, value: v }] }] },
    { records: [{ value: v, headers: [{ key: 'a\ud800', value: v }] }] },
    { records: [{ value: v, timestampMs: -1 }] },
    { records: [{ value: v, timestampMs: 1.5 }] },
    { records: [{ value: v }], timestampMs: Number.NaN },
    { records: [{ value: v }], producerId: 1 },
    { records: [{ value: v }], producerId: 1, producerEpoch: 0, baseSequence: -1 },
    { records: [{ value: v }], producerId: 1, producerEpoch: 0x8000, baseSequence: 0 },
    { records: [{ value: v }], producerId: 2 ** 53, producerEpoch: 0, baseSequence: 0 },
  ]
  for (const options of bad) expectRillError(() => encodeBatch(options as Parameters<typeof encodeBatch>[0]))
})

test('validateBatch: limits are TOO_LARGE', () => {
  const batch = encodeBatch({
    records: [
      { key: utf8('key-1'), value: new Uint8Array(100), headers: [{ key: 'hk', value: new Uint8Array(10) }] },
      { value: new Uint8Array(10) },
    ],
    timestampMs: 1,
  })
  const cases: Partial<BatchLimits>[] = [
    { batchBytesMax: batch.length - 1 },
    { recordsMax: 1 },
    { keyBytesMax: 4 },
    { valueBytesMax: 99 },
    { headersMax: 0 },
    { headerKeyBytesMax: 1 },
    { headerValueBytesMax: 9 },
  ]
  for (const limit of cases) {
    const error = expectRillError(() => validateBatch(batch, { ...defaultBatchLimits, ...limit }), ['TOO_LARGE'])
    assert.match(error.message, /above the limit/)
  }
  validateBatch(batch, { ...defaultBatchLimits, batchBytesMax: batch.length, recordsMax: 2, keyBytesMax: 5, valueBytesMax: 100, headersMax: 1, headerKeyBytesMax: 2, headerValueBytesMax: 10 })
})

test('validateBatch: specific malformations get clear messages', () => {
  const base = (): Uint8Array => exampleBatch()
  const cases: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
    ['not bytes', () => 'x' as unknown as Uint8Array, /not a byte array/],
    ['empty', () => new Uint8Array(0), /shorter than the 52-byte header/],
    ['short header', (b) => b.subarray(0, 51), /shorter than the 52-byte header/],
    ['truncated', (b) => b.subarray(0, b.length - 1), /batch length 79 exceeds the 78 bytes/],
    ['extra byte', (b) => Uint8Array.from([...b, 0]), /batch length 79 does not match the 80 bytes/],
    ['magic', (b) => ((b[batchField.magic] = 9), b), /unsupported magic 9/],
    ['attributes', (b) => ((b[batchField.attributes] = 1), b), /attributes 0x1/],
    ['checksum', (b) => ((b[70] ^= 0x10), b), /checksum mismatch/],
    ['crc field', (b) => ((b[batchField.crc] ^= 1), b), /checksum mismatch/],
    ['zero records', (b) => (b.fill(0, batchField.recordCount, batchField.recordCount + 4), fixCrc(b)), /at least one record/],
    ['lying count', (b) => ((b[batchField.recordCount] = 3), fixCrc(b)), /truncated: the batch ends after 2 of 3 records/],
    ['huge count', (b) => ((b[batchField.recordCount + 3] = 0xff), fixCrc(b)), /TOO_LARGE|above the limit/],
    ['lying max timestamp', (b) => ((b[batchField.maxTimestampMs] ^= 1), fixCrc(b)), /maxTimestampMs/],
    ['max < first', (b) => ((b[batchField.maxTimestampMs + 1] = 0), fixCrc(b)), /maxTimestampMs < firstTimestampMs/],
    ['producer fields', (b) => (b.fill(0xff, batchField.producerId, batchField.producerId + 8), fixCrc(b)), /all -1 or all non-negative/],
    ['producer id above 2^53', (b) => ((b[batchField.producerId + 7] = 0x01), fixCrc(b)), /producerId is outside/],
    ['offset near 2^53', (b) => (new DataView(b.buffer).setUint32(4, 0x1fffff, true), b.fill(0xff, 0, 4), b), /baseOffset \+ recordCount/],
    ['record attributes', (b) => ((b[52] = 1), fixCrc(b)), /record 0: attributes 0x1/],
    ['first delta', (b) => ((b[53] = 2), fixCrc(b)), /record 0: the first record's timestampDelta must be 0/],
    ['offset delta', (b) => ((b[54] = 4), fixCrc(b)), /record 0: offsetDelta 2, expected 0/],
    ['key length lies', (b) => ((b[55] = 0x7e), fixCrc(b)), /record 0: key length 63 runs past the end/],
    ['key length -2', (b) => ((b[55] = 3), fixCrc(b)), /record 0: key length -2/],
    ['null value', (b) => ((b[57] = 1), fixCrc(b)), /record 0: value length -1 \(values are not nullable\)/],
    ['overlong varint', (b) => ((b[53] = 0x80), fixCrc(b)), /malformed timestampDelta varint/],
    ['header count lies', (b) => ((b[63] = 0x40), fixCrc(b)), /header count 32 cannot fit/],
    ['header key not utf-8', (b) => ((b[65] = 0xff), fixCrc(b)), /header 0: key is not valid UTF-8/],
    ['trailing bytes', (b) => {
      const longer = new Uint8Array(b.length + 2)
      longer.set(b)
      new DataView(longer.buffer).setUint32(batchField.batchLength, longer.length, true)
      return fixCrc(longer)
    }, /2 bytes after the last record/],
  ]
  for (const [name, mutate, message] of cases) {
    let error: Error
    try {
      validateBatch(mutate(base()))
      assert.fail(`${name}: accepted`)
    } catch (e) {
      error = e as Error
    }
    assert.ok(isRillError(error), `${name}: ${String(error)}`)
    assert.match(`${error.code} ${error.message}`, message, name)
  }
})

/** Validation either accepts or throws a RillError; anything else fails the property. */
function validateOrRillError(bytes: Uint8Array): boolean {
  try {
    validateBatch(bytes)
    return true
  } catch (error) {
    if (isRillError(error) && (error.code === 'INVALID_REQUEST' || error.code === 'TOO_LARGE')) return false
    throw error
  }
}

test('mutations of valid batches: truncation, bit flips, splices are always refused with a RillError (fast-check)', () => {
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  )
  fc.assert(
    fc.property(batchArgsArb, mutation, ({ records, producer, timestampMs }, m) => {
      const batch = encodeBatch({ records, timestampMs, ...producer })
      const at = m.at % batch.length
      let mutated: Uint8Array
      if (m.kind === 'truncate') mutated = batch.subarray(0, at)
      else if (m.kind === 'flip') {
        if (at < batchField.batchLength) return // baseOffset is not covered (by design); checked below
        mutated = batch.slice()
        mutated[at]! ^= 1 << m.bit
      } else if (m.kind === 'insert') mutated = Uint8Array.from([...batch.subarray(0, at), ...m.bytes, ...batch.subarray(at)])
      else mutated = Uint8Array.from([...batch.subarray(0, at), ...batch.subarray(at + m.count)])
      assert.equal(validateOrRillError(mutated), false, `${m.kind} at ${at} accepted`)
    }),
    fcParams(1500),
  )
})

test('flips in the baseOffset field are accepted or refused, never a crash', () => {
  const batch = exampleBatch()
  for (let at = 0; at < batchField.batchLength; at++) {
    for (let bit = 0; bit < 8; bit++) {
      const mutated = batch.slice()
      mutated[at]! ^= 1 << bit
      if (validateOrRillError(mutated)) assert.notEqual(readBatchHeader(mutated).baseOffset, 42)
    }
  }
})

test('lying lengths with a fixed-up checksum: accepted batches are canonical, others a RillError (fast-check)', () => {
  let accepted = 0
  fc.assert(
    fc.property(batchArgsArb, fc.nat(), fc.nat(255), fc.integer({ min: 1, max: 3 }), ({ records, producer, timestampMs }, at, value, count) => {
      const batch = encodeBatch({ records, timestampMs, ...producer })
      const mutated = batch.slice()
      const pos = batchCrcStart + (at % (batch.length - batchCrcStart))
      for (let i = 0; i < count && pos + i < mutated.length; i++) mutated[pos + i] = value
      fixCrc(mutated)
      if (!validateOrRillError(mutated)) return
      accepted++
      // Whatever validates, decodes, and encodes back to the same bytes: one spelling per batch.
      const { info, records: decoded } = decodeBatch(mutated)
      const again = encodeBatch({
        records: decoded.map((r) => ({ key: r.key, value: r.value, headers: r.headers, timestampMs: r.timestampMs })),
        timestampMs: info.firstTimestampMs,
        ...(info.producerId === -1 ? {} : { producerId: info.producerId, producerEpoch: info.producerEpoch, baseSequence: info.baseSequence }),
      })
      assert.equal(hex(again), hex(mutated))
    }),
    fcParams(1500),
  )
  assert.ok(accepted > 0, 'some overwrites (inside values) should stay valid')
})

test('random bytes and random headers glued to random bodies: RillError or accepted, never a crash (fast-check)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (body, withHeader) => {
      let bytes = body
      if (withHeader) {
        bytes = new Uint8Array(batchHeaderBytes + body.length)
        bytes.set(body, batchHeaderBytes)
        const view = new DataView(bytes.buffer)
        view.setUint32(batchField.batchLength, bytes.length, true)
        bytes[batchField.magic] = 1
        view.setUint32(batchField.recordCount, (body[0] ?? 1) % 8, true)
        bytes.fill(0xff, batchField.producerId, batchField.producerId + 8)
        view.setInt16(batchField.producerEpoch, -1, true)
        view.setInt32(batchField.baseSequence, -1, true)
        fixCrc(bytes)
      }
      validateOrRillError(bytes)
      try {
        splitConcatenatedBatches(bytes)
      } catch (error) {
        assert.ok(isRillError(error, 'INVALID_REQUEST'), String(error))
      }
    }),
    fcParams(2000),
  )
})

test('splitConcatenatedBatches and decodeBatches read a fetch answer of several batches', () => {
  const batches = [0, 1, 2].map((k) => {
    const b = encodeBatch({ records: Array.from({ length: k + 1 }, (_, i) => ({ value: utf8(`v${k}.${i}`) })), timestampMs: 5 })
    return b
  })
  stampBaseOffset(batches[0]!, 10)
  stampBaseOffset(batches[1]!, 11)
  stampBaseOffset(batches[2]!, 13)
  const joined = Uint8Array.from(batches.flatMap((b) => [...b]))
  const parts = splitConcatenatedBatches(joined)
  assert.deepEqual(parts.map(hex), batches.map(hex))
  assert.equal(parts[1]!.buffer, joined.buffer, 'views, not copies')
  const decoded = decodeBatches(joined)
  assert.deepEqual(decoded.flatMap((d) => d.records.map((r) => r.offset)), [10, 11, 12, 13, 14, 15])
  assert.deepEqual(splitConcatenatedBatches(new Uint8Array(0)), [])
  assert.match(expectRillError(() => splitConcatenatedBatches(joined.subarray(0, joined.length - 1))).message, /batch 2 at byte \d+: batch length/)
  assert.match(expectRillError(() => splitConcatenatedBatches(joined.subarray(0, batches[0]!.length + 10))).message, /batch 1 .* shorter than a header/)
  stampBaseOffset(batches[2]!, 12)
  const overlapping = Uint8Array.from(batches.flatMap((b) => [...b]))
  assert.match(expectRillError(() => decodeBatches(overlapping)).message, /batch 2 starts at offset 12/)
})

test('decodeBatch applies limits only when asked; defaults are the format bounds', () => {
  const big = encodeBatch({ records: [{ value: new Uint8Array(200_000), key: new Uint8Array(70_000) }], timestampMs: 1 })
  expectRillError(() => validateBatch(big), ['TOO_LARGE'])
  assert.equal(decodeBatch(big).records[0]!.key!.length, 70_000)
  expectRillError(() => decodeBatch(big, { limits: defaultBatchLimits }), ['TOO_LARGE'])
})
