/**
 * The parts of `bench/http.ts` that are not timing: request bodies built
 * once, leaders found by following 421s, an autocannon run spread over
 * partitions with exact latency percentiles, and the formatting of ratios
 * and fractions of the machine (bench/peers uses those too). Tested in
 * test/bench/http-lib.test.ts.
 */
import { createRequire } from 'node:module'
import { pack } from 'msgpackr'
import { request } from 'undici'

export type BodyFormat = 'json' | 'msgpack'

export const contentTypes: Record<BodyFormat, string> = { json: 'application/json', msgpack: 'application/msgpack' }

/** Value of record `i`: `record-<i>-` padded with `x` to `bytes` (ASCII, so a JSON string and its bytes agree). */
export function recordValue(i: number, bytes: number): string {
  const s = `record-${i}-`
  return s + 'x'.repeat(Math.max(0, bytes - s.length))
}

/**
 * A produce body for the partition route: `records` of `bytes`-byte values,
 * acks=all. JSON spells values as UTF-8 strings, msgpack as binary (docs/api.md,
 * "Content types"). Built once and replayed by every request.
 */
export function produceBody(format: BodyFormat, records: number, bytes: number): Buffer {
  if (!Number.isInteger(records) || records < 1) throw new Error(`records must be a positive integer, not ${records}`)
  if (!Number.isInteger(bytes) || bytes < 1) throw new Error(`bytes must be a positive integer, not ${bytes}`)
  const values = Array.from({ length: records }, (_, i) => recordValue(i, bytes))
  if (format === 'json') return Buffer.from(JSON.stringify({ records: values.map((value) => ({ value })), acks: 'all' }))
  return pack({ records: values.map((value) => ({ value: Buffer.from(value) })), acks: 'all' })
}

/** Hops followed for one 421 chain: a leader that moves twice while we ask is an election, not a benchmark. */
const leaderHopsMax = 5
/** Deadline of one probe request (ms). */
const probeTimeoutMs = 20_000

export interface NotLeader {
  error: { code: string; leader?: { id: number; url: string } | null }
}

/**
 * The URL of the broker that leads `topic/partition`, found as a plain HTTP
 * client finds it: POST one record to `startUrl`, and on `421 NOT_LEADER`
 * send it again to `leader.url`, at most `leaderHopsMax` times. The probe
 * record stays in the log (callers count it).
 */
export async function followToLeader(startUrl: string, topic: string, partition: number): Promise<{ url: string; hops: number }> {
  let url = startUrl
  const body = JSON.stringify({ records: [{ value: 'probe' }], acks: 'all' })
  for (let hops = 0; hops <= leaderHopsMax; hops++) {
    const r = await request(`${url}/v1/topics/${encodeURIComponent(topic)}/partitions/${partition}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      headersTimeout: probeTimeoutMs,
      bodyTimeout: probeTimeoutMs,
    })
    const text = await r.body.text()
    if (r.statusCode === 200) return { url, hops }
    const leader = r.statusCode === 421 ? (JSON.parse(text) as NotLeader).error.leader : null
    if (leader === null || leader === undefined) throw new Error(`${topic}/${partition} at ${url}: ${r.statusCode} ${text}`)
    url = leader.url
  }
  throw new Error(`${topic}/${partition}: still NOT_LEADER after ${leaderHopsMax} hops`)
}

/** A broker of `urls` other than `leader` for partition `p` (followers spread over the brokers). */
export function followerOf(urls: readonly string[], leader: string, p: number): string {
  const others = urls.filter((u) => u !== leader)
  if (others.length === 0) throw new Error('a follower needs at least 2 brokers')
  return others[p % others.length]!
}

/** Sorted-array quantile (nearest rank below). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** `rill / peer` as `2.31×`; `–` when either side is missing or the peer is 0. */
export function formatRatio(rill: number | undefined, peer: number | undefined): string {
  if (rill === undefined || peer === undefined || !Number.isFinite(rill) || !Number.isFinite(peer) || peer === 0) return '–'
  const r = rill / peer
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`
}

/** `part` as a percentage of `whole` (`12.3%`, `0.41%`, `240%`); `–` when `whole` is not positive. */
export function formatFraction(part: number, whole: number): string {
  if (!Number.isFinite(part) || !Number.isFinite(whole) || whole <= 0) return '–'
  const pct = (100 * part) / whole
  return `${pct >= 100 ? pct.toFixed(0) : pct >= 1 ? pct.toFixed(1) : pct.toFixed(2)}%`
}

// ---- autocannon (programmatic API; no type declarations are published, so the part used is typed here)

interface CannonRequest {
  method: string
  path: string
  headers: Record<string, string>
  body?: Buffer
}
interface CannonResult {
  requests: { total: number }
  non2xx: number
  errors: number
  timeouts: number
  duration: number
  start: Date
  statusCodeStats: Record<string, { count: number }>
}
interface CannonInstance {
  on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void
  on(event: 'tick', fn: (t: { counter: number; bytes: number }) => void): void
  stop(): void
}
type Cannon = (opts: Record<string, unknown>, done: (err: Error | null, result: CannonResult) => void) => CannonInstance
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon

/** One autocannon target: a broker and the requests its connections cycle through. */
export interface Target {
  url: string
  requests: CannonRequest[]
  connections: number
}

export interface CannonRun {
  /** 2xx answers. */
  ok: number
  /** Non-2xx answers by status, and socket errors / timeouts. */
  non2xx: Record<string, number>
  errors: number
  seconds: number
  /** Latency of 2xx answers (ms), sorted. */
  latencyMs: Float64Array
  /** Bytes of answers. */
  responseBytes: number
}

/** Responses whose latency is kept, at most (a sample of the first ones beyond that would bias; 2M is ~16 MB). */
const latencySamplesMax = 2_000_000
/** Slack beyond the duration before a run counts as hung (ms). */
const runSlackMs = 30_000

/**
 * Runs one autocannon instance per target at the same time for `seconds`
 * and merges them: each target's connections cycle through its requests (one
 * per partition it leads), so the load is spread over partitions and every
 * request goes to the right broker. Latency is every 2xx answer's own time
 * (autocannon's 'response' event), so the percentiles are exact over all
 * targets. `onTick` is called about once a second with answers so far.
 */
export async function runCannon(targets: readonly Target[], seconds: number, onTick?: (answers: number, elapsedS: number) => void): Promise<CannonRun> {
  const lat = new Float64Array(latencySamplesMax)
  let n = 0
  let answers = 0
  let responseBytes = 0
  const started = performance.now()
  const tickTimer = setInterval(() => onTick?.(answers, (performance.now() - started) / 1000), 1000)
  const instances: CannonInstance[] = []
  try {
    const results = await Promise.all(
      targets.map(
        (t) =>
          new Promise<CannonResult>((resolve, reject) => {
            const deadline = setTimeout(() => {
              instance.stop()
              reject(new Error(`autocannon against ${t.url} did not finish within ${seconds}s + ${runSlackMs} ms`))
            }, seconds * 1000 + runSlackMs)
            const instance = autocannon(
              { url: t.url, connections: t.connections, pipelining: 1, duration: seconds, requests: t.requests, timeout: 30 },
              (err, result) => {
                clearTimeout(deadline)
                if (err !== null) reject(err)
                else resolve(result)
              },
            )
            instances.push(instance)
            instance.on('response', (_client, status, bytes, ms) => {
              answers++
              responseBytes += bytes
              if (status >= 200 && status < 300 && n < latencySamplesMax) lat[n++] = ms
            })
          }),
      ),
    )
    const non2xx: Record<string, number> = {}
    let ok = 0
    for (const r of results) {
      for (const [code, s] of Object.entries(r.statusCodeStats)) {
        if (code.startsWith('2')) ok += s.count
        else non2xx[code] = (non2xx[code] ?? 0) + s.count
      }
    }
    const latencyMs = lat.slice(0, n).sort()
    return {
      ok,
      non2xx,
      errors: results.reduce((a, r) => a + r.errors, 0),
      seconds: (performance.now() - started) / 1000,
      latencyMs,
      responseBytes,
    }
  } finally {
    clearInterval(tickTimer)
    for (const i of instances) i.stop()
  }
}
