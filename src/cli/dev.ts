/**
 * `rill dev`: a local cluster on loopback, one child process per broker.
 *
 *   broker I: node bin/rill.mjs broker --id I --dir DIR/broker-I
 *               --http 127.0.0.1:PORT+I-1 --peer 127.0.0.1:PORT+100+I-1 --seeds <first ≤3 brokers>
 *             stdout/stderr ──▶ DIR/broker-I.log
 *   each /health answering ──▶ "broker I http://..." ; all ──▶ "ready"
 *   Ctrl-C / SIGTERM ──▶ SIGTERM to every broker, wait (bounded), SIGKILL stragglers, exit 0
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
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, fetch as undiciFetch } from 'undici'
import { systemRuntime, timeoutSignal } from '../base/index.ts'
import { CliError, UsageError, expectPositionals, parseArgs, type FlagSpecs } from './args.ts'
import { createDevCa } from './certs.ts'
import { sleep } from './client.ts'

export const devUsage = `usage: rill dev [--brokers 3] [--dir ./data] [--port 9090] [--tls]
  starts a local cluster: broker I serves HTTP on PORT+I-1 and talks to peers on PORT+100+I-1;
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
/** Longest wait for every broker's /health. */
export const startWaitMsMax = 60_000
/** Between two /health probes of one broker. */
const healthPollMs = 200
/** Progress line interval while starting. */
const progressMs = 2000
/** Longest wait for the brokers to stop after SIGTERM, then SIGKILL. */
const stopWaitMsMax = 20_000
/** After SIGKILL, how long to wait for the exits to be reported. */
const killWaitMs = 2000

/**
 * bin/rill.mjs, which starts each broker: two levels up from this file in
 * src/cli/ (run through tsx), three from its compiled copy in dist/src/cli/.
 */
const binPath = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../../bin/rill.mjs' : '../../../bin/rill.mjs', import.meta.url))

interface Broker {
  readonly id: number
  readonly url: string
  readonly log: string
  readonly child: ChildProcess
  exited: { code: number | null; signal: NodeJS.Signals | null } | null
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

async function healthy(url: string, agent: Agent | null): Promise<boolean> {
  try {
    const signal = timeoutSignal(systemRuntime, 1000)
    const r = agent === null ? await fetch(`${url}/health`, { signal }) : await undiciFetch(`${url}/health`, { signal, dispatcher: agent })
    await r.arrayBuffer()
    return r.ok
  } catch {
    return false
  }
}

function logTail(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n')
    return lines.slice(-5).join('\n')
  } catch {
    return '(no log)'
  }
}

export async function devCommand(argv: readonly string[], io: DevIo): Promise<number> {
  const parsed = parseArgs(argv, devFlags)
  if (parsed.flags.help === true) {
    io.out(devUsage.trimEnd())
    return 0
  }
  expectPositionals(parsed, [])
  const count = (parsed.flags.brokers as number | undefined) ?? 3
  const port = (parsed.flags.port as number | undefined) ?? 9090
  const dir = resolve((parsed.flags.dir as string | undefined) ?? './data')
  if (port + peerPortOffset + count - 1 > 65_535) throw new UsageError(`--port ${port} leaves no room for ${count} peer ports at ${port + peerPortOffset}..`)
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
    const started = await waitHealthy(brokers, io, signals.signal, agent)
    if (started) {
      io.out('ready')
      for (const b of brokers) {
        b.child.once('exit', (code, signal) => {
          if (!signals.signal.aborted) io.err(`broker ${b.id} exited (${signal ?? `code ${code}`}); see ${b.log}`)
        })
      }
      await new Promise<void>((resolve) => (signals.signal.aborted ? resolve() : signals.signal.addEventListener('abort', () => resolve(), { once: true })))
    }
    io.err('stopping brokers...')
    await stopAll()
    io.err('stopped')
    return 0
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

function spawnBroker(id: number, options: { brokers: number; dir: string; port: number; tls: DevTls | null }): Broker {
  const log = join(options.dir, `broker-${id}.log`)
  const stream = createWriteStream(log, { flags: 'a' })
  // The 'ipc' entry is the broker's lifeline to this process (never used for messages).
  const child = spawn(process.execPath, [binPath, ...brokerArgs({ id, ...options })], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true, env: brokerEnv() })
  child.stdout!.pipe(stream)
  child.stderr!.pipe(stream)
  const broker: Broker = { id, url: `${options.tls === null ? 'http' : 'https'}://127.0.0.1:${options.port + id - 1}`, log, child, exited: null }
  child.once('exit', (code, signal) => (broker.exited = { code, signal }))
  child.once('error', () => (broker.exited ??= { code: null, signal: null }))
  return broker
}

/** Resolves true once every broker answers /health (printing each), false if a signal came first; throws on a broker exit or the start bound. */
async function waitHealthy(brokers: Broker[], io: DevIo, signal: AbortSignal, agent: Agent | null): Promise<boolean> {
  const waiting = new Set(brokers)
  const deadline = systemRuntime.nowMs() + startWaitMsMax
  let nextProgress = systemRuntime.nowMs() + progressMs
  while (waiting.size > 0) {
    if (signal.aborted) return false
    for (const b of waiting) {
      if (b.exited !== null) {
        throw new CliError(`broker ${b.id} exited during start (${b.exited.signal ?? `code ${b.exited.code}`}); last lines of ${b.log}:\n${logTail(b.log)}`)
      }
    }
    const checks = await Promise.all([...waiting].map(async (b) => [b, await healthy(b.url, agent)] as const))
    for (const [b, ok] of checks) {
      if (!ok) continue
      waiting.delete(b)
      io.out(`broker ${b.id} ${b.url}`)
    }
    if (waiting.size === 0) break
    if (systemRuntime.nowMs() > deadline) {
      const ids = [...waiting].map((b) => b.id).join(', ')
      throw new CliError(`broker${waiting.size > 1 ? 's' : ''} ${ids} did not answer /health within ${startWaitMsMax / 1000} s; see ${[...waiting].map((b) => b.log).join(', ')}`)
    }
    if (systemRuntime.nowMs() >= nextProgress) {
      io.err(`waiting for broker${waiting.size > 1 ? 's' : ''} ${[...waiting].map((b) => b.id).join(', ')}...`)
      nextProgress = systemRuntime.nowMs() + progressMs
    }
    await sleep(healthPollMs, signal)
  }
  return true
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
