/**
 * The CLI's HTTP client: JSON over Node's global fetch (undici's, with an
 * Agent holding the CA and client certificate, for a target with TLS
 * settings). Error answers become ApiErrors carrying the body's code and
 * details (NOT_LEADER's leader, OFFSET_OUT_OF_RANGE's range); a failed TLS
 * handshake is a CliError saying what to change.
 *
 * Failover over the target's brokers (--brokers a,b,c):
 *
 *   request ──▶ the broker that answered last (else the first) ──answer──▶ done
 *                 │ not answering
 *                 ▼
 *               the next broker, each at most once ──▶ none answered: UnreachableError (exit 3)
 *
 * "Not answering" is a connection that could not be made (refused, no
 * route, connect timeout: the request was never sent, so any method may go
 * on) and, for GET only, a request that timed out or lost its connection:
 * a POST or DELETE that may have been applied is not sent again elsewhere
 * (a second topic create would answer TOPIC_EXISTS for our own first one).
 * Each attempt is bounded by `requestTimeoutMs`, so a whole request by that
 * times the number of brokers given.
 */
import { Agent, fetch as undiciFetch } from 'undici'
import { tlsHint } from '../../client/index.ts'
import { systemRuntime, timeoutSignal, type ErrorCode } from '../base/index.ts'
import { CliError, type Target } from './args.ts'

/** Longest a plain request may take (long-polls add their own wait). */
export const requestTimeoutMs = 10_000

/** An error answer from a broker. */
export class ApiError extends CliError {
  override name = 'ApiError'
  constructor(
    readonly status: number,
    readonly code: ErrorCode | string,
    message: string,
    readonly details: Record<string, unknown>,
  ) {
    super(`${code}: ${message}`)
  }
}

/** The cluster could not be reached at all (retriable). */
export class UnreachableError extends CliError {
  override name = 'UnreachableError'
}

export interface RequestOptions {
  readonly body?: unknown
  /** Extra time on top of `requestTimeoutMs` (long-polls). */
  readonly waitMs?: number
  readonly signal?: AbortSignal
  /** The body exactly as sent, when a MAC covers its bytes (default: JSON.stringify of `body`). */
  readonly bodyText?: string
  /** Extra headers (the internal MAC of `rill acl token create --secret-file`). */
  readonly headers?: Readonly<Record<string, string>>
}

/** Errors of a connection that was never made: the request was not sent. */
const notSentCodes: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

/** Per broker list: the broker that answered last, asked first next time (a down broker costs one refused connection, once). */
const lastAnswered = new WeakMap<readonly string[], string>()

/** One Agent per TLS settings object (a command has one), so its requests share connections. */
const agents = new WeakMap<object, Agent>()

function agentFor(tls: NonNullable<Target['tls']>): Agent {
  let agent = agents.get(tls)
  if (agent === undefined) {
    const connect = { ...(tls.ca === undefined ? {} : { ca: tls.ca as string | Buffer }), ...(tls.cert === undefined ? {} : { cert: tls.cert as string | Buffer, key: tls.key as string | Buffer }) }
    agent = new Agent({ connect })
    agents.set(tls, agent)
  }
  return agent
}

/** A broker that did not answer: why, and whether the request may have reached it. */
class NoAnswer extends Error {
  constructor(
    readonly url: string,
    readonly reason: string,
    readonly maybeSent: boolean,
  ) {
    super(`${url}: ${reason}`)
  }
}

/**
 * Sends one request to the target's brokers (`target.url` first, or the one
 * that answered last, then the others); returns the parsed JSON answer or
 * throws ApiError / UnreachableError / CliError (TLS).
 */
export async function request<T>(target: Target, method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const urls = target.urls ?? [target.url]
  const preferred = lastAnswered.get(urls) ?? target.url
  const order = [preferred, ...[target.url, ...urls].filter((u) => u !== preferred)].filter((u, i, all) => all.indexOf(u) === i)
  const failures: NoAnswer[] = []
  for (const url of order) {
    if (options.signal?.aborted === true) break
    try {
      const answer = await requestOne<T>(target, url, method, path, options)
      lastAnswered.set(urls, url)
      return answer
    } catch (error) {
      if (!(error instanceof NoAnswer)) {
        if (error instanceof ApiError) lastAnswered.set(urls, url)
        throw error
      }
      failures.push(error)
      if (error.maybeSent && method !== 'GET') break
    }
  }
  const tried = failures.map((f) => `${f.url} (${f.reason})`).join(', ')
  if (failures.length === 1) throw new UnreachableError(`cannot reach ${tried}`)
  throw new UnreachableError(`no broker answered: ${tried}`)
}

async function requestOne<T>(target: Target, url: string, method: string, path: string, options: RequestOptions): Promise<T> {
  const timeout = timeoutSignal(systemRuntime, requestTimeoutMs + (options.waitMs ?? 0))
  const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal])
  const init = {
    method,
    headers: {
      accept: 'application/json',
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(target.token === undefined ? {} : { authorization: `Bearer ${target.token}` }),
      ...(options.headers ?? {}),
    },
    ...(options.body === undefined ? {} : { body: options.bodyText ?? JSON.stringify(options.body) }),
    signal,
  }
  let response: { ok: boolean; status: number; text(): Promise<string> }
  try {
    response = target.tls === undefined ? await fetch(`${url}${path}`, init) : await undiciFetch(`${url}${path}`, { ...init, dispatcher: agentFor(target.tls) })
  } catch (cause) {
    const code = (cause as { cause?: { code?: string; message?: string } }).cause?.code
    const hint = typeof code === 'string' ? tlsHint(code) : null
    if (hint !== null) throw new CliError(`TLS_ERROR: ${url}: ${hint} (${code}: ${(cause as { cause: { message?: string } }).cause.message ?? ''})`)
    if (options.signal?.aborted === true) throw cause
    const timedOut = timeout.aborted
    const detail = (cause as { cause?: { message?: string } }).cause?.message
    const reason = timedOut ? `no answer within ${requestTimeoutMs + (options.waitMs ?? 0)} ms` : (code ?? detail ?? (cause as Error).message)
    throw new NoAnswer(url, reason, timedOut || code === undefined || !notSentCodes.has(code))
  }
  let text: string
  try {
    text = await response.text()
  } catch (cause) {
    if (options.signal?.aborted === true) throw cause
    throw new NoAnswer(url, `answer cut short: ${(cause as Error).message}`, true)
  }
  let body: unknown = null
  try {
    body = text === '' ? null : JSON.parse(text)
  } catch {
    throw new CliError(`${method} ${url}${path}: HTTP ${response.status}, not JSON: ${text.slice(0, 200)}`)
  }
  if (response.ok) return body as T
  const error = (body as { error?: { code?: string; message?: string } } | null)?.error
  if (error === undefined) throw new ApiError(response.status, 'HTTP_' + response.status, text.slice(0, 200), {})
  const { code, message, ...details } = error
  throw new ApiError(response.status, code ?? 'UNKNOWN', message ?? '', details)
}

/** True for errors worth retrying after a moment: unreachable, 503, NOT_LEADER without a leader. */
export function isRetriable(error: unknown): boolean {
  if (error instanceof UnreachableError) return true
  return error instanceof ApiError && (error.status === 503 || error.status === 421)
}

/** Resolves after `ms`, or at once when `signal` aborts (the listener is removed either way). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return systemRuntime.sleep(ms, signal)
}
