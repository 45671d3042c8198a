/**
 * `npm run bench:sdk` — what a user of the SDKs gets from a real cluster:
 * three broker processes on loopback (`node bin/rill.mjs broker`), one topic
 * per persistence mode (6 partitions, replication 3, acks=all).
 *
 *   per mode:  producer SDK, N records of S bytes, as fast as `send` takes them  → records/s, MB/s
 *              the same records as JSON over HTTP, one request per 100 records   → the edge's path, for scale
 *              producer SDK, one record at a time (linger 0), awaited          → ack latency p50 / p99
 *              consumer SDK in a group, reading everything back                 → records/s
 *
 * Every run is bounded by a record count and a time limit. Progress on
 * stderr; a Markdown table on stdout and in bench/results/sdk.md, a chart in
 * bench/results/sdk.svg. The machine is shared: compare rows of one run.
 *
 * Env: SDK_RECORDS (200000), SDK_RECORD_BYTES (100), SDK_LATENCY_SENDS (500),
 * SDK_RUN_S (60), SDK_MODES (sync,async), SDK_PHASES (sdk,json,lat,consume:
 * a subset for quick before/after runs; consume needs sdk).
 * SDK_VARIANTS: producer options to compare in one cluster, `;`-separated
 * JSON objects (`{}` is the defaults), run SDK_REPS (3) times each,
 * interleaved, one row per variant with the median (and the spread).
 * SDK_METRICS=regex prints the brokers' matching /metrics lines after the
 * producer SDK phase. A subset of phases or variants writes no result files.
 *
 * CPU µs/record: CPU time of this process (the producer) plus the three
 * brokers during the producer phase, per record; the machine is shared and
 * throughput swings 2-3x with its load, CPU per record much less. Per
 * process on stderr. To profile the brokers, preload a script that starts
 * node:inspector's Profiler (`--cpu-prof` is not allowed in NODE_OPTIONS):
 * NODE_OPTIONS='--import /path/to/preload.mjs' reaches the brokers too.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { request, Agent } from 'undici'
import { barChartSvg } from './chart.ts'
import { Producer, type ProducerOptions } from '../producer/index.ts'
import { Consumer } from '../consumer/index.ts'
import { call, waitFor, type TestCluster } from '../test/broker/helpers.ts'
import { loadAverage, quantile, startBenchCluster } from './lib.ts'

const records = Number(process.env.SDK_RECORDS ?? 200_000)
const recordBytes = Number(process.env.SDK_RECORD_BYTES ?? 100)
const latencySends = Number(process.env.SDK_LATENCY_SENDS ?? 500)
const runMs = Number(process.env.SDK_RUN_S ?? 60) * 1000
const modes = (process.env.SDK_MODES ?? 'sync,async').split(',') as ('sync' | 'async' | 'memory')[]
const variants = process.env.SDK_VARIANTS === undefined ? null : process.env.SDK_VARIANTS.split(';').map((v) => JSON.parse(v) as Partial<ProducerOptions>)
const reps = Number(process.env.SDK_REPS ?? 3)
const phases = new Set((process.env.SDK_PHASES ?? 'sdk,json,lat,consume').split(','))
const partitions = 6
const jsonBatch = 100
const jsonConcurrency = 16

interface Row {
  /** CPU time of the producer process and the three brokers per record (µs): what a shared machine's noise moves least. */
  cpuUsPerRecord?: number
  mode: string
  what: string
  records: number
  seconds: number
  recordsPerSec: number
  mbPerSec: number
  p50Ms?: number
  p99Ms?: number
}

/** CPU time (µs) used so far by this process and by the broker processes (Linux /proc; 0 elsewhere). */
function cpuUs(cluster: TestCluster): number {
  const own = process.cpuUsage()
  let us = own.user + own.system
  for (const b of cluster.brokers) {
    try {
      const fields = readFileSync(`/proc/${b.child!.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      us += ((Number(fields[11]) + Number(fields[12])) * 1e6) / clockTicksPerSec
    } catch {
      return 0
    }
  }
  return us
}
const clockTicksPerSec = 100

function progress(msg: string): void {
  process.stderr.write(`[bench:sdk] ${msg}\n`)
}

function value(i: number): string {
  const s = `record-${i}-`
  return s + 'x'.repeat(Math.max(0, recordBytes - s.length))
}

/** Producer SDK as fast as it takes records: `send` in chunks, never awaiting more than the buffer holds. */
async function produceSdk(cluster: TestCluster, topic: string, n: number, options: Partial<ProducerOptions> = {}): Promise<{ sent: number; ms: number; cpuUs: number }> {
  const brokers = cluster.brokers.map((b) => b.url)
  const producer = new Producer({ brokers, acks: 'all', ...options })
  const cpuStart = cpuUs(cluster)
  const ownStart = process.cpuUsage()
  const start = performance.now()
  let sent = 0
  const pending: Promise<unknown>[] = []
  try {
    for (let i = 0; i < n && performance.now() - start < runMs; i += 1000) {
      const chunk = []
      for (let j = i; j < Math.min(n, i + 1000); j++) chunk.push({ value: value(j) })
      pending.push(producer.send(topic, chunk))
      sent += chunk.length
      if (pending.length >= 64) await pending.shift()
      if (i % 50_000 === 0) progress(`  sdk produce ${i}/${n}`)
    }
    await Promise.all(pending)
    const ms = performance.now() - start
    const cpu = cpuUs(cluster) - cpuStart
    const own = process.cpuUsage(ownStart)
    progress(`  ${topic}: ${Math.round(sent / (ms / 1000))} records/s; CPU µs/record: producer ${((own.user + own.system) / sent).toFixed(1)}, brokers ${((cpu - own.user - own.system) / sent).toFixed(1)}`)
    return { sent, ms, cpuUs: cpu }
  } finally {
    await producer.close()
  }
}

/** SDK_VARIANTS: each variant SDK_REPS times, round-robin (a noisy machine drifts; interleaving spreads the drift over all variants). */
async function compareVariants(cluster: TestCluster, mode: string, rows: Row[]): Promise<void> {
  const rates: number[][] = variants!.map(() => [])
  const cpus: number[][] = variants!.map(() => [])
  let sent = 0
  for (let rep = 0; rep < reps; rep++) {
    for (let v = 0; v < variants!.length; v++) {
      const p = await produceSdk(cluster, `sdk-${mode}`, records, variants![v])
      sent = p.sent
      rates[v]!.push(p.sent / (p.ms / 1000))
      cpus[v]!.push(p.cpuUs / p.sent)
      progress(`  ${mode} rep ${rep} ${JSON.stringify(variants![v])}: ${Math.round(p.sent / (p.ms / 1000))} records/s, ${(p.cpuUs / p.sent).toFixed(1)} µs CPU/record`)
    }
  }
  variants!.forEach((v, i) => {
    const sorted = rates[i]!.slice().sort((a, b) => a - b)
    const median = sorted[Math.floor(sorted.length / 2)]!
    const spread = sorted.map((r) => Math.round(r / 1000)).join('/')
    const cpu = cpus[i]!.slice().sort((a, b) => a - b)
    rows.push(row(mode, `produce, SDK ${JSON.stringify(v)} (median of ${sorted.length}: ${spread}k)`, sent, (sent / median) * 1000, { cpuUsPerRecord: cpu[Math.floor(cpu.length / 2)]! }))
  })
}

/** The same records as JSON over HTTP (the curl path): 100 per request, 16 requests at a time, round-robin partitions, each to its leader. */
async function produceJson(url: string, topic: string, n: number): Promise<{ sent: number; ms: number }> {
  const meta = (await call(url, 'GET', '/v1/metadata')).body as { brokers: { id: number; url: string }[]; topics: { name: string; partitions: { partition: number; leader: number | null }[] }[] }
  const leaders = meta.topics.find((t) => t.name === topic)!.partitions.map((p) => meta.brokers.find((b) => b.id === p.leader)?.url ?? url)
  const dispatcher = new Agent({ connections: jsonConcurrency })
  const start = performance.now()
  let next = 0
  let sent = 0
  const worker = async (): Promise<void> => {
    while (next < n && performance.now() - start < runMs) {
      const first = next
      next += jsonBatch
      const recs = []
      for (let j = first; j < Math.min(n, first + jsonBatch); j++) recs.push({ value: value(j) })
      const p = (first / jsonBatch) % partitions
      const r = await request(`${leaders[p]}/v1/topics/${topic}/partitions/${p}/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ records: recs, acks: 'all' }),
        dispatcher,
      })
      const text = await r.body.text()
      if (r.statusCode !== 200) throw new Error(`JSON produce: ${r.statusCode} ${text}`)
      sent += recs.length
    }
  }
  try {
    await Promise.all(Array.from({ length: jsonConcurrency }, worker))
    return { sent, ms: performance.now() - start }
  } finally {
    await dispatcher.close()
  }
}

/** One record at a time, each awaited: the acknowledgement latency a request/response user sees. */
async function latency(brokers: string[], topic: string): Promise<number[]> {
  const producer = new Producer({ brokers, acks: 'all', lingerMs: 0 })
  const out: number[] = []
  const start = performance.now()
  try {
    for (let i = 0; i < latencySends && performance.now() - start < runMs; i++) {
      const t0 = performance.now()
      await producer.send(topic, { value: value(i) })
      out.push(performance.now() - t0)
    }
    return out.sort((a, b) => a - b)
  } finally {
    await producer.close()
  }
}

/** A one-member group reads the topic from the beginning until it has `n` records. */
async function consume(brokers: string[], topic: string, n: number): Promise<{ read: number; ms: number }> {
  const consumer = new Consumer({ brokers, groupId: `bench-${topic}`, fromBeginning: true, readFrom: 'leader' })
  await consumer.subscribe([topic])
  const start = performance.now()
  let read = 0
  try {
    for await (const batch of consumer) {
      read += batch.records.length
      if (read >= n || performance.now() - start > runMs) break
      if (read % 50_000 < batch.records.length) progress(`  consume ${read}/${n}`)
    }
    return { read, ms: performance.now() - start }
  } finally {
    await consumer.close()
  }
}

/** SDK_METRICS=regex: the brokers' /metrics lines that match, summed per name and label set (what moved during the run). */
async function dumpMetrics(urls: string[], pattern: string): Promise<void> {
  const re = new RegExp(pattern)
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text()
    for (const line of text.split('\n')) if (!line.startsWith('#') && re.test(line)) progress(`  ${url} ${line}`)
  }
}

/** A chart label for a row. */
function short(what: string): string {
  if (what.includes('JSON')) return 'produce JSON'
  return what.startsWith('consume') ? 'consume SDK' : 'produce SDK'
}

function row(mode: string, what: string, n: number, ms: number, extra: Partial<Row> = {}): Row {
  const seconds = ms / 1000
  return { mode, what, records: n, seconds, recordsPerSec: n / seconds, mbPerSec: (n * recordBytes) / seconds / 1e6, ...extra }
}

async function main(): Promise<void> {
  progress(`records ${records} x ${recordBytes} B, modes ${modes.join(', ')}`)
  const cluster: TestCluster = await startBenchCluster(progress)
  const rows: Row[] = []
  try {
    const url = cluster.brokers[0]!.url
    const brokers = cluster.brokers.map((b) => b.url)
    for (const mode of modes) {
      for (const name of [`sdk-${mode}`, `json-${mode}`, `lat-${mode}`]) {
        const r = await call(url, 'POST', '/v1/topics', { name, partitions, replicationFactor: 3, config: { persistence: mode } })
        if (r.status !== 201) throw new Error(`create ${name}: ${JSON.stringify(r.body)}`)
      }
      // Leaders elected and settled on their preferred replicas (metadata polls every few seconds).
      await waitFor(
        async () => {
          const m = (await call(url, 'GET', '/v1/metadata')).body as { topics: { name: string; partitions: { leader: number | null; replicas: number[] }[] }[] }
          return m.topics.filter((t) => t.name.endsWith(`-${mode}`)).every((t) => t.partitions.every((p) => p.leader === p.replicas[0]))
        },
        60_000,
        `${mode} topics led by their preferred replicas`,
      )
      let produced = 0
      if (variants !== null) {
        await compareVariants(cluster, mode, rows)
      } else if (phases.has('sdk')) {
        progress(`${mode}: producer SDK`)
        const p = await produceSdk(cluster, `sdk-${mode}`, records)
        rows.push(row(mode, 'produce, SDK (batches, acks=all)', p.sent, p.ms, { cpuUsPerRecord: p.cpuUs / p.sent }))
        produced = p.sent
        if (process.env.SDK_METRICS !== undefined) await dumpMetrics(brokers, process.env.SDK_METRICS)
      }
      if (phases.has('json')) {
        progress(`${mode}: JSON over HTTP`)
        const j = await produceJson(url, `json-${mode}`, records)
        rows.push(row(mode, `produce, JSON HTTP (${jsonBatch}/request)`, j.sent, j.ms))
      }
      if (phases.has('lat')) {
        progress(`${mode}: ack latency`)
        const l = await latency(brokers, `lat-${mode}`)
        rows.push(row(mode, 'produce, SDK, one awaited send at a time', l.length, l.reduce((a, b) => a + b, 0), { p50Ms: quantile(l, 0.5), p99Ms: quantile(l, 0.99) }))
      }
      if (phases.has('consume') && produced > 0) {
        progress(`${mode}: consumer SDK (group)`)
        const c = await consume(brokers, `sdk-${mode}`, produced)
        rows.push(row(mode, 'consume, SDK (group, from leader)', c.read, c.ms))
      }
    }
  } finally {
    await cluster.stopAll()
  }
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
  const lines = [
    `# bench:sdk — SDKs against 3 local brokers`,
    '',
    `${new Date().toISOString()}; ${recordBytes}-byte records; topic of ${partitions} partitions, replication 3, acks=all; load average at end ${loadAverage()}.`,
    '',
    '| mode | what | records | records/s | MB/s | p50 ms | p99 ms | CPU µs/record |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.mode} | ${r.what} | ${fmt(r.records)} | ${fmt(r.recordsPerSec)} | ${r.mbPerSec.toFixed(1)} | ${r.p50Ms?.toFixed(2) ?? ''} | ${r.p99Ms?.toFixed(2) ?? ''} | ${r.cpuUsPerRecord?.toFixed(1) ?? ''} |`),
    '',
  ]
  const md = lines.join('\n')
  process.stdout.write(md)
  // A subset of phases, or variants, is a quick comparison, not the table of record.
  if (process.env.SDK_PHASES !== undefined || variants !== null) return
  writeFileSync(new URL('./results/sdk.md', import.meta.url), md)
  writeFileSync(
    new URL('./results/sdk.svg', import.meta.url),
    barChartSvg({ title: `SDK throughput, ${recordBytes} B records, 3 brokers`, unit: 'records/s', bars: rows.filter((r) => r.p50Ms === undefined).map((r) => ({ label: `${r.mode} ${short(r.what)}`, value: Math.round(r.recordsPerSec) })) }),
  )
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
