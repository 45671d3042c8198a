/**
 * `npm run bench:peers` — rill side by side with NATS JetStream and RabbitMQ,
 * in one invocation, on this machine, with the same three workloads:
 * publish N messages as fast as they are acknowledged (acks from a majority),
 * consume them all, then one at a time, each acknowledgement awaited.
 *
 *   1. bench/peers/setup.sh: Debian nats-server and rabbitmq-server, and the peers' npm
 *      clients in a side directory, installed when missing;
 *   2. the machine (bench/hardware.ts);
 *   3. rill: 3 broker processes on loopback, one topic per (persistence, RF, size),
 *      6 partitions, through the SDKs (bench/peers/rill.ts);
 *   4. NATS JetStream 3 nodes, file store, R3 and R1 (bench/peers/nats/run.sh, raw publish:
 *      the server's rate, not the nats.js js.publish() ceiling);
 *   5. RabbitMQ 3 nodes: streams (one message per publish, and sub-entry batches of 100)
 *      and quorum queues (bench/peers/rabbitmq/run.sh);
 *   6. one table, each peer row beside the rill row of the same durability, with
 *      rill / peer for every number (throughput: > 1 is rill faster; latency: < 1 is rill faster),
 *      and rill's rows as a fraction of the machine.
 *
 * Durability: JetStream (2.9) and RabbitMQ streams acknowledge before any fsync (3 copies in page
 * cache): compared with rill `async`. Quorum queues fsync a quorum before confirming: compared with
 * rill `sync`.
 *
 * Peer servers listen on 127.0.0.1 only (ports in the two run.sh) and are stopped by the PIDs
 * their scripts started; each script runs under a deadline (PEERS_SCRIPT_TIMEOUT_S), then TERM, then KILL.
 *
 * Env: PEERS_COUNT (100 B: 200000; 1 KiB: half), PEERS_LAT_COUNT (3000), PEERS_SIZES (100,1024),
 * PEERS_ONLY (rill,nats,rabbitmq: a subset), PEERS_SCRIPT_TIMEOUT_S (1800), PEERS_RESULTS_DIR
 * (bench/results), RILL_PEERS_DEPS (/tmp/rill-peers-deps), PEERS_NOTE (a line for the results).
 */
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { barChartSvg } from '../chart.ts'
import { measureHardware, hardwareMarkdown, type Hardware } from '../hardware.ts'
import { formatFraction, formatRatio } from '../http-lib.ts'
import { rillWorkloads, type RillRun } from './rill.ts'
import { call, startCluster, waitFor } from '../../test/broker/helpers.ts'

const here = fileURLToPath(new URL('.', import.meta.url))
const count100 = Number(process.env.PEERS_COUNT ?? 200_000)
const latCount = Number(process.env.PEERS_LAT_COUNT ?? 3000)
const sizes = (process.env.PEERS_SIZES ?? '100,1024').split(',').map(Number)
const only = new Set((process.env.PEERS_ONLY ?? 'rill,nats,rabbitmq').split(','))
const scriptTimeoutS = Number(process.env.PEERS_SCRIPT_TIMEOUT_S ?? 1800)
const resultsDir = process.env.PEERS_RESULTS_DIR ?? fileURLToPath(new URL('../results/', import.meta.url))
const partitions = 6
/** Longest a rill workload may run (ms): the peers' scripts use 300 s per run too. */
const rillLimitMs = 300_000
/** Records published before the first measured row. */
const warmupRecords = 20_000
/** One-at-a-time sends of the warm-up round. */
const warmupSends = 100
/** After TERM, how long a peer script gets to stop its servers before KILL (ms). */
const stopGraceMs = 60_000

function progress(msg: string): void {
  process.stderr.write(`[bench:peers] ${msg}\n`)
}

function countFor(size: number): number {
  return size <= 100 ? count100 : Math.max(1, Math.floor(count100 / 2))
}

function checkEnv(): void {
  if (!Number.isInteger(count100) || count100 < 1000) throw new Error(`PEERS_COUNT must be an integer ≥ 1000, not ${process.env.PEERS_COUNT}`)
  if (!Number.isInteger(latCount) || latCount < 10) throw new Error(`PEERS_LAT_COUNT must be an integer ≥ 10, not ${process.env.PEERS_LAT_COUNT}`)
  for (const s of sizes) if (!Number.isInteger(s) || s < 1 || s > 1 << 20) throw new Error(`PEERS_SIZES: ${s} is not a size in bytes (1 to 1 MiB)`)
  for (const o of only) if (!['rill', 'nats', 'rabbitmq'].includes(o)) throw new Error(`PEERS_ONLY: ${o} is not rill, nats or rabbitmq`)
}

/** Runs a script with a deadline; stderr passes through; stopped by its PID (TERM, then KILL). */
function runScript(file: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [file, ...args], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } })
    let killTimer: NodeJS.Timeout | undefined
    const deadline = setTimeout(() => {
      progress(`${file}: over ${scriptTimeoutS} s, TERM to pid ${child.pid}`)
      child.kill('SIGTERM')
      killTimer = setTimeout(() => child.kill('SIGKILL'), stopGraceMs)
    }, scriptTimeoutS * 1000)
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      clearTimeout(deadline)
      clearTimeout(killTimer)
      resolve(code ?? (signal === null ? 1 : 128))
    })
  })
}

interface PeerRun {
  test: string
  mode: string
  replicas: number
  size: number
  pub_acked: number
  pub_errors: number
  pub_msgs_per_s: number
  pub_MBps: number
  con_msgs_per_s?: number
  seq_ack_ms_p50: number
  seq_ack_ms_p99: number
  verify_ok?: boolean
  stream_msgs_at_end?: number
  expected_msgs?: number
}

function readJsonl(file: string): PeerRun[] {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as PeerRun)
}

async function runRill(hw: Hardware | null): Promise<RillRun[]> {
  progress('rill: starting 3 brokers')
  const cluster = await startCluster({ brokers: 3 })
  const out: RillRun[] = []
  try {
    const brokers = cluster.brokers.map((b) => b.url)
    await waitFor(async () => (await call(brokers[0]!, 'GET', '/v1/metadata')).body.brokers.filter((b: { fenced?: boolean }) => !b.fenced).length === 3, 60_000, 'brokers registered')
    // A warm-up round of all three workloads, not reported: the first measured row otherwise pays for
    // JIT compilation, cold connections and the first consumer group (which creates __consumer_offsets);
    // without it the first row came out 2-4x slower whichever persistence it was.
    const warm = await call(brokers[0]!, 'POST', '/v1/topics', { name: 'peers-warmup', partitions, replicationFactor: 3 })
    if (warm.status !== 201) throw new Error(`create peers-warmup: ${JSON.stringify(warm.body)}`)
    progress('rill: warm-up (not reported)')
    await rillWorkloads(brokers, 'peers-warmup', { persistence: 'warm-up', replicas: 3, size: 100, count: Math.min(count100, warmupRecords), latCount: warmupSends, limitMs: rillLimitMs, progress })
    const configs: [string, number][] = [['async', 3], ['sync', 3], ['async', 1]]
    for (const [persistence, replicas] of configs) {
      for (const size of sizes) {
        const topic = `peers-${persistence}-r${replicas}-${size}`
        const r = await call(brokers[0]!, 'POST', '/v1/topics', { name: topic, partitions, replicationFactor: replicas, config: { persistence } })
        if (r.status !== 201) throw new Error(`create ${topic}: ${JSON.stringify(r.body)}`)
        // Leaders on their preferred replicas before the clock starts (as the peers' scripts wait for their stream's replicas).
        await waitFor(
          async () => {
            const m = (await call(brokers[0]!, 'GET', '/v1/metadata')).body as { topics: { name: string; partitions: { leader: number | null; replicas: number[] }[] }[] }
            return m.topics.find((t) => t.name === topic)?.partitions.every((p) => p.leader === p.replicas[0]) ?? false
          },
          60_000,
          `${topic} led by its preferred replicas`,
        )
        const run = await rillWorkloads(brokers, topic, { persistence, replicas, size, count: countFor(size), latCount, limitMs: rillLimitMs, progress })
        out.push(run)
        if (hw !== null) progress(`  ${run.pubMBps.toFixed(1)} MB/s = ${formatFraction(run.pubMBps, hw.seqWriteMBps)} of seq write`)
      }
    }
  } finally {
    await cluster.stopAll()
  }
  return out
}

/** Which rill row a peer row is compared with: the same durability at acknowledgement, replication and size. */
export function rillPeerOf(peer: { test: string; mode: string; replicas: number; size: number }): { persistence: string; replicas: number; size: number } {
  const persistence = peer.test === 'rabbitmq-quorum' ? 'sync' : 'async'
  return { persistence, replicas: peer.replicas, size: peer.size }
}

export function durability(test: string, mode: string): string {
  if (test === 'rabbitmq-quorum') return 'fsync by a quorum before confirm'
  if (test === 'rabbitmq-stream') return `no fsync before confirm (page cache of a quorum)${mode === 'subentry' ? '; 100 per sub-entry batch' : ''}`
  return 'no fsync before ack (2.9: 60 s sync timer)'
}

function peerName(p: PeerRun): string {
  if (p.test === 'nats-jetstream') return `NATS JetStream R${p.replicas} (${p.mode === 'raw' ? 'raw pub' : 'js.publish'})`
  if (p.test === 'rabbitmq-quorum') return `RabbitMQ quorum queue (${p.replicas})`
  return `RabbitMQ stream (${p.replicas})${p.mode === 'subentry' ? ', sub-entry 100' : ''}`
}

const n0 = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US'))
const ms = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(2))

export function comparisonMarkdown(rill: readonly RillRun[], peers: readonly PeerRun[], hw: Hardware | null): string {
  const lines = [
    '| peer | durability at ack | size | peer pub msgs/s | rill pub msgs/s | rill / peer | peer consume msgs/s | rill consume msgs/s | rill / peer | peer one-at-a-time p50 / p99 ms | rill p50 / p99 ms | rill / peer p50 (< 1: rill faster) | peer verified |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ]
  for (const p of peers) {
    const want = rillPeerOf(p)
    const r = rill.find((x) => x.persistence === want.persistence && x.replicas === want.replicas && x.size === want.size)
    const rillName = r === undefined ? '(no rill row)' : `rill ${r.persistence} RF${r.replicas}`
    const verified = p.verify_ok ?? (p.stream_msgs_at_end !== undefined ? p.stream_msgs_at_end === p.expected_msgs : undefined)
    lines.push(
      `| ${peerName(p)} vs ${rillName} | ${durability(p.test, p.mode)} | ${p.size} B | ${n0(p.pub_msgs_per_s)} | ${n0(r?.pubMsgsPerSec)} | ${formatRatio(r?.pubMsgsPerSec, p.pub_msgs_per_s)} | ${n0(p.con_msgs_per_s)} | ${n0(r?.conMsgsPerSec)} | ${formatRatio(r?.conMsgsPerSec, p.con_msgs_per_s)} | ${ms(p.seq_ack_ms_p50)} / ${ms(p.seq_ack_ms_p99)} | ${ms(r?.seqP50Ms)} / ${ms(r?.seqP99Ms)} | ${formatRatio(r?.seqP50Ms, p.seq_ack_ms_p50)} | ${verified === undefined ? '?' : verified ? 'yes' : `**no** (errors ${p.pub_errors})`} |`,
    )
  }
  lines.push('', '### rill rows, and what the machine allows', '')
  lines.push('| rill | size | records | pub msgs/s | pub MB/s | of seq write | sync: acks/s of fsync rate (one-at-a-time) | consume msgs/s | one-at-a-time p50 / p99 ms |')
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const r of rill) {
    const seqRate = r.seqP50Ms > 0 ? 1000 / r.seqP50Ms : NaN
    lines.push(
      `| ${r.persistence} RF${r.replicas} | ${r.size} B | ${n0(r.count)} | ${n0(r.pubMsgsPerSec)} | ${r.pubMBps.toFixed(1)} | ${hw === null ? '–' : formatFraction(r.pubMBps, hw.seqWriteMBps)} | ${hw === null || r.persistence !== 'sync' ? '–' : formatFraction(seqRate, hw.fsyncPerSec)} | ${n0(r.conMsgsPerSec)} | ${ms(r.seqP50Ms)} / ${ms(r.seqP99Ms)} |`,
    )
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  checkEnv()
  const started = new Date().toISOString()
  const work = mkdtempSync(join(tmpdir(), 'rill-peers-'))
  if (only.has('nats') || only.has('rabbitmq')) {
    progress('setup: peer servers and clients (installed when missing)')
    const rc = await runScript(join(here, 'setup.sh'), [], {})
    if (rc !== 0) throw new Error(`bench/peers/setup.sh failed (${rc})`)
  }
  const hw = await measureHardware({ progress })
  const rill = only.has('rill') ? await runRill(hw) : []
  const env = { PEERS_RESULTS: work, COUNT: String(count100), LAT_COUNT: String(latCount), SIZES: sizes.join(' ') }
  let peers: PeerRun[] = []
  if (only.has('nats')) {
    progress('NATS JetStream: 3 nodes, R3 and R1')
    const rc = await runScript(join(here, 'nats/run.sh'), ['1', String(count100)], { ...env, MODES: 'raw', STANDALONE: '0' })
    if (rc !== 0) progress(`nats/run.sh exited ${rc}; rows it wrote are kept`)
    peers = peers.concat(readJsonl(join(work, 'nats.jsonl')))
  }
  if (only.has('rabbitmq')) {
    progress('RabbitMQ: 3 nodes, streams and quorum queues')
    const out = join(work, 'rabbitmq.jsonl')
    const rc = await runScript(join(here, 'rabbitmq/run.sh'), ['1'], { ...env, COUNT_100: String(count100), COUNT_1024: String(countFor(1024)), OUT: out })
    if (rc !== 0) progress(`rabbitmq/run.sh exited ${rc}; rows it wrote are kept`)
    peers = peers.concat(readJsonl(out))
  }
  const md = [
    '# bench:peers — rill beside NATS JetStream and RabbitMQ, one run',
    '',
    `${started}; \`npm run bench:peers\`; ${count100.toLocaleString('en-US')} messages of 100 B (half as many of 1 KiB), ${latCount} one at a time; every server a 3-node cluster on loopback; load average at end ${loadavg()[0]!.toFixed(2)}.`,
    ...(process.env.PEERS_NOTE === undefined ? [] : ['', `**Note:** ${process.env.PEERS_NOTE}`]),
    '',
    'rill: SDK producer (batches of 1,000 per `send`, 64 in flight, acks=all), SDK consumer in a group, SDK producer with linger 0 for one at a time; 6 partitions.',
    'NATS: raw publish with a reply inbox, 1,000 un-acked in flight, one connection to the stream leader; pull consumer. RabbitMQ streams: 10,000 un-confirmed in flight, consume from a replica (sub-entry: not consumed, client limit); quorum queues: 1,000 in flight, consume from the leader.',
    'Durability decides the pairing: peers that acknowledge before fsync beside rill `async`, quorum queues (fsync before confirm) beside rill `sync`.',
    '',
    comparisonMarkdown(rill, peers, hw),
    '',
    ...(hw === null ? [] : ['## The machine, same run', '', hardwareMarkdown(hw)]),
  ].join('\n')
  process.stdout.write(`${md}\n`)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(join(resultsDir, 'peers.md'), `${md}\n`)
  writeFileSync(join(resultsDir, 'peers.json'), `${JSON.stringify({ started, note: process.env.PEERS_NOTE ?? null, config: { count100, latCount, sizes }, hardware: hw, rill, peers }, null, 2)}\n`)
  const bars = [
    ...rill.map((r) => ({ label: `rill ${r.persistence} RF${r.replicas} ${r.size} B`, value: Math.round(r.pubMsgsPerSec) })),
    ...peers.map((p) => ({ label: `${p.test.replace('rabbitmq-', 'rmq ').replace('nats-jetstream', 'nats')} ${p.mode} R${p.replicas} ${p.size} B`, value: Math.round(p.pub_msgs_per_s) })),
  ]
  writeFileSync(join(resultsDir, 'peers.svg'), barChartSvg({ title: 'publish, acknowledged by a majority, 3 nodes on loopback', unit: 'messages/s', bars }))
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
