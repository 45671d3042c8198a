/**
 * `rill bench produce | consume | e2e`: load from the real SDKs (producer/,
 * consumer/) against a running cluster, measured as a user of the SDKs sees
 * it (docs/bench.md).
 *
 *   produce  --producers N Producer instances share one record budget
 *            (--count, --duration), each `send` of up to 100 records
 *            pipelined (≤ 64 sends in flight per producer)
 *            → records/s, MB/s, ack latency p50/p99/p99.9 (send → acknowledged)
 *   consume  one Consumer (no group) reads every partition from its start
 *            up to its high watermark when the run began (asked of every
 *            broker: one that does not host a partition describes it from
 *            a poll), at most --count records (--read-from)
 *            → records/s, MB/s
 *   e2e      producers offer a fixed --rate; a Consumer started at the log
 *            end before the first send reads them back
 *            → ack latency, and produce → consume latency per record
 *
 * Each record's value starts with a 16-byte header, the rest is filler up
 * to --record-bytes:
 *
 *   0..3 run id (u32, random per run)   4..7 sequence (u32)   8..15 intended send time (f64, ms, this process's monotonic clock)
 *
 * so a reader tells this run's records from older ones, counts each one once
 * (matrix.ts checks that every acknowledged record is read back) and, in
 * e2e, measures latency from when the record was due, not from when a
 * lagging generator got round to it (no coordinated omission).
 *
 * Progress: one line per second on stderr, terminal or not (--quiet: none):
 * a bench runs for seconds to minutes, its result is on stdout (a summary
 * line, or one JSON object with --json), and a log of a run is worth
 * keeping. Ctrl-C stops sending, waits for what was sent (within io.ts's
 * grace), prints the summary of what was done, exits 130.
 */
import { randomInt } from 'node:crypto'
import { Producer, RillClientError } from '../../producer/index.ts'
import { Consumer, type ConsumerRecord, type ReadFrom } from '../../consumer/index.ts'
import { systemRuntime } from '../base/index.ts'
import { defaultBatchLimits, type CreateTopicRequest, type MetadataResponse, type TopicDescription } from '../wire/index.ts'
import { replicationFactorMax, topicPartitionsMax } from '../api/limits.ts'
import { CliError, UsageError, expectPositionals, parseArgs, target, type FlagSpecs, type Target } from './args.ts'
import { ApiError, UnreachableError, request } from './client.ts'
import { stopExitCode, type CliIo } from './io.ts'

export const benchUsage = `usage: rill bench produce|consume|e2e [flags]
  produce   send --count records (or for --duration) as fast as the producers take them
  consume   read the topic from its start to its current end
  e2e       send at a fixed --rate and read back: produce -> consume latency

  --topic NAME                 default rill-bench; created if missing (produce, e2e) with:
    --partitions N             default 6
    --replication-factor N     default 3
    --persistence sync|async|memory   default: the brokers' default
  --producers N                concurrent producer instances (default 1, at most 64)
  --record-bytes N             value size, 16..1048576 (default 100)
  --batch-bytes N              producer batch size in bytes (default the SDK's: 1 MiB)
  --linger-ms N                how long a batch waits for more records (default the SDK's: 5)
  --acks all|leader            default all
  --count N                    records to send or read (default 1,000,000; e2e: rate x duration), at most 100,000,000
  --duration S                 seconds at most (default 30, at most 3600)
  --rate N                     e2e: records/s offered (default 10,000, at most 1,000,000)
  --read-from leader|follower|nearest   consume, e2e: which replica to read (default leader)
  --json                       one JSON object on stdout instead of the summary line
  --quiet                      no progress lines on stderr
  --brokers URL,...            brokers to ask (RILL_BROKERS; --url is the same)
a progress line every second on stderr; Ctrl-C stops, prints what was done, exits 130
`

/** Longest bench run, s: a bench is bounded (an hour is already a soak test). */
const durationSMax = 3_600
/** Default run time, s. */
const durationSDefault = 30
/** Most records one run sends or reads: the sequence is a u32, and e2e keeps one bit per record. */
const countMax = 100_000_000
/** Default records of produce and consume. */
const countDefault = 1_000_000
/** Most producer instances (each has its own connections and buffer). */
const producersMax = 64
/** Bytes of the value header (run id, sequence, send time). */
const headerBytes = 16
/** Largest --record-bytes: a record must fit a batch alone, well under the broker's limit. */
const recordBytesMax = 1024 * 1024
/** Most records offered per second in e2e. */
const rateMax = 1_000_000
/** Records per `send` call: large enough that a call's cost is spread, small enough to keep latency per call meaningful. */
const sendRecordsMax = 100
/** `send` calls in flight per producer (6,400 records): the producer's buffer bounds bytes, this bounds promises. */
const sendsInFlightMax = 64
/** How often progress is printed, ms. */
const progressIntervalMs = 1_000
/** How often the e2e pacer looks whether records are due, ms (timers fire ~1 ms late anyway). */
const paceTickMs = 1
/** After the last e2e send was acknowledged, the longest wait for the consumer to see every record, ms. */
const e2eDrainMs = 30_000
/** After the consumer subscribed, the longest wait for it to hold every partition (e2e), ms. */
const consumerReadyMs = 30_000
/** Longest a record may stay unacknowledged before the bench fails (elections take seconds, not minutes), ms. */
const deliveryTimeoutMs = 60_000

const benchFlags: FlagSpecs = {
  topic: { kind: 'string' },
  partitions: { kind: 'int', min: 1, max: topicPartitionsMax },
  'replication-factor': { kind: 'int', min: 1, max: replicationFactorMax },
  persistence: { kind: 'string', values: ['sync', 'async', 'memory'] },
  producers: { kind: 'int', min: 1, max: producersMax },
  'record-bytes': { kind: 'int', min: headerBytes, max: recordBytesMax },
  'batch-bytes': { kind: 'int', min: 1, max: defaultBatchLimits.batchBytesMax },
  'linger-ms': { kind: 'int', min: 0, max: 60_000 },
  acks: { kind: 'string', values: ['all', 'leader'] },
  count: { kind: 'int', min: 1, max: countMax },
  duration: { kind: 'int', min: 1, max: durationSMax },
  rate: { kind: 'int', min: 1, max: rateMax },
  'read-from': { kind: 'string', values: ['leader', 'follower', 'nearest'] },
  json: { kind: 'boolean' },
  quiet: { kind: 'boolean' },
}

export type BenchMode = 'produce' | 'consume' | 'e2e'
const modes: readonly BenchMode[] = ['produce', 'consume', 'e2e']

/** Everything one bench run needs, from the flags (`parseBenchArgs`) or built by bench/matrix.ts. */
export interface BenchOptions {
  readonly mode: BenchMode
  readonly target: Target
  readonly topic: string
  /** Used only when the topic is created. */
  readonly partitions: number
  readonly replicationFactor: number
  readonly persistence: 'sync' | 'async' | 'memory' | undefined
  readonly producers: number
  readonly recordBytes: number
  readonly batchBytes: number | undefined
  readonly lingerMs: number | undefined
  readonly acks: 'all' | 'leader'
  readonly count: number
  readonly durationMs: number
  /** e2e: records/s offered. */
  readonly rate: number
  readonly readFrom: ReadFrom
  readonly json: boolean
  readonly quiet: boolean
}

/** The flags after `rill bench` as options; UsageError on anything wrong. */
export function parseBenchArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): BenchOptions | 'help' {
  const parsed = parseArgs(argv, benchFlags)
  if (parsed.flags.help === true) return 'help'
  const [mode] = expectPositionals(parsed, ['produce|consume|e2e'])
  if (!modes.includes(mode as BenchMode)) throw new UsageError(`expected produce, consume or e2e, got "${mode}"`)
  const f = parsed.flags
  const topic = (f.topic as string | undefined) ?? 'rill-bench'
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(topic)) throw new UsageError(`--topic expects 1..249 of [A-Za-z0-9._-], got "${topic}"`)
  const rate = (f.rate as number | undefined) ?? 10_000
  if (f.rate !== undefined && mode !== 'e2e') throw new UsageError('--rate is for e2e (produce and consume go as fast as they can)')
  const durationMs = ((f.duration as number | undefined) ?? durationSDefault) * 1000
  const count = (f.count as number | undefined) ?? (mode === 'e2e' ? Math.min(countMax, Math.ceil((rate * durationMs) / 1000)) : countDefault)
  return {
    mode: mode as BenchMode,
    target: target(f, env),
    topic,
    partitions: (f.partitions as number | undefined) ?? 6,
    replicationFactor: (f['replication-factor'] as number | undefined) ?? 3,
    persistence: f.persistence as BenchOptions['persistence'],
    producers: (f.producers as number | undefined) ?? 1,
    recordBytes: (f['record-bytes'] as number | undefined) ?? 100,
    batchBytes: f['batch-bytes'] as number | undefined,
    lingerMs: f['linger-ms'] as number | undefined,
    acks: (f.acks as 'all' | 'leader' | undefined) ?? 'all',
    count,
    durationMs,
    rate,
    readFrom: (f['read-from'] as ReadFrom | undefined) ?? 'leader',
    json: f.json === true,
    quiet: f.quiet === true,
  }
}

// ---- latency histogram -------------------------------------------------------

/** Smallest latency told apart, ms (1 µs). */
const histogramMinMs = 0.001
/** Bucket growth: each bucket is 1% wider than the last, so a quantile is within 1%. */
const histogramGrowth = 1.01
/** Buckets: 1 µs · 1.01^2000 ≈ 440 s, more than any run lasts. */
const histogramBuckets = 2_000

/** Latencies in log-spaced buckets: fixed memory whatever the count, quantiles within 1%. */
export class LatencyHistogram {
  readonly #counts = new Float64Array(histogramBuckets)
  #total = 0
  #maxMs = 0

  /** Adds `weight` samples of `ms`. */
  record(ms: number, weight = 1): void {
    const v = Math.max(ms, histogramMinMs)
    const i = Math.min(histogramBuckets - 1, Math.floor(Math.log(v / histogramMinMs) / Math.log(histogramGrowth)))
    this.#counts[i]! += weight
    this.#total += weight
    if (ms > this.#maxMs) this.#maxMs = ms
  }

  get count(): number {
    return this.#total
  }

  /** The latency below which a fraction `q` of the samples are (the bucket's upper bound), ms; 0 when empty. */
  quantile(q: number): number {
    if (this.#total === 0) return 0
    const rank = q * this.#total
    let seen = 0
    for (let i = 0; i < histogramBuckets; i++) {
      seen += this.#counts[i]!
      if (seen >= rank && this.#counts[i]! > 0) return Math.min(this.#maxMs, histogramMinMs * histogramGrowth ** (i + 1))
    }
    return this.#maxMs
  }

  summary(): LatencySummary {
    const round = (ms: number): number => Math.round(ms * 1000) / 1000
    return { p50: round(this.quantile(0.5)), p99: round(this.quantile(0.99)), p999: round(this.quantile(0.999)), max: round(this.#maxMs), samples: this.#total }
  }
}

/** Quantiles of a LatencyHistogram, ms. */
export interface LatencySummary {
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  readonly samples: number
}

// ---- results -----------------------------------------------------------------

/** What a run did, as `--json` prints it. */
export interface BenchResult {
  readonly mode: BenchMode
  readonly topic: string
  /** The topic as the cluster describes it. */
  readonly partitions: number
  readonly replicationFactor: number
  readonly persistence: string | null
  /** Value bytes per record: --record-bytes (produce, e2e), the mean read (consume). */
  readonly recordBytes: number
  /** Records acknowledged (produce, e2e) or read (consume). */
  readonly records: number
  readonly bytes: number
  readonly seconds: number
  readonly recordsPerSec: number
  readonly mbPerSec: number
  /** A run stopped early by Ctrl-C. */
  readonly interrupted: boolean
  /** Set by produce and e2e. */
  readonly producers?: number
  readonly acks?: string
  readonly batchBytes?: number | null
  readonly lingerMs?: number | null
  /** Run id in the value headers (produce, e2e): what consume verifies against. */
  readonly runId?: number
  /** Send → acknowledged, per `send` call of up to 100 records, weighted by its records, ms. */
  readonly ackLatencyMs?: LatencySummary
  /** consume, e2e. */
  readonly readFrom?: ReadFrom
  /** e2e: records/s offered, and what was received. */
  readonly rate?: number
  readonly received?: number
  /** e2e: due to be sent → handed to the consumer, per record, ms. */
  readonly e2eLatencyMs?: LatencySummary
  /** consume with `verify`: records of the run not read, and read more than once. */
  readonly verified?: { readonly expected: number; readonly missing: number; readonly duplicates: number }
}

/** What a run reports to (the CLI: stderr; bench/matrix.ts: its own log). */
export interface BenchContext {
  readonly progress: (line: string) => void
  /** Stops the run early (Ctrl-C): what was sent is awaited, the result says `interrupted`. */
  readonly signal: AbortSignal
}

/** Records and value bytes over `ms` as rates. */
function rates(records: number, bytes: number, ms: number): { records: number; bytes: number; seconds: number; recordsPerSec: number; mbPerSec: number } {
  const seconds = Math.max(ms, 1) / 1000
  return { records, bytes, seconds: round3(seconds), recordsPerSec: Math.round(records / seconds), mbPerSec: round3(bytes / seconds / 1e6) }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

/** The summary line of a result. */
export function summaryLine(r: BenchResult): string {
  const parts = [`${r.mode} ${r.topic}: ${fmt(r.records)} records of ${r.recordBytes} B in ${r.seconds.toFixed(1)} s: ${fmt(r.recordsPerSec)} records/s, ${r.mbPerSec.toFixed(1)} MB/s`]
  if (r.ackLatencyMs !== undefined) parts.push(`ack latency p50 ${ms(r.ackLatencyMs.p50)} p99 ${ms(r.ackLatencyMs.p99)} p99.9 ${ms(r.ackLatencyMs.p999)}`)
  if (r.e2eLatencyMs !== undefined) parts.push(`e2e latency p50 ${ms(r.e2eLatencyMs.p50)} p99 ${ms(r.e2eLatencyMs.p99)} p99.9 ${ms(r.e2eLatencyMs.p999)} (offered ${fmt(r.rate!)}/s, received ${fmt(r.received!)})`)
  if (r.verified !== undefined) parts.push(`read back ${fmt(r.verified.expected - r.verified.missing)} of ${fmt(r.verified.expected)}`)
  return parts.join('; ') + (r.interrupted ? ' (interrupted)' : '')
}

function ms(v: number): string {
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`
}

// ---- topic -------------------------------------------------------------------

/** The topic as described; created first when missing and `create` (produce, e2e). */
async function ensureTopic(o: BenchOptions, create: boolean, ctx: BenchContext): Promise<TopicDescription> {
  const path = `/v1/topics/${encodeURIComponent(o.topic)}`
  try {
    return await request<TopicDescription>(o.target, 'GET', path)
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== 'UNKNOWN_TOPIC') throw error
    if (!create) throw new CliError(`UNKNOWN_TOPIC: no topic "${o.topic}" (rill bench produce --topic ${o.topic} writes one)`)
  }
  const body: CreateTopicRequest = {
    name: o.topic,
    partitions: o.partitions,
    replicationFactor: o.replicationFactor,
    ...(o.persistence === undefined ? {} : { config: { persistence: o.persistence } }),
  }
  ctx.progress(`creating topic ${o.topic}: ${o.partitions} partitions, replication factor ${o.replicationFactor}${o.persistence === undefined ? '' : `, ${o.persistence}`}`)
  try {
    await request(o.target, 'POST', '/v1/topics', { body })
  } catch (error) {
    // Another bench created it meanwhile: use it.
    if (!(error instanceof ApiError) || error.code !== 'TOPIC_EXISTS') throw error
  }
  return request<TopicDescription>(o.target, 'GET', path)
}

/**
 * Each partition's high watermark now. A broker describes the partitions it
 * hosts from its own replica and the others from a poll that may be a
 * second old, so every broker is asked and the highest answer taken (one
 * of them hosts the partition).
 */
async function highWatermarks(o: BenchOptions, topic: TopicDescription): Promise<Map<number, number>> {
  const out = new Map(topic.partitions.map((p) => [p.partition, p.highWatermark]))
  const meta = await request<MetadataResponse>(o.target, 'GET', '/v1/metadata')
  const path = `/v1/topics/${encodeURIComponent(o.topic)}`
  await Promise.all(
    meta.brokers.map(async (b) => {
      let t: TopicDescription
      try {
        t = await request<TopicDescription>({ ...o.target, url: b.url, urls: [b.url] }, 'GET', path)
      } catch (error) {
        // A broker down is one answer fewer (its partitions' other replicas answer for them), not a failed bench.
        if (error instanceof UnreachableError) return
        throw error
      }
      for (const p of t.partitions) out.set(p.partition, Math.max(out.get(p.partition) ?? 0, p.highWatermark))
    }),
  )
  return out
}

function topicFields(t: TopicDescription): Pick<BenchResult, 'topic' | 'partitions' | 'replicationFactor' | 'persistence'> {
  return { topic: t.name, partitions: t.partitions.length, replicationFactor: t.replicationFactor, persistence: (t.config as { persistence?: string } | undefined)?.persistence ?? null }
}

// ---- records -----------------------------------------------------------------

/** A value of `recordBytes`: the header, then filler. */
function valueOf(runId: number, seq: number, dueMs: number, recordBytes: number): Uint8Array {
  const b = Buffer.allocUnsafe(recordBytes)
  b.writeUInt32LE(runId, 0)
  b.writeUInt32LE(seq, 4)
  b.writeDoubleLE(dueMs, 8)
  b.fill(0x78, headerBytes) // 'x'
  return b
}

/** The header of a value (null for a value too short to be one of ours). */
function headerOf(value: Uint8Array): { runId: number; seq: number; dueMs: number } | null {
  if (value.byteLength < headerBytes) return null
  const view = new DataView(value.buffer, value.byteOffset, headerBytes)
  return { runId: view.getUint32(0, true), seq: view.getUint32(4, true), dueMs: view.getFloat64(8, true) }
}

/** One bit per sequence number: which records of a run were seen. */
class SeenSet {
  readonly #bits: Uint8Array
  distinct = 0
  duplicates = 0

  constructor(readonly size: number) {
    this.#bits = new Uint8Array(Math.ceil(size / 8))
  }

  /** Marks `seq`: true the first time, false when seen before (counted as a duplicate) or out of range. */
  add(seq: number): boolean {
    if (seq >= this.size) return false
    const mask = 1 << (seq & 7)
    const byte = seq >>> 3
    if ((this.#bits[byte]! & mask) !== 0) {
      this.duplicates++
      return false
    }
    this.#bits[byte]! |= mask
    this.distinct++
    return true
  }
}

// ---- produce -------------------------------------------------------------------

/** Counters shared by the producers of one run. */
interface SendState {
  next: number
  acked: number
  failure: unknown
  readonly ack: LatencyHistogram
}

function newProducer(o: BenchOptions, i: number): Producer {
  return new Producer({
    brokers: o.target.urls,
    ...(o.target.tls === undefined ? {} : { tls: o.target.tls }),
    ...(o.target.token === undefined ? {} : { token: o.target.token }),
    acks: o.acks,
    ...(o.batchBytes === undefined ? {} : { batchBytes: o.batchBytes }),
    ...(o.lingerMs === undefined ? {} : { lingerMs: o.lingerMs }),
    deliveryTimeoutMs,
    clientId: `rill-bench-${i}`,
  })
}

/**
 * One producer's loop: claims up to `sendRecordsMax` sequence numbers at a
 * time (while `due()` allows) and sends them, at most `sendsInFlightMax`
 * sends unsettled. Returns when the budget is spent, time is up, the run is
 * stopped or a send failed (recorded in `state.failure`).
 */
async function producerLoop(p: Producer, o: BenchOptions, runId: number, state: SendState, due: () => { upTo: number; dueMs: (seq: number) => number } | null): Promise<void> {
  const inFlight: Promise<void>[] = []
  for (;;) {
    if (state.failure !== undefined) break
    const window = due()
    if (window === null) break
    const first = state.next
    const n = Math.min(sendRecordsMax, window.upTo - first)
    if (n <= 0) {
      await systemRuntime.sleep(paceTickMs)
      continue
    }
    state.next += n
    const records = []
    for (let seq = first; seq < first + n; seq++) records.push({ value: valueOf(runId, seq, window.dueMs(seq), o.recordBytes) })
    const t0 = systemRuntime.nowMs()
    inFlight.push(
      p.send(o.topic, records).then(
        () => {
          state.ack.record(systemRuntime.nowMs() - t0, n)
          state.acked += n
        },
        (error: unknown) => {
          state.failure ??= error
        },
      ),
    )
    if (inFlight.length >= sendsInFlightMax) await inFlight.shift()
  }
  await Promise.all(inFlight)
}

/** Producers over one budget; `due` paces them (null: stop). */
async function runProducers(o: BenchOptions, runId: number, state: SendState, due: () => { upTo: number; dueMs: (seq: number) => number } | null): Promise<void> {
  const producers = Array.from({ length: o.producers }, (_, i) => newProducer(o, i))
  try {
    await producers[0]!.partitionsFor(o.topic)
    await Promise.all(producers.map((p) => producerLoop(p, o, runId, state, due)))
  } finally {
    await Promise.all(producers.map((p) => p.close().catch(() => undefined)))
  }
  if (state.failure !== undefined) throw asCliError(state.failure)
}

/** Calls `line()` every second until the returned stop function is called. */
function ticker(ctx: BenchContext, line: (elapsedMs: number, intervalMs: number) => string): () => void {
  const done = new AbortController()
  const startMs = systemRuntime.nowMs()
  let lastMs = startMs
  void (async () => {
    while (!done.signal.aborted) {
      await systemRuntime.sleep(progressIntervalMs, done.signal)
      if (done.signal.aborted) return
      const now = systemRuntime.nowMs()
      ctx.progress(line(now - startMs, now - lastMs))
      lastMs = now
    }
  })()
  return () => done.abort()
}

/** `rill bench produce`: as fast as the producers take records, for `count` records or `durationMs`. */
export async function benchProduce(o: BenchOptions, ctx: BenchContext): Promise<BenchResult> {
  const topic = await ensureTopic(o, true, ctx)
  const runId = randomInt(2 ** 32 - 1)
  const state: SendState = { next: 0, acked: 0, failure: undefined, ack: new LatencyHistogram() }
  const startMs = systemRuntime.nowMs()
  const endMs = startMs + o.durationMs
  let lastAcked = 0
  const stopTicker = ticker(ctx, (elapsed, interval) => {
    const now = state.acked - lastAcked
    lastAcked = state.acked
    return `produce: ${(elapsed / 1000).toFixed(0)} s, ${fmt(state.acked)} acknowledged, ${fmt((now * 1000) / interval)} records/s now, ${((now * o.recordBytes) / interval / 1000).toFixed(1)} MB/s, ack p99 ${ms(state.ack.quantile(0.99))}`
  })
  const all = { upTo: o.count, dueMs: () => systemRuntime.nowMs() }
  try {
    await runProducers(o, runId, state, () => (ctx.signal.aborted || state.next >= o.count || systemRuntime.nowMs() >= endMs ? null : all))
  } finally {
    stopTicker()
  }
  return {
    mode: 'produce',
    ...topicFields(topic),
    recordBytes: o.recordBytes,
    ...rates(state.acked, state.acked * o.recordBytes, systemRuntime.nowMs() - startMs),
    interrupted: ctx.signal.aborted,
    producers: o.producers,
    acks: o.acks,
    batchBytes: o.batchBytes ?? null,
    lingerMs: o.lingerMs ?? null,
    runId,
    ackLatencyMs: state.ack.summary(),
  }
}

// ---- consume -------------------------------------------------------------------

function newConsumer(o: BenchOptions, fromBeginning: boolean): Consumer {
  return new Consumer({
    brokers: o.target.urls,
    ...(o.target.tls === undefined ? {} : { tls: o.target.tls }),
    ...(o.target.token === undefined ? {} : { token: o.target.token }),
    readFrom: o.readFrom,
    fromBeginning,
    clientId: 'rill-bench',
  })
}

/**
 * `rill bench consume`: reads every partition from its start up to the
 * high watermark it had when the run began (at most `count` records, for
 * at most `durationMs`). With `verify`, also checks that every record of
 * that produce run (sequence 0..expected-1) was read, once.
 */
export async function benchConsume(o: BenchOptions, ctx: BenchContext, verify?: { runId: number; expected: number }): Promise<BenchResult> {
  const topic = await ensureTopic(o, false, ctx)
  const ends = await highWatermarks(o, topic)
  const reached = new Map(topic.partitions.map((p) => [p.partition, 0]))
  let pending = [...ends.values()].filter((hw) => hw > 0).length
  const seen = verify === undefined ? null : new SeenSet(verify.expected)
  let read = 0
  let bytes = 0
  const startMs = systemRuntime.nowMs()
  const deadline = new AbortController()
  const timer = systemRuntime.setTimer(() => deadline.abort(), o.durationMs)
  const signal = AbortSignal.any([deadline.signal, ctx.signal])
  let lastRead = 0
  let lastBytes = 0
  const stopTicker = ticker(ctx, (elapsed, interval) => {
    const now = read - lastRead
    const nowBytes = bytes - lastBytes
    lastRead = read
    lastBytes = bytes
    return `consume: ${(elapsed / 1000).toFixed(0)} s, ${fmt(read)} read, ${fmt((now * 1000) / interval)} records/s now, ${(nowBytes / interval / 1000).toFixed(1)} MB/s`
  })
  const consumer = newConsumer(o, true)
  try {
    if (pending > 0) {
      await consumer.subscribe([o.topic])
      for await (const batch of consumer.batches({ signal })) {
        const end = ends.get(batch.partition) ?? 0
        // Only what was there when the run began, and no more than --count: records written meanwhile are not this run's.
        const records = batch.records.filter((r) => r.offset < end).slice(0, o.count - read)
        read += records.length
        for (const r of records) bytes += r.value.byteLength
        if (seen !== null) countRun(records, verify!.runId, seen)
        const last = batch.records[batch.records.length - 1]!.offset + 1
        if (reached.get(batch.partition)! < end && last >= end) pending--
        reached.set(batch.partition, last)
        if (pending === 0 || read >= o.count) break
      }
    }
  } finally {
    stopTicker()
    timer.cancel()
    await consumer.close().catch(() => undefined)
  }
  const elapsedMs = systemRuntime.nowMs() - startMs
  return {
    mode: 'consume',
    ...topicFields(topic),
    recordBytes: read === 0 ? 0 : Math.round(bytes / read),
    ...rates(read, bytes, elapsedMs),
    interrupted: ctx.signal.aborted,
    readFrom: o.readFrom,
    ...(seen === null ? {} : { verified: { expected: verify!.expected, missing: verify!.expected - seen.distinct, duplicates: seen.duplicates } }),
  }
}

/** Marks the records of run `runId` in `seen`. */
function countRun(records: readonly ConsumerRecord[], runId: number, seen: SeenSet): void {
  for (const r of records) {
    const h = headerOf(r.value)
    if (h !== null && h.runId === runId) seen.add(h.seq)
  }
}

// ---- e2e ---------------------------------------------------------------------

/**
 * `rill bench e2e`: producers offer `rate` records/s (each record due at
 * start + seq/rate); a consumer positioned at the log end before the first
 * send reads them back and measures due → received. Fails (CliError) when
 * an acknowledged record is not received within `e2eDrainMs`.
 */
export async function benchE2e(o: BenchOptions, ctx: BenchContext): Promise<BenchResult> {
  const topic = await ensureTopic(o, true, ctx)
  const runId = randomInt(2 ** 32 - 1)
  const state: SendState = { next: 0, acked: 0, failure: undefined, ack: new LatencyHistogram() }
  const e2e = new LatencyHistogram()
  const seen = new SeenSet(o.count)
  const consumer = newConsumer(o, false)
  // Start every partition at its current end, so only this run's records (and whatever others write meanwhile) are read.
  for (const [partition, hw] of await highWatermarks(o, topic)) consumer.seek(o.topic, partition, hw)
  const reading = new AbortController()
  let lastAcked = 0
  let stopTicker = (): void => undefined
  let startMs = systemRuntime.nowMs()
  const readLoop = (async (): Promise<void> => {
    for await (const batch of consumer.batches({ signal: reading.signal })) {
      const now = systemRuntime.nowMs()
      for (const r of batch.records) {
        const h = headerOf(r.value)
        if (h === null || h.runId !== runId || !seen.add(h.seq)) continue
        e2e.record(now - h.dueMs)
      }
      if (state.failure === undefined && seen.distinct >= o.count) return
    }
  })()
  readLoop.catch(() => undefined)
  try {
    await consumer.subscribe([o.topic])
    await waitHeld(consumer, topic.partitions.length, ctx.signal)
    startMs = systemRuntime.nowMs()
    const endMs = startMs + o.durationMs
    stopTicker = ticker(ctx, (elapsed, interval) => {
      const now = state.acked - lastAcked
      lastAcked = state.acked
      return `e2e: ${(elapsed / 1000).toFixed(0)} s, ${fmt(state.acked)} acknowledged (${fmt((now * 1000) / interval)}/s of ${fmt(o.rate)} offered), ${fmt(seen.distinct)} received, e2e p99 ${ms(e2e.quantile(0.99))}`
    })
    const dueMs = (seq: number): number => startMs + (seq * 1000) / o.rate
    await runProducers(o, runId, state, () => {
      if (ctx.signal.aborted || state.next >= o.count) return null
      const now = systemRuntime.nowMs()
      if (now >= endMs) return null
      return { upTo: Math.min(o.count, Math.floor(((now - startMs) * o.rate) / 1000) + 1), dueMs }
    })
    await drain(readLoop, () => seen.distinct >= state.acked, ctx.signal)
  } finally {
    stopTicker()
    reading.abort()
    await readLoop.catch(() => undefined)
    await consumer.close().catch(() => undefined)
  }
  const elapsedMs = systemRuntime.nowMs() - startMs
  if (seen.distinct < state.acked && !ctx.signal.aborted) {
    throw new CliError(`LOST: ${fmt(state.acked - seen.distinct)} of ${fmt(state.acked)} acknowledged records not received within ${e2eDrainMs} ms of the last acknowledgement`)
  }
  return {
    mode: 'e2e',
    ...topicFields(topic),
    recordBytes: o.recordBytes,
    ...rates(state.acked, state.acked * o.recordBytes, elapsedMs),
    interrupted: ctx.signal.aborted,
    producers: o.producers,
    acks: o.acks,
    batchBytes: o.batchBytes ?? null,
    lingerMs: o.lingerMs ?? null,
    runId,
    ackLatencyMs: state.ack.summary(),
    readFrom: o.readFrom,
    rate: o.rate,
    received: seen.distinct,
    e2eLatencyMs: e2e.summary(),
  }
}

/** Waits (at most `consumerReadyMs`) until the consumer holds `partitions` partitions: records sent before would be skipped otherwise. */
async function waitHeld(consumer: Consumer, partitions: number, signal: AbortSignal): Promise<void> {
  const deadlineMs = systemRuntime.nowMs() + consumerReadyMs
  while (consumer.assignment().length < partitions) {
    if (signal.aborted) return
    if (systemRuntime.nowMs() > deadlineMs) throw new CliError(`TIMEOUT: the consumer did not hold the topic's ${partitions} partitions within ${consumerReadyMs} ms`)
    await systemRuntime.sleep(10, signal)
  }
}

/** Waits until `done()` (checked every 10 ms), the read loop ended, the run is stopped, or `e2eDrainMs` passed. */
async function drain(readLoop: Promise<void>, done: () => boolean, signal: AbortSignal): Promise<void> {
  let ended = false
  void readLoop.finally(() => (ended = true))
  const deadlineMs = systemRuntime.nowMs() + e2eDrainMs
  while (!done() && !ended && !signal.aborted && systemRuntime.nowMs() < deadlineMs) await systemRuntime.sleep(10, signal)
  if (ended) await readLoop // a failed read loop is the news
}

// ---- command -----------------------------------------------------------------

/** SDK errors as the CLI reports them: `CODE: message`, exit 1 (UNREACHABLE: exit 3). */
function asCliError(error: unknown): unknown {
  if (!(error instanceof RillClientError)) return error
  if (error.code === 'UNREACHABLE') return new UnreachableError(error.message)
  return new CliError(error.message.startsWith(error.code) ? error.message : `${error.code}: ${error.message}`)
}

/** Runs the bench `o.mode` says. */
export function runBench(o: BenchOptions, ctx: BenchContext): Promise<BenchResult> {
  if (o.mode === 'produce') return benchProduce(o, ctx)
  if (o.mode === 'consume') return benchConsume(o, ctx)
  return benchE2e(o, ctx)
}

export async function benchCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const o = parseBenchArgs(argv)
  if (o === 'help') {
    io.out(benchUsage.trimEnd())
    return 0
  }
  const ctx: BenchContext = { progress: o.quiet ? () => undefined : (line) => io.err(`rill bench ${line}`), signal: io.signal }
  let result: BenchResult
  try {
    result = await runBench(o, ctx)
  } catch (error) {
    throw asCliError(error)
  }
  io.out(o.json ? JSON.stringify(result) : summaryLine(result))
  return stopExitCode(io.stopReason())
}
