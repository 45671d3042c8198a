/**
 * Runs the real `rill` binary (bin/rill.mjs) as a child process, and serves
 * the API over the in-process test service on a loopback port.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { buildApi } from '../../src/api/index.ts'
import { TestService } from '../api/helpers.ts'

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
