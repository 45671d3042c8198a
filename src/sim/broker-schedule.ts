/**
 * One random schedule of whole brokers, from one seed:
 *
 *   setup   start N brokers, create the topic (retrying as a client would)
 *   faults  producers and readers run while brokers crash (power loss in
 *           `sync`: unsynced writes torn; a process crash in `async`, whose
 *           page cache survives), restart, stop gracefully, get isolated or
 *           cut one way, and links drop, duplicate and delay frames
 *   heal    every link back, every broker up; the cluster must settle
 *   check   every partition answers a produce within a bound; every replica
 *           holds the same log, with every acknowledged record exactly once
 *
 * Checked all along: each acknowledgement and read agrees with every
 * earlier observation of its offset (ledger.ts), one leader per group and
 * term, producer ids never repeat, and no broker does more than a bounded
 * amount of work per virtual second (livelock) — a loop that reschedules
 * itself without progress fails the seed like a lost write does.
 */
import { ErrorCode, isRillError } from '../base/index.ts'
import type { Broker } from '../broker/broker.ts'
import type { PersistenceMode } from '../log/index.ts'
import { Role } from '../raft/index.ts'
import { diskTimings, SimBrokerCluster, simDataDir } from './brokers.ts'
import { Ledger, SimViolation } from './ledger.ts'
import { Holdings, SimMember } from './members.ts'
import { LivelockError, type RuntimeScope } from './runtime.ts'
import { clientCallMsMax, decodeRecords, expectOperatingError, readOnce, SimProducer, simTopic, withDeadline } from './workload.ts'

export interface BrokerScheduleOptions {
  readonly seed: number
  readonly brokers?: number
  readonly partitions?: number
  readonly persistence?: PersistenceMode
  /** Virtual ms of the fault phase. */
  readonly faultMs?: number
  /** A client creates, writes to and deletes short-lived topics all along (default true). */
  readonly topicChurn?: boolean
  /** One of the three producers uses acks=leader (default true; false replays schedules from before it was added). */
  readonly leaderAcks?: boolean
  /** Only these kinds of fault (names as in `faultKinds`); default all. */
  readonly faults?: readonly FaultKind[]
  readonly trace?: (line: string) => void
}

export interface BrokerScheduleResult {
  readonly seed: number
  readonly ok: boolean
  readonly error?: string
  readonly virtualMs: number
  readonly events: number
  readonly acked: number
  readonly reads: number
  readonly faults: number
  readonly persistence: PersistenceMode
}

/** Events one broker process may run per virtual second (ticks, deliveries, disk completions); beyond it, a livelock. */
export const brokerEventsPerSecondMax = 50_000
/**
 * Disk reads one broker may issue per virtual second. Normal work reads
 * little (a fetch, a read-ahead of 4 MiB for catch-up or apply); a loop
 * that reads the same thing again and again is a livelock even when each
 * read takes time (so events per second alone would not show it).
 */
export const brokerDiskReadsPerSecondMax = 3000
/** How long the cluster has after healing to answer produces on every partition. */
const settleMsMax = 30_000
/** Virtual time a whole schedule may take before it fails as stuck. */
const scheduleMsMax = 240_000

export async function runBrokerSchedule(options: BrokerScheduleOptions): Promise<BrokerScheduleResult> {
  const seed = options.seed
  // Two sync to one async. `memory` runs only when asked (--persistence memory): a restarted memory
  // replica comes back empty, and a follower holding committed entries its new leader lacks stops
  // (seeds 1 and 12 with --persistence memory show it): that mode promises nothing across restarts.
  const persistence = options.persistence ?? (['sync', 'sync', 'async'] as const)[seed % 3]!
  const c = new SimBrokerCluster({ seed, brokers: options.brokers ?? 3, persistence, ...(options.trace === undefined ? {} : { trace: options.trace }) })
  const partitions = options.partitions ?? 1 + c.random.int(3)
  const faultMs = options.faultMs ?? 15_000
  const ledger = new Ledger({ lossy: persistence === 'memory' })
  const client = c.runtime.scope()
  let failure: unknown = null
  const fail = (e: unknown): void => {
    failure ??= e
  }
  let faults = 0
  let stopping = false

  const checkStep = livelockAndLeaderChecks(c, ledger)
  /** Brokers whose disk failed an fsync: their replicas stopped (by design) until a restart. */
  const diskFailed = new Set<number>()
  const main = (async () => {
    for (const id of c.ids()) startBroker(c, id, fail)
    await createTopic(c, client, partitions)
    c.trace(`topic ${simTopic} created with ${partitions} partitions (${persistence})`)
    const producers: SimProducer[] = []
    const loops: Promise<void>[] = []
    for (let i = 0; i < 3; i++) {
      // acks=all, and acks=leader for the third producer (unless `leaderAcks` is false).
      const p = new SimProducer(`prod${i}`, i === 2 && options.leaderAcks !== false ? 'leader' : 'all')
      producers.push(p)
      loops.push(produceLoop(c, client, ledger, p, partitions, () => stopping, fail).catch(fail))
    }
    loops.push(readLoop(c, client, ledger, partitions, () => stopping).catch(fail))
    if (options.topicChurn !== false) loops.push(topicChurnLoop(c, client, () => stopping).catch(fail))
    // Consumer-group members share the topic's partitions: never one partition held by two at once.
    const holdings = new Holdings()
    for (let i = 0; i < 3; i++) loops.push(new SimMember(`member${i}`).run(c, client, ledger, holdings, () => stopping).catch(fail))
    const end = c.runtime.nowMs() + faultMs
    while (c.runtime.nowMs() < end) {
      await client.sleep(300 + c.random.int(1700))
      if (c.runtime.nowMs() >= end) break
      faults += injectFault(c, persistence, fail, diskFailed, options.faults ?? faultKinds)
    }
    c.trace('heal: every link back, every broker up')
    c.network.heal()
    for (const b of c.brokers.values()) b.disk.setFaults({ ...diskTimings, readErrorRate: 0, fsyncErrorRate: 0, capacityBytes: Infinity })
    // A replica whose disk failed a write stopped for good (group.ts): the operator restarts its broker.
    for (const id of diskFailed) if (c.brokers.get(id)!.up) c.crash(id, 'process-crash')
    for (const id of c.ids()) if (!c.brokers.get(id)!.up && c.brokers.get(id)!.scope === null) startBroker(c, id, fail)
    stopping = true
    for (const p of producers) p.close()
    await Promise.race([Promise.all(loops), client.sleep(clientCallMsMax * 2)])
    await checkLiveness(c, client, ledger, partitions)
    await checkReplicas(c, client, ledger, partitions)
  })()
  main.then(() => fail('done'), fail)

  let error: string | undefined
  try {
    while (failure === null) {
      if (c.runtime.nowMs() > scheduleMsMax) throw new SimViolation(`schedule still running after ${scheduleMsMax} virtual ms (stuck)`)
      await c.runtime.runUntil(c.runtime.nowMs() + 50, checkStep)
      if (c.runtime.nextEventMs() === undefined && failure === null) throw new SimViolation('nothing left to run and the schedule did not finish (a wait without a timer)')
    }
    if (failure !== 'done') throw failure
  } catch (e) {
    error = e instanceof SimViolation || e instanceof LivelockError ? `${e.name}: ${e.message}` : `unexpected: ${(e as Error)?.stack ?? String(e)}`
  }
  for (const b of c.brokers.values()) b.scope?.kill()
  client.kill()
  return {
    seed,
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    virtualMs: Math.round(c.runtime.nowMs()),
    events: c.runtime.events,
    acked: ledger.acks,
    reads: ledger.reads,
    faults,
    persistence,
  }
}

/** Storage errors a broker may refuse to start with while its disk is failing: it is started again a second later (as systemd would). */
const startRetryCodes = new Set<string>([ErrorCode.STORAGE_FULL, ErrorCode.STORAGE_UNUSABLE, ErrorCode.STORAGE_READ_ONLY])

/** Starts broker `id`; a start refused with a coded storage error is retried, anything else fails the seed. */
function startBroker(c: SimBrokerCluster, id: number, fail: (e: unknown) => void): void {
  c.start(id).catch((error: unknown) => {
    if (!isRillError(error) || !startRetryCodes.has(error.code)) {
      fail(new SimViolation(`broker ${id} failed to start with an uncoded or unexpected error (${(error as { path?: string }).path ?? ""}): ${(error as Error)?.stack ?? String(error)}`))
      return
    }
    // The process exits (its lock goes with its pid) and a supervisor starts another a second later.
    c.crash(id, 'process-crash')
    c.runtime.setTimer(() => startBroker(c, id, fail), 1000)
  })
}

/** Checks run after every event: one leader per term (sampled every 10 virtual ms), work per virtual second bounded. */
function livelockAndLeaderChecks(c: SimBrokerCluster, ledger: Ledger): () => void {
  let nextLeaderCheck = 0
  let windowStart = 0
  const eventsAtWindow = new Map<RuntimeScope, number>()
  const readsAtWindow = new Map<number, number>()
  return () => {
    c.runAfterEvent()
    const now = c.runtime.nowMs()
    if (now >= nextLeaderCheck) {
      nextLeaderCheck = now + 10
      for (const b of c.up()) {
        for (const r of b.broker!.replicas()) if (r.role === Role.Leader) ledger.leader(`${r.topic}/${r.partition}`, r.term, b.id)
      }
    }
    if (now - windowStart >= 1000) {
      for (const b of c.brokers.values()) {
        const s = b.scope
        if (s === null) continue
        const before = eventsAtWindow.get(s) ?? s.events
        const perSecond = ((s.events - before) * 1000) / Math.max(1, now - windowStart)
        if (eventsAtWindow.has(s) && perSecond > brokerEventsPerSecondMax) {
          throw new LivelockError(`broker ${b.id} ran ${Math.round(perSecond)} events per virtual second (bound ${brokerEventsPerSecondMax}): work without progress`)
        }
        eventsAtWindow.set(s, s.events)
        const reads = b.disk.counters().reads
        const readsPerSecond = ((reads - (readsAtWindow.get(b.id) ?? reads)) * 1000) / Math.max(1, now - windowStart)
        if (readsPerSecond > brokerDiskReadsPerSecondMax) {
          throw new LivelockError(`broker ${b.id} read its disk ${Math.round(readsPerSecond)} times per virtual second (bound ${brokerDiskReadsPerSecondMax}): work without progress`)
        }
        readsAtWindow.set(b.id, reads)
      }
      windowStart = now
    }
  }
}

async function createTopic(c: SimBrokerCluster, client: RuntimeScope, partitions: number): Promise<void> {
  const deadline = c.runtime.nowMs() + 60_000
  while (c.runtime.nowMs() < deadline) {
    await client.sleep(200 + c.random.int(300))
    const b = c.up()[c.random.int(Math.max(1, c.up().length))]
    if (b?.broker == null) continue
    const broker = b.broker
    try {
      await withDeadline(client, clientCallMsMax, () => broker.createTopic({ name: simTopic, partitions, replicationFactor: Math.min(3, c.brokers.size) }), b.scope)
      return
    } catch (error) {
      if (isRillError(error, ErrorCode.TOPIC_EXISTS)) return
      if (isRillError(error, ErrorCode.INVALID_REQUEST) && /live brokers/.test(error.message)) continue // not all registered yet
      expectOperatingError(error, 'create topic')
    }
  }
  throw new SimViolation('the topic could not be created within 60 virtual seconds of the start')
}

async function produceLoop(
  c: SimBrokerCluster,
  client: RuntimeScope,
  ledger: Ledger,
  p: SimProducer,
  partitions: number,
  stopping: () => boolean,
  fail: (e: unknown) => void,
): Promise<void> {
  await p.init(c, client, ledger)
  const inFlight: Promise<void>[] = []
  while (!stopping()) {
    await client.sleep(5 + c.random.int(60))
    const partition = c.random.int(partitions)
    if (p.busy(partition)) continue
    inFlight.push(p.produce(c, client, ledger, partition, 1 + c.random.int(4)).catch(fail))
    if (inFlight.length > 64) inFlight.splice(0, 32)
  }
}

async function readLoop(c: SimBrokerCluster, client: RuntimeScope, ledger: Ledger, partitions: number, stopping: () => boolean): Promise<void> {
  while (!stopping()) {
    await client.sleep(10 + c.random.int(80))
    await readOnce(c, client, ledger, c.random.int(partitions))
  }
}

/** The faults a schedule draws from (each has its own branch in injectFault). */
export const faultKinds = ['crash', 'crash2', 'stop', 'isolate', 'one-way', 'disk', 'bad-sectors', 'flaky', 'pause'] as const
/** The faults before 'pause' was added: regression seeds found then replay with these. */
export const faultKindsBeforePause: readonly FaultKind[] = faultKinds.filter((k) => k !== 'pause')
export type FaultKind = (typeof faultKinds)[number]

/** Injects one fault; returns 1 if it did. At most one broker is down at a time (a majority of three stays). */
function injectFault(c: SimBrokerCluster, persistence: PersistenceMode, fail: (e: unknown) => void, diskFailed: Set<number>, kinds: readonly FaultKind[]): number {
  const ids = c.ids()
  const down = ids.filter((id) => !c.brokers.get(id)!.up)
  const pick = ids[c.random.int(ids.length)]!
  const forMs = 300 + c.random.int(4000)
  const later = (fn: () => void): void => void c.runtime.setTimer(fn, forMs)
  switch (kinds[c.random.int(kinds.length)]!) {
    case 'crash':
    case 'crash2': {
      if (down.length > 0) return 0
      // sync: a power loss (unsynced writes torn); async promises only to survive a process crash.
      c.crash(pick, persistence === 'sync' && c.random.next() < 0.7 ? 'power-loss' : 'process-crash')
      later(() => startBroker(c, pick, fail))
      return 1
    }
    case 'stop': {
      if (down.length > 0 || !c.brokers.get(pick)!.up) return 0
      c.stop(pick)
        .catch((error: unknown) => {
          // A graceful stop on a failing disk may fail (its last flush): the process exits anyway.
          if (!isRillError(error) || !startRetryCodes.has(error.code)) throw error
          c.crash(pick, 'process-crash')
        })
        .then(() => later(() => startBroker(c, pick, fail)), fail)
      return 1
    }
    case 'isolate': {
      c.trace(`isolate broker ${pick} for ${forMs} ms`)
      c.network.isolate(pick, ids)
      later(() => {
        for (const o of ids) {
          c.network.unblock(pick, o)
          c.network.unblock(o, pick)
        }
      })
      return 1
    }
    case 'one-way': {
      const other = ids.filter((id) => id !== pick)[c.random.int(ids.length - 1)]!
      c.trace(`cut ${pick} -> ${other} one way for ${forMs} ms`)
      c.network.block(pick, other)
      later(() => c.network.unblock(pick, other))
      return 1
    }
    case 'disk': {
      // A disk in trouble for a while: slow, or failing reads, or full, or failing an fsync.
      const disk = c.brokers.get(pick)!.disk
      const kind = c.random.int(4)
      if (kind === 0) disk.setFaults({ latencyFactor: 10 + c.random.int(90) })
      else if (kind === 1) disk.setFaults({ readErrorRate: 0.5 + c.random.next() * 0.5 })
      else if (kind === 2) {
        disk.setFaults({ capacityBytes: disk.usedBytes() + c.random.int(64 * 1024) })
        diskFailed.add(pick)
      }
      else {
        disk.setFaults({ fsyncErrorRate: 0.2 })
        diskFailed.add(pick)
      }
      c.trace(`disk of broker ${pick} in trouble for ${forMs} ms: ${['slow', 'failing reads', 'full', 'failing fsyncs'][kind]}`)
      later(() => disk.setFaults({ ...diskTimings, readErrorRate: 0, fsyncErrorRate: 0, capacityBytes: Infinity }))
      return 1
    }
    case 'bad-sectors': {
      // Bad sectors early in a partition's first segment, found when the broker restarts and
      // its replicas apply their log from disk (a latent sector error; the rest of the disk works).
      const b = c.brokers.get(pick)!
      if (down.length > 0 || !b.up) return 0
      const dir = `${simDataDir}/logs/logs`
      const logs = b.disk.readdirSync(dir).filter((n) => /^t\d+-\d+$/.test(n))
      if (logs.length === 0) return 0
      const log = logs[c.random.int(logs.length)]!
      const first = b.disk.readdirSync(`${dir}/${log}`).filter((n) => n.endsWith('.seg')).sort()[0]
      if (first === undefined) return 0
      c.trace(`restarting broker ${pick}; bad sectors in ${log}/${first} from when its replica opens, for ${forMs} ms`)
      c.crash(pick, 'process-crash')
      startBroker(c, pick, fail)
      // The sectors go bad the moment the new process has opened the segment (its open scan read them
      // fine), before the replica applies its log from disk.
      const path = `${dir}/${log}/${first}`
      c.afterEvent(() => {
        if (!b.up || !b.disk.isOpen(path)) return false
        b.disk.badSectors(path, 64, 64 + 4096)
        later(() => b.disk.clearBadSectors())
        return true
      })
      return 1
    }
    case 'pause': {
      // The broker's process stops running for a while (SIGSTOP, a long GC, a stalled VM) and then carries on.
      const scope = c.brokers.get(pick)!.scope
      if (scope === null || !scope.alive) return 0
      c.trace(`pause broker ${pick} for ${forMs} ms`)
      scope.pause(forMs)
      return 1
    }
    case 'flaky': {
      const f = c.network.faults
      f.dropRate = c.random.next() * 0.2
      f.duplicateRate = c.random.next() * 0.05
      f.longDelayRate = c.random.next() * 0.05
      f.longDelayMsMax = 200 + c.random.int(1000)
      c.trace(`flaky links for ${forMs} ms: drop ${f.dropRate.toFixed(2)}, dup ${f.duplicateRate.toFixed(2)}, long delays ${f.longDelayRate.toFixed(2)}`)
      later(() => Object.assign(c.network.faults, { dropRate: 0, duplicateRate: 0, longDelayRate: 0 }))
      return 1
    }
  }
}

/** After healing, every partition takes a produce within `settleMsMax`. */
async function checkLiveness(c: SimBrokerCluster, client: RuntimeScope, ledger: Ledger, partitions: number): Promise<void> {
  const p = new SimProducer('probe')
  const deadline = c.runtime.nowMs() + settleMsMax
  const timer = client.setTimer(() => p.close(), settleMsMax)
  await p.init(c, client, ledger)
  for (let partition = 0; partition < partitions; partition++) {
    const before = ledger.acks
    await p.produce(c, client, ledger, partition, 1)
    if (ledger.acks === before) {
      throw new SimViolation(`after healing, partition ${partition} took no produce within ${settleMsMax} virtual ms (${c.up().length} brokers up; replicas: ${describeReplicas(c, partition)})`)
    }
  }
  timer.cancel()
  c.trace(`liveness: every partition answered, ${Math.round(settleMsMax - (deadline - c.runtime.nowMs()))} ms after healing`)
}

function describeReplicas(c: SimBrokerCluster, partition: number): string {
  const out: string[] = []
  for (const b of c.brokers.values()) {
    if (!b.up) {
      out.push(`b${b.id} down${b.startError === null ? '' : ` (${(b.startError as Error).message})`}`)
      continue
    }
    const r = b.broker!.replicas().find((x) => x.topic === simTopic && x.partition === partition)
    out.push(r === undefined ? `b${b.id} no replica` : `b${b.id} ${r.role} t${r.term} lead ${r.leader} hw ${r.highWatermark}${r.quiet ? ' quiet' : ''}${r.failure === null ? '' : ` failed (${r.failure})`}`)
  }
  return out.join('; ')
}

/** Every replica converges to one log holding every acknowledged record once. */
/**
 * Creates a short-lived topic, writes a record to it, deletes it, again and
 * again through random brokers (retrying as a client would): topic changes
 * while replicas crash and move. Deleted topics must leave no replica behind
 * (checked at the end).
 */
async function topicChurnLoop(c: SimBrokerCluster, client: RuntimeScope, stopping: () => boolean): Promise<void> {
  for (let n = 1; !stopping(); n++) {
    const name = `churn-${n}`
    await retryTopicCall(c, client, stopping, `create ${name}`, (b) => b.createTopic({ name, partitions: 1, replicationFactor: Math.min(3, c.brokers.size) }), ErrorCode.TOPIC_EXISTS)
    await retryTopicCall(c, client, stopping, `delete ${name}`, (b) => b.deleteTopic(name), ErrorCode.UNKNOWN_TOPIC)
    await client.sleep(500 + c.random.int(2000))
  }
}

/** Runs a topic call on random brokers until it succeeds, or fails with `done` (it took effect before), or the run stops. */
async function retryTopicCall(
  c: SimBrokerCluster,
  client: RuntimeScope,
  stopping: () => boolean,
  what: string,
  call: (b: Broker) => Promise<unknown>,
  done: ErrorCode,
): Promise<void> {
  while (!stopping()) {
    const b = c.up()[c.random.int(Math.max(1, c.up().length))]
    if (b?.broker != null) {
      const broker = b.broker
      try {
        await withDeadline(client, clientCallMsMax, () => call(broker), b.scope)
        return
      } catch (error) {
        if (isRillError(error, done)) return
        if (!(isRillError(error, ErrorCode.INVALID_REQUEST) && /live brokers/.test(error.message))) expectOperatingError(error, what)
      }
    }
    await client.sleep(100 + c.random.int(400))
  }
}

async function checkReplicas(c: SimBrokerCluster, client: RuntimeScope, ledger: Ledger, partitions: number): Promise<void> {
  // Deleted topics leave no replica behind (once every broker has the metadata).
  const deadline = c.runtime.nowMs() + settleMsMax
  for (;;) {
    const stale = c.up().flatMap((b) => b.broker!.replicas().filter((r) => b.broker!.listTopics().indexOf(r.topic) < 0 && !r.topic.startsWith('__')).map((r) => `b${b.id} ${r.topic}/${r.partition}`))
    if (stale.length === 0) break
    if (c.runtime.nowMs() > deadline) throw new SimViolation(`replicas of deleted topics still hosted ${settleMsMax} virtual ms after healing: ${stale.join(', ')}`)
    await client.sleep(100)
  }
  for (let partition = 0; partition < partitions; partition++) {
    const deadline = c.runtime.nowMs() + settleMsMax
    let hws: number[] = []
    for (;;) {
      hws = c.up().flatMap((b) => b.broker!.replicas().filter((r) => r.topic === simTopic && r.partition === partition).map((r) => r.highWatermark))
      if (hws.length === Math.min(3, c.brokers.size) && hws.every((h) => h === hws[0])) break
      if (c.runtime.nowMs() > deadline) throw new SimViolation(`partition ${partition}: replicas did not converge within ${settleMsMax} virtual ms: ${describeReplicas(c, partition)}`)
      await client.sleep(100)
    }
    const logs: string[][] = []
    for (const b of c.up()) {
      const broker = b.broker!
      if (!broker.replicas().some((r) => r.topic === simTopic && r.partition === partition)) continue
      const records = []
      let offset = 0
      for (let i = 0; i < 100_000 && offset < hws[0]!; i++) {
        const r = await withDeadline(client, clientCallMsMax, () => broker.fetch({ topic: simTopic, partition, offset, maxBytes: 1 << 20, maxWaitMs: 0 }), b.scope)
        records.push(...decodeRecords(r.batches))
        if (r.nextOffset <= offset) throw new SimViolation(`partition ${partition} on broker ${b.id}: fetch at ${offset} made no progress (hw ${r.highWatermark})`)
        offset = r.nextOffset
      }
      ledger.checkFullLog(partition, records, b.id)
      logs.push(records.map((r) => `${r.offset}=${r.value}`))
    }
    for (const log of logs) {
      if (log.join() !== logs[0]!.join()) throw new SimViolation(`partition ${partition}: replicas hold different logs`)
    }
  }
}
