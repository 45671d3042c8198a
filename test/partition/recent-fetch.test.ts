/**
 * A fetch at the end of the log is answered from the replica's recent
 * entries (kept in memory for replication), not by reading the log: the
 * read went through the thread pool and was most of the time from produce
 * to a follower's long-poll answer (bench/trace.ts, fetch.read). A fetch
 * further back than the recent entries still reads the log, and both give
 * the same batches.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryLog } from '../../src/log/index.ts'
import { decodeBatch } from '../../src/wire/record-batch.ts'
import { batchOf, leaderOf, readAll, startCluster, until } from './helpers.ts'

/** Counts the log reads by offset of every MemoryLog while `fn` runs. */
async function countingLogReads<T>(fn: (reads: () => number) => Promise<T>): Promise<T> {
  const original = MemoryLog.prototype.readByOffset
  let n = 0
  MemoryLog.prototype.readByOffset = function (this: MemoryLog, options) {
    n++
    return original.call(this, options)
  }
  try {
    return await fn(() => n)
  } finally {
    MemoryLog.prototype.readByOffset = original
  }
}

const values = (batches: readonly Uint8Array[]): string[] =>
  batches.flatMap((b) => decodeBatch(b).records.map((r) => `${r.offset}:${new TextDecoder().decode(r.value)}`))

test('a fetch at the end of the log is served from the recent entries, on the leader and on the followers', async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    for (let i = 0; i < 20; i++) await leader.produce(batchOf([`a${i}`, `b${i}`]), 'all')
    await until(() => [...c.replicas.values()].every((p) => p.state.highWatermark === 40))
    await countingLogReads(async (reads) => {
      for (const p of c.replicas.values()) {
        const r = await p.fetch({ offset: 37, bytesMax: 1 << 20, waitMs: 0 })
        assert.deepEqual(values(r.batches), ['36:a18', '37:b18', '38:a19', '39:b19'], 'from the batch holding offset 37 on')
        assert.equal(r.nextOffset, 40)
        const one = await p.fetch({ offset: 38, bytesMax: 1, waitMs: 0 })
        assert.deepEqual(values(one.batches), ['38:a19', '39:b19'], 'at least one batch, however small bytesMax')
      }
      assert.equal(reads(), 0, 'no fetch read the log')
    })
  } finally {
    await c.stop()
  }
})

test("a follower's long poll at the end of the log is answered from the recent entries", async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    await leader.produce(batchOf(['first']), 'all')
    const follower = [...c.replicas.values()].find((p) => p !== leader)!
    await until(() => follower.state.highWatermark === 1)
    await countingLogReads(async (reads) => {
      const poll = follower.fetch({ offset: 1, bytesMax: 1 << 20, waitMs: 20_000 })
      await leader.produce(batchOf(['second']), 'all')
      const r = await poll
      assert.deepEqual(values(r.batches), ['1:second'])
      assert.equal(reads(), 0)
    })
  } finally {
    await c.stop()
  }
})

test('a fetch further back than the recent entries reach reads the log, and gets what the recent entries would give', async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    // More batches than a fetch looks back through its recent entries (recentScanMax, 256).
    const n = 300
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => leader.produce(batchOf([`v${i + k}`]), 'all')))
    await until(() => [...c.replicas.values()].every((p) => p.state.highWatermark === n))
    await countingLogReads(async (reads) => {
      const old = await leader.fetch({ offset: 0, bytesMax: 1 << 20, waitMs: 0 })
      assert.ok(reads() > 0, 'an old offset is read from the log')
      assert.equal(values(old.batches)[0], '0:v0')
    })
    // The whole log, read in pieces (recent entries near the end, the log further back), on every replica: the same records.
    const views = await Promise.all([...c.replicas.values()].map((p) => readAll(p, n)))
    const expected = Array.from({ length: n }, (_, i) => i)
    for (const v of views) assert.deepEqual(v.map((s) => Number(s.split(':')[0])), expected)
    for (const v of views) assert.deepEqual(v, views[0])
  } finally {
    await c.stop()
  }
})
