/**
 * `rill dev` with real broker processes on loopback: one broker starts,
 * prints its URL and `ready`, and SIGTERM stops it with exit 0; a broker that
 * cannot start (its HTTP port is taken) makes `rill dev` exit 1 naming it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
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

test('rill dev: one broker, ready, SIGTERM stops it with exit 0', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  try {
    const port = await freePort()
    const child = spawn(process.execPath, [bin, 'dev', '--brokers', '1', '--dir', dir, '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready within 60 s; stdout: ${stdout}; stderr: ${stderr}`)), 60_000)
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
        if (stdout.includes('ready\n')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    assert.equal(stdout, `broker 1 http://127.0.0.1:${port}\nready\n`)
    const health = await fetch(`http://127.0.0.1:${port}/health`)
    assert.deepEqual(await health.json(), { ok: true, broker: 1 })
    child.kill('SIGTERM')
    assert.equal(await exited, 0, stderr)
    assert.match(stderr, /stopping brokers/)
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health`))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('rill dev: a broker that cannot start is a failure (exit 1) naming it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-dev-'))
  const port = await freePort()
  const taken = await listenFree(port)
  try {
    const r = await runCli(['dev', '--brokers', '1', '--dir', dir, '--port', String(port)], { timeoutMs: 60_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /broker 1 exited during start/)
  } finally {
    taken.close()
    await rm(dir, { recursive: true, force: true })
  }
})
