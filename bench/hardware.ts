/**
 * `npm run bench:hardware` — what this machine allows, measured in the same
 * run as the broker benches (bench/http.ts and bench/peers call
 * `measureHardware`), so a broker's row can be read as a fraction of it:
 *
 *   fsync rate        4 KiB appends, `fdatasync` after each (what a `sync` ack waits for)  → syncs/s, p50/p99
 *   sequential write  1 MiB appends, `fdatasync` every 16 MiB                           → MB/s
 *   loopback TCP      to a second Node process: 1 MiB writes one way                    → MB/s
 *                     64 B ping-pong, one at a time                                      → round trips/s, RTT p50/p99
 *
 * The disk is measured in a directory beside the brokers' data (os.tmpdir()
 * unless HW_DIR says otherwise). Every phase is bounded by a time and a
 * count. Env: HW_PHASE_MS (2000 ms per phase), HW_SEQ_MB (512).
 * Adapted from ../shared/peers/machine/{fsync,seqwrite,tcp}.mjs (ours, issue 11).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir, cpus, totalmem, loadavg } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

export interface Hardware {
  /** 4 KiB append + fdatasync per write, one writer. */
  fsyncPerSec: number
  fsyncP50Ms: number
  fsyncP99Ms: number
  /** 1 MiB appends, fdatasync every 16 MiB. */
  seqWriteMBps: number
  /** one loopback socket to another process, 1 MiB writes, one way. */
  tcpMBps: number
  /** 64 B ping-pong over loopback, one at a time. */
  tcpRoundTripsPerSec: number
  tcpRttP50Us: number
  tcpRttP99Us: number
  cpus: number
  cpuModel: string
  memGiB: number
  loadAvg1: number
  dir: string
}

export interface HardwareOptions {
  /** Time per phase (ms). */
  phaseMs?: number
  /** Largest sequential write (MiB). */
  seqMiB?: number
  /** Directory for the disk phases (a fresh subdirectory is made and removed). */
  dir?: string
  progress?: (msg: string) => void
}

/** 4 KiB: a page, and about what one small acknowledged record batch costs the log. */
const syncWriteBytes = 4096
/** Upper bound on fsyncs per phase, whatever the clock says (a RAM-backed dir could do millions). */
const syncOpsMax = 200_000
const seqChunkBytes = 1 << 20
/** fdatasync every 16 MiB: a write-back cache's worth, so the rate is the device's, not the page cache's. */
const seqSyncEveryBytes = 16 << 20
const pingBytes = 64
/** Upper bound on ping-pong rounds per phase. */
const pingRoundsMax = 1_000_000
/** Longest wait for the TCP helper process to listen or answer. */
const helperWaitMs = 15_000

function quantile(sorted: ArrayLike<number>, q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

function fsyncRate(dir: string, phaseMs: number): { perSec: number; p50: number; p99: number } {
  const file = join(dir, 'fsync.dat')
  const fd = openSync(file, 'w')
  const block = Buffer.alloc(syncWriteBytes, 7)
  const lat: number[] = []
  const start = performance.now()
  try {
    while (lat.length < syncOpsMax && performance.now() - start < phaseMs) {
      const t0 = performance.now()
      writeSync(fd, block)
      fdatasyncSync(fd)
      lat.push(performance.now() - t0)
    }
  } finally {
    closeSync(fd)
    rmSync(file, { force: true })
  }
  const seconds = (performance.now() - start) / 1000
  lat.sort((a, b) => a - b)
  return { perSec: lat.length / seconds, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) }
}

function sequentialWrite(dir: string, phaseMs: number, maxMiB: number): number {
  const file = join(dir, 'seq.dat')
  const fd = openSync(file, 'w')
  const chunk = Buffer.alloc(seqChunkBytes, 9)
  const start = performance.now()
  let written = 0
  try {
    while (written < maxMiB * seqChunkBytes && performance.now() - start < phaseMs) {
      written += writeSync(fd, chunk)
      if (written % seqSyncEveryBytes === 0) fdatasyncSync(fd)
    }
    fdatasyncSync(fd)
  } finally {
    closeSync(fd)
    rmSync(file, { force: true })
  }
  return written / ((performance.now() - start) / 1000) / 1e6
}

/**
 * The peer process for the TCP phases: a sink on one port (answers the byte
 * count when the client ends) and an echo on another; prints its ports and
 * exits when its stdin closes, so it never outlives this process.
 */
const tcpHelperSource = `
const net = require('node:net')
const sink = net.createServer({ noDelay: true }, (s) => { let n = 0; s.on('data', (d) => { n += d.length }); s.on('end', () => s.end(String(n))) })
const echo = net.createServer({ noDelay: true }, (s) => s.pipe(s))
sink.listen(0, '127.0.0.1', () => echo.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ sink: sink.address().port, echo: echo.address().port }))))
process.stdin.on('end', () => process.exit(0)); process.stdin.resume()
`

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

async function startTcpHelper(): Promise<{ child: ChildProcess; sink: number; echo: number }> {
  const child = spawn(process.execPath, ['-e', tcpHelperSource], { stdio: ['pipe', 'pipe', 'inherit'] })
  const ports = await withDeadline(
    new Promise<{ sink: number; echo: number }>((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('\n')) resolve(JSON.parse(out) as { sink: number; echo: number })
      })
      child.once('exit', (code) => reject(new Error(`TCP helper exited (${code})`)))
    }),
    helperWaitMs,
    'TCP helper start',
  )
  return { child, ...ports }
}

function open(port: number): Promise<Socket> {
  return withDeadline(
    new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s))
      s.once('error', reject)
    }),
    helperWaitMs,
    'loopback connect',
  )
}

async function tcpBulk(port: number, phaseMs: number): Promise<number> {
  const s = await open(port)
  const chunk = Buffer.alloc(seqChunkBytes, 1)
  const answer = new Promise<number>((resolve, reject) => {
    let text = ''
    s.on('data', (d: Buffer) => (text += d.toString()))
    s.once('end', () => resolve(Number(text)))
    s.once('error', reject)
  })
  const start = performance.now()
  while (performance.now() - start < phaseMs) {
    if (!s.write(chunk)) await withDeadline(new Promise((r) => s.once('drain', r)), helperWaitMs, 'loopback drain')
  }
  s.end()
  const bytes = await withDeadline(answer, helperWaitMs, 'loopback sink count')
  return bytes / ((performance.now() - start) / 1000) / 1e6
}

async function tcpPingPong(port: number, phaseMs: number): Promise<{ perSec: number; p50: number; p99: number }> {
  const s = await open(port)
  const ping = Buffer.alloc(pingBytes, 2)
  const rtt: number[] = []
  let got = 0
  let wake: (() => void) | null = null
  s.on('data', (d: Buffer) => {
    got += d.length
    if (got >= pingBytes && wake !== null) wake()
  })
  const start = performance.now()
  try {
    while (rtt.length < pingRoundsMax && performance.now() - start < phaseMs) {
      got = 0
      const t0 = performance.now()
      const back = new Promise<void>((r) => (wake = r))
      s.write(ping)
      await withDeadline(back, helperWaitMs, 'loopback echo')
      rtt.push((performance.now() - t0) * 1000)
    }
  } finally {
    s.destroy()
  }
  const seconds = (performance.now() - start) / 1000
  rtt.sort((a, b) => a - b)
  return { perSec: rtt.length / seconds, p50: quantile(rtt, 0.5), p99: quantile(rtt, 0.99) }
}

export async function measureHardware(options: HardwareOptions = {}): Promise<Hardware> {
  const phaseMs = options.phaseMs ?? Number(process.env.HW_PHASE_MS ?? 2000)
  const seqMiB = options.seqMiB ?? Number(process.env.HW_SEQ_MB ?? 512)
  const base = options.dir ?? process.env.HW_DIR ?? tmpdir()
  const progress = options.progress ?? (() => {})
  const dir = mkdtempSync(join(base, 'rill-hw-'))
  try {
    progress(`hardware: fsync rate (4 KiB + fdatasync, ${phaseMs} ms) in ${base}`)
    const f = fsyncRate(dir, phaseMs)
    progress(`hardware: sequential write (1 MiB, ≤ ${seqMiB} MiB)`)
    const seq = sequentialWrite(dir, phaseMs, seqMiB)
    progress('hardware: loopback TCP')
    const helper = await startTcpHelper()
    try {
      const bulk = await tcpBulk(helper.sink, phaseMs)
      const pp = await tcpPingPong(helper.echo, phaseMs)
      return {
        fsyncPerSec: f.perSec,
        fsyncP50Ms: f.p50,
        fsyncP99Ms: f.p99,
        seqWriteMBps: seq,
        tcpMBps: bulk,
        tcpRoundTripsPerSec: pp.perSec,
        tcpRttP50Us: pp.p50,
        tcpRttP99Us: pp.p99,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? '?',
        memGiB: totalmem() / 2 ** 30,
        loadAvg1: loadavg()[0]!,
        dir: base,
      }
    } finally {
      helper.child.stdin!.end()
      if (helper.child.exitCode === null) helper.child.kill('SIGTERM')
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const n0 = (n: number): string => Math.round(n).toLocaleString('en-US')

/** The hardware as a Markdown table (one line per measurement). */
export function hardwareMarkdown(h: Hardware): string {
  return [
    `${h.cpus} × ${h.cpuModel}, ${h.memGiB.toFixed(0)} GiB RAM, load average ${h.loadAvg1.toFixed(2)} when measured; disk in ${h.dir}.`,
    '',
    '| what | value |',
    '| --- | ---: |',
    `| fsync rate: 4 KiB append + fdatasync, one writer | ${n0(h.fsyncPerSec)} /s (p50 ${h.fsyncP50Ms.toFixed(3)} ms, p99 ${h.fsyncP99Ms.toFixed(3)} ms) |`,
    `| sequential write: 1 MiB appends, fdatasync every 16 MiB | ${n0(h.seqWriteMBps)} MB/s |`,
    `| loopback TCP, one socket to another process, one way | ${n0(h.tcpMBps)} MB/s |`,
    `| loopback TCP, 64 B ping-pong | ${n0(h.tcpRoundTripsPerSec)} round trips/s (RTT p50 ${h.tcpRttP50Us.toFixed(0)} µs, p99 ${h.tcpRttP99Us.toFixed(0)} µs) |`,
    '',
  ].join('\n')
}

async function main(): Promise<void> {
  const h = await measureHardware({ progress: (m) => process.stderr.write(`[bench:hardware] ${m}\n`) })
  const md = `# bench:hardware — what this machine allows\n\n${new Date().toISOString()}. \`npm run bench:hardware\`.\n\n${hardwareMarkdown(h)}`
  process.stdout.write(md)
  writeFileSync(new URL('./results/hardware.md', import.meta.url), md)
  writeFileSync(new URL('./results/hardware.json', import.meta.url), `${JSON.stringify(h, null, 2)}\n`)
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
