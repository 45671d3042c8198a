// A `memory` log opened through the LogStore keeps its Raft hard state
// (term, vote) durable in `logs/<name>/hardstate`, and only that: entries
// are gone after a restart, term and vote are not, so a restarted replica
// cannot vote twice in one term. Checked here: reopen, removeLog, damaged
// files (coded errors), a torn temp file (the previous value), a log of the
// other kind in the directory, and on the simulator's disk (SimDisk) power
// losses and process crashes at random moments: a hard state whose
// setHardState resolved is never lost, and what a crash leaves always opens.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { ErrorCode, SeededRandom, isRillError } from '../../src/base/index.ts'
import { crc32c, encodeHardStateFile, hardStateFileBytes, hardStateFileName, openLogStore, type HardState, type LogStore, type PartitionLog } from '../../src/log/index.ts'
import { SimDisk, type CrashKind } from '../../src/sim/disk.ts'
import { VirtualRuntime, type RuntimeScope } from '../../src/sim/runtime.ts'
import { entries, store, tempDir } from './helpers.ts'

const zero: HardState = { term: 0, vote: 0, commit: 0 }

test('memory log through the store: term and vote survive a reopen and a new store, entries do not', async () => {
  const { dir, cleanup } = tempDir('mem-hs')
  try {
    const registry = new Registry()
    let s = await store(dir, { registry })
    let log = await s.openLog({ name: 'p-0', mode: 'memory' })
    assert.deepEqual(log.hardState(), zero)
    await log.append(entries(1, 10, 2))
    await log.setHardState({ term: 2, vote: 3, commit: 7 })
    await log.setHardState({ term: 3, vote: 2, commit: 9 })
    const logDir = join(dir, 'logs', 'p-0')
    assert.deepEqual(fs.readdirSync(logDir), [hardStateFileName], 'the hard state and nothing else')
    assert.equal(fs.statSync(join(logDir, hardStateFileName)).size, hardStateFileBytes)
    assert.match(await registry.metrics(), /rill_log_fsync_total\{kind="state"\} 4/)
    await assert.rejects(s.openLog({ name: 'p-0', mode: 'memory' }), (e) => isRillError(e, ErrorCode.STORAGE_LOCKED))
    await log.close()
    await assert.rejects(log.setHardState({ term: 4, vote: 0, commit: 0 }), (e) => isRillError(e, ErrorCode.STORAGE_READ_ONLY))

    log = await s.openLog({ name: 'p-0', mode: 'memory' })
    assert.deepEqual(log.hardState(), { term: 3, vote: 2, commit: 9 })
    assert.equal(log.lastIndex(), 0, 'entries are memory-only')
    await s.close()

    s = await store(dir)
    log = await s.openLog({ name: 'p-0', mode: 'memory' })
    assert.deepEqual(log.hardState(), { term: 3, vote: 2, commit: 9 })
    assert.equal(log.firstIndex(), 1)
    await s.close()
  } finally {
    cleanup()
  }
})

test('concurrent setHardState calls all resolve once durable; the file holds the last', async () => {
  const { dir, cleanup } = tempDir('mem-hs-many')
  try {
    const s = await store(dir)
    const log = await s.openLog({ name: 'm', mode: 'memory' })
    const calls: Promise<void>[] = []
    for (let term = 1; term <= 20; term++) calls.push(log.setHardState({ term, vote: term % 3, commit: term * 2 }))
    await Promise.all(calls)
    assert.deepEqual(fs.readFileSync(join(dir, 'logs', 'm', hardStateFileName)), encodeHardStateFile({ term: 20, vote: 2, commit: 40 }))
    // A term below the last one is a programmer error, not a write.
    await assert.rejects(log.setHardState({ term: 19, vote: 0, commit: 0 }), /below 20/)
    await s.close()
  } finally {
    cleanup()
  }
})

test('removeLog deletes a memory log’s hard state', async () => {
  const { dir, cleanup } = tempDir('mem-hs-rm')
  try {
    const s = await store(dir)
    const log = await s.openLog({ name: 'gone', mode: 'memory' })
    await log.setHardState({ term: 5, vote: 1, commit: 0 })
    await log.close()
    await s.removeLog('gone')
    assert.equal(fs.existsSync(join(dir, 'logs', 'gone')), false)
    const again = await s.openLog({ name: 'gone', mode: 'memory' })
    assert.deepEqual(again.hardState(), zero)
    await s.close()
  } finally {
    cleanup()
  }
})

test('a damaged hard-state file is STORAGE_CORRUPT naming the file; another format version is STORAGE_UNUSABLE', async () => {
  const { dir, cleanup } = tempDir('mem-hs-bad')
  try {
    const s = await store(dir)
    const log = await s.openLog({ name: 'm', mode: 'memory' })
    await log.setHardState({ term: 7, vote: 2, commit: 3 })
    await log.close()
    const path = join(dir, 'logs', 'm', hardStateFileName)
    const good = fs.readFileSync(path)
    const flipped = Buffer.from(good)
    flipped[13]! ^= 0x04 // the vote
    const otherVersion = encodeHardStateFile({ term: 7, vote: 2, commit: 3 })
    otherVersion[3] = 2
    otherVersion.writeUInt32LE(crc32c(0, otherVersion.subarray(0, 28)), 28)
    const cases: [string, Buffer, ErrorCode, RegExp][] = [
      ['empty', Buffer.alloc(0), ErrorCode.STORAGE_CORRUPT, /0 bytes, expected 32/],
      ['truncated', good.subarray(0, 20), ErrorCode.STORAGE_CORRUPT, /20 bytes/],
      ['too long', Buffer.concat([good, Buffer.from([0])]), ErrorCode.STORAGE_CORRUPT, /33 bytes/],
      ['a flipped bit', flipped, ErrorCode.STORAGE_CORRUPT, /checksum fails/],
      ['zeros', Buffer.alloc(hardStateFileBytes), ErrorCode.STORAGE_CORRUPT, /checksum fails/],
      ['another version', otherVersion, ErrorCode.STORAGE_UNUSABLE, /format version 2/],
    ]
    for (const [what, bytes, code, message] of cases) {
      fs.writeFileSync(path, bytes)
      await assert.rejects(
        s.openLog({ name: 'm', mode: 'memory' }),
        (e) => isRillError(e, code) && message.test(e.message) && e.message.includes(path),
        what,
      )
    }
    // A failed open leaves nothing half-open: the right bytes open again.
    fs.writeFileSync(path, good)
    const back = await s.openLog({ name: 'm', mode: 'memory' })
    assert.deepEqual(back.hardState(), { term: 7, vote: 2, commit: 3 })
    await s.close()
  } finally {
    cleanup()
  }
})

test('a torn temp file left by a crash before the rename counts for nothing: the previous value is read, the temp file removed', async () => {
  const { dir, cleanup } = tempDir('mem-hs-torn')
  try {
    let s = await store(dir)
    const log = await s.openLog({ name: 'm', mode: 'memory' })
    await log.setHardState({ term: 4, vote: 1, commit: 0 })
    await s.close()
    const tmp = join(dir, 'logs', 'm', `.${hardStateFileName}.tmp`)
    // writeFileAtomic's temp file, cut short by the crash before its fsync (half a newer state).
    fs.writeFileSync(tmp, encodeHardStateFile({ term: 5, vote: 2, commit: 0 }).subarray(0, 11))
    s = await store(dir)
    const reopened = await s.openLog({ name: 'm', mode: 'memory' })
    assert.deepEqual(reopened.hardState(), { term: 4, vote: 1, commit: 0 })
    assert.equal(fs.existsSync(tmp), false)
    // The first write ever was the one torn: no hard state yet.
    fs.mkdirSync(join(dir, 'logs', 'fresh'))
    fs.writeFileSync(join(dir, 'logs', 'fresh', `.${hardStateFileName}.tmp`), Buffer.alloc(7))
    assert.deepEqual((await s.openLog({ name: 'fresh', mode: 'memory' })).hardState(), zero)
    await s.close()
  } finally {
    cleanup()
  }
})

test('a log directory of the other kind is refused, not reinterpreted', async () => {
  const { dir, cleanup } = tempDir('mem-hs-kind')
  try {
    const s = await store(dir)
    const disk = await s.openLog({ name: 'd', mode: 'sync' })
    await disk.append(entries(1, 3, 1))
    await disk.close()
    const mem = await s.openLog({ name: 'm', mode: 'memory' })
    await mem.setHardState({ term: 2, vote: 1, commit: 0 })
    await mem.close()
    await assert.rejects(s.openLog({ name: 'd', mode: 'memory' }), (e) => isRillError(e, ErrorCode.STORAGE_UNUSABLE) && /holds a sync or async log/.test(e.message))
    for (const mode of ['sync', 'async'] as const) {
      await assert.rejects(s.openLog({ name: 'm', mode }), (e) => isRillError(e, ErrorCode.STORAGE_UNUSABLE) && /holds a memory log/.test(e.message))
    }
    assert.deepEqual(fs.readdirSync(join(dir, 'logs', 'm')), [hardStateFileName], 'the refused open created nothing')
    assert.equal((await s.openLog({ name: 'd', mode: 'sync' })).lastIndex(), 3)
    await s.close()
  } finally {
    cleanup()
  }
})

// ---- on the simulator's disk ----------------------------------------------

const storeDir = '/data/logs'
/** Virtual ms a step (open, check, a write) may take before the test gives up. */
const stepMsMax = 60_000
const seeds = Number(process.env.MEM_HS_SEEDS ?? 40)

/** Runs the virtual clock until `p` settles (or `stepMsMax` passes); returns its value or throws its error. */
async function settle<T>(runtime: VirtualRuntime, p: Promise<T>): Promise<T> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true),
  )
  const untilMs = runtime.nowMs() + stepMsMax
  while (!done && runtime.nowMs() < untilMs) await runtime.runUntil(Math.min(untilMs, runtime.nowMs() + 5))
  assert.ok(done, `no answer in ${stepMsMax} virtual ms`)
  return p
}

function openOn(disk: SimDisk, scope: RuntimeScope): Promise<LogStore> {
  return openLogStore({ dir: storeDir, registry: new Registry(), io: disk.process(), runtime: scope })
}

test('on SimDisk: a power loss right after setHardState resolved keeps it', async () => {
  for (let seed = 1; seed <= 30; seed++) {
    const runtime = new VirtualRuntime()
    const disk = new SimDisk({ random: new SeededRandom(seed), runtime, faults: { fsyncLatencyMs: [0, 3] } })
    let scope = runtime.scope()
    const log = await settle(runtime, openOn(disk, scope).then((s) => s.openLog({ name: 'm', mode: 'memory' })))
    for (let term = 1; term <= 1 + (seed % 4); term++) await settle(runtime, log.setHardState({ term, vote: term, commit: 0 }))
    const want = log.hardState()
    scope.kill()
    disk.crash('power-loss')
    scope = runtime.scope()
    const after = await settle(runtime, openOn(disk, scope).then((s) => s.openLog({ name: 'm', mode: 'memory' })))
    assert.deepEqual(after.hardState(), want, `seed ${seed}`)
  }
})

/** The hard state model: the term last made durable (or served by an open) and the highest asked for. */
interface Model {
  durable: number
  asked: number
}

/**
 * One life: open the store and two memory logs, check each log's term
 * against its model, then raise terms (several writes in flight, now and
 * then an fsync failing with EIO) until the crash.
 */
async function life(o: { disk: SimDisk; scope: RuntimeScope; models: Map<string, Model>; rng: SeededRandom; where: string; status: { checked: boolean } }): Promise<void> {
  const s = await openOn(o.disk, o.scope)
  const logs: PartitionLog[] = []
  for (const [name, m] of o.models) {
    const log = await s.openLog({ name, mode: 'memory' })
    const term = log.hardState().term
    assert.ok(term >= m.durable && term <= m.asked, `${o.where}: log ${name} term ${term} outside ${m.durable}..${m.asked}`)
    assert.equal(log.hardState().vote, term % 5, `${o.where}: log ${name} vote of term ${term}`)
    // What an open served is acted on: it must survive the next power loss.
    m.durable = term
    logs.push(log)
  }
  o.status.checked = true
  await Promise.all(
    logs.map(async (log) => {
      const m = o.models.get(log.name)!
      const inflight = new Set<Promise<void>>()
      for (let n = 0; n < 200; n++) {
        const term = m.asked + 1
        m.asked = term
        const p = log.setHardState({ term, vote: term % 5, commit: n }).then(
          () => void (m.durable = Math.max(m.durable, term)),
          (e: unknown) => assert.ok(isRillError(e, ErrorCode.STORAGE_UNUSABLE), `${o.where}: ${String(e)}`),
        )
        inflight.add(p)
        void p.then(() => inflight.delete(p))
        if (inflight.size >= 3 || o.rng.chance(0.5)) await Promise.race(inflight)
        if (o.rng.chance(0.3)) await o.scope.sleep(o.rng.int(3))
      }
      await Promise.all(inflight)
    }),
  )
}

test('on SimDisk: power losses and process crashes at random moments never lose a durable hard state, and what they leave always opens', async () => {
  for (let seed = 1; seed <= seeds; seed++) {
    const runtime = new VirtualRuntime()
    const rng = new SeededRandom(seed)
    const disk = new SimDisk({ random: rng.fork(), runtime, faults: { fsyncLatencyMs: [0, 2] } })
    const models = new Map<string, Model>([
      ['a', { durable: 0, asked: 0 }],
      ['b', { durable: 0, asked: 0 }],
    ])
    for (let n = 0; n <= 8; n++) {
      const last = n === 8
      disk.setFaults({ fsyncErrorRate: !last && rng.chance(0.3) ? 0.05 : 0 })
      const scope = runtime.scope()
      const where = `seed ${seed} life ${n}`
      const status = { checked: false }
      let failure: unknown
      let done = false
      life({ disk, scope, models, rng: rng.fork(), where, status }).then(
        () => (done = true),
        (e: unknown) => {
          failure = e
          done = true
        },
      )
      const untilMs = runtime.nowMs() + (last ? stepMsMax : rng.int(40))
      while (!done && runtime.nowMs() < untilMs) await runtime.runUntil(Math.min(untilMs, runtime.nowMs() + 1))
      // An injected EIO may also fail the open itself (a directory fsync, the lock's fsync: a raw errno today): that life ends early.
      const openFault = isRillError(failure, ErrorCode.STORAGE_UNUSABLE) || (failure as NodeJS.ErrnoException | undefined)?.code === 'EIO'
      if (failure !== undefined && !(openFault && !status.checked)) throw failure
      if (last) {
        assert.ok(status.checked, `${where}: the last life did not open and check`)
        break
      }
      const kind: CrashKind = rng.chance(0.7) ? 'power-loss' : 'process-crash'
      scope.kill()
      disk.crash(kind)
    }
  }
})
