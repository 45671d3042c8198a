/**
 * Real brokers as child processes on loopback (`node bin/rill.mjs broker`),
 * each with its own data directory, HTTP port and peer address
 * 127.0.0.1x, so tests can kill -9 them, restart them and talk HTTP.
 *
 * Nothing here waits without a deadline (DESIGN.md decision 14): a stop is
 * SIGTERM, then SIGKILL after `stopGraceMs`; a wait for an exit gives up
 * after `exitWaitMs`. Each broker holds an IPC channel to this process and
 * exits by itself when it closes, so a test process that dies (even by
 * SIGKILL) leaves no broker behind (src/cli/broker.ts).
 *
 * `startCluster({ tls: true })` makes a throwaway CA (src/cli/certs.ts, the
 * openssl binary) and a certificate per broker naming its HTTP and peer
 * hosts, starts the brokers with --tls-*, and gives https:// URLs; `health`
 * and `call` then take the cluster's `dispatcher` (an undici Agent trusting
 * the CA).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, fetch as undiciFetch } from 'undici'
import { createDevCa, type DevCa, type IssuedCert } from '../../src/cli/certs.ts'

const bin = new URL('../../bin/rill.mjs', import.meta.url).pathname

/** Between SIGTERM and SIGKILL when a helper stops a process, ms (a broker's own --shutdown-timeout is 10 s). */
export const stopGraceMs = 12_000
/** Longest wait for an exit a helper caused with SIGKILL (or saw coming), ms. */
export const exitWaitMs = 10_000
/** Longest wait for a started broker to answer /health, ms. */
export const startWaitMs = 30_000

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** True once `child` has exited (a process killed by a signal has `exitCode` null and `signalCode` set). */
export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** Resolves with how `child` exited (at once if it has); rejects after `ms` with `what` in the message. */
export function waitExit(child: ChildProcess, ms: number, what = `process ${child.pid}`): Promise<Exit> {
  if (hasExited(child)) return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(timer)
      resolve({ code, signal })
    }
    const timer = setTimeout(() => {
      child.removeListener('exit', onExit)
      reject(new Error(`${what} did not exit within ${ms} ms`))
    }, ms)
    child.once('exit', onExit)
  })
}

/**
 * Stops `child`: `signal` (SIGTERM by default), then SIGKILL if it is still
 * there after `graceMs`. Resolves with how it exited and whether it took
 * SIGKILL; rejects only if not even SIGKILL is reported within `exitWaitMs`.
 */
export async function stopProcess(child: ChildProcess, options: { signal?: NodeJS.Signals; graceMs?: number; what?: string } = {}): Promise<Exit & { killed: boolean }> {
  const what = options.what ?? `process ${child.pid}`
  if (hasExited(child)) return { code: child.exitCode, signal: child.signalCode, killed: false }
  const signal = options.signal ?? 'SIGTERM'
  child.kill(signal)
  if (signal !== 'SIGKILL') {
    try {
      return { ...(await waitExit(child, options.graceMs ?? stopGraceMs, what)), killed: false }
    } catch {
      child.kill('SIGKILL')
    }
  }
  return { ...(await waitExit(child, exitWaitMs, `${what} (SIGKILLed)`)), killed: signal !== 'SIGKILL' }
}

/**
 * False once process `pid` is gone or a zombie (Linux /proc): an orphan that
 * exited may wait a while for its reaper, and it holds nothing.
 */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat[stat.lastIndexOf(')') + 2]
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

export interface BrokerProcess {
  readonly id: number
  /** HTTP base URL and peer address: new ones after `move`. */
  url: string
  peer: string
  readonly dir: string
  child: ChildProcess | null
  output: string[]
}

/** A TLS cluster's CA, each broker's certificate, and an undici Agent that trusts the CA. */
export interface ClusterTls {
  readonly ca: DevCa
  readonly certs: ReadonlyMap<number, IssuedCert>
  readonly dispatcher: Agent
}

export interface TestCluster {
  readonly root: string
  readonly brokers: BrokerProcess[]
  readonly seeds: string
  /** Set when started with `tls`. */
  readonly tls: ClusterTls | null
  /** Starts broker `id` and waits (at most `startWaitMs`) until it answers /health. */
  start(id: number): Promise<void>
  /** Sends `signal` (SIGKILL by default) and waits for the exit; a signal other than SIGKILL is followed by SIGKILL after `stopGraceMs`. */
  kill(id: number, signal?: NodeJS.Signals): Promise<void>
  /** Stops every broker (SIGTERM, then SIGKILL) and removes the data directories. */
  stopAll(): Promise<void>
  /** Gives broker `id` (stopped, outside the seeds) new HTTP and peer ports: its next `start` listens there, same data directory. */
  move(id: number): Promise<void>
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

/**
 * `nofile`: each broker runs with that descriptor limit (soft and hard,
 * RLIMIT_NOFILE) through prlimit(1), which execs node in place (same pid).
 */
export async function startCluster(options: { brokers?: number; seeds?: number; extraFlags?: string[]; tls?: boolean; nofile?: number } = {}): Promise<TestCluster> {
  const n = options.brokers ?? 3
  const root = await mkdtemp(join(tmpdir(), 'rill-cluster-'))
  const brokers: BrokerProcess[] = []
  const scheme = options.tls === true ? 'https' : 'http'
  for (let id = 1; id <= n; id++) {
    const peerHost = `127.0.0.${10 + id}`
    const httpPort = await freePort('127.0.0.1')
    const peerPort = await freePort(peerHost)
    brokers.push({ id, url: `${scheme}://127.0.0.1:${httpPort}`, peer: `${peerHost}:${peerPort}`, dir: join(root, `broker-${id}`), child: null, output: [] })
  }
  const tls = options.tls === true ? await makeClusterTls(root, brokers) : null
  const dispatcher = tls?.dispatcher
  const seeds = brokers.slice(0, options.seeds ?? n).map((b) => `${b.id}@${b.peer}`).join(',')
  const seedCount = options.seeds ?? n
  const cluster: TestCluster = {
    root,
    brokers,
    seeds,
    tls,
    async start(id) {
      const b = brokers[id - 1]!
      const args = [bin, 'broker', '--id', String(id), '--dir', b.dir, '--http', new URL(b.url).host, '--peer', b.peer, '--seeds', seeds]
      // RILL_TEST_LOG_LEVEL=info (or debug) gives the brokers' logs for a failure's dump.
      args.push('--tick-ms', '20', '--election-ticks', '15', '--log-level', process.env.RILL_TEST_LOG_LEVEL ?? 'warn', ...(options.extraFlags ?? []))
      const cert = tls?.certs.get(id)
      if (cert !== undefined) args.push('--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--tls-ca', tls!.ca.certFile)
      if (id > seedCount) args.push('--join', brokers[0]!.url)
      // The IPC channel is the broker's lifeline: it exits when this process is gone.
      const child = options.nofile === undefined
        ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
        : spawn('prlimit', [`--nofile=${options.nofile}:${options.nofile}`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
      b.child = child
      b.output = []
      child.stdout!.on('data', (d: Buffer) => b.output.push(d.toString()))
      child.stderr!.on('data', (d: Buffer) => b.output.push(d.toString()))
      try {
        await waitFor(
          async () => {
            if (hasExited(child)) throw new Error(`broker ${id} exited during start (${child.signalCode ?? `code ${child.exitCode}`}):\n${b.output.join('').slice(-3000)}`)
            return (await health(b.url, dispatcher)) === true
          },
          startWaitMs,
          `broker ${id} healthy`,
          () => b.output.join(''),
        )
      } catch (error) {
        // A broker that did not come up is not left running.
        await stopProcess(child, { signal: 'SIGKILL', what: `broker ${id}` }).catch(() => undefined)
        b.child = null
        throw error
      }
    },
    async kill(id, signal = 'SIGKILL') {
      const b = brokers[id - 1]!
      const child = b.child
      if (child === null) return
      const exit = await stopProcess(child, { signal, what: `broker ${id}` })
      if (exit.killed) process.stderr.write(`broker ${id} ignored ${signal} for ${stopGraceMs} ms: SIGKILLed\n${b.output.join('').slice(-2000)}\n`)
      b.child = null
    },
    async move(id) {
      const b = brokers[id - 1]!
      if (b.child !== null) throw new Error(`broker ${id} must be stopped before it moves`)
      if (id <= seedCount) throw new Error(`broker ${id} is a seed: its peer address is in every broker's --seeds`)
      const peerHost = b.peer.slice(0, b.peer.lastIndexOf(':'))
      b.url = `http://127.0.0.1:${await freePort('127.0.0.1')}`
      b.peer = `${peerHost}:${await freePort(peerHost)}`
    },
    async stopAll() {
      const stops = await Promise.allSettled(brokers.map((b) => cluster.kill(b.id, 'SIGTERM')))
      await dispatcher?.destroy().catch(() => undefined)
      await rm(root, { recursive: true, force: true })
      const failed = stops.find((s): s is PromiseRejectedResult => s.status === 'rejected')
      if (failed !== undefined) throw failed.reason
    },
  }
  const starts = await Promise.allSettled(brokers.map((b) => cluster.start(b.id)))
  const failed = starts.find((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failed !== undefined) {
    // The caller gets no cluster to stop: stop what did start here.
    await cluster.stopAll().catch(() => undefined)
    throw failed.reason
  }
  return cluster
}

/** A CA in ROOT/tls and a certificate per broker naming 127.0.0.1 and its peer host. */
async function makeClusterTls(root: string, brokers: readonly BrokerProcess[]): Promise<ClusterTls> {
  const ca = await createDevCa({ dir: join(root, 'tls') })
  const certs = new Map<number, IssuedCert>()
  for (const b of brokers) certs.set(b.id, await ca.issue({ name: `broker-${b.id}`, hosts: ['127.0.0.1', b.peer.slice(0, b.peer.lastIndexOf(':'))] }))
  return { ca, certs, dispatcher: new Agent({ connect: { ca: readFileSync(ca.certFile) } }) }
}

/** fetch, through `dispatcher` (a TLS cluster's Agent) when given. */
function fetchVia(url: string, init: RequestInit, dispatcher: Agent | undefined): Promise<Response> {
  if (dispatcher === undefined) return fetch(url, init)
  return undiciFetch(url, { ...(init as object), dispatcher }) as unknown as Promise<Response>
}

export async function health(url: string, dispatcher?: Agent): Promise<boolean> {
  try {
    const r = await fetchVia(`${url}/health`, { signal: AbortSignal.timeout(1000) }, dispatcher)
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

export async function call(url: string, method: string, path: string, body?: unknown, timeoutMs = 20_000, dispatcher?: Agent): Promise<Answer> {
  const r = await fetchVia(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  }, dispatcher)
  const text = await r.text()
  return { status: r.status, body: text.length === 0 ? null : JSON.parse(text) }
}
