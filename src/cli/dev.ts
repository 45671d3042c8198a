/**
 * `rill dev`: a local cluster on loopback, one child process per broker.
 *
 *   every HTTP and peer port free? ── no ──▶ one line naming the port and --port, exit 1, nothing started
 *   broker I: node bin/rill.mjs broker --id I --dir DIR/broker-I
 *               --http 127.0.0.1:PORT+I-1 --peer 127.0.0.1:PORT+100+I-1 --seeds <first ≤3 brokers>
 *             stdout/stderr ──▶ DIR/broker-I.log
 *   /health answers as broker I from the process started ──▶ "broker I http://..."
 *   every broker's /v1/metadata: a controller leader, every broker registered and unfenced ──▶ "ready"
 *   a broker exits while starting ──▶ its exit and the last lines of its log, exit 1
 *   a broker exits after ready ──▶ the same lines, the others keep running; none left ──▶ exit 1
 *   Ctrl-C / SIGTERM ──▶ SIGTERM to every broker, wait (bounded), SIGKILL stragglers, exit 0
 *
 * `ready` means a client can use the cluster at once: create a topic on any
 * broker (a controller leader is known everywhere, so nothing answers 503),
 * produce to it, fetch from it. `/health` answers the broker's id and pid, so
 * a cluster already on these ports (a second `npm start`) is never taken for
 * this one; the ports are checked before anything starts anyway.
 *
 * Brokers run in their own process group so that Ctrl-C in the terminal
 * reaches them once, through this process, as SIGTERM (their graceful stop,
 * bounded by their --shutdown-timeout). Each holds an IPC channel to this
 * process and stops by itself when it closes: if `rill dev` dies, even by
 * SIGKILL, its brokers do not outlive it (src/cli/broker.ts).
 *
 * Plaintext on loopback by default. `--tls` makes a throwaway CA and a
 * certificate per broker in DIR/tls (certs.ts: the openssl binary signs
 * them), starts the brokers with --tls-cert/--tls-key/--tls-ca, serves
 * https://, and prints `tls ca DIR/tls/ca.crt` for clients to trust
 * (--tls-ca FILE, RILL_TLS_CA). The brokers never take RILL_TLS_* from this
 * process's environment: those are the CLI's own client settings.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, fetch as undiciFetch } from 'undici'
import { systemRuntime, timeoutSignal } from '../base/index.ts'
import { CliError, UsageError, expectPositionals, parseArgs, type FlagSpecs } from './args.ts'
import { createDevCa } from './certs.ts'
import { sleep } from './client.ts'
import { packageRoot } from './package-root.ts'

/**
 * Default first HTTP port: brokers serve HTTP on 7070, 7071, 7072 and talk to
 * peers on 7170-7172. It was 9090-9092: 9092 is Kafka's port (and Redpanda's)
 * and 9090 Prometheus's, so a machine running either could not `npm start`.
 * No well-known broker uses 7070-7072 or 7170-7172 (Kafka 9092, Redpanda
 * 9092/9644/33145, Pulsar 6650/8080, NATS 4222/6222, RabbitMQ 5672,
 * ZooKeeper 2181/2888/3888, Cassandra 7000/7001/7199).
 */
export const devPortDefault = 7070

export const devUsage = `usage: rill dev [--brokers 3] [--dir ./data] [--port ${devPortDefault}] [--tls]
  starts a local cluster: broker I serves HTTP on PORT+I-1 and talks to peers on PORT+100+I-1;
  prints "ready" once a controller leader is elected and every broker is registered;
  logs in DIR/broker-I.log; Ctrl-C stops it
  --tls: https and TLS between brokers with a throwaway CA (DIR/tls/ca.crt; needs the openssl binary)
`

const devFlags: FlagSpecs = {
  brokers: { kind: 'int', min: 1, max: 99 },
  dir: { kind: 'string' },
  port: { kind: 'int', min: 1, max: 65_535 },
  tls: { kind: 'boolean' },
}

/** The TLS files of a dev cluster: the CA clients trust, and each broker's certificate. */
interface DevTls {
  readonly caFile: string
  /** Certificate and key of broker `id`. */
  readonly broker: (id: number) => { certFile: string; keyFile: string }
}

/** Controller voters: all brokers up to this many, else the first ones. */
const controllerVotersMax = 3
/** Offset of the peer ports from the HTTP ports. */
const peerPortOffset = 100
/** Longest wait for `ready` (every broker's /health, then a controller leader and every registration). */
export const startWaitMsMax = 60_000
/** Between two rounds of /health or /v1/metadata probes. */
const healthPollMs = 200
/** One probe's bound, ms. */
const probeTimeoutMs = 1000
/** Lines of a broker's log shown when it exits. */
const logTailLines = 10
/** After a broker's exit, how long to wait for its last output to reach its log, ms. */
const logFlushWaitMs = 2000
/** Progress line interval while starting. */
const progressMs = 2000
/** Longest wait for the brokers to stop after SIGTERM, then SIGKILL. */
const stopWaitMsMax = 20_000
/** After SIGKILL, how long to wait for the exits to be reported. */
const killWaitMs = 2000

/** bin/rill.mjs, which starts each broker. */
const binPath = fileURLToPath(new URL('bin/rill.mjs', packageRoot))

interface Broker {
  readonly id: number
  readonly url: string
  readonly log: string
  readonly child: ChildProcess
  exited: { code: number | null; signal: NodeJS.Signals | null } | null
  /** Resolves once the child's output is all in its log (its pipes closed and the file written). */
  readonly logged: Promise<void>
}

export interface DevIo {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

/** The `rill broker` arguments of broker `id` (exported for tests). */
export function brokerArgs(options: { id: number; brokers: number; dir: string; port: number; tls?: DevTls | null }): string[] {
  const { id, brokers, dir, port } = options
  const tls = options.tls ?? null
  const voters = Math.min(brokers, controllerVotersMax)
  const seeds = Array.from({ length: voters }, (_, i) => `${i + 1}@127.0.0.1:${port + peerPortOffset + i}`).join(',')
  const files = tls === null ? null : tls.broker(id)
  return [
    'broker',
    '--id', String(id),
    '--dir', join(dir, `broker-${id}`),
    '--http', `127.0.0.1:${port + id - 1}`,
    '--peer', `127.0.0.1:${port + peerPortOffset + id - 1}`,
    '--seeds', seeds,
    // Brokers beyond the controller voters register through broker 1.
    ...(id > voters ? ['--join', `${tls === null ? 'http' : 'https'}://127.0.0.1:${port}`] : []),
    ...(files === null ? [] : ['--tls-cert', files.certFile, '--tls-key', files.keyFile, '--tls-ca', tls!.caFile]),
  ]
}

/** A throwaway CA in DIR/tls and a certificate per broker naming 127.0.0.1 and localhost (made anew at each start). */
async function makeDevTls(dir: string, count: number): Promise<DevTls> {
  const ca = await createDevCa({ dir: join(dir, 'tls'), name: 'rill-dev-ca' })
  const files = new Map<number, { certFile: string; keyFile: string }>()
  for (let id = 1; id <= count; id++) files.set(id, await ca.issue({ name: `broker-${id}`, hosts: ['127.0.0.1', 'localhost'] }))
  return { caFile: ca.certFile, broker: (id) => files.get(id)! }
}

/** This process's environment without RILL_TLS_*: the CLI's client settings must not turn a dev broker's TLS on or off. */
function brokerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const name of Object.keys(env)) if (name.startsWith('RILL_TLS_')) delete env[name]
  return env
}

/** GET `url` + `path` as JSON (null when it does not answer 200 within `probeTimeoutMs`). */
async function probe(url: string, path: string, agent: Agent | null): Promise<unknown> {
  try {
    const signal = timeoutSignal(systemRuntime, probeTimeoutMs)
    const r = agent === null ? await fetch(`${url}${path}`, { signal }) : await undiciFetch(`${url}${path}`, { signal, dispatcher: agent })
    const text = await r.text()
    return r.ok ? (JSON.parse(text) as unknown) : null
  } catch {
    return null
  }
}

/** The last `logTailLines` lines of a broker's log. */
function logTail(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
    return lines.slice(-logTailLines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** The ports of a dev cluster of `count` brokers from `port` on: each broker's HTTP port, then its peer port. */
export function devPorts(port: number, count: number): { port: number; what: string }[] {
  const ports: { port: number; what: string }[] = []
  for (let id = 1; id <= count; id++) {
    ports.push({ port: port + id - 1, what: `broker ${id} HTTP` })
    ports.push({ port: port + peerPortOffset + id - 1, what: `broker ${id} peer` })
  }
  return ports
}

/** Null if 127.0.0.1:`port` can be listened on now, else why not (EADDRINUSE, EACCES...). */
function portRefusal(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(null)))
  })
}

/**
 * Refuses to start (CliError, nothing started) when a port the cluster needs
 * is taken: a broker would die on it, and a cluster already there (a second
 * `npm start`) would answer in its place.
 */
async function checkPortsFree(port: number, count: number): Promise<void> {
  const taken: string[] = []
  for (const p of devPorts(port, count)) {
    const why = await portRefusal(p.port)
    if (why !== null) taken.push(`${p.port} (${p.what}: ${why})`)
  }
  if (taken.length === 0) return
  const last = port + peerPortOffset + count - 1
  throw new CliError(
    `port${taken.length > 1 ? 's' : ''} ${taken.join(', ')} not free: is another rill dev (npm start) running? ` +
      `Stop it, or pick other ports with --port N (this cluster needs ${port}-${port + count - 1} and ${port + peerPortOffset}-${last})`,
  )
}

export async function devCommand(argv: readonly string[], io: DevIo): Promise<number> {
  const parsed = parseArgs(argv, devFlags)
  if (parsed.flags.help === true) {
    io.out(devUsage.trimEnd())
    return 0
  }
  expectPositionals(parsed, [])
  const count = (parsed.flags.brokers as number | undefined) ?? 3
  const port = (parsed.flags.port as number | undefined) ?? devPortDefault
  const dir = resolve((parsed.flags.dir as string | undefined) ?? './data')
  if (port + peerPortOffset + count - 1 > 65_535) throw new UsageError(`--port ${port} leaves no room for ${count} peer ports at ${port + peerPortOffset}..`)
  await checkPortsFree(port, count)
  try {
    mkdirSync(dir, { recursive: true })
  } catch (error) {
    throw new CliError(`cannot create --dir ${dir}: ${(error as Error).message}`)
  }
  const tls = parsed.flags.tls === true ? await makeDevTls(dir, count) : null
  const agent = tls === null ? null : new Agent({ connect: { ca: readFileSync(tls.caFile) } })
  if (tls !== null) {
    io.out(`tls ca ${tls.caFile}`)
    io.err(`clients: --url https://127.0.0.1:${port} --tls-ca ${tls.caFile} (or RILL_URL and RILL_TLS_CA)`)
  }

  const brokers: Broker[] = []
  for (let id = 1; id <= count; id++) brokers.push(spawnBroker(id, { brokers: count, dir, port, tls }))
  const stopAll = (): Promise<void> => stopBrokers(brokers)
  const signals = new AbortController()
  const onSignal = (): void => signals.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  // If this process dies some other way, do not leave brokers behind.
  const onExit = (): void => {
    for (const b of brokers) if (b.exited === null) b.child.kill('SIGTERM')
  }
  process.once('exit', onExit)
  try {
    io.err(`starting ${count} broker${count === 1 ? '' : 's'} in ${dir} (logs: ${join(dir, 'broker-N.log')})`)
    const started = await waitReady(brokers, io, signals.signal, agent)
    let code = 0
    if (started) {
      io.out('ready')
      code = await runUntilStopped(brokers, io, signals.signal)
    }
    io.err('stopping brokers...')
    await stopAll()
    io.err('stopped')
    return code
  } catch (error) {
    await stopAll()
    throw error
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
    process.removeListener('exit', onExit)
    await agent?.close().catch(() => undefined)
  }
}

/**
 * After `ready`: runs until a signal (0), reporting each broker that exits
 * (a user may kill one to watch a failover: the others go on). Once every
 * broker is gone there is no cluster left: 1.
 */
async function runUntilStopped(brokers: Broker[], io: DevIo, signal: AbortSignal): Promise<number> {
  const exits = brokers.map(async (b) => {
    await new Promise<void>((resolve) => (b.exited !== null ? resolve() : b.child.once('exit', () => resolve())))
    if (signal.aborted) return
    await logFlushed(b)
    if (!signal.aborted) io.err(`broker ${b.id} exited (${exitText(b)}); last lines of ${b.log}:\n${logTail(b.log)}`)
  })
  const allGone = Promise.all(exits).then(() => 'gone' as const)
  const stopped = new Promise<'signal'>((resolve) => (signal.aborted ? resolve('signal') : signal.addEventListener('abort', () => resolve('signal'), { once: true })))
  if ((await Promise.race([allGone, stopped])) === 'signal') return 0
  io.err('every broker exited')
  return 1
}

function exitText(b: Broker): string {
  return b.exited === null ? 'running' : (b.exited.signal ?? `code ${b.exited.code}`)
}

/** Waits (bounded by `logFlushWaitMs`) for an exited broker's last output to reach its log. */
async function logFlushed(b: Broker): Promise<void> {
  const done = new AbortController()
  await Promise.race([b.logged, sleep(logFlushWaitMs, done.signal)])
  done.abort()
}

function spawnBroker(id: number, options: { brokers: number; dir: string; port: number; tls: DevTls | null }): Broker {
  const log = join(options.dir, `broker-${id}.log`)
  const stream = createWriteStream(log, { flags: 'a' })
  // The 'ipc' entry is the broker's lifeline to this process (never used for messages).
  const child = spawn(process.execPath, [binPath, ...brokerArgs({ id, ...options })], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true, env: brokerEnv() })
  // Two pipes into one file: the file ends once both are closed ('close'), not when the first ends.
  child.stdout!.pipe(stream, { end: false })
  child.stderr!.pipe(stream, { end: false })
  const logged = new Promise<void>((resolve) => {
    stream.once('error', () => resolve())
    child.once('close', () => stream.end(() => resolve()))
    child.once('error', () => stream.end(() => resolve()))
  })
  const broker: Broker = { id, url: `${options.tls === null ? 'http' : 'https'}://127.0.0.1:${options.port + id - 1}`, log, child, exited: null, logged }
  child.once('exit', (code, signal) => (broker.exited = { code, signal }))
  child.once('error', () => (broker.exited ??= { code: null, signal: null }))
  return broker
}

/** Why a broker's /health answer is not from the process started for it (null: it is). */
function notOurs(b: Broker, health: unknown): string | null {
  const h = (health ?? {}) as { ok?: unknown; broker?: unknown; pid?: unknown }
  if (h.ok !== true) return 'no answer'
  if (h.broker !== b.id || h.pid !== b.child.pid) return `${b.url} answers as broker ${String(h.broker)} (pid ${String(h.pid)}), not the broker ${b.id} started here (pid ${b.child.pid})`
  return null
}

/** What broker `b`'s metadata lacks for the cluster to be ready (empty: nothing). */
function notReadyIn(b: Broker, metadata: unknown, brokers: readonly Broker[]): string[] {
  const m = metadata as { controller?: { leader?: unknown }; brokers?: { id?: unknown; url?: unknown; fenced?: unknown }[] } | null
  if (m === null || typeof m !== 'object') return [`broker ${b.id}: no metadata answer`]
  const missing: string[] = []
  if (typeof m.controller?.leader !== 'number') missing.push(`no controller leader yet (broker ${b.id})`)
  const registered = Array.isArray(m.brokers) ? m.brokers : []
  for (const other of brokers) {
    const entry = registered.find((r) => r.id === other.id)
    if (entry === undefined || entry.url !== other.url) missing.push(`broker ${other.id} not registered yet`)
    else if (entry.fenced !== false) missing.push(`broker ${other.id} fenced`)
  }
  return missing
}

/**
 * Resolves true once the cluster is ready (see the header), false if a signal
 * came first; throws when a broker exits (with the end of its log) or at the
 * start bound (naming what is missing).
 */
async function waitReady(brokers: Broker[], io: DevIo, signal: AbortSignal, agent: Agent | null): Promise<boolean> {
  const waitingHealth = new Set(brokers)
  const deadline = systemRuntime.nowMs() + startWaitMsMax
  let nextProgress = systemRuntime.nowMs() + progressMs
  for (;;) {
    if (signal.aborted) return false
    const gone = brokers.find((b) => b.exited !== null)
    if (gone !== undefined) {
      await logFlushed(gone)
      throw new CliError(`broker ${gone.id} exited during start (${exitText(gone)}); last lines of ${gone.log}:\n${logTail(gone.log)}`)
    }
    let missing: string[] = []
    const health = await Promise.all([...waitingHealth].map(async (b) => [b, notOurs(b, await probe(b.url, '/health', agent))] as const))
    for (const [b, why] of health) {
      if (why === null) {
        waitingHealth.delete(b)
        io.out(`broker ${b.id} ${b.url}`)
      } else {
        missing.push(why === 'no answer' ? `broker ${b.id} not answering /health` : why)
      }
    }
    if (waitingHealth.size === 0) {
      const views = await Promise.all(brokers.map(async (b) => notReadyIn(b, await probe(b.url, '/v1/metadata', agent), brokers)))
      missing = [...new Set(views.flat())]
      if (missing.length === 0) return true
    }
    if (systemRuntime.nowMs() > deadline) {
      throw new CliError(`not ready within ${startWaitMsMax / 1000} s: ${missing.join('; ')}; see ${brokers.map((b) => b.log).join(', ')}`)
    }
    if (systemRuntime.nowMs() >= nextProgress) {
      io.err(`waiting: ${missing.slice(0, 3).join('; ')}${missing.length > 3 ? '; ...' : ''}`)
      nextProgress = systemRuntime.nowMs() + progressMs
    }
    await sleep(healthPollMs, signal)
  }
}

async function stopBrokers(brokers: Broker[]): Promise<void> {
  const running = brokers.filter((b) => b.exited === null)
  const exits = running.map((b) => new Promise<void>((resolve) => (b.exited !== null ? resolve() : b.child.once('exit', () => resolve()))))
  for (const b of running) b.child.kill('SIGTERM')
  const all = Promise.all(exits).then(() => true)
  // The timers are cancelled once every broker is gone, so they do not hold this process open.
  const done = new AbortController()
  const stoppedInTime = await Promise.race([all, sleep(stopWaitMsMax, done.signal).then(() => false)])
  if (!stoppedInTime) for (const b of brokers) if (b.exited === null) b.child.kill('SIGKILL')
  await Promise.race([all, sleep(killWaitMs, done.signal)])
  done.abort()
}
