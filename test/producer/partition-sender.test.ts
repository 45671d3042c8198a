/**
 * PartitionSender against a fake partition leader that applies the broker's
 * own sequence rules (src/partition/state.ts checkSequence / rememberBatch),
 * with seeded faults: a request lost before the broker, an answer lost after
 * the write, NOT_LEADER, NO_QUORUM, refusals, and requests that arrive out
 * of order (as on several connections). Every record must be written once,
 * in append order, with the offsets the sender reports.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, SeededRandom } from '../../src/base/index.ts'
import { checkSequence, rememberBatch, type ProducerState } from '../../src/partition/state.ts'
import { decodeBatch, readBatchHeader, type ProduceResponse } from '../../src/wire/index.ts'
import { RillClientError } from '../../client/index.ts'
import { PartitionSender, type SenderContext } from '../../producer/partition-sender.ts'
import { prepareRecord } from '../../producer/records.ts'
import type { RecordMetadata } from '../../producer/records.ts'

interface Faults {
  /** Request lost on the way: nothing written, no answer. */
  lostBefore: number
  /** Written, then the answer is lost. */
  lostAfter: number
  notLeader: number
  noQuorum: number
  /** Largest delay before arrival and before the answer (ms): requests overtake each other. */
  jitterMs: number
  /** A batch with this value is refused for good (INVALID_REQUEST). */
  poison?: string
}

/** One partition's leader: the broker's sequence rules over an in-memory log. */
class FakeLeader {
  readonly log: string[] = []
  readonly producers = new Map<number, ProducerState>()
  produced = 0
  outOfOrder = 0
  duplicates = 0

  constructor(
    readonly random: SeededRandom,
    readonly faults: Faults,
  ) {}

  async produce(batch: Uint8Array): Promise<ProduceResponse> {
    const f = this.faults
    this.produced++
    await delay(this.random.int(f.jitterMs + 1))
    const roll = this.random.next()
    if (roll < f.lostBefore) throw new RillClientError('UNREACHABLE', 'socket closed before the broker')
    if (roll < f.lostBefore + f.notLeader) throw new RillClientError('NOT_LEADER', 'not the leader', { status: 421, details: { leader: { id: 2, url: 'http://b2' } } })
    if (roll < f.lostBefore + f.notLeader + f.noQuorum) throw new RillClientError('NO_QUORUM', 'no quorum', { status: 503 })
    const answer = this.#apply(batch)
    await delay(this.random.int(f.jitterMs + 1))
    if (this.random.next() < f.lostAfter) throw new RillClientError('UNREACHABLE', 'socket closed after the write')
    return answer
  }

  #apply(batch: Uint8Array): ProduceResponse {
    const header = readBatchHeader(batch)
    const verdict = checkSequence(this.producers.get(header.producerId), header)
    if (verdict.kind === 'duplicate') {
      this.duplicates++
      return { partition: 0, baseOffset: verdict.batch.baseOffset, lastOffset: verdict.batch.lastOffset }
    }
    if (verdict.kind === 'error') {
      if (verdict.error.code === ErrorCode.OUT_OF_ORDER_SEQUENCE) this.outOfOrder++
      throw new RillClientError(verdict.error.code, verdict.error.message, { status: 409 })
    }
    const values = decodeBatch(batch).records.map((r) => new TextDecoder().decode(r.value))
    if (this.faults.poison !== undefined && values.includes(this.faults.poison)) {
      throw new RillClientError('INVALID_REQUEST', 'poison', { status: 400 })
    }
    const baseOffset = this.log.length
    this.log.push(...values)
    rememberBatch(this.producers, { ...header, baseOffset })
    return { partition: 0, baseOffset, lastOffset: baseOffset + values.length - 1 }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

type TestContext = SenderContext & { identities: number }

/** The token the fake identities come with (the broker's check is broker.ts'; here only which token goes with which id). */
const tokenOf = (producerId: number): string => producerId.toString(16).padStart(64, '0')

function context(leader: FakeLeader, overrides: Partial<SenderContext> = {}): TestContext {
  const ctx: TestContext = {
    identities: 0,
    acks: 'all' as const,
    idempotent: true,
    lingerMs: 1,
    batchBytes: 1 << 20,
    batchRecordsMax: 7,
    maxInFlight: 5,
    retries: Number.MAX_SAFE_INTEGER,
    deliveryTimeoutMs: 30_000,
    retryBackoffMs: 1,
    retryBackoffMaxMs: 8,
    random: leader.random,
    flushing: () => false,
    produce: (req) => leader.produce(req.batch),
    identity: async () => {
      const producerId = 1000 + ctx.identities++
      return { producerId, producerEpoch: 0, producerToken: tokenOf(producerId) }
    },
    batchClosed: () => undefined,
    batchSettled: () => undefined,
    ...overrides,
  }
  return ctx
}

/** Appends `count` records `v0..`, a few at a time with pauses (so batches fill and linger), and settles them all. */
async function run(sender: PartitionSender, count: number, random: SeededRandom): Promise<PromiseSettledResult<RecordMetadata>[]> {
  const acks: Promise<RecordMetadata>[] = []
  for (let i = 0; i < count; i++) {
    const ack = sender.append(prepareRecord({ value: `v${i}` }, Date.now()), Date.now())
    ack.catch(() => undefined) // settled below, after the pauses
    acks.push(ack)
    if (random.int(10) === 0) await delay(random.int(3))
  }
  return Promise.allSettled(acks)
}

for (const seed of [1, 2, 3, 4]) {
  test(`seed ${seed}: faults and reordering with maxInFlight 5 write every record once, in order, at the offsets reported`, { timeout: 30_000 }, async () => {
    const random = new SeededRandom(seed)
    const leader = new FakeLeader(random, { lostBefore: 0.1, lostAfter: 0.1, notLeader: 0.05, noQuorum: 0.05, jitterMs: 4 })
    const sender = new PartitionSender('t', 0, context(leader))
    const results = await run(sender, 600, random)
    const values = Array.from({ length: 600 }, (_, i) => `v${i}`)
    assert.deepEqual(leader.log, values)
    results.forEach((r, i) => {
      assert.equal(r.status, 'fulfilled', `record ${i}: ${r.status === 'rejected' ? String(r.reason) : ''}`)
      assert.equal((r as PromiseFulfilledResult<RecordMetadata>).value.offset, i)
    })
    assert.ok(sender.idle)
    // The faults did their job: retries met both duplicates and out-of-order refusals.
    assert.ok(leader.duplicates > 0 && leader.outOfOrder > 0, `duplicates ${leader.duplicates}, out of order ${leader.outOfOrder}`)
  })
}

test('a batch refused for good fails alone; the batches after it are renumbered and written once, in order', { timeout: 30_000 }, async () => {
  const random = new SeededRandom(7)
  const leader = new FakeLeader(random, { lostBefore: 0.05, lostAfter: 0.05, notLeader: 0, noQuorum: 0, jitterMs: 3, poison: 'v100' })
  const sender = new PartitionSender('t', 0, context(leader))
  const results = await run(sender, 300, random)
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [i] : []))
  assert.ok(failed.includes(100) && failed.length <= 7, `failed: ${failed}`)
  for (const i of failed) assert.equal((results[i] as PromiseRejectedResult).reason.code, 'INVALID_REQUEST')
  const expected = Array.from({ length: 300 }, (_, i) => `v${i}`).filter((_, i) => !failed.includes(i))
  assert.deepEqual(leader.log, expected)
})

test('a batch whose fate is unknown at its delivery timeout fails with TIMEOUT; the partition goes on with a fresh identity, no duplicates', { timeout: 30_000 }, async () => {
  const random = new SeededRandom(11)
  const leader = new FakeLeader(random, { lostBefore: 0, lostAfter: 0, notLeader: 0, noQuorum: 0, jitterMs: 1 })
  let blackHole = true
  const ctx = context(leader, { deliveryTimeoutMs: 300 })
  ctx.produce = async (req) => {
    // Every answer is lost for the first 400 ms (the broker writes, the producer never hears).
    const answer = await leader.produce(req.batch)
    if (blackHole) throw new RillClientError('UNREACHABLE', 'answer lost')
    return answer
  }
  const sender = new PartitionSender('t', 0, ctx)
  const first = await run(sender, 20, random)
  assert.ok(first.every((r) => r.status === 'rejected' && r.reason.code === 'TIMEOUT' && /may or may not/.test(r.reason.message)), JSON.stringify(first.map((r) => r.status)))
  blackHole = false
  const written = leader.log.length
  const second = await run(sender, 20, random)
  assert.ok(second.every((r) => r.status === 'fulfilled'))
  assert.ok(ctx.identities >= 2, 'a fresh identity after the lost sequence')
  assert.deepEqual(leader.log.slice(written), Array.from({ length: 20 }, (_, i) => `v${i}`))
  assert.equal(new Set(leader.log.slice(0, written)).size, written, 'the unknown batches were written at most once each')
})

test('without idempotence, retries still resend in order one at a time', { timeout: 30_000 }, async () => {
  const random = new SeededRandom(5)
  const leader = new FakeLeader(random, { lostBefore: 0.15, lostAfter: 0, notLeader: 0.05, noQuorum: 0.05, jitterMs: 0 })
  const sender = new PartitionSender('t', 0, context(leader, { idempotent: false, maxInFlight: 1 }))
  const results = await run(sender, 200, random)
  assert.ok(results.every((r) => r.status === 'fulfilled'))
  assert.deepEqual(leader.log, Array.from({ length: 200 }, (_, i) => `v${i}`))
})

test('a batch the broker may have written (503 TIMEOUT after the append, NOT_LEADER) is not renumbered over when it fails: the next batch is written, not answered as its duplicate', { timeout: 10_000 }, async () => {
  for (const refusal of [
    new RillClientError('TIMEOUT', 'produce not committed within 30000 ms', { status: 503 }),
    new RillClientError('NOT_LEADER', 'leadership lost', { status: 421, details: { leader: null } }),
  ]) {
    const random = new SeededRandom(13)
    const leader = new FakeLeader(random, { lostBefore: 0, lostAfter: 0, notLeader: 0, noQuorum: 0, jitterMs: 0 })
    let first = true
    const ctx = context(leader, { retries: 0 })
    ctx.produce = async (req) => {
      const answer = await leader.produce(req.batch)
      if (!first) return answer
      // The leader appended the batch (it commits later), but answered with an error.
      first = false
      throw refusal
    }
    const sender = new PartitionSender('t', 0, ctx)
    await assert.rejects(sender.append(prepareRecord({ value: 'a' }, Date.now()), Date.now()), (e: RillClientError) => e.code === 'TIMEOUT' && /may or may not/.test(e.message))
    const b = await sender.append(prepareRecord({ value: 'b' }, Date.now()), Date.now())
    assert.deepEqual(leader.log, ['a', 'b'], refusal.code)
    assert.equal(leader.log[b.offset], 'b', `${refusal.code}: 'b' acknowledged at offset ${b.offset}`)
  }
})

test('every batch carries its identity\'s token; a batch refused with INVALID_PRODUCER_TOKEN fails, and the next go with a fresh identity', { timeout: 10_000 }, async () => {
  const random = new SeededRandom(17)
  const leader = new FakeLeader(random, { lostBefore: 0, lostAfter: 0, notLeader: 0, noQuorum: 0, jitterMs: 0 })
  const ctx = context(leader, { retries: 0, maxInFlight: 1 })
  // The first identity's token is no longer accepted (a new cluster secret, say); the next one's is.
  ctx.produce = async (req) => {
    const header = readBatchHeader(req.batch)
    assert.equal(req.producerToken, tokenOf(header.producerId), 'the token of the identity the batch was encoded with')
    if (header.producerId === 1000) throw new RillClientError('INVALID_PRODUCER_TOKEN', 'producerToken does not match', { status: 403 })
    return leader.produce(req.batch)
  }
  const sender = new PartitionSender('t', 0, ctx)
  const first = await run(sender, 3, random)
  assert.ok(first.every((r) => r.status === 'rejected' && r.reason.code === 'INVALID_PRODUCER_TOKEN'), JSON.stringify(first.map((r) => r.status)))
  const second = await run(sender, 10, random)
  assert.ok(second.every((r) => r.status === 'fulfilled'), JSON.stringify(second.map((r) => r.status)))
  assert.equal(ctx.identities, 2, 'one fresh identity')
  assert.deepEqual(leader.log, Array.from({ length: 10 }, (_, i) => `v${i}`))
})
