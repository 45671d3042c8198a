/**
 * Fuzzing the broker-to-broker edge (issue 10, "Tests"): the frame reader,
 * the peer-batch decoder, and a real Transport's acceptor fed hostile
 * dialer bytes before and after the handshake.
 *
 *   FrameReader    random and mutated frame streams cut anywhere: payloads within the bound,
 *                  TOO_LARGE past it, nothing allocated beyond the bytes received, no throw
 *   decoder        mutated valid batches and hostile msgpack: a PeerBatch or an INVALID_REQUEST
 *                  RillError, nothing else
 *   handshake      a stranger's bytes (random, mutated Hellos, a Hello then a bad Auth, lying
 *                  lengths, truncation): answered only by Challenge or Refuse, closed within the
 *                  handshake bound, never an exception
 *   after it       an authenticated peer's mutated batch frames: exactly the valid batches delivered,
 *                  anything else closes the connection, never an exception
 *   other way      a stranger listening where a broker dials answers with bent Challenges: the
 *                  dialer closes, names nothing, never sends an Auth
 *   each batch     a real broker pair still connects and exchanges a batch in time
 *
 * Seed and runs: RILL_FUZZ_SEED, RILL_FUZZ_RUNS (helpers.ts).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import fc from 'fast-check'
import { ErrorCode, RillError, isRillError } from '../../src/base/index.ts'
import { EntryType, MessageType, message, type Message } from '../../src/raft/index.ts'
import { FrameKind, FrameReader, encodeFrame, frameHeaderBytes } from '../../src/transport/frame.ts'
import { challengeValue, helloValue, newNonce, protocolVersion, prove, type Transcript } from '../../src/transport/handshake.ts'
import { createPackr, peerBatchFromValue, peerBatchValue, unpackValue, type GroupMessage } from '../../src/transport/raft-codec.ts'
import { RawPeer, clusterId, mesh, node, rawDial, secret, waitFor, type Node } from '../transport/helpers.ts'
import { fuzzParams } from './helpers.ts'

/** Handshake bound of the fuzzed acceptor: a stranger that stops mid-frame is closed after this, ms. */
const handshakeMs = 250
/** Longest a hostile connection may stay open: the handshake bound plus slack for a busy machine, ms. */
const closeMsMax = handshakeMs + 5_000

const packr = createPackr()

// ---- sample frames -------------------------------------------------------------

const ends = { from: 2, to: 5 }
function sampleMessages(): GroupMessage[] {
  const m = (f: Partial<Message> & Pick<Message, 'type'>): Message => message({ from: 2, to: 5, ...f })
  return [
    { groupId: 7, message: m({ type: MessageType.App, term: 5, logTerm: 4, index: 10, commit: 9, entries: [
      { term: 4, index: 11, type: EntryType.Normal, data: new Uint8Array(40).fill(1) },
      { term: 5, index: 12, type: EntryType.ConfChange, data: new Uint8Array(3).fill(2) },
    ] }) },
    { groupId: 3, message: m({ type: MessageType.Heartbeat, term: 3, commit: 2 }) },
    { groupId: 4, message: m({ type: MessageType.HeartbeatResp, term: 3 }) },
    { groupId: 9, message: m({ type: MessageType.Snap, term: 6, index: 0, rejectHint: 64, commit: 30,
      snapshot: { index: 30, term: 6, conf: { voters: [2, 5], learners: [] } }, data: new Uint8Array(64).fill(9) }) },
    { groupId: 1, message: m({ type: MessageType.Vote, term: 9, index: 20, logTerm: 8 }) },
  ]
}
const batchPayload = packr.pack(peerBatchValue(sampleMessages(), ends))

interface ByteMutation {
  readonly kind: 'flip' | 'set' | 'truncate' | 'insert' | 'delete'
  readonly at: number
  readonly value: number
}
const byteMutation: fc.Arbitrary<ByteMutation> = fc.record({
  kind: fc.constantFrom('flip', 'flip', 'set', 'truncate', 'insert', 'delete'),
  at: fc.nat(),
  value: fc.integer({ min: 0, max: 255 }),
})

function mutateBytes(bytes: Uint8Array, mutations: readonly ByteMutation[]): Buffer {
  let out = Buffer.from(bytes)
  for (const m of mutations) {
    if (out.byteLength === 0) break
    const at = m.at % out.byteLength
    if (m.kind === 'flip') out[at]! ^= 1 << (m.value % 8)
    else if (m.kind === 'set') out[at] = m.value
    else if (m.kind === 'truncate') out = out.subarray(0, at)
    else if (m.kind === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([m.value]), out.subarray(at)])
    else out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)])
  }
  return out
}

/** A frame (length prefix and payload) whose length field says `length` whatever follows. */
function frameWithLength(payload: Uint8Array, length: number): Buffer {
  const header = Buffer.alloc(frameHeaderBytes)
  header.writeUInt32BE(length >>> 0)
  return Buffer.concat([header, payload])
}

/** msgpack headers that announce more than they carry (the decoder must not allocate what they announce). */
const hostileMsgpack = fc.constantFrom(
  [0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0x7f, 0xff, 0xff, 0xff], [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], [0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00],
  [0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x00], [0xd4, 0x69, 0x00], [0xd4, 0x70, 0x00], [0xd6, 0xff, 0, 0, 0, 1], [0xc1], [0x93, 0xc0, 0xc0],
  [0x93, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x90, 0x90], [0x92, 0x06, 0x93, 0x90, 0x94, 0x90, 0x90, 0x90, 0x90, 0x93, 0x90, 0x90, 0x90],
).map((b) => Buffer.from(b))

const deepMsgpack = fc.constantFrom(1_000, 100_000).map((d) => Buffer.concat([Buffer.alloc(d, 0x91), Buffer.from([0xc0])]))

/** A payload the decoder must refuse or take: mutated valid batches, random values, hostile headers, deep nesting. */
const batchPayloads: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: fc.array(byteMutation, { minLength: 1, maxLength: 4 }).map((ms) => mutateBytes(batchPayload, ms)) },
  { weight: 2, arbitrary: fc.anything({ maxDepth: 3, withTypedArray: true }).map((v) => packr.pack(v)) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: hostileMsgpack },
  { weight: 1, arbitrary: deepMsgpack },
  { weight: 1, arbitrary: fc.constantFrom<unknown>([[], [[], [], [], []], [[], [], []]], [[], [[1], [1], [1], [1]], [[], [], []]], [[[0, 1, 1, 0, 0, 0, false, 0, 0, null, null, null]], [[], [], [], []], [[], [], []]]).map((v) => packr.pack(v)) },
)

// ---- unit properties -------------------------------------------------------------

/** Calls `fn` with Buffer.alloc / allocUnsafe watched; returns the largest size asked for. */
function largestAllocation(fn: () => void): number {
  const alloc = Buffer.alloc
  const allocUnsafe = Buffer.allocUnsafe
  let largest = 0
  Buffer.alloc = ((size: number, ...rest: unknown[]) => {
    largest = Math.max(largest, size)
    return (alloc as (...a: unknown[]) => Buffer)(size, ...rest)
  }) as typeof Buffer.alloc
  Buffer.allocUnsafe = ((size: number) => {
    largest = Math.max(largest, size)
    return allocUnsafe(size)
  }) as typeof Buffer.allocUnsafe
  try {
    fn()
  } finally {
    Buffer.alloc = alloc
    Buffer.allocUnsafe = allocUnsafe
  }
  return largest
}

describe('frame reader', () => {
  const validStream = Buffer.concat([encodeFrame(packr, [FrameKind.Ping]), encodeFrame(packr, [FrameKind.Batch, peerBatchValue(sampleMessages(), ends)]), encodeFrame(packr, [FrameKind.Ping])])
  const stream = fc.oneof(
    fc.array(byteMutation, { maxLength: 4 }).map((ms) => mutateBytes(validStream, ms)),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    fc.tuple(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(0, 1, 1023, 1024, 1025, 2 ** 20, 2 ** 31, 2 ** 32 - 1)).map(([p, n]) => frameWithLength(p, n)),
  )

  test('random and mutated streams cut anywhere: payloads within the bound, TOO_LARGE past it, no allocation beyond the bytes received', () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat({ max: 400 }), { maxLength: 8 }), fc.constantFrom(0, 16, 1024, 64 * 1024), (bytes, cuts, bytesMax) => {
        const reader = new FrameReader(bytesMax)
        const points = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)
        let at = 0
        let received = 0
        for (const end of [...points, bytes.byteLength]) {
          const chunk = bytes.subarray(at, end)
          at = end
          received += chunk.byteLength
          let result: RillError | null = null
          const largest = largestAllocation(() => {
            result = reader.push(chunk, (payload) => {
              assert.ok(payload.byteLength <= bytesMax, `payload of ${payload.byteLength} bytes above the bound ${bytesMax}`)
              return true
            })
          })
          assert.ok(largest <= received, `allocated ${largest} bytes having received ${received}`)
          if (result !== null) {
            assert.ok(isRillError(result, ErrorCode.TOO_LARGE), 'the only refusal is TOO_LARGE')
            assert.equal(reader.buffered, 0, 'nothing kept after an oversized frame')
            return
          }
          assert.ok(reader.buffered <= received)
        }
      }),
      fuzzParams(2000),
    )
  })
})

describe('peer batch decoder', () => {
  test('mutated batches, random values and hostile msgpack decode to a batch or an INVALID_REQUEST, nothing else', () => {
    const unpackr = createPackr()
    fc.assert(
      fc.property(batchPayloads, (payload) => {
        try {
          peerBatchFromValue(unpackValue(unpackr, payload), ends)
        } catch (error) {
          assert.ok(isRillError(error, ErrorCode.INVALID_REQUEST), `not an INVALID_REQUEST: ${String(error)}`)
        }
      }),
      fuzzParams(2000),
    )
  })
})

// ---- a real acceptor ---------------------------------------------------------------

let acceptor: Node
let friend: Node

before(async () => {
  acceptor = await node({ id: 5, host: '127.0.0.15', limits: { handshakeMs } })
  friend = await node({ id: 1, host: '127.0.0.11', limits: { handshakeMs } })
  mesh([acceptor, friend])
  // Broker 2 is known to the acceptor but never runs: the post-handshake fuzzer speaks as it.
  acceptor.transport.setPeers(new Map([[1, friend.transport.address()], [2, { host: '127.0.0.12', port: 1 }]]))
  await waitFor(() => acceptor.transport.connected(1) && friend.transport.connected(5), 'brokers 1 and 5 connected', 10_000)
})

after(async () => {
  await friend?.transport.close()
  await acceptor?.transport.close()
})

/** A broker pair still works: broker 1 sends broker 5 a batch and it arrives in time. */
async function assertPeersWork(label: string): Promise<void> {
  await waitFor(() => acceptor.transport.connected(1), `${label}: broker 1 connected to 5`, 10_000)
  const before = acceptor.batches.length
  const context = acceptor.batches.length + 1000
  friend.transport.send(77, message({ type: MessageType.Heartbeat, from: 1, to: 5, term: 1, context }))
  friend.transport.flush()
  await waitFor(() => acceptor.batches.slice(before).some((b) => b.from === 1 && b.batch.heartbeats.contexts.includes(context)), `${label}: a batch from 1 reached 5`, 10_000)
}

/** Dials the acceptor as a stranger, takes `steps` in turn (each may use the frames answered so far), and waits for the close. */
async function strangerSession(steps: readonly Step[]): Promise<{ frames: unknown[]; closedMs: number }> {
  const socket = net.connect({ host: '127.0.0.15', port: acceptor.transport.address().port })
  const peer = new RawPeer(socket)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const started = Date.now()
  for (const step of steps) {
    if (peer.closed) break
    socket.write(step(peer.frames))
    // Let the acceptor answer before the next step (the Auth needs the Challenge's nonce).
    await waitFor(() => peer.closed || peer.frames.length > 0 || Date.now() - started > 50, 'an answer or a moment', closeMsMax)
  }
  try {
    await waitFor(() => peer.closed, 'the acceptor closes a hostile connection', closeMsMax)
  } finally {
    socket.destroy()
  }
  return { frames: peer.frames, closedMs: Date.now() - started }
}

/** The frames a stranger may ever get: a Challenge (nonce, proof) or a Refuse naming nothing. */
function checkStrangerFrames(frames: readonly unknown[]): void {
  for (const f of frames) {
    assert.ok(Array.isArray(f), 'a frame is an array')
    assert.ok(f[0] === FrameKind.Challenge || f[0] === FrameKind.Refuse, `a stranger got frame kind ${String(f[0])}`)
    if (f[0] === FrameKind.Refuse) assert.doesNotMatch(String(f[1]), new RegExp(clusterId), 'a refusal names the cluster')
  }
}

/** Bytes a stranger sends, made from what the acceptor answered so far. */
type Step = (frames: readonly unknown[]) => Buffer
type Hostile = { readonly name: string; readonly steps: readonly Step[] }

/** An Auth made from the Challenge the stranger got, bent by `bend`. */
function authAfterChallenge(frames: readonly unknown[], dialerNonce: Uint8Array, bend: { from: unknown; macKind: 'zero' | 'random' | 'short' | 'long' | 'flip' | 'wrong-key' | 'string' }): Buffer {
  const challenge = frames[0] as unknown[] | undefined
  const acceptorNonce = challenge?.[2] instanceof Uint8Array ? challenge[2] : new Uint8Array(32)
  const from = typeof bend.from === 'number' && Number.isInteger(bend.from) && bend.from > 0 && bend.from <= 0xffffffff ? bend.from : 2
  const t: Transcript = { clusterId, dialerId: from, acceptorId: 5, dialerNonce, acceptorNonce }
  const mac = bend.macKind === 'zero'
    ? new Uint8Array(32)
    : bend.macKind === 'random'
      ? newNonce()
      : bend.macKind === 'short'
        ? new Uint8Array(31)
        : bend.macKind === 'long'
          ? new Uint8Array(33)
          : bend.macKind === 'wrong-key'
            ? prove('dialer', t, Buffer.alloc(32, 9))
            : bend.macKind === 'string'
              ? 'x'.repeat(32)
              : (() => {
                  const good = Buffer.from(prove('dialer', t, secret))
                  good[0]! ^= 1
                  return good
                })()
  return encodeFrame(packr, [FrameKind.Auth, bend.from, mac])
}

const hostileDialer: fc.Arbitrary<Hostile> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => ({ name: `random bytes ${Buffer.from(b).toString('hex')}`, steps: [() => Buffer.from(b)] })),
  fc.array(byteMutation, { minLength: 1, maxLength: 3 }).map((ms) => {
    const bytes = mutateBytes(encodeFrame(packr, helloValue({ version: protocolVersion, nonce: newNonce() })), ms)
    return { name: `mutated Hello ${JSON.stringify(ms)}`, steps: [() => bytes] }
  }),
  fc.anything({ maxDepth: 2, withTypedArray: true }).map((v) => ({ name: `a frame of ${fc.stringify(v).slice(0, 200)}`, steps: [() => encodeFrame(packr, v)] })),
  fc.constantFrom(FrameKind.Hello, FrameKind.Challenge, FrameKind.Auth, FrameKind.Welcome, FrameKind.Refuse, FrameKind.Batch, FrameKind.Ping, 0, 8, -1, 255).chain((kind) =>
    fc.array(fc.oneof(fc.constantFrom<unknown>(protocolVersion, 1, 3, null, 'x'.repeat(300)), fc.uint8Array({ maxLength: 40 })), { maxLength: 4 }).map((fields) => ({
      name: `kind ${kind} with ${fields.length} fields`,
      steps: [() => encodeFrame(packr, [kind, ...fields])],
    })),
  ),
  fc.tuple(fc.uint8Array({ maxLength: 32 }), fc.constantFrom(1025, 2 ** 20, 2 ** 31, 2 ** 32 - 1, 5000)).map(([p, n]) => ({ name: `a length of ${n}`, steps: [() => frameWithLength(p, n)] })),
  fc.nat({ max: 40 }).map((cut) => ({ name: `a Hello cut after ${cut} bytes`, steps: [() => encodeFrame(packr, helloValue({ version: protocolVersion, nonce: newNonce() })).subarray(0, cut)] })),
  fc
    .record({
      from: fc.constantFrom<unknown>(2, 1, 5, 3, 0, -1, 1.5, 2 ** 32, 2 ** 53, '2', null, new Uint8Array(4)),
      macKind: fc.constantFrom('zero' as const, 'random' as const, 'short' as const, 'long' as const, 'flip' as const, 'wrong-key' as const, 'string' as const),
      trailing: fc.option(fc.uint8Array({ minLength: 1, maxLength: 16 }), { freq: 3 }),
    })
    .map((bend): Hostile => {
      const nonce = newNonce()
      return {
        name: `Hello, then an Auth from ${String(bend.from)} with a ${bend.macKind} proof`,
        steps: [
          () => encodeFrame(packr, helloValue({ version: protocolVersion, nonce })),
          (frames) => Buffer.concat([authAfterChallenge(frames, nonce, bend), Buffer.from(bend.trailing ?? [])]),
        ],
      }
    }),
)

describe('handshake', () => {
  test('hostile dialer bytes get only a Challenge or a Refuse, and a close within the handshake bound', { timeout: 120_000 }, async () => {
    // Strangers four at a time (they are independent; most of a session is waiting for the acceptor's close).
    await fc.assert(
      fc.asyncProperty(fc.array(hostileDialer, { minLength: 4, maxLength: 4 }), async (hostiles) => {
        const sessions = await Promise.all(hostiles.map((h) => strangerSession(h.steps)))
        for (const { frames } of sessions) checkStrangerFrames(frames)
        assert.equal(acceptor.transport.connected(2), false, 'no stranger got in as broker 2')
      }),
      fuzzParams(30),
    )
    await assertPeersWork('handshake')
  })
})

describe('frames after the handshake', () => {
  const framed = fc.oneof(
    { weight: 1, arbitrary: fc.constant(encodeFrame(packr, [FrameKind.Batch, peerBatchValue(sampleMessages(), ends)])) },
    { weight: 4, arbitrary: fc.array(byteMutation, { minLength: 1, maxLength: 4 }).map((ms) => mutateBytes(encodeFrame(packr, [FrameKind.Batch, peerBatchValue(sampleMessages(), ends)]), ms)) },
    { weight: 3, arbitrary: batchPayloads.map((payload) => frameWithLength(payload, payload.byteLength)) },
    { weight: 2, arbitrary: fc.anything({ maxDepth: 3, withTypedArray: true }).map((v) => encodeFrame(packr, [FrameKind.Batch, v])) },
    { weight: 1, arbitrary: fc.constantFrom<unknown>([FrameKind.Ping, 1], [FrameKind.Hello], [FrameKind.Welcome], [], [FrameKind.Batch], [FrameKind.Batch, null, null]).map((v) => encodeFrame(packr, v)) },
    { weight: 1, arbitrary: fc.constantFrom(64 * 1024 * 1024 + 1, 2 ** 32 - 1).map((n) => frameWithLength(Buffer.alloc(8), n)) },
  )

  /**
   * What the acceptor must do with `bytes` from an authenticated peer, by the
   * rules of Connection#onFrame: the batches it delivers, then whether it
   * closes (an undecodable, unexpected or oversized frame), or waits for more.
   */
  function expected(bytes: Buffer): { deliveries: number; closes: boolean } {
    const reader = new FrameReader(64 * 1024 * 1024)
    const unpackr = createPackr()
    let deliveries = 0
    let closes = false
    const oversized = reader.push(bytes, (payload) => {
      let value: unknown
      try {
        value = unpackValue(unpackr, payload)
      } catch {
        closes = true
        return false
      }
      if (Array.isArray(value) && value.length === 1 && value[0] === FrameKind.Ping) return true
      if (Array.isArray(value) && value.length === 2 && value[0] === FrameKind.Batch) {
        try {
          peerBatchFromValue(value[1], ends)
          deliveries++
          return true
        } catch {
          closes = true
          return false
        }
      }
      closes = true
      return false
    })
    return { deliveries, closes: closes || oversized !== null }
  }

  test('an authenticated peer\'s mutated frames: valid batches delivered, anything else closes the connection, never an exception', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(framed, async (frame) => {
        await waitFor(() => !acceptor.transport.connected(2), 'the previous broker-2 connection gone', closeMsMax)
        const peer = await rawDial({ from: 2, to: 5, port: acceptor.transport.address().port, host: '127.0.0.15', localAddress: '127.0.0.12' })
        try {
          const want = expected(frame)
          const before = acceptor.batches.length
          peer.socket.write(frame)
          if (want.closes) await waitFor(() => peer.closed, 'the acceptor closes the connection', closeMsMax)
          await waitFor(() => acceptor.batches.length - before >= want.deliveries, `${want.deliveries} batches delivered`, closeMsMax)
          if (!want.closes) {
            // A ping after the frame: the connection is still open, and nothing more was delivered than the valid batches.
            peer.socket.write(encodeFrame(packr, [FrameKind.Ping]))
            assert.equal(peer.closed, false, 'a connection that sent nothing wrong stays open')
          }
          assert.equal(acceptor.batches.length - before, want.deliveries, 'exactly the valid batches delivered')
          for (const b of acceptor.batches.slice(before)) assert.equal(b.from, 2, 'a batch is attributed to the connection\'s peer')
        } finally {
          peer.socket.destroy()
        }
      }),
      fuzzParams(150),
    )
    await waitFor(() => !acceptor.transport.connected(2), 'the last broker-2 connection gone', closeMsMax)
    await assertPeersWork('frames')
  })
})

describe('handshake, the other way', () => {
  /** A Challenge to the Hello `hello`, bent: a wrong proof, wrong sizes, another kind, random bytes, a lying length. */
  const hostileChallenge = fc.oneof(
    fc.constantFrom('zero-mac', 'wrong-key', 'short-nonce', 'long-mac', 'old-version', 'welcome-first', 'refuse-long', 'ping').map((how) => (hello: unknown[]): Buffer => {
      const dialerNonce = hello[2] instanceof Uint8Array ? hello[2] : new Uint8Array(32)
      const acceptorNonce = newNonce()
      const t: Transcript = { clusterId, dialerId: 0, acceptorId: 6, dialerNonce, acceptorNonce }
      switch (how) {
        case 'zero-mac':
          return encodeFrame(packr, challengeValue({ version: protocolVersion, nonce: acceptorNonce, mac: new Uint8Array(32) }))
        case 'wrong-key':
          return encodeFrame(packr, challengeValue({ version: protocolVersion, nonce: acceptorNonce, mac: prove('acceptor', t, Buffer.alloc(32, 9)) }))
        case 'short-nonce':
          return encodeFrame(packr, [FrameKind.Challenge, protocolVersion, new Uint8Array(31), prove('acceptor', t, secret)])
        case 'long-mac':
          return encodeFrame(packr, [FrameKind.Challenge, protocolVersion, acceptorNonce, new Uint8Array(64)])
        case 'old-version':
          return encodeFrame(packr, [FrameKind.Challenge, 1, acceptorNonce, prove('acceptor', t, secret)])
        case 'welcome-first':
          return encodeFrame(packr, [FrameKind.Welcome])
        case 'refuse-long':
          return encodeFrame(packr, [FrameKind.Refuse, 'x'.repeat(900)])
        default:
          return encodeFrame(packr, [FrameKind.Ping])
      }
    }),
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => (): Buffer => Buffer.from(b)),
    fc.array(byteMutation, { minLength: 1, maxLength: 3 }).map((ms) => (hello: unknown[]): Buffer => {
      const dialerNonce = hello[2] instanceof Uint8Array ? hello[2] : new Uint8Array(32)
      const acceptorNonce = newNonce()
      const t: Transcript = { clusterId, dialerId: 0, acceptorId: 6, dialerNonce, acceptorNonce }
      return mutateBytes(encodeFrame(packr, challengeValue({ version: protocolVersion, nonce: acceptorNonce, mac: prove('acceptor', t, secret) })), ms)
    }),
    fc.constantFrom(1025, 2 ** 31).map((n) => (): Buffer => frameWithLength(Buffer.alloc(4), n)),
  )

  test('a hostile acceptor\'s answers make the dialing broker close, name nothing and never admit it', { timeout: 120_000 }, async () => {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.16', port: 0 }, resolve))
    const dialer = await node({ id: 1, host: '127.0.0.11', port: 0, limits: { handshakeMs } })
    /** Connections the dialer opened, in order, each with what it sent and whether it closed. */
    const conns: RawPeer[] = []
    server.on('connection', (socket) => conns.push(new RawPeer(socket)))
    try {
      dialer.transport.setPeers(new Map([[6, { host: '127.0.0.16', port: (server.address() as net.AddressInfo).port }]]))
      await fc.assert(
        fc.asyncProperty(hostileChallenge, async (answer) => {
          const seen = conns.length
          await waitFor(() => conns.length > seen, 'the dialer dials again', closeMsMax)
          const peer = conns[seen]!
          const hello = (await peer.next()) as unknown[]
          assert.deepEqual(hello.slice(0, 2), [FrameKind.Hello, protocolVersion])
          assert.equal(hello.length, 3, 'a Hello names nothing')
          peer.socket.write(answer(hello))
          try {
            await waitFor(() => peer.closed, 'the dialer closes', closeMsMax)
          } finally {
            peer.socket.destroy()
          }
          // The dialer may answer only with a Refuse that names neither side; never an Auth.
          for (const f of peer.frames) {
            assert.ok(Array.isArray(f) && f[0] === FrameKind.Refuse, `the dialer sent ${JSON.stringify(f)}`)
            assert.doesNotMatch(String(f[1]), new RegExp(`${clusterId}|\\b1\\b|\\b6\\b`))
          }
          assert.equal(dialer.transport.connected(6), false)
        }),
        fuzzParams(30),
      )
    } finally {
      await dialer.transport.close()
      for (const c of conns) c.socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
