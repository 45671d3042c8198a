// The JSON edge: produce bodies to records (utf8 and base64, both header
// shapes), decoded records to fetch answers, and every malformed input as
// INVALID_REQUEST naming its field (TOO_LARGE for bounds).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  decodeBatch,
  defaultBatchLimits,
  encodeBatch,
  parseRecordEncoding,
  recordsFromJson,
  recordsToJson,
  stampBaseOffset,
  type RecordEncoding,
} from '../../src/wire/index.ts'
import { expectRillError, fcParams, utf8 } from './helpers.ts'

/** JSON records through the batch format and back. */
function throughBatch(json: unknown, encoding: RecordEncoding): unknown {
  const batch = encodeBatch({ records: recordsFromJson(json, encoding), timestampMs: 1000 })
  stampBaseOffset(batch, 5)
  return recordsToJson(decodeBatch(batch).records, encoding)
}

test('utf8 records round trip through a batch', () => {
  const out = throughBatch(
    [
      { key: 'user-1', value: 'héllo \u{1f600}', headers: [{ key: 'trace', value: 'abc' }, { key: 'trace', value: 'def' }] },
      { value: '', timestamp: 1234 },
      { key: null, value: 'x', headers: { 'content-type': 'text/plain' } },
    ],
    'utf8',
  )
  assert.deepEqual(out, [
    { offset: 5, timestamp: 1000, key: 'user-1', value: 'héllo \u{1f600}', headers: [{ key: 'trace', value: 'abc' }, { key: 'trace', value: 'def' }] },
    { offset: 6, timestamp: 1234, key: null, value: '', headers: [] },
    { offset: 7, timestamp: 1000, key: null, value: 'x', headers: [{ key: 'content-type', value: 'text/plain' }] },
  ])
})

test('base64 records round trip through a batch, binary included (fast-check)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          key: fc.option(fc.base64String(), { nil: null }),
          value: fc.uint8Array({ maxLength: 50 }).map((b) => Buffer.from(b).toString('base64')),
          headers: fc.array(fc.record({ key: fc.string({ maxLength: 8 }), value: fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b).toString('base64')) }), { maxLength: 2 }),
        }),
        { minLength: 1, maxLength: 10 },
      ),
      (records) => {
        const out = throughBatch(records, 'base64') as { key: string | null; value: string; headers: unknown }[]
        // Keys compare through bytes: fast-check's base64String may omit padding, the answer pads.
        const canon = (s: string | null): string | null => (s === null ? null : Buffer.from(s, 'base64').toString('base64'))
        assert.deepEqual(
          out.map((r) => ({ key: r.key, value: r.value, headers: r.headers })),
          records.map((r) => ({ key: canon(r.key), value: r.value, headers: r.headers.map((h) => ({ ...h })) })),
        )
      },
    ),
    fcParams(300),
  )
})

test('recordsFromJson gives bytes; base64 decodes; header keys stay strings', () => {
  const [r] = recordsFromJson([{ key: 'aGk=', value: '/w==', headers: [{ key: 'k', value: 'AAE=' }] }], 'base64')
  assert.deepEqual(r, { key: utf8('hi'), value: Uint8Array.of(0xff), headers: [{ key: 'k', value: Uint8Array.of(0, 1) }] })
})

test('bad produce bodies are INVALID_REQUEST naming the field', () => {
  const cases: [unknown, RecordEncoding, RegExp][] = [
    [undefined, 'utf8', /^records: must be an array/],
    [{}, 'utf8', /^records: must be an array/],
    [[], 'utf8', /^records: must not be empty/],
    [[1], 'utf8', /^records\[0\]: must be an object/],
    [[{ value: 'a' }, null], 'utf8', /^records\[1\]: must be an object/],
    [[{ key: 'k' }], 'utf8', /^records\[0\]\.value: is required/],
    [[{ value: null }], 'utf8', /^records\[0\]\.value: must be a string, got null/],
    [[{ value: 5 }], 'utf8', /^records\[0\]\.value: must be a string, got number/],
    [[{ value: 'a', key: 5 }], 'utf8', /^records\[0\]\.key: must be a string/],
    [[{ value: 'a', vaule: 'b' }], 'utf8', /^records\[0\]: unknown field "vaule"/],
    [[{ value: 'a\ud800' }], 'utf8', /^records\[0\]\.value: has a lone surrogate/],
    [[{ value: 'not base64!' }], 'base64', /^records\[0\]\.value: is not valid base64/],
    [[{ value: 'aGk=', key: 'a b' }], 'base64', /^records\[0\]\.key: is not valid base64/],
    [[{ value: 'a', headers: 'x' }], 'utf8', /^records\[0\]\.headers: must be an array of \{ key, value \} or an object/],
    [[{ value: 'a', headers: [{ key: 'k' }] }], 'utf8', /^records\[0\]\.headers\[0\]\.value: must be a string/],
    [[{ value: 'a', headers: [{ key: 1, value: 'v' }] }], 'utf8', /^records\[0\]\.headers\[0\]\.key: must be a string/],
    [[{ value: 'a', headers: [{ key: 'k', value: 'v', x: 1 }] }], 'utf8', /^records\[0\]\.headers\[0\]: unknown field "x"/],
    [[{ value: 'a', headers: { k: 1 } }], 'utf8', /^records\[0\]\.headers\.k\.value: must be a string/],
    [[{ value: 'YQ==', headers: [{ key: 'k', value: 'v!' }] }], 'base64', /^records\[0\]\.headers\[0\]\.value: is not valid base64/],
    [[{ value: 'a', timestamp: -1 }], 'utf8', /^records\[0\]\.timestamp: must be an integer/],
    [[{ value: 'a', timestamp: '5' }], 'utf8', /^records\[0\]\.timestamp: must be an integer/],
  ]
  for (const [records, encoding, message] of cases) {
    assert.match(expectRillError(() => recordsFromJson(records, encoding)).message, message)
  }
})

test('bounds are TOO_LARGE, and the record count is checked before anything is decoded', () => {
  const limits = { ...defaultBatchLimits, recordsMax: 2, keyBytesMax: 3, valueBytesMax: 4, headersMax: 1, headerKeyBytesMax: 2, headerValueBytesMax: 2 }
  const tooLarge = (records: unknown, message: RegExp): void => {
    assert.match(expectRillError(() => recordsFromJson(records, 'utf8', limits), ['TOO_LARGE']).message, message)
  }
  tooLarge([{ value: 1 }, { value: 2 }, { value: 3 }], /^records: 3 records, above the limit of 2/)
  tooLarge([{ value: 'a', key: 'abcd' }], /^records\[0\]\.key: 4 bytes/)
  tooLarge([{ value: 'ééé' }], /^records\[0\]\.value: 6 bytes/)
  tooLarge([{ value: 'a', headers: [{ key: 'a', value: 'b' }, { key: 'c', value: 'd' }] }], /2 headers, above the limit of 1/)
  tooLarge([{ value: 'a', headers: { a: 'b', c: 'd' } }], /2 headers, above the limit of 1/)
  tooLarge([{ value: 'a', headers: [{ key: 'abc', value: 'b' }] }], /headers\[0\]\.key: 3 bytes/)
  assert.equal(recordsFromJson([{ value: 'a', headers: [{ key: 'é', value: 'bc' }] }], 'utf8', limits).length, 1, 'at the limits')
  tooLarge([{ value: 'a', headers: [{ key: 'a', value: 'bcd' }] }], /headers\[0\]\.value: 3 bytes/)
})

test('recordsToJson with utf8 refuses bytes that are not UTF-8 rather than mangling them', () => {
  const batch = encodeBatch({ records: [{ value: Uint8Array.of(0xff, 0xfe) }], timestampMs: 1 })
  stampBaseOffset(batch, 9)
  const { records } = decodeBatch(batch)
  assert.match(expectRillError(() => recordsToJson(records, 'utf8')).message, /record at offset 9: value is not valid UTF-8; fetch with encoding=base64/)
  assert.deepEqual(recordsToJson(records, 'base64'), [{ offset: 9, timestamp: 1, key: null, value: '//4=', headers: [] }])
})

test('parseRecordEncoding', () => {
  assert.equal(parseRecordEncoding(undefined), 'utf8')
  assert.equal(parseRecordEncoding('utf8'), 'utf8')
  assert.equal(parseRecordEncoding('base64'), 'base64')
  assert.match(expectRillError(() => parseRecordEncoding('hex')).message, /^encoding: must be "utf8" or "base64", got "hex"/)
})
