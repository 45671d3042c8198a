/**
 * The consumer without a group, against three real brokers: decoding of
 * stored batches (keys, headers, offsets), starting at the log start or the
 * end, follower reads, read-your-writes with minCommitted, seek, pause and
 * resume, offset-out-of-range reset, lag, and bad input.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { Consumer, isRillClientError, type ResetEvent } from '../../consumer/index.ts'
import { call, collect, createTopic, decode, produce, startCluster, waitFor, type Seen, type TestCluster } from './helpers.ts'

let c: TestCluster
let brokers: string[]

before(async () => {
  c = await startCluster()
  brokers = c.brokers.map((b) => b.url)
  await createTopic(c, 'plain', 3)
  await createTopic(c, 'tail', 2)
  await createTopic(c, 'moves', 2)
})

after(async () => {
  await c.stopAll()
})

const consumers: Consumer[] = []
function consumer(options: Partial<ConstructorParameters<typeof Consumer>[0]> = {}): Consumer {
  const k = new Consumer({ brokers, maxWaitMs: 500, ...options })
  consumers.push(k)
  return k
}

after(async () => {
  await Promise.all(consumers.map((k) => k.close()))
})

function byPartition(all: Seen[], partition: number): Seen[] {
  return all.filter((s) => s.partition === partition)
}

test('reads every partition from the log start: offsets dense and in order, keys and headers decoded', { timeout: 60_000 }, async () => {
  for (let p = 0; p < 3; p++) {
    await produce(c, 'plain', p, [`a${p}`, `b${p}`], { key: `k${p}`, headers: [{ key: 'h', value: `v${p}` }] })
    await produce(c, 'plain', p, [`c${p}`])
  }
  const k = consumer({ fromBeginning: true, readFrom: 'leader' })
  const keys = new Map<string, string | null>()
  k.on('assignment', (e) => assert.equal(e.generation, 0))
  await k.subscribe('plain')
  assert.equal(k.assignment().length, 3)
  const all: Seen[] = []
  for await (const batch of k) {
    for (const r of batch.records) {
      keys.set(decode(r.value)!, decode(r.key))
      if (r.headers.length > 0) assert.deepEqual(r.headers.map((h) => [h.key, decode(h.value)]), [['h', `v${batch.partition}`]])
      assert.ok(r.timestamp > 1_600_000_000_000)
    }
    all.push(...batch.records.map((r) => ({ topic: batch.topic, partition: batch.partition, offset: r.offset, value: decode(r.value)! })))
    if (all.length === 9) break
  }
  for (let p = 0; p < 3; p++) {
    assert.deepEqual(byPartition(all, p).map((s) => [s.offset, s.value]), [[0, `a${p}`], [1, `b${p}`], [2, `c${p}`]])
  }
  assert.equal(keys.get('a1'), 'k1')
  assert.equal(keys.get('c2'), null)
  await waitFor(() => k.lag().every((l) => l.lag === 0 && l.position === 3 && l.highWatermark === 3), 5_000, 'lag 0')
  assert.ok(k.lag().every((l) => l.replica !== null))
  await k.close()
})

test('starts at the end without fromBeginning: only records produced after subscribe', { timeout: 60_000 }, async () => {
  await produce(c, 'tail', 0, ['old0'])
  await produce(c, 'tail', 1, ['old1'])
  const k = consumer()
  const resets: ResetEvent[] = []
  k.on('reset', (e) => resets.push(e))
  await k.subscribe(['tail'])
  // Both positions are known (reset to the end) before anything new is produced.
  await waitFor(() => resets.length === 2, 10_000, 'positions reset to the end')
  assert.deepEqual(resets.map((r) => [r.partition, r.from, r.to]).sort(), [[0, null, 1], [1, null, 1]])
  await produce(c, 'tail', 0, ['new0'])
  await produce(c, 'tail', 1, ['new1'])
  const all = await collect(k, (s) => s.length >= 2)
  assert.deepEqual(all.map((s) => s.value).sort(), ['new0', 'new1'])
})

test('follower reads come from a replica that does not lead; minCommitted reads a write at once', { timeout: 60_000 }, async () => {
  const k = consumer({ readFrom: 'follower', fromBeginning: true })
  await k.subscribe('plain')
  await collect(k, (s) => s.length >= 9)
  const meta = (await call(brokers[0]!, 'GET', '/v1/metadata')).body
  const leaders = new Map<number, number>(meta.topics.find((t: { name: string }) => t.name === 'plain').partitions.map((p: { partition: number; leader: number }) => [p.partition, p.leader]))
  for (const l of k.lag()) assert.notEqual(l.replica, leaders.get(l.partition), `partition ${l.partition} read from its leader`)
  // Read-your-writes: seek to the offset produce answered, with minCommitted, on the follower.
  const w = await produce(c, 'plain', 1, ['mine'])
  k.seek('plain', 1, w.baseOffset, { minCommitted: w.lastOffset + 1 })
  const mine = await collect(k, (s) => s.some((x) => x.value === 'mine'))
  assert.deepEqual(mine.filter((s) => s.partition === 1).map((s) => [s.offset, s.value]), [[w.baseOffset, 'mine']])
})

test('seek moves the position back; pause holds a partition back until resume', { timeout: 60_000 }, async () => {
  await produce(c, 'moves', 0, ['m0', 'm1', 'm2'])
  await produce(c, 'moves', 1, ['n0'])
  const k = consumer({ fromBeginning: true })
  await k.subscribe('moves')
  await collect(k, (s) => s.length >= 4)
  k.seek('moves', 0, 1)
  const again = await collect(k, (s) => s.length >= 2)
  assert.deepEqual(again.map((s) => [s.partition, s.offset, s.value]), [[0, 1, 'm1'], [0, 2, 'm2']])

  k.pause([{ topic: 'moves', partitions: [0] }])
  assert.deepEqual(k.paused(), [{ topic: 'moves', partitions: [0] }])
  await produce(c, 'moves', 0, ['held'])
  await produce(c, 'moves', 1, ['n1'])
  const during = await collect(k, (s) => s.some((x) => x.value === 'n1'))
  assert.ok(!during.some((s) => s.value === 'held'), JSON.stringify(during))
  k.resume([{ topic: 'moves' }])
  const later = await collect(k, (s) => s.some((x) => x.value === 'held'))
  assert.deepEqual(later.map((s) => s.value), ['held'])
})

test('a position past the end resets as auto.offset.reset says; bad input is refused with a code', { timeout: 60_000 }, async () => {
  const k = consumer({ fromBeginning: true })
  const resets: ResetEvent[] = []
  k.on('reset', (e) => resets.push(e))
  await k.subscribe('moves')
  await collect(k, (s) => s.filter((x) => x.partition === 1).length >= 2)
  k.seek('moves', 1, 1_000_000)
  const back = await collect(k, (s) => s.filter((x) => x.partition === 1).length >= 2)
  assert.deepEqual(back.filter((s) => s.partition === 1).map((s) => s.value), ['n0', 'n1'])
  assert.ok(resets.some((r) => r.partition === 1 && r.from === 1_000_000 && r.to === 0), JSON.stringify(resets))

  assert.throws(() => new Consumer({ brokers: [] }), (e) => isRillClientError(e, 'INVALID_REQUEST'))
  assert.throws(() => new Consumer({ brokers, readFrom: 'closest' as 'leader' }), /readFrom/)
  assert.throws(() => new Consumer({ brokers, sessionTimeoutMs: 10 }), /sessionTimeoutMs/)
  assert.throws(() => k.seek('moves', 0, -1), (e) => isRillClientError(e, 'INVALID_REQUEST'))
  await assert.rejects(k.commit(), (e) => isRillClientError(e, 'INVALID_REQUEST') && /groupId/.test((e as Error).message))
  const other = consumer()
  await assert.rejects(other.subscribe('no-such-topic'), (e) => isRillClientError(e, 'UNKNOWN_TOPIC'))
  await assert.rejects(other.subscribe('bad topic!'), (e) => isRillClientError(e, 'INVALID_REQUEST'))
  await k.close()
  await assert.rejects(k.subscribe('moves'), (e) => isRillClientError(e, 'CLOSED'))
})
