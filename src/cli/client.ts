/**
 * The CLI's HTTP client: JSON over Node's global fetch. Error answers become
 * ApiErrors carrying the body's code and details (NOT_LEADER's leader,
 * OFFSET_OUT_OF_RANGE's range); a broker that cannot be reached is a
 * CliError naming the URL.
 */
import { systemRuntime, timeoutSignal, type ErrorCode } from '../base/index.ts'
import { CliError } from './args.ts'

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
}

/** Sends one request to `url + path`; returns the parsed JSON answer or throws ApiError / UnreachableError. */
export async function request<T>(url: string, method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const timeout = timeoutSignal(systemRuntime, requestTimeoutMs + (options.waitMs ?? 0))
  const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal])
  let response: Response
  try {
    response = await fetch(`${url}${path}`, {
      method,
      headers: { accept: 'application/json', ...(options.body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      signal,
    })
  } catch (cause) {
    const reason = (cause as { cause?: { code?: string } }).cause?.code ?? (cause as Error).message
    throw new UnreachableError(`cannot reach ${url}: ${reason}`)
  }
  const text = await response.text()
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
