/**
 * A read-ahead that lands while a follower's conflicting append waits in the
 * log (before its cut) must not serve the replaced entries afterwards. On the
 * real DiskLog over SimDisk and a virtual clock.
 *
 * Found by `npm run sim:cluster -- --seed 10 --leader-acks` (and seed 7): a
 * restarted follower held 2..190 of term 2; the new leader sent 138 of term
 * 3 after 137 with commit 136. Persisting that Ready bumped LogRaftStorage's
 * read generation and queued the append (the cut of 138..190 waits for the
 * lowered durable mark, an fsync); the core meanwhile applied 2..136 and so
 * asked storage for them: a read-ahead from 2 started after the bump, read
 * the log as it still was (2..190, term 2, 138 included) and landed 0.2 ms
 * later, its generation current. Once the append was durable the core
 * advanced, asked storage for 137..138, and was served the OLD 138 from that
 * read-ahead: the follower applied its term-2 entry at an index where the
 * others applied the term-3 one ("partition state: batch at index 139 starts
 * at offset 344, expected 348", replicas never converged).
 *
 * The same holds within one persisted batch when a later Ready replaces what
 * an earlier one of the batch appended (the log's lastIndex lags the appends
 * issued, so that replacement was not even seen as one).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { SeededRandom } from '../../src/base/index.ts'
import { openLogStore, type PartitionLog } from '../../src/log/index.ts'
import { LogRaftStorage, MemorySnapshotStore } from '../../src/partition/index.ts'
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
  log: PartitionLog
  storage: LogRaftStorage
  loaded: { count: number }
  failed: unknown[]
}

/** A sync log holding 1..40 of term 2; reads are fast, fsyncs slow (a cut waits for its lowered mark). */
async function rig(wrap: (log: PartitionLog) => PartitionLog = (log) => log): Promise<Rig> {
  const runtime = new VirtualRuntime()
  const disk = new SimDisk({ random: new SeededRandom(7), runtime, faults: { fsyncLatencyMs: [2, 4], readLatencyMs: [0.02, 0.1] } })
  const scope = runtime.scope()
  const log = await until(
    runtime,
    (async () => {
      const store = await openLogStore({ dir: storeDir, registry: new Registry(), io: disk.process(), runtime: scope })
      const log = await store.openLog({ name: 'p-0', mode: 'sync' })
      await log.append(Array.from({ length: 40 }, (_, i) => entry(i + 1, 2, { bytes: 100 })))
      return log
    })(),
  )
  const loaded = { count: 0 }
  const failed: unknown[] = []
  const storage = new LogRaftStorage({
    log: wrap(log),
    snapshots: new MemorySnapshotStore(),
    snapshot,
    recordMeta: (e: Entry) => ({ baseOffset: e.index * 10, recordCount: 1, timestampMinMs: 1_700_000_000_000, timestampMaxMs: 1_700_000_000_000 }),
    onLoaded: () => loaded.count++,
    onFailed: (error) => failed.push(error),
    runtime: scope,
  })
  return { runtime, scope, log, storage, loaded, failed }
}

async function until<T>(runtime: VirtualRuntime, p: Promise<T>, ms = 60_000): Promise<T> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  const end = runtime.nowMs() + ms
  while (!done && runtime.nowMs() < end) await runtime.runUntil(Math.min(end, runtime.nowMs() + 0.05))
  assert.ok(done, `still pending after ${ms} virtual ms`)
  return p
}

/** Runs virtual time in small steps until `cond` holds. */
async function runUntilTrue(runtime: VirtualRuntime, cond: () => boolean, ms = 1000): Promise<void> {
  const end = runtime.nowMs() + ms
  while (!cond() && runtime.nowMs() < end) await runtime.runUntil(Math.min(end, runtime.nowMs() + 0.01))
  assert.ok(cond(), `condition not met within ${ms} virtual ms`)
}

function ready(entries: { index: number; term: number }[]): Ready {
  return {
    softState: null,
    hardState: null,
    snapshot: null,
    entries: entries.map((e) => ({ index: e.index, term: e.term, type: 0 as Entry['type'], data: entry(e.index, e.term, { bytes: 100 }).data })),
    committedEntries: [],
    messages: [],
    messagesAfterPersist: [],
    readStates: [],
  }
}

const run = (from: number, to: number, term: number): { index: number; term: number }[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ index: from + i, term }))

/** What storage serves for [lo, hi), loading through read-aheads and asking again for the rest, as the core does. */
async function entriesOf(r: Rig, lo: number, hi: number): Promise<string[]> {
  const out: string[] = []
  for (let attempt = 0; attempt < 50 && lo < hi; attempt++) {
    const got = r.storage.entries(lo, hi, 1 << 30)
    if (got !== null) {
      for (const e of got) out.push(`${e.index}/${e.term}`)
      lo += got.length
      continue
    }
    const before = r.loaded.count
    await runUntilTrue(r.runtime, () => r.loaded.count > before)
  }
  assert.equal(lo, hi, `entries up to ${hi} never loaded`)
  return out
}

test('LogRaftStorage: a read-ahead that landed before a replacing append cut the log does not serve the replaced entries', async () => {
  const r = await rig()
  // The follower's conflicting append: 30.. of term 3 replace 30..40 of term 2.
  const persisting = r.storage.persistMany([ready(run(30, 35, 3))])
  // Meanwhile the core applies committed entries below the conflict: storage reads ahead from 2.
  assert.equal(r.storage.entries(2, 30, 1 << 30), null)
  const before = r.loaded.count
  await runUntilTrue(r.runtime, () => r.loaded.count > before)
  assert.equal(r.log.term(30), 2, 'the read-ahead landed before the cut (the case under test)')
  await until(r.runtime, persisting)
  assert.equal(r.log.lastIndex(), 35)
  // The core advanced past the append: it asks storage for what it used to hold in unstable.
  const want = [...run(2, 29, 2), ...run(30, 35, 3)].map((e) => `${e.index}/${e.term}`)
  assert.deepEqual(await entriesOf(r, 2, 36), want)
  assert.deepEqual(await entriesOf(r, 29, 36), want.slice(27))
  assert.deepEqual(r.failed, [])
})

test('LogRaftStorage: within one batch, a Ready replacing what an earlier one appended drops what a read-ahead cached meanwhile', async () => {
  // The second append waits in the log's queue until released (as behind a slow write or WAL room).
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => (release = resolve))
  let appends = 0
  const r = await rig(
    (log) =>
      new Proxy(log, {
        get(target, key) {
          if (key === 'append') {
            return async (entries: Parameters<PartitionLog['append']>[0]) => {
              if (++appends === 2) await gate
              return target.append(entries)
            }
          }
          const v = Reflect.get(target, key, target) as unknown
          return typeof v === 'function' ? v.bind(target) : v
        },
      }),
  )
  // A leader's 41..45 of term 2, then (after it lost leadership) the new leader's 43.. of term 3, persisted together.
  const persisting = r.storage.persistMany([ready(run(41, 45, 2)), ready(run(43, 44, 3))])
  await runUntilTrue(r.runtime, () => r.log.lastIndex() === 45)
  // The core applies committed entries: storage reads ahead from 2, and gets the log as it is (..45 of term 2).
  assert.equal(r.storage.entries(2, 41, 1 << 30), null)
  const before = r.loaded.count
  await runUntilTrue(r.runtime, () => r.loaded.count > before)
  release()
  await until(r.runtime, persisting)
  assert.equal(r.log.lastIndex(), 44)
  assert.equal(r.log.term(43), 3)
  const want = [...run(40, 42, 2), ...run(43, 44, 3)].map((e) => `${e.index}/${e.term}`)
  assert.deepEqual(await entriesOf(r, 40, 45), want)
  assert.deepEqual(r.failed, [])
})
