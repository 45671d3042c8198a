/**
 * `npm run bench:http` — what a plain HTTP client gets: autocannon against a
 * fresh cluster of broker processes on loopback (3 by default), one topic per
 * persistence mode (6 partitions, replication 3, acks=all).
 *
 *   per mode, per body format (JSON, msgpack):
 *     produce  POST /v1/topics/:t/partitions/:p/records, 1,000 records of 100 B per request,
 *              the body built once and replayed; each partition's leader found first by
 *              following 421 NOT_LEADER (a probe record from another broker), connections
 *              spread over the partitions, every request to its partition's leader
 *     fetch    GET  .../records?offset=0&maxRecords=1000 from a follower of each partition
 *              (the same 1,000 records over and over: the read path, not the disk)
 *   → req/s, records/s, MB/s (record values), latency p50/p99 of every 2xx answer,
 *     and the row as a fraction of what the machine allows (bench/hardware.ts, same run):
 *     produce MB/s ÷ sequential write (and in `sync` requests/s ÷ fsync rate: each
 *     acknowledged request waited for at least one fdatasync unless several shared one),
 *     fetch MB/s ÷ loopback TCP.
 *
 * After each mode's produce rows the partitions' high watermarks are checked
 * against the acknowledged records (a benchmark that loses data has failed).
 * Progress on stderr once a second; results in bench/results/http.{json,md,svg}.
 *
 * Env: HTTP_DURATION_S (10 per row), HTTP_CONNECTIONS (12), HTTP_PARTITIONS (6),
 * HTTP_MODES (async,sync), HTTP_RECORDS (1000 per request), HTTP_RECORD_BYTES (100),
 * HTTP_BROKERS (3), HTTP_HARDWARE (1; 0 skips it), HW_PHASE_MS (hardware phase, ms),
 * HTTP_RESULTS_DIR (bench/results), HTTP_NOTE (a line for the results).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { barChartSvg } from './chart.ts'
import { measureHardware, hardwareMarkdown, type Hardware } from './hardware.ts'
import { contentTypes, followerOf, followToLeader, formatFraction, produceBody, quantile, runCannon, type BodyFormat, type CannonRun, type Target } from './http-lib.ts'
import { call, startCluster, waitFor, type TestCluster } from '../test/broker/helpers.ts'

const durationS = Number(process.env.HTTP_DURATION_S ?? 10)
const connections = Number(process.env.HTTP_CONNECTIONS ?? 12)
const partitions = Number(process.env.HTTP_PARTITIONS ?? 6)
const modes = (process.env.HTTP_MODES ?? 'async,sync').split(',')
const recordsPerRequest = Number(process.env.HTTP_RECORDS ?? 1000)
const recordBytes = Number(process.env.HTTP_RECORD_BYTES ?? 100)
const brokerCount = Number(process.env.HTTP_BROKERS ?? 3)
const withHardware = process.env.HTTP_HARDWARE !== '0'
const resultsDir = process.env.HTTP_RESULTS_DIR ?? fileURLToPath(new URL('./results/', import.meta.url))
const formats: BodyFormat[] = ['json', 'msgpack']
/** The broker's largest fetch `maxBytes` (docs/api.md, limits). */
const fetchBytesCap = 16 << 20
/** A stored record's bytes beyond its value, generously (lengths, offsets delta, timestamp delta, headers count). */
const fetchRecordOverheadBytes = 32
/** Longest wait for brokers to register and leaders to settle on their preferred replicas. */
const settleWaitMs = 60_000

export interface HttpRow {
  mode: string
  route: 'produce' | 'fetch'
  format: BodyFormat
  /** Where the requests went: `leader`, `follower`. */
  to: string
  connections: number
  requests: number
  seconds: number
  reqPerSec: number
  recordsPerSec: number
  /** Record values only (records × record bytes), MB = 10^6 B. */
  mbPerSec: number
  p50Ms: number
  p99Ms: number
  /** Non-2xx answers by status, plus socket errors and timeouts. */
  failures: Record<string, number>
  /** e.g. `4.1% of seq write`, `35% of fsync rate`. */
  ofMachine: string
}

function progress(msg: string): void {
  process.stderr.write(`[bench:http] ${msg}\n`)
}

function checkEnv(): void {
  const ints: [string, number, number][] = [
    ['HTTP_DURATION_S', durationS, 1],
    ['HTTP_CONNECTIONS', connections, 1],
    ['HTTP_PARTITIONS', partitions, 1],
    ['HTTP_RECORDS', recordsPerRequest, 1],
    ['HTTP_RECORD_BYTES', recordBytes, 1],
    ['HTTP_BROKERS', brokerCount, 1],
  ]
  for (const [name, v, min] of ints) if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer ≥ ${min}, not ${process.env[name]}`)
  for (const m of modes) if (!['sync', 'async', 'memory'].includes(m)) throw new Error(`HTTP_MODES: ${m} is not sync, async or memory`)
}

/** Splits `total` connections over targets in proportion to their partitions (each at least 1). */
function spread(groups: Map<string, number[]>, total: number): Map<string, number> {
  const out = new Map<string, number>()
  const parts = [...groups.values()].reduce((a, ps) => a + ps.length, 0)
  for (const [url, ps] of groups) out.set(url, Math.max(1, Math.round((total * ps.length) / parts)))
  return out
}

function byUrl(urls: readonly string[]): Map<string, number[]> {
  const groups = new Map<string, number[]>()
  urls.forEach((u, p) => groups.set(u, [...(groups.get(u) ?? []), p]))
  return groups
}

function targetsFor(groups: Map<string, number[]>, request: (p: number) => Target['requests'][number]): Target[] {
  const conns = spread(groups, connections)
  return [...groups].map(([url, ps]) => ({ url, connections: conns.get(url)!, requests: ps.map(request) }))
}

function failures(run: CannonRun): Record<string, number> {
  const f: Record<string, number> = { ...run.non2xx }
  if (run.errors > 0) f.errors = run.errors
  return f
}

function toRow(mode: string, route: HttpRow['route'], format: BodyFormat, to: string, conns: number, run: CannonRun, hw: Hardware | null): HttpRow {
  const reqPerSec = run.ok / run.seconds
  const recordsPerSec = reqPerSec * recordsPerRequest
  const mbPerSec = (recordsPerSec * recordBytes) / 1e6
  let ofMachine = '–'
  if (hw !== null) {
    ofMachine = route === 'produce' ? `${formatFraction(mbPerSec, hw.seqWriteMBps)} of seq write` : `${formatFraction(mbPerSec, hw.tcpMBps)} of loopback TCP`
    if (route === 'produce' && mode === 'sync') ofMachine += `; req/s ${formatFraction(reqPerSec, hw.fsyncPerSec)} of fsync rate`
  }
  return {
    mode,
    route,
    format,
    to,
    connections: conns,
    requests: run.ok,
    seconds: run.seconds,
    reqPerSec,
    recordsPerSec,
    mbPerSec,
    p50Ms: quantile(run.latencyMs, 0.5),
    p99Ms: quantile(run.latencyMs, 0.99),
    failures: failures(run),
    ofMachine,
  }
}

function tick(what: string): (answers: number, elapsedS: number) => void {
  return (answers, elapsedS) => progress(`  ${what}: ${elapsedS.toFixed(0)}/${durationS} s, ${Math.round(answers / elapsedS).toLocaleString('en-US')} answers/s`)
}

/** Sum over partitions of the high watermark (what the log holds, committed). */
async function committed(urls: readonly string[], topic: string): Promise<number> {
  let sum = 0
  for (let p = 0; p < urls.length; p++) {
    const r = await request(`${urls[p]}/v1/topics/${topic}/partitions/${p}/records?offset=0&maxRecords=1`, { headersTimeout: 20_000, bodyTimeout: 20_000 })
    const body = (await r.body.json()) as { highWatermark: number }
    if (r.statusCode !== 200) throw new Error(`${topic}/${p}: ${r.statusCode} ${JSON.stringify(body)}`)
    sum += body.highWatermark
  }
  return sum
}

/** Every partition's fetch from `urls[p]` answers `recordsPerRequest` records (else records/s would be wrong). */
async function checkFetchSize(urls: readonly string[], topic: string): Promise<void> {
  for (let p = 0; p < urls.length; p++) {
    const r = await request(`${urls[p]}${fetchPath(topic, p)}`, { headersTimeout: 20_000, bodyTimeout: 20_000 })
    const body = (await r.body.json()) as { records?: unknown[] }
    const got = body.records?.length ?? 0
    if (r.statusCode !== 200 || got !== recordsPerRequest) throw new Error(`fetch ${topic}/${p} from ${urls[p]}: ${r.statusCode}, ${got} records, expected ${recordsPerRequest}`)
  }
}

function fetchPath(topic: string, p: number): string {
  // maxBytes: room for every record asked for (the default 1 MiB would cut 1,000 records of 1 KiB), within the 16 MiB cap.
  const maxBytes = Math.min(fetchBytesCap, 2 * recordsPerRequest * (recordBytes + fetchRecordOverheadBytes))
  return `/v1/topics/${topic}/partitions/${p}/records?offset=0&maxRecords=${recordsPerRequest}&maxBytes=${maxBytes}`
}

async function benchMode(cluster: TestCluster, mode: string, hw: Hardware | null, rows: HttpRow[]): Promise<void> {
  const urls = cluster.brokers.map((b) => b.url)
  const topic = `http-${mode}`
  const rf = Math.min(3, urls.length)
  const created = await call(urls[0]!, 'POST', '/v1/topics', { name: topic, partitions, replicationFactor: rf, config: { persistence: mode } })
  if (created.status !== 201) throw new Error(`create ${topic}: ${JSON.stringify(created.body)}`)
  await waitFor(
    async () => {
      const m = (await call(urls[0]!, 'GET', '/v1/metadata')).body as { topics: { name: string; partitions: { leader: number | null; replicas: number[] }[] }[] }
      return m.topics.find((t) => t.name === topic)?.partitions.every((p) => p.leader === p.replicas[0]) ?? false
    },
    settleWaitMs,
    `${topic} led by its preferred replicas`,
  )
  // Leaders as a plain client finds them: ask a broker that is not the preferred leader (p + 1) % n, follow the 421.
  const leaders: string[] = []
  let hops = 0
  for (let p = 0; p < partitions; p++) {
    const l = await followToLeader(urls[(p + 1) % urls.length]!, topic, p)
    leaders.push(l.url)
    hops += l.hops
  }
  progress(`${mode}: leaders found (${hops} NOT_LEADER answers followed): ${leaders.map((u, p) => `${p}→${u.split(':').pop()}`).join(' ')}`)
  let acknowledged = partitions // the probes
  for (const format of formats) {
    const body = produceBody(format, recordsPerRequest, recordBytes)
    const targets = targetsFor(byUrl(leaders), (p) => ({ method: 'POST', path: `/v1/topics/${topic}/partitions/${p}/records`, headers: { 'content-type': contentTypes[format], accept: contentTypes[format] }, body }))
    progress(`${mode}: produce ${format} (${body.length} B body, ${targets.reduce((a, t) => a + t.connections, 0)} connections over ${targets.length} leaders)`)
    const run = await runCannon(targets, durationS, tick(`produce ${format}`))
    acknowledged += run.ok * recordsPerRequest
    rows.push(toRow(mode, 'produce', format, 'leader', targets.reduce((a, t) => a + t.connections, 0), run, hw))
  }
  const inLog = await committed(leaders, topic)
  if (inLog < acknowledged) throw new Error(`${topic}: ${acknowledged} records acknowledged but the partitions' high watermarks sum to ${inLog}: records lost`)
  progress(`${mode}: ${acknowledged.toLocaleString('en-US')} records acknowledged, ${inLog.toLocaleString('en-US')} committed (the rest: answers cut off by the end of a run)`)
  const readers = leaders.map((l, p) => (urls.length > 1 ? followerOf(urls, l, p) : l))
  const to = urls.length > 1 ? 'follower' : 'leader (1 broker)'
  await checkFetchSize(readers, topic)
  for (const format of formats) {
    const targets = targetsFor(byUrl(readers), (p) => ({ method: 'GET', path: fetchPath(topic, p), headers: { accept: contentTypes[format] } }))
    progress(`${mode}: fetch ${format} from ${to}`)
    const run = await runCannon(targets, durationS, tick(`fetch ${format}`))
    rows.push(toRow(mode, 'fetch', format, to, targets.reduce((a, t) => a + t.connections, 0), run, hw))
  }
}

const n0 = (n: number): string => Math.round(n).toLocaleString('en-US')

export function markdown(rows: readonly HttpRow[], hw: Hardware | null, started: string): string {
  return [
    '# bench:http — autocannon against the produce and fetch routes',
    '',
    `${started}; \`npm run bench:http\`; ${brokerCount} broker processes on loopback, ${partitions} partitions, replication ${Math.min(3, brokerCount)}, acks=all; ` +
      `${recordsPerRequest.toLocaleString('en-US')} records of ${recordBytes} B per request, the body built once and replayed; ${durationS} s per row; ` +
      `autocannon 9 in this process (it shares the machine with the brokers); load average at end ${loadavg()[0]!.toFixed(2)}.`,
    ...(process.env.HTTP_NOTE === undefined ? [] : ['', `**Note:** ${process.env.HTTP_NOTE}`, '']),
    'Latency is every 2xx answer\'s time under that load (Little\'s law: ≈ connections ÷ req/s), not an unloaded round trip.',
    '',
    '| mode | route | body | to | conns | req/s | records/s | MB/s | p50 ms | p99 ms | failures | of the machine |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.mode} | ${r.route} | ${r.format} | ${r.to} | ${r.connections} | ${n0(r.reqPerSec)} | ${n0(r.recordsPerSec)} | ${r.mbPerSec.toFixed(1)} | ${r.p50Ms.toFixed(2)} | ${r.p99Ms.toFixed(2)} | ${Object.entries(r.failures).map(([k, v]) => `${k}: ${v}`).join(', ') || '0'} | ${r.ofMachine} |`,
    ),
    '',
    ...(hw === null ? [] : ['## The machine, same run', '', hardwareMarkdown(hw)]),
  ].join('\n')
}

export async function main(): Promise<HttpRow[]> {
  checkEnv()
  const started = new Date().toISOString()
  const hw = withHardware ? await measureHardware({ progress }) : null
  progress(`starting ${brokerCount} brokers`)
  const cluster = await startCluster({ brokers: brokerCount })
  const rows: HttpRow[] = []
  try {
    const url = cluster.brokers[0]!.url
    await waitFor(async () => (await call(url, 'GET', '/v1/metadata')).body.brokers.filter((b: { fenced?: boolean }) => !b.fenced).length === brokerCount, settleWaitMs, 'brokers registered')
    for (const mode of modes) await benchMode(cluster, mode, hw, rows)
  } finally {
    await cluster.stopAll()
  }
  const md = markdown(rows, hw, started)
  process.stdout.write(md)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(join(resultsDir, 'http.md'), md)
  writeFileSync(join(resultsDir, 'http.json'), `${JSON.stringify({ started, note: process.env.HTTP_NOTE ?? null, config: { durationS, connections, partitions, recordsPerRequest, recordBytes, brokers: brokerCount, modes }, hardware: hw, rows }, null, 2)}\n`)
  writeFileSync(
    join(resultsDir, 'http.svg'),
    barChartSvg({ title: `autocannon, ${recordsPerRequest} × ${recordBytes} B per request, ${brokerCount} brokers`, unit: 'records/s', bars: rows.map((r) => ({ label: `${r.mode} ${r.route} ${r.format}`, value: Math.round(r.recordsPerSec) })) }),
  )
  return rows
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
