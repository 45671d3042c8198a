/**
 * Commands on the wire: encode/decode round-trips, and the strict decoder
 * turns anything else (junk bytes, wrong shapes, extra fields) into
 * INVALID_REQUEST without crashing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { isRillError } from '../../src/base/index.ts'
import { decodeCommand, encodeCommand, commandBytesMax } from '../../src/controller/index.ts'
import { commandArb } from './helpers.ts'

/** fast-check builds some records with a null prototype; the decoder builds plain ones. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v))

const invalid = (f: () => unknown): void => {
  assert.throws(f, (e: unknown) => isRillError(e, 'INVALID_REQUEST'))
}

test('every well-formed command round-trips through encode/decode', () => {
  fc.assert(
    fc.property(commandArb, (cmd) => {
      const bytes = encodeCommand(cmd)
      assert.deepEqual(decodeCommand(bytes), plain(cmd))
      assert.deepEqual(encodeCommand(decodeCommand(bytes)), bytes)
    }),
    { seed: 1, numRuns: 500 },
  )
})

test('random bytes decode to a command or INVALID_REQUEST, never another error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (bytes) => {
      try {
        decodeCommand(bytes)
      } catch (e) {
        assert.ok(isRillError(e, 'INVALID_REQUEST'), `unexpected ${String(e)}`)
      }
    }),
    { seed: 2, numRuns: 5000 },
  )
})

test('mutated encodings (bit flips, truncation) decode or fail with INVALID_REQUEST', () => {
  fc.assert(
    fc.property(commandArb, fc.nat(), fc.integer({ min: 0, max: 7 }), fc.boolean(), (cmd, at, bit, truncate) => {
      const bytes = new Uint8Array(encodeCommand(cmd))
      const i = at % bytes.length
      const mutated = truncate ? bytes.subarray(0, i) : (bytes[i]! ^= 1 << bit, bytes)
      try {
        decodeCommand(mutated)
      } catch (e) {
        assert.ok(isRillError(e, 'INVALID_REQUEST'), `unexpected ${String(e)}`)
      }
    }),
    { seed: 3, numRuns: 3000 },
  )
})

test('random msgpack values are refused unless they are a well-formed command', () => {
  fc.assert(
    fc.property(fc.anything({ withBigInt: false, withMap: false, withSet: false, withDate: false, withTypedArray: false }), (value) => {
      try {
        decodeCommand(pack(value))
      } catch (e) {
        assert.ok(isRillError(e, 'INVALID_REQUEST'), `unexpected ${String(e)}`)
      }
    }),
    { seed: 4, numRuns: 2000 },
  )
})

test('the decoder refuses wrong shapes with INVALID_REQUEST', () => {
  const good = { type: 'RegisterBroker', id: 1, httpUrl: 'http://a:1', peerUrl: 'a:2' }
  decodeCommand(pack(good))
  invalid(() => decodeCommand(new Uint8Array(0)))
  invalid(() => decodeCommand(new Uint8Array(commandBytesMax + 1)))
  invalid(() => decodeCommand(pack([good])))
  invalid(() => decodeCommand(pack({ ...good, type: 'Nope' })))
  invalid(() => decodeCommand(pack({ ...good, extra: 1 })))
  invalid(() => decodeCommand(pack({ ...good, id: 0 })))
  invalid(() => decodeCommand(pack({ ...good, id: 1.5 })))
  invalid(() => decodeCommand(pack({ ...good, id: '1' })))
  invalid(() => decodeCommand(pack({ ...good, id: 2 ** 31 })))
  invalid(() => decodeCommand(pack({ ...good, httpUrl: 'ftp://a:1' })))
  invalid(() => decodeCommand(pack({ ...good, httpUrl: 'not a url' })))
  invalid(() => decodeCommand(pack({ ...good, peerUrl: 'a' })))
  invalid(() => decodeCommand(pack({ ...good, peerUrl: 'a:0' })))
  invalid(() => decodeCommand(pack({ ...good, peerUrl: 'a:70000' })))
  invalid(() => decodeCommand(pack({ ...good, rack: 'has space' })))
  invalid(() => decodeCommand(pack({ ...good, rack: '' })))
  const create = { type: 'CreateTopic', name: 't', partitions: 2, replicationFactor: 2, config: { persistence: 'sync' }, assignment: [[1, 2], [2, 3]] }
  decodeCommand(pack(create))
  invalid(() => decodeCommand(pack({ ...create, assignment: [[1, 2]] })))
  invalid(() => decodeCommand(pack({ ...create, assignment: [[1, 2], [2, 2]] })))
  invalid(() => decodeCommand(pack({ ...create, assignment: [[1, 2], [3]] })))
  invalid(() => decodeCommand(pack({ ...create, config: { persistence: 'disk' } })))
  invalid(() => decodeCommand(pack({ ...create, config: { persistence: 'sync', retentionMs: 0 } })))
  invalid(() => decodeCommand(pack({ ...create, config: { persistence: 'sync', retentionBytes: -5 } })))
  // -1 keeps forever (docs/api.md, as Kafka's retention.ms = -1); nothing else below 1.
  const forever = decodeCommand(pack({ ...create, config: { persistence: 'sync', retentionMs: -1, retentionBytes: -1 } }))
  assert.deepEqual((forever as { config: unknown }).config, { persistence: 'sync', retentionMs: -1, retentionBytes: -1 })
  invalid(() => decodeCommand(pack({ ...create, config: { persistence: 'sync', retentionMs: -2 } })))
  invalid(() => decodeCommand(pack({ ...create, config: { persistence: 'sync', retentionMs: -1.5 } })))
  invalid(() => decodeCommand(pack({ ...create, config: { persistence: 'sync', compaction: true } })))
  invalid(() => decodeCommand(pack({ ...create, name: '' })))
  invalid(() => decodeCommand(pack({ ...create, name: 'a'.repeat(250) })))
  invalid(() => decodeCommand(pack({ ...create, name: 'a/b' })))
  invalid(() => decodeCommand(pack({ ...create, name: '..' })))
  invalid(() => decodeCommand(pack({ ...create, partitions: 0 })))
  invalid(() => decodeCommand(pack({ ...create, partitions: 10_001 })))
  invalid(() => decodeCommand(pack({ ...create, replicationFactor: 16 })))
  // A "__proto__" key must not smuggle a prototype in.
  invalid(() => decodeCommand(pack(JSON.parse('{"type":"DeleteTopic","name":"t","__proto__":{"x":1}}'))))
})

test('encodeCommand refuses a malformed in-memory command', () => {
  invalid(() => encodeCommand({ type: 'DeleteTopic', name: 'no spaces' }))
  invalid(() => encodeCommand({ type: 'ReassignPartition', topic: 't', partition: -1, replicas: [1] }))
})
