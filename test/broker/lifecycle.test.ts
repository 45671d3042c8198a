/**
 * A broker process always ends (DESIGN.md decision 14, src/cli/broker.ts):
 *   - SIGTERM with nothing in the way: a graceful stop, exit 0;
 *   - a graceful stop that is stuck — a client holding a half-sent request
 *     keeps the HTTP server's close waiting, forever with fastify's defaults —
 *     ends at --shutdown-timeout with a `shutdown_timeout` log line, exit 1;
 *   - a second SIGTERM during a stuck stop exits at once (`shutdown_forced`);
 *   - a SIGTERM while the broker is still starting exits at once;
 *   - a broker whose parent is SIGKILLed (here a process that started it with
 *     the test helpers) exits by itself: its IPC channel closed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, health, processAlive, startCluster, stopProcess, waitExit, waitFor, type TestCluster } from './helpers.ts'

const parentScript = fileURLToPath(new URL('./fixtures/cluster-parent.ts', import.meta.url))
const bin = fileURLToPath(new URL('../../bin/rill.mjs', import.meta.url))
/** Slack on top of a bound before a test calls it missed, ms (a loaded 2-core CI machine). */
const slackMs = 5_000

/** One broker; `info` logs, so the test sees `stopping`, `shutdown_timeout` and `shutdown_forced`. */
function oneBroker(shutdownTimeout: string): Promise<TestCluster> {
  return startCluster({ brokers: 1, extraFlags: ['--shutdown-timeout', shutdownTimeout, '--log-level', 'info'] })
}

/**
 * A client that sent a produce request's head and part of its body, and
 * then nothing: the connection is busy, so closing the HTTP server waits for it.
 */
async function halfSentRequest(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => undefined)
  socket.write('POST /v1/topics HTTP/1.1\r\nHost: rill\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name":')
  // Nothing to await on the server's side: give loopback a moment to deliver the bytes.
  await new Promise((resolve) => setTimeout(resolve, 300))
  return socket
}

test('SIGTERM with nothing in the way: a graceful stop, exit 0', async () => {
  const c = await oneBroker('10s')
  try {
    const b = c.brokers[0]!
    const started = Date.now()
    const exit = await stopProcess(b.child!, { what: 'broker 1' })
    assert.deepEqual(exit, { code: 0, signal: null, killed: false }, b.output.join(''))
    assert.ok(Date.now() - started < 10_000, `stopped in ${Date.now() - started} ms`)
    assert.match(b.output.join(''), /"event":"stopping"/)
    assert.doesNotMatch(b.output.join(''), /shutdown_timeout/)
  } finally {
    await c.stopAll()
  }
})

test('a stuck graceful stop ends at --shutdown-timeout: exit 1 with a shutdown_timeout line', async () => {
  const shutdownTimeoutMs = 2000
  const c = await oneBroker(`${shutdownTimeoutMs}ms`)
  const socket = await halfSentRequest(c.brokers[0]!.url)
  try {
    const b = c.brokers[0]!
    const started = Date.now()
    b.child!.kill('SIGTERM')
    const exit = await waitExit(b.child!, shutdownTimeoutMs + slackMs, 'broker 1 with a stuck stop')
    const tookMs = Date.now() - started
    const output = b.output.join('')
    assert.equal(exit.code, 1, output)
    // It did wait out the bound (the stop was stuck), and no more.
    assert.ok(tookMs >= shutdownTimeoutMs - 100, `exited after ${tookMs} ms, before the bound`)
    assert.match(output, /"event":"shutdown_timeout".*did not finish within 2000 ms/)
  } finally {
    socket.destroy()
    await c.stopAll()
  }
})

test('a second SIGTERM during a stuck stop exits at once', async () => {
  const c = await oneBroker('60s')
  const socket = await halfSentRequest(c.brokers[0]!.url)
  try {
    const b = c.brokers[0]!
    b.child!.kill('SIGTERM')
    await waitFor(() => b.output.join('').includes('"event":"stopping"'), 10_000, 'the first SIGTERM taken')
    const started = Date.now()
    b.child!.kill('SIGTERM')
    const exit = await waitExit(b.child!, slackMs, 'broker 1 after a second SIGTERM')
    assert.equal(exit.code, 1)
    assert.ok(Date.now() - started < slackMs)
    assert.match(b.output.join(''), /"event":"shutdown_forced"/)
  } finally {
    socket.destroy()
    await c.stopAll()
  }
})

test('SIGTERM while the broker is still starting: it exits at once', async () => {
  const root = await mkdtemp(join(tmpdir(), 'rill-lifecycle-'))
  const http = await freePort('127.0.0.1')
  const peer = await freePort('127.0.0.1')
  const args = [bin, 'broker', '--id', '1', '--dir', join(root, 'b1'), '--http', `127.0.0.1:${http}`, '--peer', `127.0.0.1:${peer}`, '--seeds', `1@127.0.0.1:${peer}`, '--log-level', 'info']
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  let output = ''
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  try {
    // The store is open, the broker not serving yet.
    await waitFor(() => output.includes('log store opened'), 30_000, 'the broker starting')
    child.kill('SIGTERM')
    const exit = await waitExit(child, slackMs, 'a broker signalled while starting')
    // Almost always still starting (exit 1, "while starting"); a fast start may already stop gracefully (exit 0).
    assert.ok(exit.code === 1 || exit.code === 0, `${JSON.stringify(exit)}\n${output}`)
    if (exit.code === 1) assert.match(output, /while starting: exiting at once/)
  } finally {
    await stopProcess(child, { signal: 'SIGKILL', what: 'broker 1' })
    await rm(root, { recursive: true, force: true })
  }
})

test('brokers exit by themselves when the process that started them is SIGKILLed', async () => {
  const parent = spawn(process.execPath, ['--import', 'tsx', parentScript, '2'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  let stderr = ''
  parent.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  let root: string | null = null
  let pids: number[] = []
  let timer: NodeJS.Timeout | undefined
  try {
    const lines = createInterface({ input: parent.stdout! })
    const first = await Promise.race([
      lines[Symbol.asyncIterator]().next(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no brokers from the parent within 60 s: ${stderr}`)), 60_000))),
    ])
    clearTimeout(timer)
    const started = JSON.parse(first.value as string) as { root: string; brokers: { pid: number; url: string }[] }
    root = started.root
    pids = started.brokers.map((b) => b.pid)
    assert.equal(started.brokers.length, 2)
    for (const b of started.brokers) assert.equal(await health(b.url), true)

    await stopProcess(parent, { signal: 'SIGKILL', what: 'the parent' })
    // A graceful stop each (bounded by their 10 s --shutdown-timeout), not a wait for anyone to kill them.
    await waitFor(() => started.brokers.every((b) => !processAlive(b.pid)), 10_000 + slackMs, 'the orphaned brokers to exit')
    for (const b of started.brokers) assert.equal(await health(b.url), false)
  } finally {
    clearTimeout(timer)
    await stopProcess(parent, { signal: 'SIGKILL', what: 'the parent' }).catch(() => undefined)
    // Whatever the test found, leave no broker behind.
    for (const pid of pids) if (processAlive(pid)) process.kill(pid, 'SIGKILL')
    if (root !== null) await rm(root, { recursive: true, force: true })
  }
})
