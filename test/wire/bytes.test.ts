// The byte helpers under the batch format: varints (canonical only), u64
// halves, UTF-8 without allocation, strict base64 — checked against Node's
// own encoders.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  ByteReader,
  fromBase64,
  isValidUtf8,
  isWellFormed,
  readU64,
  toBase64,
  utf8Length,
  varintBytes,
  varlongBytes,
  writeU64,
  writeUtf8,
  writeVarint,
  writeVarlong,
} from '../../src/wire/bytes.ts'
import { fcParams } from './helpers.ts'

test('varint: int32 round trip, sizes, and Kafka zigzag bytes', () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (v) => {
      const out = new Uint8Array(5)
      const end = writeVarint(out, 0, v)
      assert.equal(end, varintBytes(v))
      const r = new ByteReader(out, 0, end)
      assert.equal(r.varint(), v)
      assert.equal(r.pos, end)
      assert.ok(Number.isNaN(new ByteReader(out, 0, end - 1).varint()), 'truncated')
    }),
    fcParams(1000),
  )
  const bytes = (v: number): number[] => {
    const out = new Uint8Array(5)
    return [...out.subarray(0, writeVarint(out, 0, v))]
  }
  assert.deepEqual(bytes(0), [0])
  assert.deepEqual(bytes(-1), [1])
  assert.deepEqual(bytes(1), [2])
  assert.deepEqual(bytes(63), [126])
  assert.deepEqual(bytes(64), [0x80, 0x01])
  assert.deepEqual(bytes(2 ** 31 - 1), [0xfe, 0xff, 0xff, 0xff, 0x0f])
  assert.deepEqual(bytes(-(2 ** 31)), [0xff, 0xff, 0xff, 0xff, 0x0f])
})

test('varint readers refuse over-long, non-canonical and oversized encodings', () => {
  const bad = [[0x80, 0x00], [0x81, 0x80, 0x00], [0xff, 0xff, 0xff, 0xff, 0x1f], [0xff, 0xff, 0xff, 0xff, 0x80, 0x01], [0x80, 0x80, 0x80, 0x80, 0x00]]
  for (const b of bad) assert.ok(Number.isNaN(new ByteReader(Uint8Array.from(b), 0, b.length).varint()), String(b))
  const r = new ByteReader(Uint8Array.from([0x02]), 0, 0)
  assert.ok(Number.isNaN(r.varint()), 'end bounds the read, not the array')
  const badLong = [[0x80, 0x00], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x10]]
  for (const b of badLong) assert.ok(Number.isNaN(new ByteReader(Uint8Array.from(b), 0, b.length).varlong()), String(b))
})

test('varlong: round trip over [-2^52, 2^52)', () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 52), max: 2 ** 52 - 1 }), (v) => {
      const out = new Uint8Array(8)
      const end = writeVarlong(out, 0, v)
      assert.equal(end, varlongBytes(v))
      assert.equal(new ByteReader(out, 0, end).varlong(), v)
    }),
    fcParams(1000),
  )
  for (const v of [0, -1, 1, 2 ** 31, -(2 ** 31) - 1, 2 ** 52 - 1, -(2 ** 52)]) {
    const out = new Uint8Array(8)
    assert.equal(new ByteReader(out, 0, writeVarlong(out, 0, v)).varlong(), v)
  }
})

test('u64: two u32 halves up to 2^53 - 1; all ones is -1; above 2^53 is NaN', () => {
  const view = new DataView(new ArrayBuffer(8))
  for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 1_700_000_000_000, Number.MAX_SAFE_INTEGER, -1]) {
    writeU64(view, 0, v)
    assert.equal(readU64(view, 0), v)
  }
  writeU64(view, 0, 2 ** 32 + 7)
  assert.deepEqual([...new Uint8Array(view.buffer)], [7, 0, 0, 0, 1, 0, 0, 0])
  view.setUint32(4, 0x200000, true)
  assert.ok(Number.isNaN(readU64(view, 0)))
})

test('UTF-8: length, writer and validator agree with TextEncoder / fatal TextDecoder', () => {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
      const expected = new TextEncoder().encode(s)
      assert.equal(utf8Length(s), expected.length)
      const out = new Uint8Array(expected.length)
      assert.equal(writeUtf8(out, 0, s), expected.length)
      assert.deepEqual(out, expected)
      assert.ok(isValidUtf8(out, 0, out.length))
    }),
    fcParams(500),
  )
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 12 }), (b) => {
      let ok = true
      try {
        decoder.decode(b)
      } catch {
        ok = false
      }
      assert.equal(isValidUtf8(b, 0, b.length), ok, Buffer.from(b).toString('hex'))
    }),
    fcParams(5000),
  )
  for (const b of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98]]) {
    assert.equal(isValidUtf8(Uint8Array.from(b), 0, b.length), false, String(b))
  }
  assert.equal(isWellFormed('ok \u{1f600}'), true)
  assert.equal(isWellFormed('lone \ud800'), false)
  assert.equal(isWellFormed('\udc00x'), false)
})

test('base64: matches Buffer both ways; refuses other alphabets, whitespace and bad padding', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
      const s = toBase64(b)
      assert.equal(s, Buffer.from(b).toString('base64'))
      assert.deepEqual(fromBase64(s), b)
      assert.deepEqual(fromBase64(s.replace(/=+$/, '')), b, 'padding is optional')
    }),
    fcParams(500),
  )
  const big = new Uint8Array(100_000).map((_, i) => i * 7)
  assert.equal(toBase64(big), Buffer.from(big).toString('base64'))
  for (const s of ['a', 'ab=', 'a===', '====', 'ab c', 'ab\n', 'a-_b', 'YQ=x', 'é123', 'Y===', 'YQ===']) {
    assert.equal(fromBase64(s), null, s)
  }
  assert.deepEqual(fromBase64(''), new Uint8Array(0))
  assert.deepEqual(fromBase64('YR=='), Uint8Array.of(0x61), 'unused trailing bits are ignored, as Buffer does')
  assert.deepEqual(fromBase64('YWJ='), Uint8Array.of(0x61, 0x62))
})
