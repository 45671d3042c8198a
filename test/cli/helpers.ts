/**
 * Runs the real `rill` binary (bin/rill.mjs) as a child process, and serves
 * the API over the in-process test service on a loopback port.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildApi } from '../../src/api/index.ts'
import { TestService } from '../api/helpers.ts'
import { call, waitFor } from '../broker/helpers.ts'

const bin = fileURLToPath(new URL('../../bin/rill.mjs', import.meta.url))

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Default bound of one `rill` run, ms. A run takes about a second, but
 * args.test.ts starts twelve at once, and on a loaded 2-core CI machine
 * (load 9-10) one of them took over 20 s just to start.
 */
const runWaitMsDefault = 60_000
/** After SIGKILL, the longest wait for the child's exit and pipes to be reported, ms. */
const closeWaitMs = 10_000

/**
 * Runs `rill ...args` with `input` on stdin; SIGKILLs it after `timeoutMs` (default `runWaitMsDefault`)
 * (its code is then null) and gives up waiting `closeWaitMs` later.
 */
export function runCli(args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...options.env }
    // The runner's own client settings must not reach the command: only what the test gives.
    for (const name of ['RILL_URL', 'RILL_BROKERS', 'RILL_TLS_CA', 'RILL_TLS_CERT', 'RILL_TLS_KEY', 'RILL_TOKEN']) {
      delete env[name]
      if (options.env?.[name] !== undefined) env[name] = options.env[name]
    }
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    let gaveUp: NodeJS.Timeout | undefined
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      gaveUp = setTimeout(() => {
        // Something still holds its pipes (a grandchild?): answer what we have.
        child.stdout.destroy()
        child.stderr.destroy()
        resolve({ code: null, stdout, stderr: `${stderr}\n(rill ${args.join(' ')}: no exit reported ${closeWaitMs} ms after SIGKILL)` })
      }, closeWaitMs)
    }, options.timeoutMs ?? runWaitMsDefault)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      clearTimeout(gaveUp)
      resolve({ code, stdout, stderr })
    })
    child.stdin.end(options.input ?? '')
  })
}

/** `rill ...args` as a child whose pipes the test drives (closes stdout's read end, sends signals). */
export function spawnCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): ChildProcessWithoutNullStreams {
  const all = { ...process.env, ...env }
  for (const name of ['RILL_URL', 'RILL_BROKERS', 'RILL_TLS_CA', 'RILL_TLS_CERT', 'RILL_TLS_KEY', 'RILL_TOKEN']) if (env[name] === undefined) delete all[name]
  return spawn(process.execPath, [bin, ...args], { env: all, stdio: ['pipe', 'pipe', 'pipe'] })
}

/** Lines on `child`'s stdout until `n` have arrived (then resolves with them), or rejects after `ms`. */
export function readLines(child: ChildProcessWithoutNullStreams, n: number, ms: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => {
      child.stdout.off('data', onData)
      reject(new Error(`${n} lines not read within ${ms} ms; got ${JSON.stringify(text.slice(-500))}`))
    }, ms)
    const onData = (d: Buffer): void => {
      text += d.toString()
      const lines = text.split('\n')
      if (lines.length > n) {
        clearTimeout(timer)
        child.stdout.off('data', onData)
        resolve(lines.slice(0, n))
      }
    }
    child.stdout.on('data', onData)
  })
}

/** Resolves with the exit code (or signal) of `child`, or rejects when it has not exited within `ms`. */
export function exitOf(child: ChildProcessWithoutNullStreams, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode })
      return
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`rill (pid ${child.pid}) did not exit within ${ms} ms`))
    }, ms)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
}

/** The API over a TestService, listening on 127.0.0.1 (port chosen by the OS). */
export async function startServer(): Promise<{ service: TestService; app: FastifyInstance; url: string; close: () => Promise<void> }> {
  const service = new TestService()
  const app = buildApi({ service })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  service.url = url
  return {
    service,
    app,
    url,
    close: async () => {
      await app.close()
      await service.close()
    },
  }
}

/** Bound of waiting for a new cluster to take a topic and for the topic's leaders, ms (a busy 2-core machine). */
const topicReadyWaitMs = 30_000

/**
 * Creates a topic on a real cluster and waits until every partition has a
 * leader that answers a fetch. A broker that just started may still be
 * registering (NO_QUORUM, or "replication factor larger than the live
 * brokers"): retried within the bound.
 */
export async function createTopic(url: string, name: string, partitions = 1, replicationFactor = 1): Promise<void> {
  const body = { name, partitions, replicationFactor }
  let created = await call(url, 'POST', '/v1/topics', body)
  const deadline = Date.now() + topicReadyWaitMs
  while (created.status !== 201 && Date.now() < deadline && (created.status === 503 || created.body?.error?.reason === 'replication-factor' || /live brokers/.test(String(created.body?.error?.message)))) {
    await new Promise((r) => setTimeout(r, 100))
    created = await call(url, 'POST', '/v1/topics', body)
  }
  if (created.status !== 201) throw new Error(`creating ${name}: ${created.status} ${JSON.stringify(created.body)}`)
  for (let p = 0; p < partitions; p++) {
    await waitFor(async () => (await call(url, 'GET', `/v1/topics/${name}/partitions/${p}/records?offset=0`).catch(() => ({ status: 0 }))).status === 200, topicReadyWaitMs, `${name}/${p} answers a fetch`)
  }
}

/** Appends records to one partition through the API (retried while a leader is being elected), ms-bounded. */
export async function putRecords(url: string, topic: string, partition: number, records: readonly object[], extra: object = {}): Promise<void> {
  let last: { status: number; body: unknown } = { status: 0, body: null }
  await waitFor(
    async () => {
      last = await call(url, 'POST', `/v1/topics/${topic}/partitions/${partition}/records`, { ...extra, records })
      if (last.status !== 200 && last.status !== 503 && last.status !== 421) throw new Error(`produce to ${topic}/${partition}: ${last.status} ${JSON.stringify(last.body)}`)
      return last.status === 200
    },
    topicReadyWaitMs,
    `a produce to ${topic}/${partition}`,
    () => JSON.stringify(last),
  )
}
