/**
 * Issue 10, hole 7, on three real broker processes: a topic-route produce
 * whose records span partitions on every broker while one broker is down.
 * The parts for the live brokers are written (locally or forwarded), the
 * dead broker's are not; the answer says so per partition (207), and a
 * client that resends exactly the records the answer names — until every
 * part is written — finds each record in the log once. Before, the answer
 * was the failed part's 421/503 for the whole request, and resending it
 * wrote the live brokers' parts twice.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type TestCluster } from './helpers.ts'

const topic = 'halves'
/** Longest the resend loop runs (a restarted broker's replica elects itself in well under this). */
const resendMsMax = 60_000

interface PartitionMeta {
  partition: number
  leader: number | null
  replicas: number[]
}

async function partitionsOf(url: string): Promise<PartitionMeta[]> {
  const m = await call(url, 'GET', '/v1/metadata')
  return m.body?.topics?.find((t: { name: string }) => t.name === topic)?.partitions ?? []
}

/** Every value in the topic, read from each partition's leader (replication factor 1: the only copy). */
async function valuesInTopic(c: TestCluster): Promise<string[]> {
  const values: string[] = []
  for (const p of await partitionsOf(c.brokers[0]!.url)) {
    const leader = c.brokers[p.replicas[0]! - 1]!
    // A broker restarted a moment ago may answer a retriable 503 (NO_QUORUM: its metadata is catching up; seen in CI under load).
    const path = `/v1/topics/${topic}/partitions/${p.partition}/records?offset=0&maxRecords=10000`
    let r = await call(leader.url, 'GET', path)
    for (const end = Date.now() + 30_000; r.status === 503 && Date.now() < end; r = await call(leader.url, 'GET', path)) {
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.equal(r.status, 200, `${topic}/${p.partition} at broker ${leader.id}: ${JSON.stringify(r.body)}`)
    values.push(...r.body.records.map((x: { value: string }) => x.value))
  }
  return values.sort()
}

test('a topic produce with one broker down answers per partition, and resending what failed writes each record once', { timeout: 180_000 }, async () => {
  const c = await startCluster({ brokers: 3 })
  try {
    const entry = c.brokers[0]!
    // Placement spreads the partitions over the brokers registered when the topic is created.
    await waitFor(async () => {
      const brokers: { fenced?: boolean }[] = (await call(entry.url, 'GET', '/v1/metadata')).body?.brokers ?? []
      return brokers.length === 3 && brokers.every((b) => b.fenced !== true)
    }, 30_000, 'three brokers registered')
    const created = await call(entry.url, 'POST', '/v1/topics', { name: topic, partitions: 6, replicationFactor: 1 })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    await waitFor(async () => (await partitionsOf(entry.url)).every((p) => p.leader !== null), 30_000, 'every partition led')
    const placement = await partitionsOf(entry.url)
    // The victim: a broker other than the entry that hosts some partitions but not all.
    const victim = c.brokers.slice(1).find((b) => {
      const hosted = placement.filter((p) => p.replicas[0] === b.id).length
      return hosted > 0 && hosted < placement.length
    })
    assert.ok(victim !== undefined, `no broker to stop in ${JSON.stringify(placement)}`)
    const victimPartitions = placement.filter((p) => p.replicas[0] === victim.id).map((p) => p.partition).sort((a, b) => a - b)
    await c.kill(victim.id)

    // Keyless records round-robin, one partition per record: every partition gets five.
    const records = Array.from({ length: 30 }, (_, i) => ({ value: `r${i}` }))
    const first = await call(entry.url, 'POST', `/v1/topics/${topic}/records`, { records })
    assert.equal(first.status, 207, JSON.stringify(first.body))
    const livePartitions = placement.map((p) => p.partition).filter((p) => !victimPartitions.includes(p))
    assert.deepEqual(first.body.offsets.map((o: { partition: number }) => o.partition), livePartitions)
    for (const o of first.body.offsets) assert.equal(o.lastOffset - o.baseOffset + 1, 5, JSON.stringify(o))
    assert.deepEqual(first.body.failed.map((f: { partition: number }) => f.partition), victimPartitions)
    for (const f of first.body.failed) {
      assert.ok(['NOT_LEADER', 'TIMEOUT', 'NO_QUORUM'].includes(f.code), JSON.stringify(f))
      assert.equal(f.retriable, true, JSON.stringify(f))
      assert.equal(f.records.length, 5, JSON.stringify(f))
    }

    // The broker comes back; resend only the records the last answer names, until none is left.
    await c.start(victim.id)
    let pending: number[] = first.body.failed.flatMap((f: { records: number[] }) => f.records)
    const end = Date.now() + resendMsMax
    while (pending.length > 0) {
      assert.ok(Date.now() < end, `records ${pending.join(',')} still not written after ${resendMsMax} ms`)
      const r = await call(entry.url, 'POST', `/v1/topics/${topic}/records`, { records: pending.map((i) => records[i]!) })
      if (r.status === 200) break
      const failed: { records: number[]; retriable: boolean }[] = r.status === 207 ? r.body.failed : r.body.error?.failed
      assert.ok(Array.isArray(failed) && failed.every((f) => f.retriable), `${r.status} ${JSON.stringify(r.body)}`)
      // Indexes in an answer are into the request that was sent: map them back to the original records.
      pending = failed.flatMap((f) => f.records.map((i) => pending[i]!))
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.deepEqual(await valuesInTopic(c), records.map((r) => r.value).sort(), 'every record exactly once')
  } finally {
    await c.stopAll()
  }
})
