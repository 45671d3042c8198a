/**
 * Producer behaviour that needs no Raft, against a fake broker on loopback:
 * partitioning (murmur2 as Kafka, explicit, custom, sticky, round-robin),
 * batching by count and linger, backpressure from a full buffer, and clear
 * errors for bad options and records.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { SeededRandom } from '../../src/base/index.ts'
import { partitionForKey } from '../../src/wire/index.ts'
import { Producer, type ProducerOptions } from '../../producer/index.ts'
import { ByteBudget } from '../../producer/buffer.ts'
import { FakeBroker, fakeProducerToken } from './fake-broker.ts'

let broker: FakeBroker

before(async () => {
  broker = await new FakeBroker({ t: 4, one: 1, sticky: 3, rr: 3, batched: 1, full: 1, stuck: 1, quota: 1 }).start()
})

after(async () => {
  await broker.close()
})

function producer(options: Partial<ProducerOptions> = {}): Producer {
  return new Producer({ brokers: broker.url, lingerMs: 1, random: new SeededRandom(3), ...options })
}

async function rejects(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: { code?: string; message?: string }) => {
    assert.equal(e.code, code, e.message)
    if (message !== undefined) assert.match(e.message ?? '', message)
    return true
  })
}

test('keyed records land on murmur2(key) % partitions, as in Kafka; an explicit partition wins; offsets per record', async () => {
  const p = producer()
  try {
    const keys = ['user-1', 'user-2', 'a', '', 'ünïcode']
    const acks = await p.send('t', keys.map((key) => ({ key, value: `v-${key}` })))
    acks.forEach((m, i) => assert.equal(m.partition, partitionForKey(new TextEncoder().encode(keys[i]!), 4), keys[i]))
    const explicit = await p.send('t', { key: 'user-1', value: 'x', partition: 3 })
    assert.equal(explicit.partition, 3)
    const bytes = await p.send('t', { key: new Uint8Array([1, 2, 3]), value: new Uint8Array([0, 255]) })
    assert.equal(bytes.partition, partitionForKey(new Uint8Array([1, 2, 3]), 4))
    const two = await p.send('one', [{ value: 'a' }, { value: 'b' }])
    assert.deepEqual(two.map((m) => m.offset), [two[0]!.offset, two[0]!.offset + 1])
  } finally {
    await p.close()
  }
})

test('a custom partitioner decides every record; an answer out of range is INVALID_REQUEST', async () => {
  const p = producer({ partitioner: ({ value, partitionCount }) => value.length % partitionCount })
  try {
    assert.equal((await p.send('t', { key: 'k', value: 'abc' })).partition, 3)
    const bad = producer({ partitioner: () => 9 })
    await rejects(bad.send('t', { value: 'x' }), 'INVALID_REQUEST', /partitioner returned 9/)
    await bad.close()
  } finally {
    await p.close()
  }
})

test('sticky: keyless records fill one partition\'s batch, then move to the next', async () => {
  const p = producer({ batchRecordsMax: 10, lingerMs: 20 })
  try {
    await p.send('sticky', Array.from({ length: 30 }, (_, i) => ({ value: `s${i}` })))
    const batches = broker.batches.filter((b) => b.topic === 'sticky')
    assert.deepEqual(batches.map((b) => b.values.length), [10, 10, 10])
    assert.equal(new Set(batches.map((b) => b.partition)).size, 3, 'each full batch moved the sticky partition on')
  } finally {
    await p.close()
  }
})

test('round-robin: one partition after the other, per record', async () => {
  const p = producer({ partitioner: 'round-robin' })
  try {
    const acks = await p.send('rr', Array.from({ length: 6 }, (_, i) => ({ value: `r${i}` })))
    const first = acks[0]!.partition
    assert.deepEqual(acks.map((m) => m.partition), [0, 1, 2, 3, 4, 5].map((i) => (first + i) % 3))
  } finally {
    await p.close()
  }
})

test('batches close at batchRecordsMax or after lingerMs; sequences run on per partition', async () => {
  const p = producer({ batchRecordsMax: 4, lingerMs: 30 })
  try {
    const sends = Array.from({ length: 10 }, (_, i) => p.send('batched', { value: `b${i}` }))
    await Promise.all(sends)
    const batches = broker.batches.filter((b) => b.topic === 'batched')
    assert.deepEqual(batches.map((b) => b.values.length), [4, 4, 2])
    assert.deepEqual(batches.map((b) => b.baseSequence), [0, 4, 8])
    // Each idempotent batch goes with the token POST /v1/producers answered (issue 10, hole 3).
    assert.deepEqual(batches.map((b) => b.producerToken), [fakeProducerToken, fakeProducerToken, fakeProducerToken])
    assert.deepEqual(batches.flatMap((b) => b.values), Array.from({ length: 10 }, (_, i) => `b${i}`))
  } finally {
    await p.close()
  }
})

test('a full buffer makes send wait (bounded memory), and the wait ends when answers free room', async () => {
  const p = producer({ bufferBytes: 4096, batchRecordsMax: 2, lingerMs: 0 })
  broker.hold = true
  try {
    const value = 'x'.repeat(500)
    let appended = 0
    const sends = Array.from({ length: 40 }, () => p.send('full', { value }).then(() => appended++))
    await new Promise((r) => setTimeout(r, 100))
    assert.ok(p.bufferedBytes <= 4096, `buffered ${p.bufferedBytes}`)
    assert.equal(appended, 0)
    const received = broker.batches.filter((b) => b.topic === 'full').reduce((n, b) => n + b.values.length, 0)
    assert.ok(received > 0 && received <= 8, `received ${received} records while the buffer holds at most 4096 bytes`)
    broker.release()
    await Promise.all(sends)
    assert.equal(p.bufferedBytes, 0)
  } finally {
    broker.release()
    await p.close()
  }
})

test('waiting for buffer room is bounded by the delivery timeout; records never acknowledged fail with TIMEOUT', async () => {
  const p = producer({ bufferBytes: 2048, deliveryTimeoutMs: 300, lingerMs: 0, requestTimeoutMs: 200 })
  broker.hold = true
  try {
    const value = 'y'.repeat(1500)
    const first = p.send('stuck', { value })
    const second = p.send('stuck', { value })
    await rejects(second, 'TIMEOUT', /buffer/)
    await rejects(first, 'TIMEOUT', /delivery timeout/)
  } finally {
    broker.release()
    await p.close()
  }
})

test('ByteBudget: FIFO grants, TOO_LARGE above capacity, BUSY beyond its waiters', async () => {
  const budget = new ByteBudget({ capacityBytes: 100, waitersMax: 2 })
  await budget.reserve(60, 1000)
  const order: number[] = []
  const a = budget.reserve(50, 1000).then(() => order.push(50))
  const b = budget.reserve(10, 1000).then(() => order.push(10))
  await rejects(budget.reserve(1, 1000), 'BUSY')
  await rejects(budget.reserve(101, 1000), 'TOO_LARGE')
  budget.release(60)
  await Promise.all([a, b])
  assert.deepEqual(order, [50, 10], 'the small request did not overtake the large one')
  assert.equal(budget.usedBytes, 60)
})

test('bad options and records are refused with a code that names them; nothing of a bad send is sent', async () => {
  assert.throws(() => new Producer({ brokers: [] }), { code: 'INVALID_REQUEST' })
  assert.throws(() => new Producer({ brokers: 'ftp://x' }), { code: 'INVALID_REQUEST' })
  assert.throws(() => new Producer({ brokers: broker.url, maxInFlight: 6 }), /maxInFlight must be an integer in \[1, 5\]/)
  assert.throws(() => new Producer({ brokers: broker.url, acks: 'some' as 'all' }), { code: 'INVALID_REQUEST' })
  assert.throws(() => new Producer({ brokers: broker.url, lingerMs: -1 }), /lingerMs/)
  const p = producer()
  const before = broker.batches.length
  await rejects(p.send('t', { value: undefined as unknown as string }), 'INVALID_REQUEST', /needs a value/)
  await rejects(p.send('t', [{ value: 'ok' }, { value: 5 as unknown as string }]), 'INVALID_REQUEST', /record 1: .*value must be a string or a Uint8Array/)
  await rejects(p.send('t', { value: 'x'.repeat(9 * 1024 * 1024) }), 'TOO_LARGE')
  await rejects(p.send('t', { value: 'x', partition: 4 }), 'UNKNOWN_PARTITION')
  await rejects(p.send('t', { value: 'x', partition: -1 }), 'INVALID_REQUEST')
  await rejects(p.send('nope', { value: 'x' }), 'UNKNOWN_TOPIC')
  await p.flush()
  assert.equal(broker.batches.length, before)
  await p.close()
  await rejects(p.send('t', { value: 'late' }), 'CLOSED')
})

test('sticky: a record that does not fit the open batch moves on with the partition (no one-record batch left behind)', async () => {
  // 3 records of ~40 bytes fill a 100-byte batch only twice: the third closes it and starts the next partition's batch.
  const p = producer({ batchBytes: 100, lingerMs: 20 })
  try {
    await p.send('sticky', Array.from({ length: 12 }, (_, i) => ({ value: `v${String(i).padStart(9, '0')}` })))
    const batches = broker.batches.filter((b) => b.topic === 'sticky').slice(-6)
    assert.deepEqual(batches.map((b) => b.values.length), [2, 2, 2, 2, 2, 2])
    const perPartition = new Map<number, number>()
    for (const b of batches) perPartition.set(b.partition, (perPartition.get(b.partition) ?? 0) + 1)
    assert.deepEqual([...perPartition.values()], [2, 2, 2], 'the partitions take turns')
  } finally {
    await p.close()
  }
})

test('429 THROTTLED (over quota): the batch is resent no sooner than the broker asks, with the same sequence, written once', async () => {
  const p = producer()
  try {
    broker.throttle = { count: 1, throttleMs: 400 }
    const ack = await p.send('quota', { value: 'q' })
    assert.equal(ack.offset, 0)
    const written = broker.batches.filter((b) => b.topic === 'quota')
    assert.equal(written.length, 1, 'refused before anything was written, then written once')
    assert.equal(written[0]!.baseSequence, 0, 'refused before the append: its sequence is reused, no new identity')
    const waitedMs = written[0]!.receivedAtMs - broker.refusedAtMs.at(-1)!
    assert.ok(waitedMs >= 390, `resent after ${waitedMs} ms; the broker asked for 400 (the backoff alone is at most 100)`)
  } finally {
    broker.throttle = { count: 0, throttleMs: 0 }
    await p.close()
  }
})
