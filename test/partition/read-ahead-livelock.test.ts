/**
 * The read-ahead livelock seen in CI (a broker child at 97% CPU for 12
 * minutes, every stack sample the same loop):
 *
 *   LogRaftStorage.#startReadAhead ← entries ← RaftLog.slice ← nextCommittedEntries
 *     ← Raft.ready ← RaftGroup.process ← processOrFail ← onLoaded ← (the read-ahead's .finally)
 *
 * `entries(lo, hi)` misses the tail and the last read-ahead, starts a
 * read-ahead at `lo` and returns null; when the read settles `onLoaded` fires
 * at once, whatever it loaded, and the core asks for the same `lo` again. If
 * the log cannot serve `lo` the same way every time, that never ends:
 *
 *  - the read rejects every time (raft-storage.ts: the rejection handler sets
 *    #ahead = [] and the .finally calls onLoaded): `lo` below the log's first
 *    index (OFFSET_OUT_OF_RANGE), which LogRaftStorage.firstIndex() allows
 *    whenever the snapshot is older than the log start (min(log first,
 *    snapshot + 1)); or a damaged entry anywhere in the 4 MiB read
 *    (STORAGE_CORRUPT: the good prefix before it is thrown away too);
 *  - the read resolves [] every time: `lo` past the log's last index, which
 *    LogRaftStorage.lastIndex() allows whenever the snapshot is past the log end.
 *
 * When the read settles without I/O (OFFSET_OUT_OF_RANGE is thrown before any
 * I/O; [] past the end; every MemoryLog read) the loop is made of microtasks
 * only: the event loop never turns again (no timer, no socket, no tick), which
 * is why the broker could neither recover nor answer.
 *
 * Each test drives the storage the way RaftGroup does (onLoaded → ask again)
 * for a bounded number of rounds and a bounded time, and counts the reads the
 * storage starts at the same index. Healthy: one read-ahead, then served.
 * Before the fix each livelock case started one read per round until the
 * bound (1000 reads in 28-230 ms); now a read that cannot succeed stops the
 * group with its error (onFailed) after one read, and a failing disk is
 * retried after a backoff on the clock. The whole-broker simulator
 * reproduces the loop too: `npm run sim:cluster -- --seed 1 --faults
 * bad-sectors` (test/sim/broker-sim.test.ts keeps that seed).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { ErrorCode, RillError, SeededRandom } from '../../src/base/index.ts'
import { MemoryLog, openLogStore, type EntryToAppend, type LogStore, type PartitionLog } from '../../src/log/index.ts'
import { LogRaftStorage, MemorySnapshotStore, RaftGroup } from '../../src/partition/index.ts'
import type { Entry, Snapshot } from '../../src/raft/index.ts'

/** Rounds of "onLoaded → ask again" before the driver gives up (the bug makes every round start a read). */
const roundsMax = 1000
/** Wall-clock bound of one drive; a fixed storage that backs off through a timer is measured over this window. */
const windowMs = 250
/** Read-aheads at the same index a healthy storage may start in one window (a backoff may retry a few times). */
const readsAllowed = 25

const conf = { voters: [1], learners: [] }
/** The bootstrap snapshot a founding replica starts from (group.ts: bootstrapSnapshot). */
const bootstrap: Snapshot = { meta: { index: 1, term: 1, conf }, data: new Uint8Array(0) }
const zeroMeta = { baseOffset: 0, recordCount: 0, timestampMinMs: 0, timestampMaxMs: 0 }

function entryAt(index: number, term = 1, bytes = 100): EntryToAppend {
  const data = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) data[i] = (index * 31 + term * 7 + i) & 0xff
  return { index, term, type: 0, data, baseOffset: index * 10, recordCount: 1, timestampMinMs: 1_700_000_000_000 + index, timestampMaxMs: 1_700_000_000_000 + index }
}

function entriesFrom(first: number, last: number): EntryToAppend[] {
  const out: EntryToAppend[] = []
  for (let i = first; i <= last; i++) out.push(entryAt(i))
  return out
}

/** Counts every `read` the storage starts, by indexStart. */
function countReads(log: PartitionLog): number[] {
  const starts: number[] = []
  const real = log.read.bind(log)
  ;(log as { read: PartitionLog['read'] }).read = (o) => {
    starts.push(o.indexStart)
    return real(o)
  }
  return starts
}

interface Drive {
  /** What the last ask returned (null: never served). */
  readonly served: Entry[] | null
  readonly error: unknown
  /** Asks made (one per onLoaded, plus the first). */
  readonly asks: number
  /** read() calls at `lo`. */
  readonly readsAtLo: number
  /** read() calls at `lo` made before the event loop could run one setImmediate; null if it never ran during the drive. */
  readonly readsBeforeEventLoopTurned: number | null
  readonly ms: number
}

/**
 * Asks `entries(lo, hi)` like Raft.ready does (nextCommittedEntries), and again
 * each time `onLoaded` fires (RaftGroup.onLoaded → processOrFail → ready), until
 * it is served, `roundsMax` asks were made, or `windowMs` passed. Always ends:
 * the round bound ends a microtask-only loop (which a timer could not).
 */
function drive(h: { storage: LogRaftStorage; starts: number[]; setOnLoaded: (f: () => void) => void }, lo: number, hi: number): Promise<Drive> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const readsAt = (): number => h.starts.filter((s) => s === lo).length
    let asks = 0
    let done = false
    let turned: number | null = null
    setImmediate(() => {
      turned = readsAt()
    })
    const finish = (served: Entry[] | null, error: unknown): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      h.setOnLoaded(() => {})
      // Stops the read-ahead under way from calling onLoaded again.
      h.storage.close()
      resolve({ served, error, asks, readsAtLo: readsAt(), readsBeforeEventLoopTurned: turned, ms: Math.round(performance.now() - t0) })
    }
    const timer = setTimeout(() => finish(null, undefined), windowMs)
    const ask = (): void => {
      if (done) return
      asks++
      let got: Entry[] | null
      try {
        got = h.storage.entries(lo, hi, 64 << 20)
      } catch (error) {
        finish(null, error)
        return
      }
      if (got !== null) finish(got, undefined)
      else if (asks >= roundsMax) finish(null, undefined)
    }
    h.setOnLoaded(ask)
    ask()
  })
}

function storageOver(log: PartitionLog, snapshot: Snapshot): { storage: LogRaftStorage; starts: number[]; failures: RillError[]; setOnLoaded: (f: () => void) => void } {
  const starts = countReads(log)
  const failures: RillError[] = []
  let onLoaded = (): void => {}
  const storage = new LogRaftStorage({
    log,
    snapshots: new MemorySnapshotStore(),
    snapshot,
    recordMeta: () => zeroMeta,
    onLoaded: () => onLoaded(),
    onFailed: (e) => failures.push(e),
  })
  return { storage, starts, failures, setOnLoaded: (f) => (onLoaded = f) }
}

function describeDrive(d: Drive): string {
  const loop = d.readsBeforeEventLoopTurned === null ? 'the event loop never turned during the drive' : `the event loop turned after ${d.readsBeforeEventLoopTurned} reads`
  return `${d.readsAtLo} read-aheads at the same index in ${d.asks} asks / ${d.ms} ms, served: ${d.served === null ? 'never' : d.served.length}; ${loop}${d.error === undefined ? '' : `; entries() threw ${String(d.error)}`}`
}

async function withStore<T>(tag: string, fn: (store: LogStore, dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), `rill-readahead-${tag}-`))
  try {
    const store = await openLogStore({ dir, registry: new Registry() })
    try {
      return await fn(store, dir)
    } finally {
      await store.close()
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** A sync DiskLog continuing after the bootstrap snapshot (index 1), holding entries 2..last in ~1 KiB segments. */
async function diskLog(store: LogStore, last: number, extra: { retentionBytes?: number } = {}): Promise<PartitionLog> {
  const log = await store.openLog({ name: 'p-0', mode: 'sync', segmentBytesMax: 1024, indexIntervalBytes: 256, ...extra })
  await log.compact({ index: 1, term: 1 })
  for (let i = 2; i <= last; i += 20) await log.append(entriesFrom(i, Math.min(last, i + 19)))
  return log
}

test('control: a read-ahead of entries on disk serves them after one read', async () => {
  await withStore('control', async (store) => {
    const log = await diskLog(store, 200)
    const h = storageOver(log, bootstrap)
    const d = await drive(h, 2, 201)
    assert.ok(d.served !== null && d.served[0]!.index === 2, describeDrive(d))
    assert.equal(d.readsAtLo, 1, describeDrive(d))
  })
})

/*
 * (f)/(b) lo below the log's first index. LogRaftStorage.firstIndex() is
 * min(log.firstIndex(), snapshot + 1): when the log starts after snapshot + 1,
 * the core (applied = snapshot index) asks for snapshot + 1, entries()' range
 * check passes, and every read throws OFFSET_OUT_OF_RANGE in checkReadStart,
 * before any I/O. Here: retention deleted segments up to index 120 (as
 * Partition.applyRetention allows once the snapshot was at 120), and the
 * replica then opened with the bootstrap snapshot (index 1) — what
 * RaftGroup.open does when the snapshot file is missing (load() → null) — or,
 * the same state, a crash lost the log's first segments.
 */
test('(f) snapshot older than the log start: the core asks below the first index, the read rejects every time (disk)', async () => {
  await withStore('below-first', async (store) => {
    const log = await diskLog(store, 200, { retentionBytes: 4096 })
    const r = await log.applyRetention({ indexAllowed: 120, nowMs: Date.now() })
    assert.ok(r.segmentsDeleted > 0 && log.firstIndex() > 2, `retention moved the first index to ${log.firstIndex()}`)
    const h = storageOver(log, bootstrap)
    assert.equal(h.storage.firstIndex(), 2, 'storage claims entries from snapshot + 1')
    const d = await drive(h, 2, 201)
    assert.ok(d.readsAtLo <= readsAllowed, `log first index ${log.firstIndex()}, asked from 2: ${describeDrive(d)}`)
    assert.equal(h.failures[0]?.code, ErrorCode.OFFSET_OUT_OF_RANGE, 'the group is stopped with the reason')
  })
})

test('(f) the same in memory mode: every read rejects in a microtask', async () => {
  const log = new MemoryLog({ name: 'm', retentionBytes: 4096 })
  await log.compact({ index: 1, term: 1 })
  await log.append(entriesFrom(2, 200))
  await log.applyRetention({ indexAllowed: 120, nowMs: Date.now() })
  assert.ok(log.firstIndex() > 2)
  const h = storageOver(log, bootstrap)
  const d = await drive(h, 2, 201)
  assert.ok(d.readsAtLo <= readsAllowed, `log first index ${log.firstIndex()}, asked from 2: ${describeDrive(d)}`)
  assert.equal(h.failures[0]?.code, ErrorCode.OFFSET_OUT_OF_RANGE, 'the group is stopped with the reason')
})

/*
 * (b) A damaged entry. A segment sealed and fsynced before the last clean
 * close is trusted at open through its index file (not scanned), so damage in
 * it shows only when read: DiskLog.read throws STORAGE_CORRUPT for the whole
 * read — the good entries before the damaged one are dropped too — and the
 * same read fails the same way every time. Each round does real I/O here (the
 * event loop still turns), but the loop never ends and re-reads 4 MiB chunks.
 */
test('(b) a damaged entry inside the read-ahead: every read rejects STORAGE_CORRUPT, the good prefix is never served', async () => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'rill-readahead-corrupt-'))
  try {
    let store = await openLogStore({ dir, registry: new Registry() })
    await diskLog(store, 60)
    await store.close()
    // Flip one body byte of entry 6 in its segment file.
    const logDir = join(dir, 'logs', 'p-0')
    const body = Buffer.from(entryAt(6).data)
    let flipped = false
    for (const name of fs.readdirSync(logDir).filter((n) => n.endsWith('.seg'))) {
      const bytes = fs.readFileSync(join(logDir, name))
      const at = bytes.indexOf(body)
      if (at < 0) continue
      bytes[at + 10]! ^= 0xff
      fs.writeFileSync(join(logDir, name), bytes)
      flipped = true
    }
    assert.ok(flipped, 'entry 6 found on disk')
    store = await openLogStore({ dir, registry: new Registry() })
    try {
      const log = await store.openLog({ name: 'p-0', mode: 'sync', segmentBytesMax: 1024, indexIntervalBytes: 256 })
      assert.equal(log.damage, undefined, 'the segment was trusted at open')
      assert.equal(log.lastIndex(), 60)
      const h = storageOver(log, bootstrap)
      const d = await drive(h, 2, 61)
      assert.ok(d.readsAtLo <= readsAllowed, `entry 6 damaged, asked from 2 (entries 2..5 are intact): ${describeDrive(d)}`)
      assert.equal(h.failures[0]?.code, ErrorCode.STORAGE_CORRUPT, 'the group is stopped with the damage')
    } finally {
      await store.close()
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

/*
 * (a) The read resolves [] every time: lo past the log's last index, which
 * LogRaftStorage.lastIndex() (max(log last, snapshot)) allows when the
 * snapshot is past the log end while the group runs. RaftGroup.open repairs
 * that state at open (group.ts: compact when the log ends before the
 * snapshot) and installSnapshot's window is guarded by the core's unstable
 * snapshot, so this one needs a broken invariant; it is here because the fix
 * must not spin on an empty result either.
 */
test('(a) snapshot past the log end: the read resolves [] every time', async () => {
  const log = new MemoryLog({ name: 'm' })
  await log.compact({ index: 1, term: 1 })
  await log.append(entriesFrom(2, 20))
  const h = storageOver(log, { meta: { index: 30, term: 1, conf }, data: new Uint8Array(0) })
  assert.equal(h.storage.lastIndex(), 30)
  const d = await drive(h, 21, 31)
  assert.ok(d.readsAtLo <= readsAllowed, `log ends at 20, asked from 21: ${describeDrive(d)}`)
  assert.equal(h.failures[0]?.code, ErrorCode.STORAGE_CORRUPT, 'the group is stopped: the log does not hold what it claims')
})

test('a disk whose reads fail (EIO) is retried after a backoff, and served once it reads again', async () => {
  const log = new MemoryLog({ name: 'm' })
  await log.compact({ index: 1, term: 1 })
  await log.append(entriesFrom(2, 20))
  let failing = true
  const real = log.read.bind(log)
  ;(log as { read: PartitionLog['read'] }).read = (o) =>
    failing ? Promise.reject(new RillError(ErrorCode.STORAGE_UNUSABLE, 'EIO: i/o error, read')) : real(o)
  const h = storageOver(log, bootstrap)
  const d = await drive(h, 2, 21)
  assert.equal(d.served, null)
  assert.ok(d.readsAtLo >= 2 && d.readsAtLo <= 8, `retried with a backoff (10, 20, 40, ... ms): ${describeDrive(d)}`)
  assert.equal(h.failures.length, 0, 'a failing disk does not stop the group')
  failing = false
  const h2 = storageOver(log, bootstrap)
  const d2 = await drive(h2, 2, 21)
  assert.equal(d2.served?.[0]?.index, 2, describeDrive(d2))
})

/*
 * The whole loop as the CI stack samples show it, through the real
 * RaftGroup: a single-voter group opened over the log of the (f) case with
 * its hard state's commit at 200 applies from snapshot + 1 = 2 at once.
 * read() is wrapped to count (and after `roundsMax` calls returns a promise
 * that never settles, which was the only thing that stopped the loop before
 * the fix).
 */
test('RaftGroup: a replica whose snapshot is older than its log start stops with the reason instead of spinning in onLoaded → process → ready → entries', async () => {
  await withStore('group', async (store) => {
    const log = await diskLog(store, 200, { retentionBytes: 4096 })
    await log.setHardState({ term: 1, vote: 1, commit: 200 })
    await log.applyRetention({ indexAllowed: 120, nowMs: Date.now() })
    const first = log.firstIndex()
    assert.ok(first > 2)
    const starts: number[] = []
    let stack = ''
    const real = log.read.bind(log)
    ;(log as { read: PartitionLog['read'] }).read = (o) => {
      starts.push(o.indexStart)
      if (starts.length === 100) stack = new Error('read-ahead').stack ?? ''
      if (starts.length >= roundsMax) return new Promise(() => {})
      return real(o)
    }
    const snapshots = new MemorySnapshotStore()
    await snapshots.save(bootstrap)
    let applied = 1
    let turned: number | null = null
    const group = await RaftGroup.open({
      group: 'p/0',
      replicaId: 1,
      log,
      snapshots,
      bootstrap: conf,
      random: new SeededRandom(1),
      send: () => {},
      recordMeta: () => zeroMeta,
      machine: {
        apply: (es) => {
          applied = es.at(-1)!.index
        },
        restore: () => {},
        snapshotData: () => new Uint8Array(0),
        appliedIndex: () => applied,
      },
    })
    setImmediate(() => {
      turned = starts.length
    })
    try {
      await new Promise((r) => setTimeout(r, windowMs))
      const atTwo = starts.filter((s) => s === 2).length
      const loop = turned === null ? 'the event loop never turned' : `the event loop turned after ${turned} reads`
      assert.equal(group.failure?.code, ErrorCode.OFFSET_OUT_OF_RANGE, 'the replica stopped with the reason')
      assert.ok(
        atTwo <= readsAllowed,
        `log first index ${first}, snapshot 1, commit 200: ${atTwo} reads at index 2 in ${windowMs} ms (${loop}), applied ${applied}, failure ${String(group.failure)}\n` +
          `stack of read #100:\n${stack.split('\n').slice(1, 12).join('\n')}`,
      )
    } finally {
      await group.close()
    }
  })
})
