/**
 * `npm run bench:scale` — issue 4's scale target on this machine: three real
 * broker processes (`node bin/rill.mjs broker`, default tick settings) host
 * one topic of 1,000 partitions with replication factor 3.
 *
 *   start 3 brokers ─▶ registered ─▶ idle window "0 partitions" (baseline)
 *     ─▶ POST /v1/topics scale×1000 rf 3 ─▶ time until 50 % / 90 % / 100 % have a leader
 *     ─▶ idle window "1,000 partitions" ─▶ 1 record to every partition
 *     ─▶ idle window "after produce" (the groups must go quiet again)
 *
 * An idle window is a settle period and then a measured period; a broker's
 * CPU over it is the growth of utime + stime in /proc/<pid>/stat, as % of
 * one core; RSS is VmRSS from /proc/<pid>/status at its end; peer messages/s
 * come from the broker's rill_transport_messages_sent_total (a quiet broker
 * sends none). The VM is shared, so the load average at start and end and
 * the whole machine's busy share during each window go into the results.
 *
 * Progress on stderr; a Markdown table on stdout and in
 * bench/results/scale.md, a chart in bench/results/scale.svg.
 * Targets (issue 4): all leaders within 30 s of `topic create`, each idle
 * broker under 5 % of a core.
 *
 * Env: SCALE_PARTITIONS (1000), SCALE_SETTLE_S (10), SCALE_WINDOW_S (20),
 * SCALE_ELECTION_MAX_S (120).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { barChartSvg } from './chart.ts'
import { call, freePort, health, type BrokerProcess } from '../test/broker/helpers.ts'

const partitions = Number(process.env.SCALE_PARTITIONS ?? 1000)
const replicationFactor = 3
const brokerCount = 3
const settleMs = Number(process.env.SCALE_SETTLE_S ?? 10) * 1000
const windowMs = Number(process.env.SCALE_WINDOW_S ?? 20) * 1000
const electionMaxMs = Number(process.env.SCALE_ELECTION_MAX_S ?? 120) * 1000
const startMaxMs = 60_000
const registerMaxMs = 60_000
const produceMaxMs = 120_000
const produceConcurrency = 16
const topic = 'scale'
const targetElectionMs = 30_000
const targetCpuPct = 5

const bin = new URL('../bin/rill.mjs', import.meta.url).pathname
const clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100

function log(line: string): void {
  process.stderr.write(`bench:scale ${line}\n`)
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ───────────────────────────── processes ─────────────────────────────

type BrokerProc = BrokerProcess

const children = new Set<ChildProcess>()

/** Last resort: whatever happens to this process, no broker outlives it. */
function killAllNow(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}
process.on('exit', killAllNow)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAllNow()
    process.exit(130)
  })
}

function startBroker(b: BrokerProc, seeds: string): void {
  // Default tick settings and log level on purpose: the numbers describe the defaults.
  const args = [bin, 'broker', '--id', String(b.id), '--dir', b.dir, '--http', b.url.slice('http://'.length), '--peer', b.peer, '--seeds', seeds]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  b.child = child
  const keep = (d: Buffer) => {
    b.output.push(d.toString())
    if (b.output.length > 200) b.output.splice(0, b.output.length - 200)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  child.once('exit', (code, signal) => {
    children.delete(child)
    if (!stopping) log(`broker ${b.id} exited unexpectedly (code ${code}, signal ${signal})\n${b.output.join('').slice(-2000)}`)
  })
}

let stopping = false

async function stopBroker(b: BrokerProc): Promise<void> {
  const child = b.child
  if (child === null || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  child.kill('SIGTERM')
  // A graceful stop hands leaderships away for up to 3 s; past 10 s it is killed.
  const killed = await Promise.race([exited.then(() => false), sleep(10_000).then(() => true)])
  if (killed) {
    child.kill('SIGKILL')
    await Promise.race([exited, sleep(5_000)])
  }
}

// ───────────────────────────── HTTP ─────────────────────────────

interface Metadata {
  brokers: { id: number; url: string }[]
  controller: { leader: number | null }
  topics: { name: string; partitions: { partition: number; leader: number | null; replicas: number[] }[] }[]
}

async function metadata(url: string): Promise<Metadata | null> {
  try {
    const r = await call(url, 'GET', '/v1/metadata', undefined, 5_000)
    return r.status === 200 ? (r.body as Metadata) : null
  } catch {
    return null
  }
}

/** Sum of a counter over all its label sets in a Prometheus text exposition. */
async function counterSum(url: string, name: string): Promise<number | null> {
  try {
    const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) })
    if (!r.ok) return null
    let sum = 0
    for (const line of (await r.text()).split('\n')) {
      if (!line.startsWith(name)) continue
      const rest = line.slice(name.length)
      if (rest[0] !== ' ' && rest[0] !== '{') continue
      const v = Number(line.slice(line.lastIndexOf(' ') + 1))
      if (Number.isFinite(v)) sum += v
    }
    return sum
  } catch {
    return null
  }
}

// ───────────────────────────── /proc ─────────────────────────────

/** utime + stime of a process (all its threads), in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return (Number(fields[11]) + Number(fields[12])) / clkTck
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1]) / 1024
}

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0)
  const idle = cpu[3]! + cpu[4]!
  return { busy: total - idle, total }
}

function uptime(): string {
  try {
    return execFileSync('uptime').toString().trim()
  } catch {
    return readFileSync('/proc/loadavg', 'utf8').trim()
  }
}

// ───────────────────────────── measurements ─────────────────────────────

interface IdleSample {
  readonly phase: string
  readonly cpuPct: number[]
  readonly rss: number[]
  readonly msgsPerS: (number | null)[]
  readonly machineBusyPct: number
}

async function idleWindow(phase: string, brokers: BrokerProc[]): Promise<IdleSample> {
  log(`[${phase}] settling ${settleMs / 1000} s`)
  await sleep(settleMs)
  const pids = brokers.map((b) => b.child!.pid!)
  const cpu0 = pids.map(cpuSeconds)
  const msgs0 = await Promise.all(brokers.map((b) => counterSum(b.url, 'rill_transport_messages_sent_total')))
  const m0 = machineJiffies()
  const t0 = performance.now()
  log(`[${phase}] measuring ${windowMs / 1000} s idle`)
  const steps = Math.ceil(windowMs / 5000)
  for (let i = 1; i <= steps; i++) {
    await sleep(Math.max(0, t0 + Math.min(windowMs, i * 5000) - performance.now()))
    const sec = (performance.now() - t0) / 1000
    log(`[${phase}]   ${sec.toFixed(0)} s: cpu ${pids.map((p, j) => `b${j + 1} ${(((cpuSeconds(p) - cpu0[j]!) / sec) * 100).toFixed(1)}%`).join('  ')}`)
  }
  const seconds = (performance.now() - t0) / 1000
  const cpu1 = pids.map(cpuSeconds)
  const m1 = machineJiffies()
  const msgs1 = await Promise.all(brokers.map((b) => counterSum(b.url, 'rill_transport_messages_sent_total')))
  const sample: IdleSample = {
    phase,
    cpuPct: pids.map((_, j) => ((cpu1[j]! - cpu0[j]!) / seconds) * 100),
    rss: pids.map(rssMiB),
    msgsPerS: msgs0.map((a, j) => (a === null || msgs1[j] === null ? null : (msgs1[j]! - a) / seconds)),
    machineBusyPct: ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100,
  }
  log(`[${phase}] cpu % of a core: ${sample.cpuPct.map((c) => c.toFixed(2)).join(' / ')}; rss MiB ${sample.rss.map((r) => r.toFixed(0)).join(' / ')}; peer msgs/s ${sample.msgsPerS.map((m) => (m === null ? '?' : m.toFixed(1))).join(' / ')}; machine busy ${sample.machineBusyPct.toFixed(0)}% of all cores`)
  return sample
}

function ledCount(md: Metadata | null): number {
  const t = md?.topics.find((x) => x.name === topic)
  if (t === undefined) return 0
  return t.partitions.filter((p) => p.leader !== null).length
}

interface Election {
  readonly createMs: number
  readonly ms50: number | null
  readonly ms90: number | null
  readonly ms100: number | null
  readonly led: number
  readonly cpuSeconds: number[]
  readonly leadersPerBroker: number[]
}

async function createAndElect(brokers: BrokerProc[]): Promise<Election> {
  const url = brokers[0]!.url
  const pids = brokers.map((b) => b.child!.pid!)
  const cpu0 = pids.map(cpuSeconds)
  const t0 = performance.now()
  // wait: false — this bench times the elections itself (a create now waits for them by default).
  const r = await call(url, 'POST', '/v1/topics', { name: topic, partitions, replicationFactor, wait: false }, 60_000)
  const createMs = performance.now() - t0
  if (r.status !== 200 && r.status !== 201) throw new Error(`topic create answered ${r.status}: ${JSON.stringify(r.body)}`)
  log(`topic ${topic} created (${partitions} partitions, rf ${replicationFactor}) in ${createMs.toFixed(0)} ms`)
  let ms50: number | null = null
  let ms90: number | null = null
  let ms100: number | null = null
  let led = 0
  let lastPrint = 0
  let md: Metadata | null = null
  for (let i = 0; i < electionMaxMs / 100 + 10 && performance.now() - t0 < electionMaxMs; i++) {
    md = await metadata(url)
    led = ledCount(md)
    const now = performance.now() - t0
    if (ms50 === null && led >= partitions * 0.5) ms50 = now
    if (ms90 === null && led >= partitions * 0.9) ms90 = now
    if (led >= partitions) {
      ms100 = now
      break
    }
    if (now - lastPrint >= 1000) {
      lastPrint = now
      log(`  ${(now / 1000).toFixed(1)} s: ${led}/${partitions} partitions have a leader`)
    }
    await sleep(100)
  }
  const cpu1 = pids.map(cpuSeconds)
  const leadersPerBroker = brokers.map((b) => md?.topics.find((x) => x.name === topic)?.partitions.filter((p) => p.leader === b.id).length ?? 0)
  log(ms100 === null ? `NOT all leaders within ${electionMaxMs / 1000} s: ${led}/${partitions}` : `all ${partitions} partitions have a leader after ${(ms100 / 1000).toFixed(2)} s (leaders per broker ${leadersPerBroker.join('/')})`)
  return { createMs, ms50, ms90, ms100, led, cpuSeconds: cpu1.map((c, j) => c - cpu0[j]!), leadersPerBroker }
}

interface Burst {
  readonly ok: number
  readonly failed: number
  readonly ms: number
  readonly firstError: string | null
}

/** One record to every partition, posted to its leader (the brokers forward if it moved). */
async function produceBurst(brokers: BrokerProc[]): Promise<Burst> {
  const md = await metadata(brokers[0]!.url)
  const urls = new Map(brokers.map((b) => [b.id, b.url]))
  const leaderOf = new Map<number, number | null>()
  for (const p of md?.topics.find((x) => x.name === topic)?.partitions ?? []) leaderOf.set(p.partition, p.leader)
  let next = 0
  let ok = 0
  let failed = 0
  let firstError: string | null = null
  const t0 = performance.now()
  const worker = async () => {
    while (next < partitions && performance.now() - t0 < produceMaxMs) {
      const p = next++
      const lead = leaderOf.get(p)
      let url = (lead === null || lead === undefined ? undefined : urls.get(lead)) ?? brokers[p % brokers.length]!.url
      let done = false
      for (let attempt = 0; attempt < 5 && !done; attempt++) {
        try {
          const r = await call(url, 'POST', `/v1/topics/${topic}/partitions/${p}/records`, { records: [{ key: `k${p}`, value: `scale bench record for partition ${p}` }] }, 30_000)
          if (r.status === 200) done = true
          else {
            firstError ??= `partition ${p}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`
            const moved = r.body?.error?.leader?.url
            if (typeof moved === 'string') url = moved
            await sleep(100)
          }
        } catch (error) {
          firstError ??= `partition ${p}: ${(error as Error).message}`
          await sleep(100)
        }
      }
      if (done) ok++
      else failed++
    }
  }
  let lastPrint = performance.now()
  const progress = setInterval(() => {
    if (performance.now() - lastPrint >= 1000) {
      lastPrint = performance.now()
      log(`  produce: ${ok}/${partitions} acknowledged`)
    }
  }, 1000)
  try {
    await Promise.all(Array.from({ length: produceConcurrency }, worker))
  } finally {
    clearInterval(progress)
  }
  const ms = performance.now() - t0
  log(`produce burst: ${ok} acknowledged, ${failed} failed, in ${(ms / 1000).toFixed(2)} s${firstError === null ? '' : ` (first error: ${firstError})`}`)
  return { ok, failed, ms, firstError }
}

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<void> {
  const loadStart = uptime()
  log(`machine at start: ${loadStart}`)
  const root = await mkdtemp(join(tmpdir(), 'rill-scale-'))
  log(`data under ${root}`)
  const brokers: BrokerProc[] = []
  for (let id = 1; id <= brokerCount; id++) {
    const peerHost = `127.0.0.${10 + id}`
    const httpPort = await freePort('127.0.0.1')
    const peerPort = await freePort(peerHost)
    brokers.push({ id, url: `http://127.0.0.1:${httpPort}`, peer: `${peerHost}:${peerPort}`, dir: join(root, `broker-${id}`), child: null, output: [] })
  }
  const seeds = brokers.map((b) => `${b.id}@${b.peer}`).join(',')
  try {
    for (const b of brokers) startBroker(b, seeds)
    const tStart = performance.now()
    for (let i = 0; i < startMaxMs / 200; i++) {
      const up = await Promise.all(brokers.map((b) => health(b.url)))
      if (up.every(Boolean)) break
      if (brokers.some((b) => b.child === null || b.child.exitCode !== null)) throw new Error('a broker exited during start')
      if (performance.now() - tStart > startMaxMs) throw new Error(`brokers not healthy within ${startMaxMs / 1000} s`)
      await sleep(200)
    }
    log(`3 brokers healthy after ${((performance.now() - tStart) / 1000).toFixed(1)} s (pids ${brokers.map((b) => b.child!.pid).join(', ')})`)
    let registered = 0
    for (let i = 0; i < registerMaxMs / 200; i++) {
      const md = await metadata(brokers[0]!.url)
      registered = md?.brokers.length ?? 0
      if (registered >= brokerCount && md?.controller.leader != null) break
      if (performance.now() - tStart > startMaxMs + registerMaxMs) break
      await sleep(200)
    }
    if (registered < brokerCount) throw new Error(`only ${registered} brokers registered`)
    log(`3 brokers registered after ${((performance.now() - tStart) / 1000).toFixed(1)} s`)

    const samples: IdleSample[] = []
    samples.push(await idleWindow('0 partitions', brokers))
    const election = await createAndElect(brokers)
    samples.push(await idleWindow(`${partitions.toLocaleString('en-US')} partitions`, brokers))
    const burst = await produceBurst(brokers)
    samples.push(await idleWindow('after produce', brokers))
    const loadEnd = uptime()
    log(`machine at end: ${loadEnd}`)
    report({ samples, election, burst, loadStart, loadEnd })
  } finally {
    stopping = true
    log('stopping brokers')
    await Promise.all(brokers.map((b) => stopBroker(b).catch(() => undefined)))
    killAllNow()
    await rm(root, { recursive: true, force: true })
  }
}

function fmtS(ms: number | null): string {
  return ms === null ? 'not reached' : `${(ms / 1000).toFixed(2)} s`
}

function report(r: { samples: IdleSample[]; election: Election; burst: Burst; loadStart: string; loadEnd: string }): void {
  const { samples, election, burst } = r
  const electionMet = election.ms100 !== null && election.ms100 <= targetElectionMs
  const loaded = samples.slice(1)
  const cpuMax = Math.max(...loaded.flatMap((s) => s.cpuPct))
  const cpuMet = cpuMax < targetCpuPct
  const lines = [
    `# Scale: 3 brokers, ${partitions.toLocaleString('en-US')} partitions × rf ${replicationFactor} on one machine`,
    '',
    `node ${process.version}, ${brokerCount} broker processes on loopback (\`node bin/rill.mjs broker\`, default tick settings: 50 ms tick, election 20 ticks, heartbeat 2 ticks; default persistence sync; data on the local disk), CLK_TCK ${clkTck}.`,
    `Idle windows: ${settleMs / 1000} s settle, then ${windowMs / 1000} s measured. CPU = utime+stime growth in /proc/<pid>/stat, % of one core.`,
    '',
    `Machine load (shared VM) at start: \`${r.loadStart}\``,
    '',
    `Machine load at end: \`${r.loadEnd}\``,
    '',
    '## Leader election after `topic create`',
    '',
    '| create call | 50 % led | 90 % led | 100 % led | CPU s spent (b1 / b2 / b3) | leaders per broker |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${(election.createMs / 1000).toFixed(2)} s | ${fmtS(election.ms50)} | ${fmtS(election.ms90)} | ${fmtS(election.ms100)}${election.ms100 === null ? ` (${election.led}/${partitions})` : ''} | ${election.cpuSeconds.map((c) => c.toFixed(1)).join(' / ')} | ${election.leadersPerBroker.join(' / ')} |`,
    '',
    'Times from the start of `POST /v1/topics` until broker 1\'s `/v1/metadata` shows a leader for that share of the partitions (polled every 100 ms).',
    '',
    '## Idle brokers',
    '',
    '| phase | broker | CPU % of one core | RSS MiB | peer messages sent/s | machine busy (all cores) |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...samples.flatMap((s) =>
      s.cpuPct.map(
        (c, j) =>
          `| ${s.phase} | ${j + 1} | ${c.toFixed(2)} | ${s.rss[j]!.toFixed(0)} | ${s.msgsPerS[j] === null ? '?' : s.msgsPerS[j]!.toFixed(1)} | ${j === 0 ? `${s.machineBusyPct.toFixed(0)} %` : ''} |`,
      ),
    ),
    '',
    `Produce burst between the last two windows: 1 record to each of the ${partitions} partitions (acks all, ${produceConcurrency} in flight): ${burst.ok} acknowledged, ${burst.failed} failed, ${(burst.ms / 1000).toFixed(2)} s${burst.firstError === null ? '' : `; first error: ${burst.firstError}`}.`,
    '',
    `Targets (issue 4): all leaders within 30 s — ${electionMet ? 'met' : 'NOT met'}; each idle broker under ${targetCpuPct} % of a core with ${partitions} partitions — ${cpuMet ? 'met' : 'NOT met'} (worst ${cpuMax.toFixed(2)} %).`,
    '',
    '![chart](scale.svg)',
  ]
  const table = lines.join('\n')
  process.stdout.write(`${table}\n`)
  writeFileSync(new URL('./results/scale.md', import.meta.url), `${table}\n`)
  writeFileSync(
    new URL('./results/scale.svg', import.meta.url),
    barChartSvg({
      title: `Idle CPU per broker, 3 brokers, ${partitions} partitions × rf 3`,
      unit: `% of one core over a ${windowMs / 1000} s idle window (target < ${targetCpuPct} %)`,
      bars: samples.flatMap((s) => s.cpuPct.map((c, j) => ({ label: `${s.phase} · b${j + 1}`, value: c }))),
    }),
  )
}

main().catch((error: unknown) => {
  log(`failed: ${(error as Error).stack ?? String(error)}`)
  for (const c of children) c.kill('SIGKILL')
  process.exitCode = 1
})
