/**
 * Regressions found in review, each a scenario that once broke:
 * - a new leader after retention probing a lagging follower (the term of the
 *   index before the retained log start is unknown: it must send a snapshot,
 *   not throw and take the broker down);
 * - a retry of a batch that was accepted but lost to a leader change must
 *   not be acknowledged with the offsets another producer's record got;
 * - a follower that installed a snapshot has its log start at the snapshot,
 *   never serving offsets its log does not hold;
 * - async mode after a power loss: a snapshot ahead of the log.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode, RillError, SeededRandom } from '../../src/base/index.ts'
import { MemoryLog } from '../../src/log/index.ts'
import { MemorySnapshotStore, Partition, PartitionState } from '../../src/partition/index.ts'
import { message, MessageType } from '../../src/raft/index.ts'
import { batchOf, codec, leaderOf, readAll, startCluster, until } from './helpers.ts'

const payload = 'x'.repeat(200)

test('a new leader after retention brings a lagging follower back through a snapshot', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-reg-'))
  const c = await startCluster({ dir, log: { segmentBytesMax: 4096, retentionBytes: 8192 }, snapshotEntries: 20 })
  try {
    const leader = await leaderOf(c)
    const leaderId = [...c.replicas].find(([, p]) => p === leader)![0]
    const [lagging, next] = [...c.replicas.keys()].filter((id) => id !== leaderId) as [number, number]
    for (let i = 0; i < 10; i++) await leader.produce(batchOf([`${i}:${payload}`]), 'all')
    await until(() => c.replicas.get(lagging)!.state.highWatermark === 10)
    c.down.add(lagging)
    for (let i = 10; i < 150; i++) await leader.produce(batchOf([`${i}:${payload}`]), 'all')
    const nb = c.replicas.get(next)!
    await until(() => nb.state.highWatermark === 150)
    assert.ok((await nb.applyRetention(Date.now())) > 0)
    leader.transferLeader(next)
    await until(() => nb.isReadyLeader(), 5000)
    c.down.delete(lagging)
    const follower = c.replicas.get(lagging)!
    await until(() => follower.state.highWatermark === 150, 15_000)
    assert.equal(follower.failure, null)
    assert.equal(nb.failure, null)
  } finally {
    await c.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('a retried batch lost to a leader change is not acknowledged with another record’s offset', async () => {
  const c = await startCluster()
  try {
    const l1 = await leaderOf(c)
    const l1id = [...c.replicas].find(([, p]) => p === l1)![0]
    await l1.produce(batchOf(['warm']), 'all')
    c.down.add(l1id)
    const producer = { id: 42, epoch: 0, seq: 0 }
    const first = l1.produce(batchOf(['B'], producer), 'all').then(
      (r) => r,
      (e: unknown) => e,
    )
    const retry = l1.produce(batchOf(['B'], producer), 'all').then(
      (r) => r,
      (e: unknown) => e,
    )
    const l2 = await leaderOf(c)
    await l2.produce(batchOf(['X-other-producer']), 'all')
    c.down.delete(l1id)
    for (const outcome of [await first, await retry]) {
      assert.ok(outcome instanceof RillError && outcome.code === ErrorCode.NOT_LEADER, `expected NOT_LEADER, got ${JSON.stringify(outcome)}`)
    }
    await until(() => l1.state.highWatermark === 2)
    assert.deepEqual(await readAll(l1, 2), ['0:warm', '1:X-other-producer'])
  } finally {
    await c.stop()
  }
})

test('a follower that installed a snapshot starts its log there and serves nothing before it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-reg-'))
  const c = await startCluster({ dir, log: { segmentBytesMax: 4096, retentionBytes: 8192 }, snapshotEntries: 20 })
  try {
    const leader = await leaderOf(c)
    const lagging = [...c.replicas].find(([, p]) => p !== leader)![0]
    for (let i = 0; i < 10; i++) await leader.produce(batchOf([`${i}:${payload}`]), 'all')
    await until(() => c.replicas.get(lagging)!.state.highWatermark === 10)
    c.down.add(lagging)
    for (let i = 10; i < 150; i++) await leader.produce(batchOf([`${i}:${payload}`]), 'all')
    for (const p of c.replicas.values()) if (p !== c.replicas.get(lagging)) await p.applyRetention(Date.now())
    c.down.delete(lagging)
    const follower = c.replicas.get(lagging)!
    await until(() => follower.state.highWatermark === 150, 15_000)
    const start = follower.state.logStartOffset
    assert.ok(start >= leader.state.logStartOffset && start > 10, `follower log start ${start}`)
    await assert.rejects(follower.fetch({ offset: 0, bytesMax: 1 << 20, waitMs: 0 }), (e: unknown) => e instanceof RillError && e.code === ErrorCode.OFFSET_OUT_OF_RANGE)
    await leader.produce(batchOf(['150:after']), 'all')
    await until(() => follower.state.highWatermark === 151, 15_000)
    const mine = await readAll(follower, 151, start)
    assert.equal(mine[0]!.split(':')[0], String(start), 'the first record served is at the log start')
    assert.deepEqual(mine, await readAll(leader, 151, start))
  } finally {
    await c.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

test('async power loss: a snapshot ahead of the log does not leave the replica dead', async () => {
  const log = new MemoryLog({ name: 'x' })
  await log.compact({ index: 1, term: 1 })
  const entries = []
  for (let i = 2; i <= 20; i++) entries.push({ index: i, term: 2, type: 0, data: new Uint8Array(0), baseOffset: 0, recordCount: 0, timestampMinMs: 0, timestampMaxMs: 0 })
  await log.append(entries)
  await log.setHardState({ term: 2, vote: 1, commit: 20 })
  const snapshots = new MemorySnapshotStore()
  const state = new PartitionState()
  state.appliedIndex = 30
  await snapshots.save({ meta: { index: 30, term: 2, conf: { voters: [1, 2, 3], learners: [] } }, data: state.snapshot() })
  const p = await Partition.open({ group: 't/0', replicaId: 1, log, snapshots, bootstrap: { voters: [1, 2, 3], learners: [] }, codec, random: new SeededRandom(1), send: () => {} })
  try {
    assert.equal(p.raft.log.firstIndex(), 31, 'the log continues after the snapshot')
    p.step(message({ type: MessageType.App, from: 2, to: 1, term: 3, logTerm: 2, index: 30, entries: [{ index: 31, term: 3, type: 0, data: new Uint8Array(0) }], commit: 31 }))
    await until(() => p.raft.log.committed === 31)
    assert.equal(p.failure, null)
  } finally {
    await p.close()
  }
})
