/**
 * The peer-batch codec: exact round trips of every message shape, heartbeat
 * packing into columns, and a strict decoder that turns any bad input
 * (random bytes, random msgpack values, mutated valid batches) into an
 * INVALID_REQUEST RillError and nothing else.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ErrorCode, RillError, isRillError } from '../../src/base/index.ts'
import { EntryType, MessageType, message, type Message } from '../../src/raft/index.ts'
import {
  batchSize,
  createPackr,
  decodePeerBatch,
  encodePeerBatch,
  forEachMessage,
  peerBatchFromValue,
  peerBatchValue,
  type GroupMessage,
} from '../../src/transport/index.ts'

const ends = { from: 1, to: 2 }
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

function sample(): GroupMessage[] {
  const m = (f: Partial<Message> & Pick<Message, 'type'>): Message => message({ from: 1, to: 2, ...f })
  return [
    { groupId: 7, message: m({ type: MessageType.App, term: 5, logTerm: 4, index: 10, commit: 9, entries: [
      { term: 4, index: 11, type: EntryType.Normal, data: bytes(1024, 1) },
      { term: 5, index: 12, type: EntryType.ConfChange, data: bytes(3, 2) },
      { term: 5, index: 13, type: EntryType.Normal, data: new Uint8Array(0) },
    ] }) },
    { groupId: 7, message: m({ type: MessageType.AppResp, term: 5, index: 13, reject: true, rejectHint: 8, logTerm: 3 }) },
    { groupId: 0, message: m({ type: MessageType.Vote, term: 9, index: 20, logTerm: 8, context: 1 }) },
    { groupId: 3, message: m({ type: MessageType.PreVoteResp, term: 9, reject: true }) },
    { groupId: 0xffff_ffff, message: m({ type: MessageType.Snap, term: 6, index: 4096, rejectHint: 8192, commit: 30,
      snapshot: { index: 30, term: 6, conf: { voters: [1, 2, 3], learners: [4] } }, data: bytes(4096, 9) }) },
    { groupId: 4, message: m({ type: MessageType.SnapResp, term: 6, index: 8192, rejectHint: 30 }) },
    { groupId: 5, message: m({ type: MessageType.TimeoutNow, term: 2 }) },
    { groupId: 5, message: m({ type: MessageType.ReadIndex, term: 2, context: 77 }) },
    { groupId: 5, message: m({ type: MessageType.ReadIndexResp, term: 2, index: 40, context: 77 }) },
    // Not plain: a heartbeat with an index goes through the general form.
    { groupId: 6, message: m({ type: MessageType.Heartbeat, term: 3, commit: 2, index: 1 }) },
  ]
}

function roundTrip(items: GroupMessage[]): GroupMessage[] {
  const packr = createPackr()
  const batch = decodePeerBatch(packr, encodePeerBatch(packr, items, ends), ends)
  const out: GroupMessage[] = []
  forEachMessage(batch, ends, (groupId, m) => out.push({ groupId, message: m }))
  return out
}

/** Compares messages with entry data as plain byte arrays (decoded data are Buffers). */
function normal(items: readonly GroupMessage[]): unknown {
  return items.map(({ groupId, message: m }) => ({
    groupId,
    ...m,
    entries: m.entries.map((e) => ({ ...e, data: [...e.data] })),
    data: m.data === null ? null : [...m.data],
  }))
}

test('every wire message type round-trips exactly, from/to taken from the connection', () => {
  const items = sample()
  assert.deepEqual(normal(roundTrip(items)), normal(items))
})

test('heartbeats of many groups pack into columns and expand back exactly', () => {
  const items: GroupMessage[] = []
  for (let g = 0; g < 1000; g++) {
    items.push({ groupId: g, message: message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 3 + (g % 5), commit: g * 7, context: g % 3 }) })
    items.push({ groupId: g + 5000, message: message({ type: MessageType.HeartbeatResp, from: 1, to: 2, term: 2, context: g % 4 }) })
  }
  const value = peerBatchValue(items, ends) as [unknown[], number[][], number[][]]
  assert.equal(value[0].length, 0, 'no heartbeat takes the general form')
  assert.equal(value[1][0]!.length, 1000)
  assert.equal(value[2][0]!.length, 1000)
  const packr = createPackr()
  const encoded = encodePeerBatch(packr, items, ends)
  // A heartbeat costs a few bytes: group id, term, commit, context.
  assert.ok(encoded.byteLength < 2000 * 8, `2000 heartbeats in ${encoded.byteLength} bytes`)
  const batch = decodePeerBatch(packr, encoded, ends)
  assert.equal(batchSize(batch), 2000)
  const out: GroupMessage[] = []
  forEachMessage(batch, ends, (groupId, m) => out.push({ groupId, message: m }))
  const byType = (t: number) => (x: GroupMessage) => x.message.type === t
  assert.deepEqual(normal(out.filter(byType(MessageType.Heartbeat))), normal(items.filter(byType(MessageType.Heartbeat))))
  assert.deepEqual(normal(out.filter(byType(MessageType.HeartbeatResp))), normal(items.filter(byType(MessageType.HeartbeatResp))))
})

test('decoded entry data are views of the frame, not copies', () => {
  const packr = createPackr()
  const items = sample()
  const encoded = encodePeerBatch(packr, items, ends)
  const batch = decodePeerBatch(packr, encoded, ends)
  const data = batch.groups[0]!.message.entries[0]!.data
  assert.equal(data.buffer, encoded.buffer)
})

test('the encoder refuses a message not between the batch ends (a routing bug)', () => {
  const wrong = [{ groupId: 1, message: message({ type: MessageType.App, from: 1, to: 3 }) }]
  assert.throws(() => peerBatchValue(wrong, ends), /in a batch 1->2/)
})

// ---- strictness --------------------------------------------------------------

function valid(): unknown[] {
  return structuredClone(peerBatchValue(sample(), ends)) as unknown[]
}

function rejects(value: unknown, pattern?: RegExp): void {
  assert.throws(() => peerBatchFromValue(value, ends), (e) => isRillError(e, ErrorCode.INVALID_REQUEST) && (pattern === undefined || pattern.test(e.message)))
}

test('each kind of malformed batch is rejected with INVALID_REQUEST', () => {
  const cases: Array<[string, (v: any) => void, RegExp]> = [
    ['not a tuple', (v) => v.pop(), /batch is not a 3-tuple/],
    ['groups not an array', (v) => { v[0] = {} }, /groups is not an array/],
    ['message arity', (v) => v[0][0].pop(), /message is not a 12-tuple/],
    ['negative group id', (v) => { v[0][0][0] = -1 }, /group id/],
    ['group id above u32', (v) => { v[0][0][0] = 2 ** 32 }, /group id/],
    ['local message type', (v) => { v[0][2][1] = MessageType.Hup }, /not a wire message type/],
    ['unknown message type', (v) => { v[0][2][1] = 99 }, /not a wire message type/],
    ['fractional term', (v) => { v[0][0][2] = 1.5 }, /term is not/],
    ['unsafe index', (v) => { v[0][0][4] = 2 ** 60 }, /index is not/],
    ['string commit', (v) => { v[0][0][5] = '9' }, /commit is not/],
    ['reject not boolean', (v) => { v[0][1][6] = 1 }, /reject is not a boolean/],
    ['entries outside App', (v) => { v[0][1][9] = [[5, 0, new Uint8Array(1)]] }, /entries outside an App/],
    ['empty entries list', (v) => { v[0][0][9] = [] }, /entries is empty/],
    ['entry arity', (v) => { v[0][0][9][0] = [4, 0] }, /entry is not a 3-tuple/],
    ['entry term above message term', (v) => { v[0][0][9][2][0] = 6 }, /out of order/],
    ['entry terms decreasing', (v) => { v[0][0][9][0][0] = 5; v[0][0][9][1][0] = 4 }, /out of order/],
    ['entry term below prev log term', (v) => { v[0][0][9][0][0] = 3 }, /out of order/],
    ['entry type unknown', (v) => { v[0][0][9][0][1] = 2 }, /entry type/],
    ['entry data a string', (v) => { v[0][0][9][0][2] = 'abc' }, /entry data is not binary/],
    ['data outside Snap', (v) => { v[0][1][11] = new Uint8Array(2) }, /outside a Snap/],
    ['snapshot outside Snap', (v) => { v[0][1][10] = [1, 1, [1], []] }, /outside a Snap/],
    ['Snap without meta', (v) => { v[0][4][10] = null }, /snapshot meta/],
    ['Snap without data', (v) => { v[0][4][11] = null }, /snapshot chunk is not binary/],
    ['Snap chunk past total', (v) => { v[0][4][7] = 4097 }, /past the snapshot size/],
    ['snapshot term above message', (v) => { v[0][4][10][1] = 7 }, /snapshot term/],
    ['snapshot without voters', (v) => { v[0][4][10][2] = [] }, /no voter/],
    ['snapshot duplicate member', (v) => { v[0][4][10][3] = [3] }, /repeats node 3/],
    ['snapshot member 0', (v) => { v[0][4][10][2] = [0] }, /node 0/],
    ['heartbeat columns uneven', (v) => { v[1][0].push(1) }, /columns differ/],
    ['heartbeat arity', (v) => { v[1].pop() }, /heartbeats is not a 4-tuple/],
    ['heartbeat term negative', (v) => { v[1][0].push(1); v[1][1].push(-1); v[1][2].push(0); v[1][3].push(0) }, /heartbeat term/],
    ['heartbeat answer group id', (v) => { v[2][0].push(2 ** 33); v[2][1].push(1); v[2][2].push(0) }, /answer group id/],
  ]
  for (const [name, mutate, pattern] of cases) {
    const v = valid()
    mutate(v)
    assert.throws(() => peerBatchFromValue(v, ends), (e) => {
      assert.ok(isRillError(e, ErrorCode.INVALID_REQUEST), `${name}: ${String(e)}`)
      assert.match((e as RillError).message, pattern, name)
      return true
    }, name)
  }
  rejects(null)
  rejects('batch')
  rejects(new Uint8Array(3))
})

test('property: random bytes never decode to anything but a batch or INVALID_REQUEST', () => {
  const packr = createPackr()
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (raw) => {
      try {
        decodePeerBatch(packr, raw, ends)
      } catch (e) {
        assert.ok(isRillError(e, ErrorCode.INVALID_REQUEST), String(e))
      }
    }),
    { numRuns: 3000, seed: 42 },
  )
})

test('property: random msgpack values and their encodings are rejected with a code, never a crash', () => {
  const packr = createPackr()
  const leaf = fc.oneof(
    fc.integer({ min: -5, max: 20 }),
    fc.constantFrom(0, 2 ** 32, 2 ** 53, -0, 1.5, NaN, Infinity),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 4 }),
    fc.uint8Array({ maxLength: 8 }),
  )
  const value = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('node'), { maxLength: 13 }), fc.dictionary(fc.string({ maxLength: 3 }), tie('node'), { maxKeys: 3 })),
  })).node
  fc.assert(
    fc.property(value, (v) => {
      for (const attempt of [() => peerBatchFromValue(v, ends), () => decodePeerBatch(packr, packr.pack(v), ends)]) {
        try {
          attempt()
        } catch (e) {
          assert.ok(isRillError(e, ErrorCode.INVALID_REQUEST), String(e))
        }
      }
    }),
    { numRuns: 3000, seed: 7 },
  )
})

test('property: one mutated field of a valid batch decodes or is rejected with a code', () => {
  const packr = createPackr()
  const encoded = Buffer.from(encodePeerBatch(packr, sample(), ends))
  fc.assert(
    fc.property(fc.integer({ min: 0, max: encoded.byteLength - 1 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: encoded.byteLength }), (at, byte, cut) => {
      const copy = Buffer.from(encoded)
      copy[at] = byte
      for (const b of [copy, copy.subarray(0, cut)]) {
        try {
          decodePeerBatch(packr, b, ends)
        } catch (e) {
          assert.ok(isRillError(e, ErrorCode.INVALID_REQUEST), String(e))
        }
      }
    }),
    { numRuns: 5000, seed: 3 },
  )
})
