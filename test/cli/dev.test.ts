/**
 * `rill dev` with real broker processes on loopback: one broker starts,
 * prints its URL and `ready` (by then a controller leader is elected and the
 * broker registered, so a topic can be created at once), and SIGTERM stops it
 * with exit 0; a rill dev killed -9 leaves no broker behind (each exits when
 * its IPC channel to rill dev closes); a port it needs that is taken (HTTP or
 * peer) is refused before anything starts, naming the port and --port; a
 * broker that exits while starting makes `rill dev` exit 1 with the cause
 * from the broker's log, and so does losing every broker after `ready`;
 * `--tls` serves https with a throwaway CA.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, fetch as undiciFetch } from 'undici'
import { processAlive, stopProcess, waitExit, waitFor } from '../broker/helpers.ts'
import { runCli } from './helpers.ts'

const bin = fileURLToPath(new URL('../../bin/rill.mjs', import.meta.url))

/** A loopback port free now (and, with it, port + 100 for the peer listener). */
async function listenFree(port = 0): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
  return server
}

async function freePort(): Promise<number> {
  for (;;) {
    const s = await listenFree()
    const port = (s.address() as { port: number }).port
    s.close()
    if (port + 100 > 65_535) continue
    try {
      const peer = await listenFree(port + 100)
      peer.close()
      return port
    } catch {
      // peer port taken: try another
    }
  }
}

/** Longest wait for `ready`, ms (rill dev's own start bound is 60 s). */
const readyWaitMs = 65_000
/** Longest wait for rill dev to stop after SIGTERM, ms (its brokers' stop is bounded by their 10 s --shutdown-timeout). */
const devStopWaitMs = 30_000

interface Dev {
  readonly child: ChildProcess
  stdout(): string
  stderr(): string
}

/** Starts `rill dev --brokers 1` and waits (bounded) for `ready`; a dev that did not get there is SIGKILLed. */
async function startDev(dir: string, port: number, extra: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<Dev> {
  const child = spawn(process.execPath, [bin, 'dev', '--brokers', '1', '--dir', dir, '--port', String(port), ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  try {
    await waitFor(() => stdout.includes('ready\n'), readyWaitMs, 'rill dev ready', () => `stdout: ${stdout}; stderr: ${stderr}`)
  } catch (error) {
    await stopProcess(child, { signal: 'SIGKILL', what: 'rill dev' })
    throw error
  }
  return { child, stdout: () => stdout, stderr: () => stderr }
}

/** Pids of the processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const children: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return children
}

/**
 * Cleanup after a test, whatever happened: SIGKILL to dev's brokers first
 * (a SIGKILLed dev cannot stop them, and a broker still writing into the data
 * directory makes its removal fail with ENOTEMPTY), then to dev.
 */
async function killDev(dev: Dev): Promise<void> {
  for (const pid of dev.child.pid === undefined ? [] : childrenOf(dev.child.pid)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
  await stopProcess(dev.child, { signal: 'SIGKILL', what: 'rill dev' })
}

test('rill dev: one broker, ready, SIGTERM stops it with exit 0', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  let dev: Dev | null = null
  try {
    const port = await freePort()
    dev = await startDev(dir, port)
    assert.equal(dev.stdout(), `broker 1 http://127.0.0.1:${port}\nready\n`)
    const health = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) })
    const [broker] = childrenOf(dev.child.pid!)
    assert.deepEqual(await health.json(), { ok: true, broker: 1, pid: broker })
    // `ready` means usable: a controller leader, the broker registered and unfenced; a topic is created at once (no 503).
    const metadata = (await (await fetch(`http://127.0.0.1:${port}/v1/metadata`, { signal: AbortSignal.timeout(5000) })).json()) as any
    assert.equal(metadata.controller.leader, 1)
    assert.deepEqual(metadata.brokers, [{ id: 1, url: `http://127.0.0.1:${port}`, fenced: false }])
    const created = await fetch(`http://127.0.0.1:${port}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 't', partitions: 1, replicationFactor: 1 }),
      signal: AbortSignal.timeout(20_000),
    })
    assert.equal(created.status, 201, await created.text())
    const exit = await stopProcess(dev.child, { graceMs: devStopWaitMs, what: 'rill dev' })
    assert.deepEqual(exit, { code: 0, signal: null, killed: false }, dev.stderr())
    assert.match(dev.stderr(), /stopping brokers/)
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) }))
  } finally {
    if (dev !== null) await killDev(dev)
    await rm(dir, { recursive: true, force: true, maxRetries: 10 })
  }
})

test('rill dev --tls: a throwaway CA, https, the CA path printed; plaintext and untrusting clients refused; RILL_TLS_* of the CLI ignored', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  let dev: Dev | null = null
  try {
    const port = await freePort()
    // The CLI's own client settings in the environment must not reach the brokers (they would turn TLS on with a client's files).
    dev = await startDev(dir, port, ['--tls'], { ...process.env, RILL_TLS_CA: join(dir, 'nope.crt'), RILL_TLS_CERT: join(dir, 'nope.crt'), RILL_TLS_KEY: join(dir, 'nope.key') })
    const caFile = join(dir, 'tls', 'ca.crt')
    assert.equal(dev.stdout(), `tls ca ${caFile}\nbroker 1 https://127.0.0.1:${port}\nready\n`)
    assert.match(dev.stderr(), new RegExp(`--url https://127.0.0.1:${port} --tls-ca ${caFile}`))
    const agent = new Agent({ connect: { ca: readFileSync(caFile) } })
    try {
      const health = await undiciFetch(`https://127.0.0.1:${port}/health`, { dispatcher: agent, signal: AbortSignal.timeout(5000) })
      assert.deepEqual(await health.json(), { ok: true, broker: 1, pid: childrenOf(dev.child.pid!)[0] })
    } finally {
      await agent.close()
    }
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) }))
    await assert.rejects(fetch(`https://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) }))
    const cli = await runCli(['status', '--tls-ca', caFile, '--url', `https://127.0.0.1:${port}`])
    assert.equal(cli.code, 0, cli.stderr)
    // `ready` waits for the broker to register: the broker table shows it.
    assert.match(cli.stdout, /^controller leader: 1/)
    assert.match(cli.stdout, new RegExp(`https://127.0.0.1:${port}`))
    const exit = await stopProcess(dev.child, { graceMs: devStopWaitMs, what: 'rill dev' })
    assert.deepEqual(exit, { code: 0, signal: null, killed: false }, dev.stderr())
  } finally {
    if (dev !== null) await killDev(dev)
    await rm(dir, { recursive: true, force: true, maxRetries: 10 })
  }
})

test('rill dev: a broker that dies after ready is reported with the end of its log; with none left, rill dev exits 1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  let dev: Dev | null = null
  try {
    const port = await freePort()
    dev = await startDev(dir, port)
    const [broker] = childrenOf(dev.child.pid!)
    process.kill(broker!, 'SIGKILL')
    // It exited 13 here before (an unsettled top-level await: nothing left to wait for), saying nothing.
    const exit = await waitExit(dev.child, devStopWaitMs, 'rill dev')
    assert.deepEqual(exit, { code: 1, signal: null }, dev.stderr())
    assert.match(dev.stderr(), /broker 1 exited \(SIGKILL\); last lines of .*broker-1\.log:\n/)
    assert.match(dev.stderr(), /every broker exited/)
  } finally {
    if (dev !== null) await killDev(dev)
    await rm(dir, { recursive: true, force: true, maxRetries: 10 })
  }
})

test('rill dev SIGKILLed: its brokers exit by themselves', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  let brokers: number[] = []
  try {
    const port = await freePort()
    const dev = await startDev(dir, port)
    brokers = childrenOf(dev.child.pid!)
    assert.equal(brokers.length, 1, `children of rill dev: ${brokers.join(', ')}`)
    await stopProcess(dev.child, { signal: 'SIGKILL', what: 'rill dev' })
    // Each stops gracefully (bounded by its 10 s --shutdown-timeout) once its IPC channel to rill dev is gone.
    await waitFor(() => brokers.every((pid) => !processAlive(pid)), 15_000, 'the brokers of a SIGKILLed rill dev to exit')
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) }))
  } finally {
    for (const pid of brokers) if (processAlive(pid)) process.kill(pid, 'SIGKILL')
    await rm(dir, { recursive: true, force: true, maxRetries: 10 })
  }
})

test('rill dev: a taken port (HTTP or peer) is refused before anything starts, naming it and --port', async () => {
  const dir = join(await mkdtemp(join(tmpdir(), 'rill-dev-')), 'data')
  const port = await freePort()
  // The peer port of broker 1: the HTTP ports are free, so only a check of every port catches it.
  const taken = await listenFree(port + 100)
  try {
    const r = await runCli(['dev', '--brokers', '1', '--dir', dir, '--port', String(port)], { timeoutMs: 60_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.equal(r.stdout, '')
    const lines = r.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 1, r.stderr)
    assert.match(lines[0]!, new RegExp(`^rill dev: port ${port + 100} \\(broker 1 peer: EADDRINUSE\\) not free: .*--port N`))
    // Nothing started: not even the data directory was made.
    assert.equal(existsSync(dir), false)
  } finally {
    taken.close()
    await rm(join(dir, '..'), { recursive: true, force: true })
  }
})

test('rill dev: a broker that exits while starting is a failure (exit 1) with the cause from its log', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  // Broker 1's data directory cannot be made: a file is in its place.
  writeFileSync(join(dir, 'broker-1'), 'not a directory')
  try {
    const port = await freePort()
    const r = await runCli(['dev', '--brokers', '1', '--dir', dir, '--port', String(port)], { timeoutMs: 60_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.doesNotMatch(r.stdout, /ready/)
    assert.match(r.stderr, /broker 1 exited during start \(code 1\); last lines of .*broker-1\.log:\n/)
    assert.match(r.stderr, /ENOTDIR/)
  } finally {
    await rm(dir, { recursive: true, force: true, maxRetries: 10 })
  }
})
