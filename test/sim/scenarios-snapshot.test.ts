/**
 * Snapshot scenarios, after the 6.824 (2021) lab 2D tests
 * (TestSnapshotBasic2D, TestSnapshotInstall2D,
 * TestSnapshotInstallUnreliable2D, TestSnapshotInstallCrash2D,
 * TestSnapshotInstallUnCrash2D, TestSnapshotInit2D).
 *
 * Every node snapshots (and compacts its log) every `snapshotEvery` applied
 * entries; the simulator's snapshot data is the whole applied history, so
 * it grows and travels in many 1 KiB InstallSnapshot chunks.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ids, logLength, newCluster, assertAckedEverywhere, Tally, testRandom, raftOf } from './helpers.ts'

const snapshotEvery = 10
/**
 * 6.824's MAXLOGSIZE: the log may not grow without bound. A node keeps at
 * most `snapshotEvery` applied entries past its snapshot, plus what it has
 * not applied yet (at most one burst of proposals, under 2 * snapshotEvery,
 * plus a few no-ops and probes).
 */
const logEntriesMax = 4 * snapshotEvery

interface SnapOptions {
  readonly seed: number
  readonly disconnect: boolean
  readonly reliable: boolean
  readonly crash: boolean
}

function snapCommon(o: SnapOptions): { tally: Tally } {
  const n = 3
  const tally = new Tally()
  const c = newCluster({ seed: o.seed, nodes: n, snapshotEvery, reliable: o.reliable }, tally)
  const rnd = testRandom(o.seed)
  const cmd = (): number => 1 + rnd.int(1_000_000_000)
  c.one(cmd(), n, true)
  let leader1 = c.checkOneLeader()

  for (let i = 0; i < 30; i++) {
    let victim = (leader1 % n) + 1
    let sender = leader1
    if (i % 3 === 1) {
      sender = victim
      victim = leader1
    }
    if (o.disconnect) {
      c.disconnect(victim)
      c.one(cmd(), n - 1, true)
    }
    if (o.crash) {
      c.crash(victim)
      c.one(cmd(), n - 1, true)
    }
    // Enough proposals to make every node snapshot at least once.
    const nn = snapshotEvery / 2 + rnd.int(snapshotEvery)
    for (let k = 0; k < nn; k++) c.start(sender, cmd())
    // Let the applier threads catch up with the Start()'s.
    if (o.disconnect || o.crash) c.one(cmd(), n - 1, true)
    else c.one(cmd(), n, true)

    for (const id of ids(c)) {
      const len = logLength(c, id)
      assert.ok(len <= logEntriesMax, `iteration ${i}: node ${id} keeps ${len} log entries (max ${logEntriesMax})`)
    }

    if (o.disconnect) {
      // Reconnect a follower that may need to install a snapshot.
      c.connect(victim)
      c.one(cmd(), n, true)
      leader1 = c.checkOneLeader()
    }
    if (o.crash) {
      c.restart(victim)
      c.connect(victim)
      c.one(cmd(), n, true)
      leader1 = c.checkOneLeader()
    }
  }
  c.reliable = true
  c.one(cmd(), n, true)
  assertAckedEverywhere(c, ids(c))
  return { tally }
}

test('snapshot basic (TestSnapshotBasic2D)', () => {
  snapCommon({ seed: 2401, disconnect: false, reliable: true, crash: false })
})

test('snapshot install (TestSnapshotInstall2D)', () => {
  const { tally } = snapCommon({ seed: 2402, disconnect: true, reliable: true, crash: false })
  // Each reconnected victim missed more than a snapshot's worth of entries.
  assert.ok(tally.snapshotInstalls >= 10, `only ${tally.snapshotInstalls} snapshots installed`)
  assert.ok(tally.count('Snap') > tally.snapshotInstalls, 'snapshots were not sent in chunks')
})

test('snapshot install unreliable (TestSnapshotInstallUnreliable2D)', () => {
  const { tally } = snapCommon({ seed: 2403, disconnect: true, reliable: false, crash: false })
  assert.ok(tally.snapshotInstalls >= 10, `only ${tally.snapshotInstalls} snapshots installed`)
})

test('snapshot install with crashes (TestSnapshotInstallCrash2D)', () => {
  const { tally } = snapCommon({ seed: 2404, disconnect: false, reliable: true, crash: true })
  assert.ok(tally.snapshotInstalls >= 10, `only ${tally.snapshotInstalls} snapshots installed`)
})

test('snapshot install unreliable with crashes (TestSnapshotInstallUnCrash2D)', () => {
  const { tally } = snapCommon({ seed: 2405, disconnect: false, reliable: false, crash: true })
  assert.ok(tally.snapshotInstalls >= 10, `only ${tally.snapshotInstalls} snapshots installed`)
})

test('restart from snapshot (TestSnapshotInit2D)', () => {
  const n = 3
  const c = newCluster({ seed: 2406, nodes: n, snapshotEvery })
  const rnd = testRandom(2406)
  const cmd = (): number => 1 + rnd.int(1_000_000_000)
  c.one(cmd(), n, true)
  // Enough entries to snapshot.
  for (let i = 0; i < snapshotEvery + 1; i++) c.one(cmd(), n, true)

  const restartAll = (): void => {
    for (let id = 1; id <= n; id++) c.crash(id)
    for (let id = 1; id <= n; id++) c.restart(id)
    for (let id = 1; id <= n; id++) {
      const snapIndex = c.node(id).storage.snapshot().meta.index
      assert.ok(snapIndex > 1, `node ${id} has no snapshot to restart from`)
      // The application comes back from the snapshot, not from replaying the log.
      assert.equal(c.node(id).app.applied, snapIndex, `node ${id} restarted at ${c.node(id).app.applied}, snapshot at ${snapIndex}`)
      assert.ok(raftOf(c, id).log.firstIndex() === snapIndex + 1)
    }
  }
  // Crash and restart all, then once more, with a new entry in between.
  restartAll()
  c.one(cmd(), n, true)
  restartAll()
  c.one(cmd(), n, true)
  assertAckedEverywhere(c, ids(c))
})
