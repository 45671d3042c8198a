// The partition snapshot store (FileSnapshotStore) on the simulator's disk:
// a save that resolved survives a power loss, directories and all; a save
// the power cut short leaves the old snapshot or the new one, never a torn
// one and never none (once one was saved). Seeded: a failure names its seed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SeededRandom } from '../../src/base/index.ts'
import { FileSnapshotStore } from '../../src/partition/index.ts'
import type { LogIndex, NodeId, Snapshot, Term } from '../../src/raft/index.ts'
import { SimDisk } from '../../src/sim/disk.ts'
import { VirtualRuntime } from '../../src/sim/runtime.ts'

const seedsTried = 60
/** Virtual ms within which a save or a load must settle. */
const settleMsMax = 10_000
const dir = '/var/lib/rill/snapshots/t-0'

function snapshot(index: number, bytes: number): Snapshot {
  const data = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) data[i] = (index * 13 + i) & 0xff
  return { meta: { index: index as LogIndex, term: 1 as Term, conf: { voters: [1, 2, 3] as NodeId[], learners: [] } }, data }
}

/** Comparable view of a snapshot (msgpack gives the data back as a Buffer). */
function plain(s: Snapshot | null): object | null {
  return s === null ? null : { meta: s.meta, data: Buffer.from(s.data).toString('hex') }
}

async function drive<T>(runtime: VirtualRuntime, p: Promise<T>): Promise<T> {
  let settled = false
  p.then(
    () => (settled = true),
    () => (settled = true),
  )
  const deadline = runtime.nowMs() + settleMsMax
  while (!settled && runtime.nowMs() < deadline) await runtime.runUntil(runtime.nowMs() + 1)
  assert.ok(settled, 'did not settle in virtual time')
  return p
}

test('a saved snapshot survives a power loss; one cut short leaves the old or the new, whole', async () => {
  const seen = new Set<number | null>()
  for (let seed = 1; seed <= seedsTried; seed++) {
    const runtime = new VirtualRuntime()
    const rng = new SeededRandom(seed)
    const disk = new SimDisk({ random: rng.fork(), runtime, faults: { fsyncLatencyMs: [0, 2] } })
    // The first save creates the directories: once it resolved, a power loss keeps it.
    await drive(runtime, new FileSnapshotStore(dir, { io: disk.process() }).save(snapshot(10, 3000)))
    disk.crash('power-loss')
    const first = await drive(runtime, new FileSnapshotStore(dir, { io: disk.process() }).load())
    assert.equal(first?.meta.index, 10, `seed ${seed}: a saved snapshot was lost`)
    assert.deepEqual(plain(first), plain(snapshot(10, 3000)))
    // A second save, the power going at a random moment during it (or after).
    const saving = new FileSnapshotStore(dir, { io: disk.process() }).save(snapshot(20, 5000))
    let saved = false
    void saving.then(() => (saved = true))
    await runtime.runUntil(runtime.nowMs() + rng.int(8))
    disk.crash('power-loss')
    const got = await drive(runtime, new FileSnapshotStore(dir, { io: disk.process() }).load())
    assert.ok(got !== null, `seed ${seed}: no snapshot after a save was cut short`)
    assert.deepEqual(plain(got), plain(snapshot(got.meta.index, got.meta.index === 10 ? 3000 : 5000)), `seed ${seed}: snapshot ${got.meta.index} damaged`)
    if (saved) assert.equal(got.meta.index, 20, `seed ${seed}: a save that resolved was lost`)
    seen.add(got.meta.index)
  }
  assert.ok(seen.has(10) && seen.has(20), `both outcomes of a cut-short save occur: ${[...seen].join(', ')}`)
})
