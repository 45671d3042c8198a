// Model-based test: random appends (sequential and concurrent, with
// conflicts), truncations, compactions, clean reopens and crashes on two
// sync logs sharing the store's WAL, plus one async log, against an
// in-memory model. A crash abandons the store with appends in flight, then
// tears every file beyond what was fsynced (cut at a random position,
// garbage over the unsynced part, unsynced segments deleted). After reopen:
// every append acknowledged in sync mode is there, byte for byte; anything
// beyond it is a prefix of what was in flight; the async log serves only
// entries that were written. Seeded: a failure prints its seed and replays.
//
// A crash may come while a WAL cycle's fsyncs run (the store's abandon
// counts the cycle in flight as not done), so the WAL tail, the segment
// bytes of direct flushes and their `flushed` records are torn in every
// combination: record kept and segment torn, segment kept and record torn,
// both, neither. Seeds rotate the direct-flush threshold: off (every entry
// through the WAL), 600 bytes (mixed), 1 byte (every sync append direct).
//
// A seed fixes the operations, not their interleaving with real I/O and the
// async flusher's timer: a race may fail one run of a seed and pass the next.
// Knobs (env):
//   LOG_MODEL_SEEDS=N        seeds 1..N (default 24)
//   LOG_MODEL_FROM=k         start at seed k instead of 1
//   LOG_MODEL_SEED=n         seed n only
//   LOG_MODEL_TRACE=1        print each step with the marks and file sizes
//   LOG_MODEL_IO_DELAYS=1    every fsync waits a seeded random 0-3 ms before
//                            and after: widens race windows (hunting on an
//                            idle machine; a race found this way gets a
//                            directed test, see crash-races.test.ts)
//   LOG_MODEL_KEEP_GOING=1   run every seed, list the failed ones at the end
// Hunting: LOG_MODEL_IO_DELAYS=1 LOG_MODEL_KEEP_GOING=1 LOG_MODEL_SEEDS=300,
// several processes at once with LOG_MODEL_FROM apart, plus a CPU burner.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { join } from 'node:path'
import { SeededRandom } from '../../src/base/index.ts'
import { nodeIo, type CrashImage, type EntryToAppend, type LogIo, type LogStore, type Mark, type PartitionLog } from '../../src/log/index.ts'
import { entry, plain, store, tempDir } from './helpers.ts'

const seeds = Number(process.env.LOG_MODEL_SEEDS ?? 24)
const ioDelays = process.env.LOG_MODEL_IO_DELAYS === '1'
const stepsPerSeed = 70
const syncNames = ['a', 'b'] as const
/** Direct-flush thresholds, by seed. */
const directBytesMins = [Infinity, 600, 1] as const

interface Model {
  first: number
  start: { index: number; term: number }
  entries: EntryToAppend[] // entries[i] has index first + i
}

function modelLast(m: Model): number {
  return m.first + m.entries.length - 1
}

function modelTerm(m: Model, index: number): number {
  if (index === m.first - 1) return index === m.start.index ? m.start.term : index === 0 ? 0 : m.entries[0]?.term ?? 0
  return m.entries[index - m.first]!.term
}

function applyAppend(m: Model, batch: EntryToAppend[]): void {
  m.entries.length = batch[0]!.index - m.first
  m.entries.push(...batch)
}

async function checkLog(log: PartitionLog, m: Model, where: string): Promise<void> {
  assert.equal(log.firstIndex(), m.first, `${where}: firstIndex`)
  assert.equal(log.lastIndex(), modelLast(m), `${where}: lastIndex`)
  const got = log.lastIndex() >= log.firstIndex() ? await log.read({ indexStart: m.first, bytesMax: 1e9 }) : []
  assert.deepEqual(got.map(plain), m.entries.map(plain), `${where}: entries`)
  for (const e of m.entries) assert.equal(log.term(e.index), e.term, `${where}: term(${e.index})`)
  if (m.first > 1) assert.equal(log.term(m.first - 1), modelTerm(m, m.first - 1), `${where}: term(first - 1)`)
}

function randomBatch(rng: SeededRandom, m: Model, conflict: boolean): EntryToAppend[] {
  const last = modelLast(m)
  let first = last + 1
  let term = last >= m.first ? m.entries.at(-1)!.term : m.start.term
  if (conflict && last >= m.first) {
    first = Math.max(m.first, last - rng.int(6))
    term = Math.max(term, 1) + 1
  }
  term = Math.max(term, 1)
  const n = 1 + rng.int(5)
  const out: EntryToAppend[] = []
  for (let i = 0; i < n; i++) out.push(entry(first + i, term, { bytes: 1 + rng.int(300), type: rng.chance(0.1) ? 1 : 0 }))
  return out
}

/** The later of two marks. */
function laterMark(a: Mark | undefined, b: Mark | undefined): Mark | undefined {
  if (a === undefined || b === undefined) return a ?? b
  return a.segmentBase > b.segmentBase || (a.segmentBase === b.segmentBase && a.bytes > b.bytes) ? a : b
}

/** Tears every file beyond what the crash image says was fsynced (marks file, or a completed direct flush). */
function tear(image: CrashImage, rng: SeededRandom): void {
  const wal = fs.statSync(image.wal.path).size
  if (wal > image.wal.syncedBytes) tearFile(image.wal.path, image.wal.syncedBytes, rng)
  for (const [name, dir] of image.logDirs) {
    const mark = laterMark(image.marks.get(name), image.synced.get(name))
    for (const file of fs.readdirSync(dir).sort()) {
      const m = /^(\d{20})\.(seg|idx)$/.exec(file)
      if (m === null) continue
      const path = join(dir, file)
      const base = Number(m[1])
      if (m[2] === 'idx') {
        if (rng.chance(0.3)) fs.rmSync(path)
        continue
      }
      if (mark !== undefined && base < mark.segmentBase) continue
      const from = mark !== undefined && base === mark.segmentBase ? mark.bytes : 0
      if (from === 0 && rng.chance(0.3)) fs.rmSync(path)
      else tearFile(path, from, rng)
    }
  }
}

function tearFile(path: string, from: number, rng: SeededRandom): void {
  const size = fs.statSync(path).size
  if (size <= from) return
  const cut = from + rng.int(size - from + 1)
  if (rng.chance(0.6)) {
    fs.truncateSync(path, cut)
    return
  }
  // Garbage or zeros over a random unsynced stretch (a write that half reached the disk).
  const fd = fs.openSync(path, 'r+')
  const len = Math.min(size - cut, 1 + rng.int(512))
  const junk = Buffer.alloc(len, rng.chance(0.5) ? 0 : 0xa5)
  for (let i = 0; i < len; i += 7) junk[i] = rng.int(256)
  fs.writeSync(fd, junk, 0, len, cut)
  fs.closeSync(fd)
}

async function openAll(s: LogStore): Promise<{ sync: PartitionLog[]; async: PartitionLog }> {
  const sync: PartitionLog[] = []
  for (const name of syncNames) sync.push(await s.openLog({ name, mode: 'sync', segmentBytesMax: 3000, indexIntervalBytes: 400 }))
  const asyncLog = await s.openLog({ name: 'c', mode: 'async', segmentBytesMax: 3000, flushIntervalMs: 5 })
  return { sync, async: asyncLog }
}

/** Longest delay the io shim puts before or after an fsync. */
const ioDelayMsMax = 3

/**
 * File operations whose fsyncs wait a seeded random while before and after
 * (none, a turn of the event loop, or up to ioDelayMsMax ms): the windows in
 * which other work runs between a flush's start and end widen, so races that
 * real I/O hits only under load show up on an idle machine.
 */
function delayedIo(rng: SeededRandom): LogIo {
  const pause = async (): Promise<void> => {
    const r = rng.int(4)
    if (r === 1) await new Promise((resolve) => setImmediate(resolve))
    else if (r >= 2) await new Promise((resolve) => setTimeout(resolve, rng.int(ioDelayMsMax + 1)))
  }
  return {
    ...nodeIo,
    fdatasync: async (fd) => {
      await pause()
      await nodeIo.fdatasync(fd)
      await pause()
    },
    fsync: async (fd) => {
      await pause()
      await nodeIo.fsync(fd)
      await pause()
    },
  }
}

async function runSeed(seed: number): Promise<void> {
  const rng = new SeededRandom(seed)
  const { dir, cleanup } = tempDir(`model-${seed}`)
  // Its own generator: the delays do not shift the operations a seed draws.
  const io = ioDelays ? delayedIo(new SeededRandom(seed ^ 0x5eed)) : nodeIo
  const options = { walBytesMax: 16 * 1024, walDirectBytesMin: directBytesMins[seed % directBytesMins.length], io }
  try {
    let s = await store(dir, options)
    let logs = await openAll(s)
    const models: Model[] = syncNames.map(() => ({ first: 1, start: { index: 0, term: 0 }, entries: [] }))
    const asyncModel: Model = { first: 1, start: { index: 0, term: 0 }, entries: [] }
    const written = new Map<string, string>() // "index/term" -> hex data, everything ever appended to the async log
    for (let step = 0; step < stepsPerSeed; step++) {
      const where = `seed ${seed} step ${step}`
      if (process.env.LOG_MODEL_TRACE) console.error(where, 'a', modelLast(models[0]!), 'b', modelLast(models[1]!), 'marks', fs.existsSync(join(dir, 'marks.json')) ? fs.readFileSync(join(dir, 'marks.json'), 'utf8') : '', ['a','b'].map((n) => n + '=' + fs.readdirSync(join(dir, 'logs', n)).map((f) => `${f.slice(17)}:${fs.statSync(join(dir, 'logs', n, f)).size}`).join(' ')).join(' | '), fs.readdirSync(join(dir, 'wal')).join(','))
      const k = rng.int(syncNames.length)
      const log = logs.sync[k]!
      const m = models[k]!
      const r = rng.next()
      if (process.env.LOG_MODEL_TRACE) console.error('  op', r.toFixed(2), 'on', syncNames[k])
      if (r < 0.35) {
        const batch = randomBatch(rng, m, rng.chance(0.15))
        await log.append(batch)
        applyAppend(m, batch)
      } else if (r < 0.5) {
        // Concurrent appends on both logs: they share WAL cycles.
        const work: Promise<void>[] = []
        for (const [i, l] of logs.sync.entries()) {
          for (let j = 0; j < 1 + rng.int(3); j++) {
            const batch = randomBatch(rng, models[i]!, false)
            work.push(l.append(batch))
            applyAppend(models[i]!, batch)
          }
        }
        await Promise.all(work)
      } else if (r < 0.58) {
        const last = modelLast(m)
        const index = m.first - 1 + rng.int(last - m.first + 2)
        await log.truncateAfter(index)
        if (index < last) m.entries.length = index - m.first + 1
      } else if (r < 0.64) {
        const last = modelLast(m)
        const index = m.start.index + 1 + rng.int(Math.max(1, last - m.start.index + 2))
        const term = index <= last ? modelTerm(m, index) : Math.max(1, m.entries.at(-1)?.term ?? m.start.term) + 1
        await log.compact({ index, term })
        m.entries = index >= last ? [] : m.entries.slice(index + 1 - m.first)
        m.first = index + 1
        m.start = { index, term }
      } else if (r < 0.74) {
        const batch = randomBatch(rng, asyncModel, rng.chance(0.2))
        await logs.async.append(batch)
        applyAppend(asyncModel, batch)
        for (const e of batch) written.set(`${e.index}/${e.term}`, Buffer.from(e.data).toString('hex'))
      } else if (r < 0.82) {
        await s.close()
        s = await store(dir, options)
        logs = await openAll(s)
      } else {
        // Crash with appends in flight.
        const acked = syncNames.map(() => 0)
        const inflight: EntryToAppend[][] = syncNames.map(() => [])
        for (const [i, l] of logs.sync.entries()) {
          for (let j = 0; j < rng.int(4); j++) {
            const batch = randomBatch(rng, { ...models[i]!, entries: [...models[i]!.entries, ...inflight[i]!] }, false)
            inflight[i]!.push(...batch)
            l.append(batch).then(
              () => (acked[i] = Math.max(acked[i]!, batch.at(-1)!.index)),
              () => {},
            )
          }
        }
        const waitMs = rng.int(3)
        if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs))
        const image = await s.abandon()
        tear(image, rng)
        s = await store(dir, options)
        logs = await openAll(s)
        for (const [i, l] of logs.sync.entries()) {
          const mi = models[i]!
          assert.equal(l.damage, undefined, `${where}: log ${syncNames[i]} damaged: ${JSON.stringify(l.damage)}`)
          const ackedLast = Math.max(modelLast(mi), acked[i]!)
          assert.ok(l.lastIndex() >= ackedLast, `${where}: log ${syncNames[i]} lost acknowledged entries: last ${l.lastIndex()} < ${ackedLast}`)
          const survived = inflight[i]!.slice(0, l.lastIndex() - modelLast(mi))
          assert.equal(survived.length, l.lastIndex() - modelLast(mi), `${where}: log ${syncNames[i]} holds more than was written`)
          mi.entries.push(...survived)
        }
        // Async log: whatever survived must be entries that were written, in a consistent log.
        const a = logs.async
        assert.equal(a.damage, undefined, `${where}: async log damaged: ${JSON.stringify(a.damage)}`)
        const got = a.lastIndex() >= a.firstIndex() ? await a.read({ indexStart: a.firstIndex(), bytesMax: 1e9 }) : []
        for (const e of got) assert.equal(written.get(`${e.index}/${e.term}`), Buffer.from(e.data).toString('hex'), `${where}: async entry ${e.index}`)
        asyncModel.first = a.firstIndex()
        asyncModel.entries = got.map((e) => ({ ...e, data: Uint8Array.prototype.slice.call(e.data) }))
      }
      for (const [i, l] of logs.sync.entries()) await checkLog(l, models[i]!, `${where} log ${syncNames[i]}`)
      await checkLog(logs.async, asyncModel, `${where} async log`)
    }
    await s.close()
  } finally {
    cleanup()
  }
}

test('model: random appends, truncations, compactions, reopens and crashes', async () => {
  const only = Number(process.env.LOG_MODEL_SEED ?? 0)
  const failed: number[] = []
  for (let seed = only || Number(process.env.LOG_MODEL_FROM ?? 1); seed <= (only || seeds); seed++) {
    try {
      await runSeed(seed)
    } catch (error) {
      console.error(`crash-model failed with seed ${seed} (replay: runSeed(${seed}))`)
      if (process.env.LOG_MODEL_KEEP_GOING !== '1') throw error
      console.error(error)
      failed.push(seed)
    }
  }
  assert.deepEqual(failed, [], 'failed seeds')
})
