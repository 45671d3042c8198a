/**
 * Shared pieces of the fuzz suite (issue 10, "Tests"): the seed and run
 * count, an in-process broker, a raw HTTP/1.1 client and the checks every
 * answer to a hostile request must pass.
 *
 *   RILL_FUZZ_SEED   fast-check seed (default `fuzzSeedDefault`; printed by every file)
 *   RILL_FUZZ_RUNS   runs of each property (default: each property's own, sized so
 *                    the suite stays under a minute on a busy 2-core machine)
 *
 * A failing property prints its seed, path and the shrunk input; replay it
 * with `RILL_FUZZ_SEED=<seed> node --import tsx --test test/fuzz/FILE`.
 *
 * The raw client writes the request bytes exactly as given (fetch and
 * node:http normalise targets, refuse bad header bytes and set lengths
 * themselves), then reads one answer or the close, within a deadline: an
 * answer that never comes is a hang, and fails the property.
 */
import net from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import assert from 'node:assert/strict'
import { Unpackr } from 'msgpackr'
import pino from 'pino'
import { ErrorCode } from '../../src/base/index.ts'
import { statusForCode } from '../../src/api/errors.ts'
import { parseBrokerConfig } from '../../src/broker/index.ts'
import { startBroker, type RunningBroker } from '../../src/cli/broker.ts'
import { freePort } from '../broker/helpers.ts'

/** The seed when RILL_FUZZ_SEED is not set: every run replays the same inputs. */
export const fuzzSeedDefault = 20_261_205

function envInt(name: string, fallback: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const n = Number(text)
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got "${text}"`)
  return n
}

/** The seed of this run (printed once per file). */
export const fuzzSeed = envInt('RILL_FUZZ_SEED', fuzzSeedDefault)
let printed = false

/** fast-check parameters of one property: the run's seed, and RILL_FUZZ_RUNS or `runsDefault` runs. */
export function fuzzParams(runsDefault: number): { seed: number; numRuns: number; endOnFailure: boolean; includeErrorInReport: boolean } {
  if (!printed) {
    printed = true
    process.stdout.write(`# fuzz seed ${fuzzSeed} (RILL_FUZZ_SEED to change it), runs ${process.env.RILL_FUZZ_RUNS ?? 'default'} (RILL_FUZZ_RUNS)\n`)
  }
  // Shrinking replays requests against a broker whose state moved on: stop at the first failure, print it whole.
  return { seed: fuzzSeed, numRuns: envInt('RILL_FUZZ_RUNS', runsDefault), endOnFailure: true, includeErrorInReport: true }
}

// ---- an in-process broker ----------------------------------------------------

/** A pino logger that keeps warn-and-above lines (a request answered INTERNAL is an error line). */
export function capturedLogger(): { logger: pino.Logger; lines: Array<{ level: number; msg: string; [k: string]: unknown }> } {
  const lines: Array<{ level: number; msg: string }> = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as { level: number; msg: string })
      done()
    },
  })
  return { logger: pino({ level: 'warn' }, stream), lines }
}

export interface FuzzBroker {
  readonly running: RunningBroker
  readonly url: string
  readonly port: number
  readonly secret: Uint8Array
  /** Warn-and-above log lines of the broker. */
  readonly lines: Array<{ level: number; msg: string; [k: string]: unknown }>
  stop(): Promise<void>
}

/** The secret the fuzz broker runs with (the internal routes' MAC key). */
export const fuzzSecretHex = '5a'.repeat(32)

/** One real broker (controller, partitions, groups, HTTP) in this process, in-memory topics, HTTP and peer ports on 127.0.0.1. */
export async function startFuzzBroker(): Promise<FuzzBroker> {
  const dir = await mkdtemp(join(tmpdir(), 'rill-fuzz-'))
  const http = await freePort('127.0.0.1')
  const peer = await freePort('127.0.0.1')
  const config = parseBrokerConfig(
    ['--id', '1', '--dir', dir, '--http', `127.0.0.1:${http}`, '--peer', `127.0.0.1:${peer}`, '--seeds', `1@127.0.0.1:${peer}`,
      '--tick-ms', '20', '--persistence', 'memory', '--secret', fuzzSecretHex],
    {},
  )
  const { logger, lines } = capturedLogger()
  const running = await startBroker(config, logger)
  return {
    running,
    url: running.url,
    port: http,
    secret: config.secret,
    lines,
    async stop() {
      await running.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

// ---- a raw HTTP/1.1 client ---------------------------------------------------

export interface RawRequest {
  readonly method: string
  /** The request target exactly as sent (may be malformed, absolute-form, percent-encoded...). */
  readonly target: string
  /** Header lines in order; duplicates kept. `host` and `connection: close` are added unless present. */
  readonly headers?: ReadonlyArray<readonly [string, string]>
  readonly body?: Uint8Array
  /** The content-length sent: the body's length unless given (a lie), or none at all with `null`. */
  readonly contentLength?: number | null
}

export interface RawAnswer {
  /** 0 when the server closed the connection without an answer. */
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer
}

/** The bytes of `request` on the wire. */
export function requestBytes(request: RawRequest): Buffer {
  const headers = [...(request.headers ?? [])]
  const has = (name: string): boolean => headers.some(([k]) => k.toLowerCase() === name)
  if (!has('host')) headers.unshift(['host', '127.0.0.1'])
  if (!has('connection')) headers.push(['connection', 'close'])
  const body = request.body ?? new Uint8Array(0)
  const length = request.contentLength === undefined ? (body.byteLength > 0 || request.method !== 'GET' ? body.byteLength : null) : request.contentLength
  if (length !== null && !has('content-length') && !has('transfer-encoding')) headers.push(['content-length', String(length)])
  const head = `${request.method} ${request.target} HTTP/1.1\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`
  // UTF-8, as a client would send a unicode target or header value (node's parser then judges the bytes).
  return Buffer.concat([Buffer.from(head, 'utf8'), body])
}

/** Parses one HTTP answer from `data`; null while incomplete. */
function parseAnswer(data: Buffer, closed: boolean): RawAnswer | null {
  const end = data.indexOf('\r\n\r\n')
  if (end < 0) return null
  const lines = data.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN)
  if (!Number.isInteger(status)) throw new Error(`not an HTTP answer: ${JSON.stringify(lines[0])}`)
  // An interim answer (100 Continue) comes before the real one.
  if (status >= 100 && status < 200) return parseAnswer(data.subarray(end + 4), closed)
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const at = line.indexOf(':')
    if (at > 0) headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim()
  }
  const rest = data.subarray(end + 4)
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    const body: Buffer[] = []
    let at = 0
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at)
      if (lineEnd < 0) return closed ? { status, headers, body: Buffer.concat(body) } : null
      const size = parseInt(rest.subarray(at, lineEnd).toString('latin1'), 16)
      if (!Number.isInteger(size)) throw new Error('bad chunk size in the answer')
      if (size === 0) return { status, headers, body: Buffer.concat(body) }
      if (rest.byteLength < lineEnd + 2 + size + 2) return closed ? { status, headers, body: Buffer.concat(body) } : null
      body.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size))
      at = lineEnd + 2 + size + 2
    }
  }
  const length = headers['content-length'] === undefined ? null : Number(headers['content-length'])
  if (length === null) return closed ? { status, headers, body: rest } : null
  if (rest.byteLength < length) return closed ? { status, headers, body: rest } : null
  return { status, headers, body: rest.subarray(0, length) }
}

/**
 * Sends `bytes` (or each chunk in turn) to 127.0.0.1:`port` and resolves with
 * the answer, or status 0 if the server closed without one. `end` half-closes
 * after writing (a truncated body then ends at once). Rejects with "hang"
 * when neither comes within `timeoutMs`.
 */
export function rawExchange(port: number, bytes: Uint8Array | readonly Uint8Array[], options: { timeoutMs?: number; end?: boolean } = {}): Promise<RawAnswer> {
  const timeoutMs = options.timeoutMs ?? 10_000
  const chunks = bytes instanceof Uint8Array ? [bytes] : bytes
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    const received: Buffer[] = []
    let settled = false
    const settle = (error: Error | null, answer?: RawAnswer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      if (error !== null) reject(error)
      else resolve(answer!)
    }
    const timer = setTimeout(() => settle(new Error(`hang: no answer and no close within ${timeoutMs} ms`)), timeoutMs)
    const tryParse = (closed: boolean): void => {
      try {
        const answer = parseAnswer(Buffer.concat(received), closed)
        if (answer !== null) settle(null, answer)
        else if (closed) settle(null, { status: 0, headers: {}, body: Buffer.concat(received) })
      } catch (error) {
        settle(error as Error)
      }
    }
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c)
      if (options.end === true) socket.end()
    })
    socket.on('data', (d: Buffer) => {
      received.push(d)
      tryParse(false)
    })
    // A reset after a refusal is a close; what was received before it still counts.
    socket.on('error', () => tryParse(true))
    socket.on('close', () => tryParse(true))
  })
}

/** Sends `request` and reads its answer (see rawExchange). */
export function rawHttp(port: number, request: RawRequest, options: { timeoutMs?: number; end?: boolean } = {}): Promise<RawAnswer> {
  return rawExchange(port, requestBytes(request), options)
}

// ---- what every answer to a hostile request must be -------------------------

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' })
const errorCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode))

/** The answer's body as a value (JSON or msgpack, by its content type). */
export function answerBody(answer: RawAnswer): unknown {
  const type = answer.headers['content-type'] ?? ''
  if (type.startsWith('application/msgpack')) return unpackr.unpack(answer.body)
  if (type.startsWith('application/json')) return JSON.parse(answer.body.toString('utf8'))
  return answer.body.toString('utf8')
}

/** What a request was, for an assertion's message. */
export function describeRequest(request: RawRequest): string {
  const body = request.body === undefined ? '' : ` body ${request.body.byteLength} B: ${JSON.stringify(Buffer.from(request.body.subarray(0, 300)).toString('latin1'))}`
  return `${request.method} ${JSON.stringify(request.target.slice(0, 300))} headers ${JSON.stringify(request.headers ?? [])}${body}`
}

/**
 * The rule for any answer to a hostile request: never 5xx; a refusal is our
 * error shape `{ error: { code, message, ... } }` with a known code whose
 * status is the one errors.ts gives it (a route the router does not know is
 * 404 INVALID_REQUEST). `allowClose`: a connection closed without an answer
 * is fine (a request the client itself cut short).
 */
export function checkAnswer(request: RawRequest, answer: RawAnswer, options: { allowClose?: boolean } = {}): void {
  const what = (): string => `${describeRequest(request)}\n  → ${answer.status} ${answer.body.subarray(0, 500).toString('utf8')}`
  if (answer.status === 0) {
    assert.ok(options.allowClose === true, `closed without an answer: ${what()}`)
    return
  }
  assert.ok(answer.status < 500, `a 5xx answer: ${what()}`)
  // A HEAD answer has no body to check (its headers are the GET's).
  if (answer.status < 400 || request.method === 'HEAD') return
  let body: unknown
  try {
    body = answerBody(answer)
  } catch (error) {
    assert.fail(`error body does not decode (${(error as Error).message}): ${what()}`)
  }
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error
  assert.ok(typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 1, `not our error shape: ${what()}`)
  assert.ok(typeof e === 'object' && e !== null, `not our error shape: ${what()}`)
  assert.ok(typeof e.code === 'string' && errorCodes.has(e.code), `unknown error code: ${what()}`)
  assert.ok(typeof e.message === 'string', `error without a message: ${what()}`)
  const code = e.code as ErrorCode
  const routeUnknown = answer.status === 404 && code === ErrorCode.INVALID_REQUEST
  assert.ok(routeUnknown || answer.status === statusForCode(code), `status ${answer.status} does not match code ${code}: ${what()}`)
}

/** Resolves once `cond` holds, or fails after `ms` with `what`. */
export async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    if (await cond()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
