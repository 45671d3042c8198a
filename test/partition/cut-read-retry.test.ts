/**
 * A follower's conflicting append over a segment whose reads fail (bad
 * sectors), on the real DiskLog over SimDisk and a virtual clock.
 *
 * Found by `npm run sim:cluster -- --seed 11`: broker 1 restarted, and its
 * partition log's first segment went bad (reads of bytes [64, 4160) failed
 * with EIO for ~2 s). The new leader sent entries 325.. of term 3 where the
 * follower held 2..327 of term 2; the append has to cut after 324 in the
 * middle of a term run, so DiskLog.#cut reads the segment from the sparse
 * index point before it (position 32) to find where entry 325 starts. That
 * read failed, the append rejected STORAGE_UNUSABLE, RaftGroup took it for a
 * failed write and stopped the replica for good: "replicas did not converge
 * within 30000 virtual ms: b1 follower t4 lead 3 hw 0". (No read hung: the
 * read-ahead settled, the group was closed by then.)
 *
 * Now the failed read says the log did not change (isCutReadFailure),
 * appends queued behind it fail with that error too, even one whose own cut
 * could read (before, that one went through and left the old term's entries
 * before the new ones: a log the leader never had), and
 * LogRaftStorage.persistMany persists the batch again after a backoff until
 * the disk reads, or until the storage closes (then it rejects at once).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { ErrorCode, SeededRandom, isRillError } from '../../src/base/index.ts'
import { isCutReadFailure, openLogStore, type PartitionLog } from '../../src/log/index.ts'
import { LogRaftStorage, MemorySnapshotStore } from '../../src/partition/index.ts'
import { collapse } from '../../src/partition/raft-storage.ts'
import type { Entry, Ready, Snapshot } from '../../src/raft/index.ts'
import { SimDisk } from '../../src/sim/disk.ts'
import { VirtualRuntime, type RuntimeScope } from '../../src/sim/runtime.ts'
import { entry } from '../log/helpers.ts'

const storeDir = '/var/lib/rill/logs'
const conf = { voters: [1, 2, 3], learners: [] }
const snapshot: Snapshot = { meta: { index: 0, term: 0, conf }, data: new Uint8Array(0) }

interface Rig {
  runtime: VirtualRuntime
  scope: RuntimeScope
  disk: SimDisk
  log: PartitionLog
  /** The log's first segment file. */
  segment: string
}

/**
 * A sync log holding 1..40 of term 2 in one segment (156 bytes an entry: entry i at 32 + (i - 1) x 156),
 * by default with one sparse-index point (entry 1 at 32).
 */
async function rig(indexIntervalBytes?: number): Promise<Rig> {
  const runtime = new VirtualRuntime()
  const disk = new SimDisk({ random: new SeededRandom(11), runtime, faults: { fsyncLatencyMs: [0.2, 2], readLatencyMs: [0.02, 0.3] } })
  const scope = runtime.scope()
  const log = await until(
    runtime,
    (async () => {
      const store = await openLogStore({ dir: storeDir, registry: new Registry(), io: disk.process(), runtime: scope })
      const log = await store.openLog({ name: 'p-0', mode: 'sync', ...(indexIntervalBytes === undefined ? {} : { indexIntervalBytes }) })
      await log.append(Array.from({ length: 40 }, (_, i) => entry(i + 1, 2, { bytes: 100 })))
      return log
    })(),
  )
  const dir = `${storeDir}/logs/p-0`
  const segment = `${dir}/${disk.readdirSync(dir).filter((n) => n.endsWith('.seg')).sort()[0]!}`
  return { runtime, scope, disk, log, segment }
}

/** Runs virtual time until `p` settles (at most `ms`); returns its outcome. */
async function until<T>(runtime: VirtualRuntime, p: Promise<T>, ms = 60_000): Promise<T> {
  const s = watch(p)
  const end = runtime.nowMs() + ms
  while (s.state === 'pending' && runtime.nowMs() < end) await runtime.runUntil(Math.min(end, runtime.nowMs() + 5))
  assert.notEqual(s.state, 'pending', `still pending after ${ms} virtual ms`)
  return p
}

function watch<T>(p: Promise<T>): { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } {
  const s: { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } = { state: 'pending' }
  p.then(
    () => (s.state = 'resolved'),
    (error: unknown) => {
      s.state = 'rejected'
      s.error = error
    },
  )
  return s
}

async function runFor(runtime: VirtualRuntime, ms: number): Promise<void> {
  const end = runtime.nowMs() + ms
  while (runtime.nowMs() < end) await runtime.runUntil(Math.min(end, runtime.nowMs() + 5))
}

function termsOf(log: PartitionLog, from: number, to: number): number[] {
  const out: number[] = []
  for (let i = from; i <= to; i++) out.push(log.term(i))
  return out
}

test('DiskLog: a conflicting append whose cut cannot read the segment fails with a coded, retryable error and changes nothing', async () => {
  const r = await rig()
  r.disk.badSectors(r.segment, 64, 64 + 4096)
  // Cut after 29, in the middle of the term-2 run: the position of 30 is known only by reading from 32.
  const first = watch(r.log.append(Array.from({ length: 6 }, (_, i) => entry(30 + i, 3, { bytes: 100 }))))
  const queued = watch(r.log.append([entry(36, 3, { bytes: 100 })]))
  await runFor(r.runtime, 50)
  assert.equal(first.state, 'rejected')
  assert.ok(isRillError(first.error, ErrorCode.STORAGE_UNUSABLE), `a coded error, got ${String(first.error)}`)
  assert.ok(isCutReadFailure(first.error), `the error says nothing changed (retry is safe): ${String(first.error)}`)
  assert.equal(queued.state, 'rejected')
  assert.ok(isCutReadFailure(queued.error), `an append queued behind it fails with the same coded error: ${String(queued.error)}`)
  assert.equal(r.log.lastIndex(), 40, 'the log did not change')
  assert.deepEqual(termsOf(r.log, 28, 31), [2, 2, 2, 2])

  r.disk.clearBadSectors()
  await until(r.runtime, r.log.append(Array.from({ length: 6 }, (_, i) => entry(30 + i, 3, { bytes: 100 }))))
  await until(r.runtime, r.log.append([entry(36, 3, { bytes: 100 })]))
  assert.equal(r.log.lastIndex(), 36)
  assert.deepEqual(termsOf(r.log, 28, 31), [2, 2, 3, 3])
  const got = await until(r.runtime, r.log.read({ indexStart: 29, bytesMax: 1 << 20 }))
  assert.deepEqual(
    got.map((e) => `${e.index}/${e.term}`),
    ['29/2', '30/3', '31/3', '32/3', '33/3', '34/3', '35/3', '36/3'],
  )
})

test('DiskLog: an append queued behind a failed cut is refused even when its own cut could read (no old entries left before new ones)', async () => {
  // Sparse-index points every ~2 entries: the cut after 19 reads from <= 2840 (bad), the cut after 35 from >= 5180 (good).
  const r = await rig(256)
  r.disk.badSectors(r.segment, 64, 64 + 4096)
  const first = watch(r.log.append(Array.from({ length: 16 }, (_, i) => entry(20 + i, 3, { bytes: 100 }))))
  const queued = watch(r.log.append([entry(36, 3, { bytes: 100 })]))
  await runFor(r.runtime, 50)
  assert.ok(isCutReadFailure(first.error), String(first.error))
  assert.ok(isCutReadFailure(queued.error), `refused with the failed cut's error: ${String(queued.error)}`)
  // Before: 36 of term 3 followed 20..35 of term 2, a log no leader had (matching at 36 would vouch for them).
  assert.equal(r.log.lastIndex(), 40)
  assert.deepEqual(termsOf(r.log, 35, 37), [2, 2, 2])
  r.disk.clearBadSectors()
  await until(r.runtime, r.log.append(Array.from({ length: 16 }, (_, i) => entry(20 + i, 3, { bytes: 100 }))))
  await until(r.runtime, r.log.append([entry(36, 3, { bytes: 100 })]))
  assert.deepEqual(termsOf(r.log, 19, 21), [2, 3, 3])
  assert.equal(r.log.lastIndex(), 36)
})

function storageOver(r: Rig): LogRaftStorage {
  return new LogRaftStorage({
    log: r.log,
    snapshots: new MemorySnapshotStore(),
    snapshot,
    recordMeta: (e: Entry) => ({ baseOffset: e.index * 10, recordCount: 1, timestampMinMs: 1_700_000_000_000, timestampMaxMs: 1_700_000_000_000 }),
    onLoaded: () => {},
    onFailed: () => {},
    runtime: r.scope,
  })
}

function ready(entries: { index: number; term: number }[], hardState: Ready['hardState'] = null): Ready {
  return {
    softState: null,
    hardState,
    snapshot: null,
    entries: entries.map((e) => ({ index: e.index, term: e.term, type: 0 as Entry['type'], data: entry(e.index, e.term, { bytes: 100 }).data })),
    committedEntries: [],
    messages: [],
    messagesAfterPersist: [],
    readStates: [],
  }
}

const conflicting = (): Ready[] => [
  ready(Array.from({ length: 6 }, (_, i) => ({ index: 30 + i, term: 3 }))),
  ready([{ index: 36, term: 3 }, { index: 37, term: 3 }], { term: 3, vote: 3, commit: 0 }),
]

test('LogRaftStorage.persistMany: a failed cut read is retried with a backoff until the disk reads, instead of stopping the group', async () => {
  const r = await rig()
  const storage = storageOver(r)
  r.disk.badSectors(r.segment, 64, 64 + 4096)
  const persisting = storage.persistMany(conflicting())
  const s = watch(persisting)
  await runFor(r.runtime, 1500)
  assert.equal(s.state, 'pending', `still trying while the sectors are bad (before the fix it rejected at once: ${String(s.error)})`)
  // 10, 20, 40, ... 640, 1000 ms: a handful of attempts, not a loop.
  assert.ok(storage.persistFailures >= 3 && storage.persistFailures <= 9, `${storage.persistFailures} attempts in 1.5 s`)
  assert.equal(r.log.lastIndex(), 40)

  r.disk.clearBadSectors()
  await until(r.runtime, persisting, 2000)
  assert.equal(storage.persistFailures, 0)
  assert.equal(r.log.lastIndex(), 37)
  assert.deepEqual(termsOf(r.log, 28, 31), [2, 2, 3, 3])
  assert.deepEqual(r.log.hardState(), { term: 3, vote: 3, commit: 0 })
})

test('LogRaftStorage.persistMany: close ends the retries at once (the batch rejects with the read error)', async () => {
  const r = await rig()
  const storage = storageOver(r)
  r.disk.badSectors(r.segment, 64, 64 + 4096)
  const persisting = storage.persistMany(conflicting())
  const s = watch(persisting)
  await runFor(r.runtime, 300)
  assert.equal(s.state, 'pending')
  storage.close()
  await runFor(r.runtime, 5)
  assert.equal(s.state, 'rejected', 'close ends the backoff without waiting for the disk')
  assert.ok(isCutReadFailure(s.error), String(s.error))
  assert.equal(r.log.lastIndex(), 40, 'nothing written')
})

test('LogRaftStorage.persistMany: other storage errors still reject (a failed write stops the group)', async () => {
  const r = await rig()
  const storage = storageOver(r)
  r.disk.setFaults({ capacityBytes: r.disk.usedBytes() })
  const persisting = storage.persistMany([ready([{ index: 41, term: 2 }])])
  const s = watch(persisting)
  await runFor(r.runtime, 50)
  assert.equal(s.state, 'rejected')
  assert.ok(isRillError(s.error) && !isCutReadFailure(s.error), String(s.error))
})

test('LogRaftStorage.persistMany: the retry writes what the batch leaves behind, not the batch again on top of the part that went through (sim:cluster seed 828)', async () => {
  // Seed 828: 171 and 172 of term 3 were written, 170 of term 4 could not cut (failing reads), 171 of
  // term 5 was refused behind it. A later retry cut and wrote 170/4 and 171/5, and the one after it
  // appended 171 of term 3 after 170 of term 4: an assertion, and the replica stopped for good.
  const r = await rig()
  const storage = storageOver(r)
  r.disk.badSectors(r.segment, 64, 64 + 4096)
  const batch = [
    ready([{ index: 41, term: 2 }, { index: 42, term: 2 }]),
    ready(Array.from({ length: 6 }, (_, i) => ({ index: 30 + i, term: 3 }))),
    ready([{ index: 36, term: 4 }], { term: 4, vote: 2, commit: 0 }),
  ]
  const persisting = storage.persistMany(batch)
  const s = watch(persisting)
  await runFor(r.runtime, 200)
  assert.equal(s.state, 'pending', String(s.error))
  assert.equal(r.log.lastIndex(), 42, '41 and 42 went through before the cut failed')
  r.disk.clearBadSectors()
  await until(r.runtime, persisting, 3000)
  assert.equal(r.log.lastIndex(), 36)
  assert.deepEqual(termsOf(r.log, 28, 36), [2, 2, 3, 3, 3, 3, 3, 3, 4])
  assert.deepEqual(r.log.hardState(), { term: 4, vote: 2, commit: 0 })
})

test('collapse: the last snapshot, then each index as the last append wrote it, then the last hard state', () => {
  const snap: Snapshot = { meta: { index: 50, term: 5, conf }, data: new Uint8Array(0) }
  const at = (rd: readonly { entries: readonly { index: number; term: number }[] }[]) => rd.map((p) => p.entries.map((e) => `${e.index}/${e.term}`).join(' '))
  assert.deepEqual(at(collapse([ready([{ index: 5, term: 1 }, { index: 6, term: 1 }]), ready([{ index: 6, term: 2 }, { index: 7, term: 2 }]), ready([{ index: 8, term: 2 }])])), ['5/1 6/2 7/2 8/2'])
  assert.deepEqual(at(collapse([ready([{ index: 5, term: 1 }, { index: 6, term: 1 }]), ready([{ index: 3, term: 2 }])])), ['3/2'])
  const withSnap = collapse([ready([{ index: 5, term: 1 }]), { ...ready([]), snapshot: snap }, ready([{ index: 51, term: 5 }], { term: 5, vote: 1, commit: 50 })])
  assert.equal(withSnap.length, 1)
  assert.equal(withSnap[0]!.snapshot, snap)
  assert.deepEqual(at(withSnap), ['51/5'])
  assert.deepEqual(withSnap[0]!.hardState, { term: 5, vote: 1, commit: 50 })
  assert.deepEqual(collapse([{ ...ready([]), hardState: { term: 2, vote: 0, commit: 0 } }]), [{ snapshot: null, entries: [], hardState: { term: 2, vote: 0, commit: 0 } }])
})
