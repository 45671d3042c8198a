/**
 * Retention deletes whole old segments (never past the last snapshot), the
 * log start offset moves, reads below it are OFFSET_OUT_OF_RANGE, and a
 * follower that was away while its leader deleted what it needed catches up
 * through a snapshot and then serves the same records from there on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode, RillError } from '../../src/base/index.ts'
import { batchOf, leaderOf, readAll, startCluster, until } from './helpers.ts'

test('retention moves the log start; a follower behind it catches up through a snapshot', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-retention-'))
  const c = await startCluster({ dir, log: { segmentBytesMax: 4096, retentionBytes: 8192 }, snapshotEntries: 20 })
  try {
    const leader = await leaderOf(c)
    const lagging = [...c.replicas].find(([, p]) => p !== leader)![0]
    c.down.add(lagging)
    const payload = 'x'.repeat(200)
    for (let i = 0; i < 150; i++) await leader.produce(batchOf([`${i}:${payload}`]), 'all')
    let deleted = 0
    for (const p of c.replicas.values()) if (p !== c.replicas.get(lagging)) deleted += await p.applyRetention(Date.now())
    assert.ok(deleted > 0, 'segments were deleted')
    const start = leader.state.logStartOffset
    assert.ok(start > 0 && start < 150, `log start moved to ${start}`)
    await assert.rejects(leader.fetch({ offset: 0, bytesMax: 1 << 20, waitMs: 0 }), (e: unknown) => e instanceof RillError && e.code === ErrorCode.OFFSET_OUT_OF_RANGE)

    // The follower comes back: the entries it needs are gone, so it gets a snapshot.
    c.down.delete(lagging)
    const follower = c.replicas.get(lagging)!
    await until(() => follower.state.highWatermark === 150, 15_000)
    assert.ok(follower.state.logStartOffset > 0, `the follower's log starts after the snapshot it installed (${follower.state.logStartOffset})`)
    await leader.produce(batchOf(['after']), 'all')
    await until(() => follower.state.highWatermark === 151, 15_000)
    const from = Math.max(follower.state.logStartOffset, leader.state.logStartOffset)
    const fetchFrom = async (p: typeof leader): Promise<string[]> => (await readAll(p, 151, from)).filter((r) => Number(r.split(':')[0]) >= from)
    const mine = await fetchFrom(follower)
    const theirs = await fetchFrom(leader)
    assert.ok(mine.length > 0)
    assert.deepEqual(mine, theirs, 'same record at the same offset on both replicas')
  } finally {
    await c.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
