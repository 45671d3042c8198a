/**
 * Real brokers as child processes on loopback (`node bin/rill.mjs broker`),
 * each with its own data directory, HTTP port and peer address
 * 127.0.0.1x, so tests can kill -9 them, restart them and talk HTTP.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const bin = new URL('../../bin/rill.mjs', import.meta.url).pathname

export interface BrokerProcess {
  readonly id: number
  readonly url: string
  readonly peer: string
  readonly dir: string
  child: ChildProcess | null
  output: string[]
}

export interface TestCluster {
  readonly root: string
  readonly brokers: BrokerProcess[]
  readonly seeds: string
  start(id: number): Promise<void>
  kill(id: number, signal?: NodeJS.Signals): Promise<void>
  stopAll(): Promise<void>
}

/** A port free on `host` now (bound and released; fine for loopback tests and benches). */
export async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export async function startCluster(options: { brokers?: number; seeds?: number; extraFlags?: string[] } = {}): Promise<TestCluster> {
  const n = options.brokers ?? 3
  const root = await mkdtemp(join(tmpdir(), 'rill-cluster-'))
  const brokers: BrokerProcess[] = []
  for (let id = 1; id <= n; id++) {
    const peerHost = `127.0.0.${10 + id}`
    const httpPort = await freePort('127.0.0.1')
    const peerPort = await freePort(peerHost)
    brokers.push({ id, url: `http://127.0.0.1:${httpPort}`, peer: `${peerHost}:${peerPort}`, dir: join(root, `broker-${id}`), child: null, output: [] })
  }
  const seeds = brokers.slice(0, options.seeds ?? n).map((b) => `${b.id}@${b.peer}`).join(',')
  const seedCount = options.seeds ?? n
  const cluster: TestCluster = {
    root,
    brokers,
    seeds,
    async start(id) {
      const b = brokers[id - 1]!
      const args = [bin, 'broker', '--id', String(id), '--dir', b.dir, '--http', b.url.slice('http://'.length), '--peer', b.peer, '--seeds', seeds]
      args.push('--tick-ms', '20', '--election-ticks', '15', '--log-level', 'warn', ...(options.extraFlags ?? []))
      if (id > seedCount) args.push('--join', brokers[0]!.url)
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      b.child = child
      b.output = []
      child.stdout!.on('data', (d: Buffer) => b.output.push(d.toString()))
      child.stderr!.on('data', (d: Buffer) => b.output.push(d.toString()))
      await waitFor(async () => (await health(b.url)) === true, 30_000, `broker ${id} healthy`, () => b.output.join(''))
    },
    async kill(id, signal = 'SIGKILL') {
      const b = brokers[id - 1]!
      const child = b.child
      if (child === null || child.exitCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill(signal)
      await exited
      b.child = null
    },
    async stopAll() {
      await Promise.all(brokers.map((b) => cluster.kill(b.id, 'SIGTERM')))
      await rm(root, { recursive: true, force: true })
    },
  }
  await Promise.all(brokers.map((b) => cluster.start(b.id)))
  return cluster
}

export async function health(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
    return r.ok
  } catch {
    return false
  }
}

export async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, what: string, context?: () => string): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await cond()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${context === undefined ? '' : `\n${context().slice(-3000)}`}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export interface Answer {
  status: number
  body: any
}

export async function call(url: string, method: string, path: string, body?: unknown, timeoutMs = 20_000): Promise<Answer> {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  })
  const text = await r.text()
  return { status: r.status, body: text.length === 0 ? null : JSON.parse(text) }
}
