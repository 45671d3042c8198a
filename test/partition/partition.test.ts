/**
 * Partition replicas in one process: the real Raft core, the real log
 * (memory and on-disk sync mode), the real record batch format; messages go
 * through an in-process network (the TCP transport is tested on its own).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode, RillError } from '../../src/base/index.ts'
import { Role } from '../../src/raft/index.ts'
import { decodeBatch } from '../../src/wire/record-batch.ts'
import { batchOf, leaderOf, readAll, startCluster, until } from './helpers.ts'

test('produce assigns dense offsets and every replica serves the same records', async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => leader.produce(batchOf([`a${i}`, `b${i}`]), 'all')))
    const offsets = results.map((r) => r.baseOffset).sort((a, b) => a - b)
    assert.deepEqual(offsets, Array.from({ length: 50 }, (_, i) => i * 2), 'two records per batch, dense from 0')
    for (const r of results) assert.equal(r.lastOffset, r.baseOffset + 1)
    await until(() => [...c.replicas.values()].every((p) => p.state.highWatermark === 100))
    const views = await Promise.all([...c.replicas.values()].map((p) => readAll(p, 100)))
    assert.equal(views[0]!.length, 100)
    for (const v of views) assert.deepEqual(v, views[0])
  } finally {
    await c.stop()
  }
})

test('a follower refuses produce with NOT_LEADER and the leader id', async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    const follower = [...c.replicas.values()].find((p) => p !== leader)!
    await until(() => follower.raft.lead === leader.raft.id)
    await assert.rejects(follower.produce(batchOf(['x']), 'all'), (e: unknown) => {
      assert.ok(e instanceof RillError)
      assert.equal(e.code, ErrorCode.NOT_LEADER)
      assert.equal(e.details.leader, leader.raft.id)
      return true
    })
  } finally {
    await c.stop()
  }
})

test('idempotent producers: a retry gets its original offsets, a gap is refused', async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    const first = await leader.produce(batchOf(['p0', 'p1'], { id: 9, epoch: 0, seq: 0 }), 'all')
    const retry = await leader.produce(batchOf(['p0', 'p1'], { id: 9, epoch: 0, seq: 0 }), 'all')
    assert.deepEqual(retry, first)
    const next = await leader.produce(batchOf(['p2'], { id: 9, epoch: 0, seq: 2 }), 'all')
    assert.equal(next.baseOffset, first.lastOffset + 1)
    await assert.rejects(leader.produce(batchOf(['p9'], { id: 9, epoch: 0, seq: 9 }), 'all'), (e: unknown) => e instanceof RillError && e.code === ErrorCode.OUT_OF_ORDER_SEQUENCE)
    assert.equal(leader.state.highWatermark, 3, 'the refused batch changed nothing')
  } finally {
    await c.stop()
  }
})

test('fetch long-polls for new records and minCommitted makes a follower wait', async () => {
  const c = await startCluster()
  try {
    const leader = await leaderOf(c)
    const follower = [...c.replicas.values()].find((p) => p !== leader)!
    const polling = leader.fetch({ offset: 0, bytesMax: 1 << 20, waitMs: 2000 })
    const produced = await leader.produce(batchOf(['hello']), 'all')
    const got = await polling
    assert.equal(got.batches.length, 1)
    assert.equal(got.nextOffset, 1)
    const r = await follower.fetch({ offset: 0, bytesMax: 1 << 20, waitMs: 1000, minCommitted: produced.lastOffset + 1 })
    assert.equal(r.highWatermark >= 1, true)
    assert.equal(decodeBatch(r.batches[0]!).records[0]!.offset, 0)
    await assert.rejects(follower.fetch({ offset: 5, bytesMax: 1024, waitMs: 0 }), (e: unknown) => e instanceof RillError && e.code === ErrorCode.OFFSET_OUT_OF_RANGE)
    await assert.rejects(follower.fetch({ offset: 0, bytesMax: 1024, waitMs: 20, minCommitted: 1000 }), (e: unknown) => e instanceof RillError && e.code === ErrorCode.TIMEOUT)
  } finally {
    await c.stop()
  }
})

test('after the leader fails, a new leader continues the offsets and nothing acknowledged is lost', async () => {
  const c = await startCluster({ seed: 11 })
  try {
    const leader = await leaderOf(c)
    const acked: string[] = []
    for (let i = 0; i < 20; i++) {
      const r = await leader.produce(batchOf([`v${i}`]), 'all')
      acked.push(`${r.baseOffset}:v${i}`)
    }
    c.down.add(leader.raft.id)
    const next = await leaderOf(c)
    assert.notEqual(next, leader)
    assert.equal(next.raft.role, Role.Leader)
    for (let i = 20; i < 30; i++) {
      const r = await next.produce(batchOf([`v${i}`]), 'all')
      acked.push(`${r.baseOffset}:v${i}`)
    }
    const hw = next.state.highWatermark
    assert.equal(hw, 30)
    const view = await readAll(next, hw)
    assert.deepEqual(view, acked)
  } finally {
    await c.stop()
  }
})

test('sync mode on disk: everything acknowledged is there after a restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-partition-'))
  try {
    let c = await startCluster({ dir })
    const leader = await leaderOf(c)
    const acked: string[] = []
    for (let i = 0; i < 120; i++) {
      const r = await leader.produce(batchOf([`d${i}`]), i % 2 === 0 ? 'all' : 'leader')
      acked.push(`${r.baseOffset}:d${i}`)
    }
    await c.stop()
    c = await startCluster({ dir, seed: 99 })
    try {
      const again = await leaderOf(c)
      await until(() => again.state.highWatermark >= 120)
      const view = await readAll(again, again.state.highWatermark)
      assert.deepEqual(view.slice(0, 120), acked)
      const r = await again.produce(batchOf(['after']), 'all')
      assert.equal(r.baseOffset, again.state.highWatermark - 1)
    } finally {
      await c.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
