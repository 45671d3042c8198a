// The real log store (LogStore, WAL, DiskLog, segments, marks, the lock) on
// the simulator's disk (SimDisk) and virtual clock, losing power at random
// moments: while appending, while rotating the WAL, while a checkpoint or a
// compaction runs, while the store is still recovering from the last crash.
// Each life of the machine opens the store, checks every log against what
// was acknowledged, and appends with pipelined appenders until the power
// goes (or, now and then, closes cleanly). Checked after every reopen:
//
//   sync logs   every acknowledged entry is there, byte for byte; what is
//               there beyond it is a prefix of what was in flight; a
//               compaction that resolved holds
//   async log   whatever is there is what was written (no durability promised)
//   every life  no damage reported, the store opens (the lock of the dead
//               process is stale)
//
// One seed replays one run exactly (no real I/O, no real timers). Knobs (env):
//   LOG_SIM_SEEDS=N    seeds 1..N (default 16: about 5 s)
//   LOG_SIM_FROM=k     start at seed k instead of 1
//   LOG_SIM_SEED=n     seed n only
//   LOG_SIM_KEEP_GOING=1  run every seed, list the failed ones at the end
//   LOG_SIM_TRACE=1    print each life: when the power went and what was acknowledged
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { SeededRandom } from '../../src/base/index.ts'
import { openLogStore, type EntryToAppend, type LogStore, type PartitionLog } from '../../src/log/index.ts'
import { SimDisk } from '../../src/sim/disk.ts'
import { VirtualRuntime, type RuntimeScope } from '../../src/sim/runtime.ts'
import { entry, plain } from '../log/helpers.ts'

const seeds = Number(process.env.LOG_SIM_SEEDS ?? 16)
const trace = process.env.LOG_SIM_TRACE === '1'
/** Lives (power cycles) per seed, then one last life that only checks. */
const livesPerSeed = 6
/** A life ends with a power loss at a random moment within this many virtual ms of its start. */
const lifeMsMax = 60
/** Appends per appender per life, at most (a life usually ends before). */
const appendsPerLifeMax = 200
/** Virtual ms the last life may take to open and check. */
const checkMsMax = 60_000
const syncNames = ['a', 'b', 'c'] as const
const asyncName = 'z'
/** Direct-flush thresholds, by seed: off (all through the WAL), mixed, every sync append direct. */
const directBytesMins = [Infinity, 600, 1] as const

/** What the test knows of one log: every entry sent (index i at [i - 1]), acknowledged up to, compacted. */
interface LogModel {
  readonly name: string
  readonly mode: 'sync' | 'async'
  sent: EntryToAppend[]
  acked: number
  /** First index a resolved compaction guarantees; a requested one may have taken effect up to `firstMax`. */
  firstMin: number
  firstMax: number
}

function newModel(name: string, mode: 'sync' | 'async'): LogModel {
  return { name, mode, sent: [], acked: 0, firstMin: 1, firstMax: 1 }
}

/** Reads a whole log (bounded reads, in order). */
async function readAll(log: PartitionLog): Promise<EntryToAppend[]> {
  const out: EntryToAppend[] = []
  let next = log.firstIndex()
  while (next <= log.lastIndex()) {
    const got = await log.read({ indexStart: next, bytesMax: 1 << 20 })
    assert.ok(got.length > 0, `log ${log.name}: empty read at ${next} of ${log.lastIndex()}`)
    out.push(...got)
    next = got.at(-1)!.index + 1
  }
  return out
}

/** Checks a reopened log against its model, then adopts what survived of the entries in flight. */
async function check(log: PartitionLog, m: LogModel, where: string): Promise<void> {
  assert.equal(log.damage, undefined, `${where}: log ${m.name} damaged: ${JSON.stringify(log.damage)}`)
  const first = log.firstIndex()
  const last = log.lastIndex()
  if (m.mode === 'sync') {
    assert.ok(last >= m.acked, `${where}: log ${m.name} lost acknowledged entries: last ${last} < ${m.acked}`)
    assert.ok(first >= m.firstMin && first <= Math.max(m.firstMax, m.firstMin), `${where}: log ${m.name} first index ${first} outside ${m.firstMin}..${m.firstMax}`)
  }
  assert.ok(last <= m.sent.length, `${where}: log ${m.name} holds ${last} entries, ${m.sent.length} were sent`)
  const got = await readAll(log)
  assert.equal(got.length, Math.max(0, last - first + 1), `${where}: log ${m.name} read ${got.length} entries of ${first}..${last}`)
  const want = m.sent.slice(first - 1, last)
  assert.deepEqual(got.map(plain), want.map(plain), `${where}: log ${m.name} entries ${first}..${last}`)
  m.sent.length = last
  m.acked = m.mode === 'sync' ? Math.max(m.acked, last) : last
  m.firstMin = first
  m.firstMax = first
}

/** The next batch of a log: 1-4 entries of 1-700 bytes, in the life's term (terms grow with lives). */
function nextBatch(m: LogModel, term: number, rng: SeededRandom): EntryToAppend[] {
  const out: EntryToAppend[] = []
  const n = 1 + rng.int(4)
  for (let i = 0; i < n; i++) out.push(entry(m.sent.length + 1 + i, term, { bytes: 1 + rng.int(700) }))
  m.sent.push(...out)
  return out
}

/** Appends to one log with up to `depth` appends in flight (a leader pipelines), now and then compacting. */
async function appender(o: { log: PartitionLog; m: LogModel; term: number; rng: SeededRandom; scope: RuntimeScope; depth: number }): Promise<void> {
  const { log, m, rng } = o
  const inflight = new Set<Promise<void>>()
  for (let n = 0; n < appendsPerLifeMax; n++) {
    while (inflight.size >= o.depth) await Promise.race(inflight)
    const batch = nextBatch(m, o.term, rng)
    const p = log.append(batch).then(() => {
      m.acked = Math.max(m.acked, batch.at(-1)!.index)
    })
    inflight.add(p)
    void p.then(() => inflight.delete(p))
    if (m.mode === 'sync' && rng.chance(0.04) && m.acked >= m.firstMin) {
      // Compact up to an acknowledged entry: durable once it resolves.
      const index = m.firstMin - 1 + 1 + rng.int(m.acked - m.firstMin + 1)
      m.firstMax = Math.max(m.firstMax, index + 1)
      await log.compact({ index, term: log.term(index) })
      m.firstMin = Math.max(m.firstMin, index + 1)
    }
    if (rng.chance(0.3)) await o.scope.sleep(rng.int(3))
  }
  await Promise.all(inflight)
}

/** One life of the machine: open, check every log, append until the power goes (or close cleanly). */
async function life(o: { disk: SimDisk; scope: RuntimeScope; models: LogModel[]; term: number; rng: SeededRandom; directBytesMin: number; where: string; status: { checked: boolean; closed: boolean } }): Promise<void> {
  const store: LogStore = await openLogStore({
    dir: '/var/lib/rill/logs',
    registry: new Registry(),
    io: o.disk.process(),
    runtime: o.scope,
    walBytesMax: 8 * 1024,
    walDirectBytesMin: o.directBytesMin,
  })
  const logs: PartitionLog[] = []
  for (const m of o.models) {
    logs.push(await store.openLog({ name: m.name, mode: m.mode, segmentBytesMax: 4096, indexIntervalBytes: 512, flushIntervalMs: 5 }))
  }
  for (const [i, log] of logs.entries()) await check(log, o.models[i]!, o.where)
  o.status.checked = true
  const clean = o.rng.chance(0.15)
  await Promise.all(logs.map((log, i) => appender({ log, m: o.models[i]!, term: o.term, rng: o.rng.fork(), scope: o.scope, depth: 1 + o.rng.int(3) })))
  if (clean) {
    await store.close()
    o.status.closed = true
  }
}

/** Runs the runtime until `status.done` or `untilMs`; rethrows what the life threw. */
async function runLife(runtime: VirtualRuntime, running: Promise<void>, untilMs: number): Promise<void> {
  let failure: unknown
  let done = false
  running.then(
    () => (done = true),
    (error: unknown) => {
      failure = error
      done = true
    },
  )
  while (!done && runtime.nowMs() < untilMs) await runtime.runUntil(Math.min(untilMs, runtime.nowMs() + 5))
  if (failure !== undefined) throw failure
}

async function runSeed(seed: number): Promise<{ acked: number; lives: number }> {
  const runtime = new VirtualRuntime()
  const rng = new SeededRandom(seed)
  const disk = new SimDisk({ random: rng.fork(), runtime, faults: { fsyncLatencyMs: [0, 2], readLatencyMs: [0, 0.5] } })
  const models = [...syncNames.map((n) => newModel(n, 'sync')), newModel(asyncName, 'async')]
  const directBytesMin = directBytesMins[seed % directBytesMins.length]!
  for (let n = 0; n <= livesPerSeed; n++) {
    const last = n === livesPerSeed
    const scope = runtime.scope()
    const where = `seed ${seed} life ${n}`
    const status = { checked: false, closed: false }
    const running = life({ disk, scope, models, term: n + 1, rng: rng.fork(), directBytesMin, where, status })
    if (last) {
      await runLife(runtime, running.catch((e: unknown) => Promise.reject(e)), runtime.nowMs() + checkMsMax)
      assert.ok(status.checked, `${where}: the last life did not open and check in ${checkMsMax} virtual ms`)
      break
    }
    const lifeMs = rng.int(lifeMsMax + 1)
    await runLife(runtime, running, runtime.nowMs() + lifeMs)
    if (trace) console.error(`${where}: ${status.closed ? 'closed' : 'power lost'} at ${runtime.nowMs()} ms (after ${lifeMs}), checked ${status.checked}, acked ${models.map((m) => `${m.name}=${m.firstMin}..${m.acked}`).join(' ')}`)
    scope.kill()
    disk.crash('power-loss')
  }
  return { acked: models.reduce((s, m) => s + (m.mode === 'sync' ? m.acked : 0), 0), lives: livesPerSeed }
}

test('sync appends acknowledged on the simulated disk survive power losses at random moments', async () => {
  const only = Number(process.env.LOG_SIM_SEED ?? 0)
  const from = only || Number(process.env.LOG_SIM_FROM ?? 1)
  let acked = 0
  const failed: number[] = []
  for (let seed = from; seed <= (only || from + seeds - 1); seed++) {
    try {
      acked += (await runSeed(seed)).acked
    } catch (error) {
      console.error(`log-on-sim-disk failed with seed ${seed} (replay: LOG_SIM_SEED=${seed})`)
      if (process.env.LOG_SIM_KEEP_GOING !== '1') throw error
      console.error(error)
      failed.push(seed)
    }
  }
  assert.deepEqual(failed, [], 'failed seeds')
  // The run did something: entries were acknowledged (and checked after crashes).
  assert.ok(acked > 0, 'nothing was acknowledged')
})

test('one seed replays exactly: same disk and same acknowledgements', async () => {
  const digest = async (seed: number): Promise<string> => JSON.stringify(await runSeed(seed))
  assert.equal(await digest(3), await digest(3))
})
