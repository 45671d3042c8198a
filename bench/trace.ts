/**
 * `npm run bench:trace` — where the time of one acknowledged record goes:
 * three broker processes on loopback (`node bin/rill.mjs broker`, as
 * bench:sdk starts them), one topic per persistence mode (1 partition,
 * replication 3, acks=all), records sent one at a time, each awaited.
 *
 *   per mode:  producer SDK (linger 0), one awaited send at a time      → client latency p50 / p99
 *              plain HTTP (undici, keep-alive), one awaited POST at a time → client latency p50 / p99
 *              POST → a follower's parked long poll answers                → produce → visible on a follower
 *              the brokers' own stage histograms during those phases       → per-stage p50 / p99
 *
 * The brokers run with RILL_TRACE_STAGES=1 (inherited from this process's
 * environment): each records, per record, the time between its stages
 * (src/base/stage-trace.ts, enabled in src/broker/broker.ts) in the `rill_trace_stage_seconds` histogram
 * of /metrics; this script reads it before and after each phase and gives
 * the quantiles of the difference (interpolated in the bucket).
 *
 * Results on stdout, in bench/results/trace.md and bench/results/trace.svg;
 * what they mean, and the before/after of the fix: bench/results/trace-notes.md.
 * The machine is shared: compare rows of one run, and medians of several.
 *
 * Env: TRACE_SENDS (400 per phase), TRACE_ROUNDS (4: the phases take
 * turns in that many blocks), TRACE_MODES (sync,async),
 * TRACE_PHASES (sdk,http,follower), TRACE_OUT (bench/results: where the
 * table and chart go; `-` writes none).
 */
import { writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { Agent, request } from 'undici'
import { barChartSvg } from './chart.ts'
import { Producer } from '../producer/index.ts'
import { call, startCluster, waitFor, type TestCluster } from '../test/broker/helpers.ts'

process.env.RILL_TRACE_STAGES ??= '1'
const sends = Number(process.env.TRACE_SENDS ?? 400)
const rounds = Number(process.env.TRACE_ROUNDS ?? 4)
const modes = (process.env.TRACE_MODES ?? 'sync,async').split(',') as ('sync' | 'async' | 'memory')[]
const phases = new Set((process.env.TRACE_PHASES ?? 'sdk,http,follower').split(','))
const out = process.env.TRACE_OUT ?? new URL('./results', import.meta.url).pathname
/** Longest one phase may take (a bound, not a target). */
const phaseMsMax = 120_000
/** A follower's long poll waits at most this long for the record (ms). */
const pollWaitMs = 5000
/** Time given to a long poll to park on the follower before the record is produced (ms). */
const pollParkMs = 3
const recordValue = 'x'.repeat(100)

interface Row {
  readonly mode: string
  readonly what: string
  readonly n: number
  readonly p50Ms: number
  readonly p99Ms: number
}

function progress(msg: string): void {
  process.stderr.write(`[bench:trace] ${msg}\n`)
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

function clientRow(mode: string, what: string, ms: number[]): Row {
  const s = ms.slice().sort((a, b) => a - b)
  return { mode, what, n: s.length, p50Ms: quantile(s, 0.5), p99Ms: quantile(s, 0.99) }
}

// ───────────────────────────── broker stages ─────────────────────────────

/** stage → role → cumulative bucket counts (le seconds → count), summed over the brokers. */
type StageCounts = Map<string, Map<number, number>>

async function scrapeStages(cluster: TestCluster): Promise<StageCounts> {
  const counts: StageCounts = new Map()
  for (const b of cluster.brokers) {
    const text = await (await fetch(`${b.url}/metrics`)).text()
    for (const line of text.split('\n')) {
      const m = /^rill_trace_stage_seconds_bucket\{(.*)\} (\S+)$/.exec(line)
      if (m === null) continue
      const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]))
      const le = labels.le === '+Inf' ? Infinity : Number(labels.le)
      const key = labels.stage!
      const byLe = counts.get(key) ?? new Map<number, number>()
      byLe.set(le, (byLe.get(le) ?? 0) + Number(m[2]))
      counts.set(key, byLe)
    }
  }
  return counts
}

/** Quantile `q` of what a histogram counted between two scrapes, interpolated linearly in its bucket (ms). */
function histQuantile(before: Map<number, number> | undefined, after: Map<number, number>, q: number): { n: number; ms: number } {
  const les = [...after.keys()].sort((a, b) => a - b)
  const cum = les.map((le) => after.get(le)! - (before?.get(le) ?? 0))
  const n = cum[cum.length - 1] ?? 0
  if (n === 0) return { n, ms: NaN }
  const rank = q * n
  for (let i = 0; i < les.length; i++) {
    if (cum[i]! < rank) continue
    const lo = i === 0 ? 0 : les[i - 1]!
    const hi = les[i]! === Infinity ? lo : les[i]!
    const below = i === 0 ? 0 : cum[i - 1]!
    const inBucket = cum[i]! - below
    const frac = inBucket === 0 ? 1 : (rank - below) / inBucket
    return { n, ms: (lo + (hi - lo) * frac) * 1000 }
  }
  return { n, ms: NaN }
}

function stageRows(mode: string, phase: string, counted: StageCounts): Row[] {
  const rows: Row[] = []
  for (const [stage, byLe] of [...counted].sort((a, b) => stageOrder(a[0]) - stageOrder(b[0]))) {
    const p50 = histQuantile(undefined, byLe, 0.5)
    if (p50.n === 0) continue
    rows.push({ mode, what: `  ${phase}: ${stage}`, n: p50.n, p50Ms: p50.ms, p99Ms: histQuantile(undefined, byLe, 0.99).ms })
  }
  return rows
}

/** The stages in the order a record passes them (names as src/partition, src/broker record them). */
const stageNames = [
  'http.produce_received_to_handler',
  'leader.request_to_propose',
  'leader.propose_to_ready',
  'transport.queue_to_flush',
  'leader.propose_to_persisted',
  'follower.receive_to_persisted',
  'leader.propose_to_ack_received',
  'leader.propose_to_commit',
  'leader.commit_to_answer',
  'leader.request_to_answer',
  'http.produce_received_to_sent',
  'follower.receive_to_commit_learned',
  'follower.commit_learned_to_apply',
  'follower.apply_to_fetch_wake',
  'fetch.read',
  'http.fetch_records_to_sent',
]
function stageOrder(stage: string): number {
  const i = stageNames.indexOf(stage)
  return i < 0 ? stageNames.length : i
}

// ───────────────────────────── client phases ─────────────────────────────

interface Target {
  readonly topic: string
  readonly leaderUrl: string
  readonly followerUrl: string
}

async function target(cluster: TestCluster, topic: string): Promise<Target> {
  const url = cluster.brokers[0]!.url
  const meta = (await call(url, 'GET', '/v1/metadata')).body as { brokers: { id: number; url: string }[]; topics: { name: string; partitions: { leader: number | null; replicas: number[] }[] }[] }
  const p = meta.topics.find((t) => t.name === topic)!.partitions[0]!
  const urlOf = (id: number): string => meta.brokers.find((b) => b.id === id)!.url
  return { topic, leaderUrl: urlOf(p.leader!), followerUrl: urlOf(p.replicas.find((r) => r !== p.leader)!) }
}

async function sdkPhase(cluster: TestCluster, t: Target, n: number): Promise<number[]> {
  const producer = new Producer({ brokers: cluster.brokers.map((b) => b.url), acks: 'all', lingerMs: 0 })
  const ms: number[] = []
  const start = performance.now()
  try {
    // The first send learns metadata and the producer id: not part of the steady state.
    await producer.send(t.topic, { value: recordValue, partition: 0 })
    for (let i = 0; i < n && performance.now() - start < phaseMsMax; i++) {
      const t0 = performance.now()
      await producer.send(t.topic, { value: recordValue, partition: 0 })
      ms.push(performance.now() - t0)
    }
    return ms
  } finally {
    await producer.close()
  }
}

const produceBody = JSON.stringify({ records: [{ value: recordValue }], acks: 'all' })

async function post(dispatcher: Agent, t: Target): Promise<number> {
  const r = await request(`${t.leaderUrl}/v1/topics/${t.topic}/partitions/0/records`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: produceBody, dispatcher })
  const body = (await r.body.json()) as { lastOffset: number }
  if (r.statusCode !== 200) throw new Error(`produce: ${r.statusCode} ${JSON.stringify(body)}`)
  return body.lastOffset
}

async function httpPhase(t: Target, n: number): Promise<number[]> {
  const dispatcher = new Agent({ connections: 1 })
  const ms: number[] = []
  const start = performance.now()
  try {
    await post(dispatcher, t)
    for (let i = 0; i < n && performance.now() - start < phaseMsMax; i++) {
      const t0 = performance.now()
      await post(dispatcher, t)
      ms.push(performance.now() - t0)
    }
    return ms
  } finally {
    await dispatcher.close()
  }
}

/** A long poll parked on a follower at the end of the log; one record produced to the leader; the time until the poll answers with it. */
async function followerPhase(t: Target, n: number): Promise<{ ack: number[]; visible: number[] }> {
  const toLeader = new Agent({ connections: 1 })
  const toFollower = new Agent({ connections: 1 })
  const ack: number[] = []
  const visible: number[] = []
  const start = performance.now()
  try {
    let next = (await post(toLeader, t)) + 1
    for (let i = 0; i < n && performance.now() - start < phaseMsMax; i++) {
      // The follower may not have learnt the last commit yet: minCommitted makes the poll wait for it first.
      const poll = request(`${t.followerUrl}/v1/topics/${t.topic}/partitions/0/records?offset=${next}&minCommitted=${next}&maxWaitMs=${pollWaitMs}`, { dispatcher: toFollower })
        .then(async (r) => ({ at: performance.now(), status: r.statusCode, body: (await r.body.json()) as { records: unknown[]; nextOffset: number } }))
      await new Promise((r) => setTimeout(r, pollParkMs))
      const t0 = performance.now()
      const offset = await post(toLeader, t)
      ack.push(performance.now() - t0)
      const got = await poll
      if (got.status !== 200 || got.body.records.length === 0) throw new Error(`follower poll for offset ${offset}: ${got.status} ${JSON.stringify(got.body)}`)
      visible.push(got.at - t0)
      next = got.body.nextOffset
    }
    return { ack, visible }
  } finally {
    await toLeader.close()
    await toFollower.close()
  }
}

/** Runs one block of a phase and adds what the brokers' stage histograms counted meanwhile to `acc`. */
async function measured<T>(cluster: TestCluster, acc: StageCounts, run: () => Promise<T>): Promise<T> {
  const before = await scrapeStages(cluster)
  const result = await run()
  for (const [stage, byLe] of await scrapeStages(cluster)) {
    const sum = acc.get(stage) ?? new Map<number, number>()
    for (const [le, n] of byLe) sum.set(le, (sum.get(le) ?? 0) + n - (before.get(stage)?.get(le) ?? 0))
    acc.set(stage, sum)
  }
  return result
}

/** `leader.propose_to_commit` → `L propose→commit`; the client rows by their gist. */
function chartLabel(what: string): string {
  const client: Record<string, string> = {
    'SDK send → acknowledged': 'SDK ack',
    'HTTP POST → acknowledged': 'HTTP ack',
    'HTTP POST → acknowledged (poll parked)': 'HTTP ack (poll parked)',
    'HTTP POST → follower long poll answers': 'follower poll answers',
  }
  const w = what.trim()
  if (client[w] !== undefined) return client[w]!
  return w.replace(/^\w+: /, '').replace('commit_learned', 'commit').replace('leader.', 'L ').replace('follower.', 'F ').replace('transport.', 'T ').replace('http.', 'H ').replace('fetch.', 'F fetch ').replace(/_to_/g, '→').replace(/_/g, ' ')
}

async function main(): Promise<void> {
  progress(`starting 3 brokers (RILL_TRACE_STAGES=${process.env.RILL_TRACE_STAGES}; ${sends} sends per phase; modes ${modes.join(', ')})`)
  const cluster = await startCluster({ brokers: 3 })
  const rows: Row[] = []
  try {
    const url = cluster.brokers[0]!.url
    await waitFor(async () => (await call(url, 'GET', '/v1/metadata')).body.brokers.filter((b: { fenced?: boolean }) => !b.fenced).length === 3, 60_000, 'brokers registered')
    for (const mode of modes) {
      const topic = `trace-${mode}`
      const r = await call(url, 'POST', '/v1/topics', { name: topic, partitions: 1, replicationFactor: 3, config: { persistence: mode } })
      if (r.status !== 201) throw new Error(`create ${topic}: ${JSON.stringify(r.body)}`)
      await waitFor(
        async () => {
          const m = (await call(url, 'GET', '/v1/metadata')).body as { topics: { name: string; partitions: { leader: number | null; replicas: number[] }[] }[] }
          return m.topics.find((x) => x.name === topic)?.partitions.every((p) => p.leader === p.replicas[0]) === true
        },
        60_000,
        `${topic} led by its preferred replica`,
      )
      const t = await target(cluster, topic)
      // The phases take turns, TRACE_ROUNDS blocks each: a busy machine's drift spreads over all of them.
      const per = Math.max(1, Math.round(sends / rounds))
      const sdk: number[] = []
      const http: number[] = []
      const ack: number[] = []
      const visible: number[] = []
      const counted = { sdk: new Map(), http: new Map(), follower: new Map() } as Record<'sdk' | 'http' | 'follower', StageCounts>
      for (let round = 0; round < rounds; round++) {
        progress(`${mode}: round ${round + 1}/${rounds} (${[...phases].join(', ')}; ${per} sends each)`)
        if (phases.has('sdk')) sdk.push(...(await measured(cluster, counted.sdk, () => sdkPhase(cluster, t, per))))
        if (phases.has('http')) http.push(...(await measured(cluster, counted.http, () => httpPhase(t, per))))
        if (phases.has('follower')) {
          const f = await measured(cluster, counted.follower, () => followerPhase(t, per))
          ack.push(...f.ack)
          visible.push(...f.visible)
        }
      }
      if (phases.has('sdk')) rows.push(clientRow(mode, 'SDK send → acknowledged', sdk), ...stageRows(mode, 'sdk', counted.sdk))
      if (phases.has('http')) rows.push(clientRow(mode, 'HTTP POST → acknowledged', http), ...stageRows(mode, 'http', counted.http))
      if (phases.has('follower')) {
        rows.push(clientRow(mode, 'HTTP POST → acknowledged (poll parked)', ack), clientRow(mode, 'HTTP POST → follower long poll answers', visible), ...stageRows(mode, 'follower', counted.follower))
      }
    }
  } finally {
    await cluster.stopAll()
  }
  const f = (n: number): string => (Number.isNaN(n) ? '' : n.toFixed(2))
  const md = [
    '# bench:trace — one record at a time through 3 brokers',
    '',
    `${new Date().toISOString()}; 100-byte records; 1 partition, replication 3, acks=all; ${sends} sends per phase, the phases taking turns in ${rounds} blocks; load average at end ${loadavg()[0]!.toFixed(2)} (2 cores, shared).`,
    'Client rows: what the client measured. Indented rows: the brokers\' stage histograms (RILL_TRACE_STAGES=1) over that phase, summed over the 3 brokers; p50/p99 interpolated in their buckets.',
    'Where the time goes, what was changed and the before/after comparison: [trace-notes.md](trace-notes.md).',
    '',
    '| mode | what | n | p50 ms | p99 ms |',
    '| --- | --- | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.mode} | ${r.what.startsWith('  ') ? `&nbsp;&nbsp;${r.what.trim()}` : `**${r.what}**`} | ${r.n} | ${f(r.p50Ms)} | ${f(r.p99Ms)} |`),
    '',
  ].join('\n')
  process.stdout.write(md)
  if (out === '-') return
  writeFileSync(`${out}/trace.md`, md)
  // The client rows and the stages of the follower phase (the one that passes every stage), with labels short enough for the chart.
  const bars = rows.filter((r) => !r.what.startsWith('  ') || r.what.includes('follower:')).map((r) => ({ label: `${r.mode === 'sync' ? 's' : r.mode === 'async' ? 'a' : 'm'} ${chartLabel(r.what)}`, value: Number.isNaN(r.p50Ms) ? 0 : r.p50Ms }))
  writeFileSync(`${out}/trace.svg`, barChartSvg({ title: 'One record, acks=all, 3 brokers: p50 (s = sync, a = async; L leader, F follower)', unit: 'ms (p50)', bars }))
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
