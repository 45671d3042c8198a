/**
 * Errors the SDKs throw. The broker's codes (src/base ErrorCode, the same
 * strings as in HTTP bodies and logs, DESIGN.md decision 10) plus the few
 * that only a client can see: a broker that does not answer, a client that
 * was closed, an answer that is not what the API promises.
 */
import { ErrorCode } from '../src/base/index.ts'
import type { BrokerRef } from '../src/wire/index.ts'

/** Every code an SDK error may carry: the broker's, then the client's own. */
export const ClientErrorCode = {
  ...ErrorCode,
  /** No answer: connection refused or reset, DNS, the socket closed mid-answer. The request may or may not have been applied. */
  UNREACHABLE: 'UNREACHABLE',
  /** The client (or producer, consumer) was closed; the operation was not (or no longer) attempted. */
  CLOSED: 'CLOSED',
  /** The broker answered something that is not the API (not msgpack or JSON, too large, no error body). */
  BAD_RESPONSE: 'BAD_RESPONSE',
  /** A bounded queue or wait is full (the caller asked for more than the limits allow). */
  BUSY: 'BUSY',
  /**
   * The TLS handshake failed: the broker's certificate is not trusted (no or
   * the wrong `tls.ca`), does not name the host of the URL, or has expired;
   * the broker refused this client's certificate; or one side does not speak
   * TLS. Not retriable: the same request fails the same way until the
   * configuration changes. The message says which.
   */
  TLS_ERROR: 'TLS_ERROR',
} as const

export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode]

/** Codes worth retrying after a moment: a new leader, a healed quorum, a broker back up. */
const retriableCodes: ReadonlySet<string> = new Set<string>([
  ClientErrorCode.NOT_LEADER,
  ClientErrorCode.NO_QUORUM,
  ClientErrorCode.TIMEOUT,
  ClientErrorCode.PROPOSAL_DROPPED,
  ClientErrorCode.THROTTLED,
  ClientErrorCode.OVERLOADED,
  ClientErrorCode.UNREACHABLE,
])

export interface RillClientErrorOptions {
  /** HTTP status of the answer; 0 when there was none. */
  status?: number
  /** The error body's other fields (NOT_LEADER's `leader`, OFFSET_OUT_OF_RANGE's bounds, TOO_LARGE's `limit`). */
  details?: Record<string, unknown>
  cause?: unknown
  /** Overrides the code's default. */
  retriable?: boolean
}

/** An operating error seen by a client, with the broker's code when a broker answered. */
export class RillClientError extends Error {
  override name = 'RillClientError'
  readonly code: ClientErrorCode
  /** HTTP status; 0 when no broker answered. */
  readonly status: number
  /** True if the same request may succeed later (the SDKs retry these by themselves within their timeouts). */
  readonly retriable: boolean
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: ClientErrorCode, message: string, options: RillClientErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.status = options.status ?? 0
    this.retriable = options.retriable ?? (retriableCodes.has(code) || this.status === 503)
    this.details = options.details ?? {}
  }

  /** NOT_LEADER: the leader the broker named, or null during an election (undefined for other codes). */
  get leader(): BrokerRef | null | undefined {
    if (this.code !== ClientErrorCode.NOT_LEADER) return undefined
    const leader = this.details.leader as BrokerRef | null | undefined
    if (leader === null || leader === undefined) return null
    return typeof leader.url === 'string' && typeof leader.id === 'number' ? leader : null
  }
}

/**
 * How long the broker asked this client to wait before sending again, ms:
 * a 429 THROTTLED's `throttleMs` (over quota with many answers already
 * held), 0 for anything else. Retries wait at least this long.
 */
export function throttleMsOf(error: unknown): number {
  if (!(error instanceof RillClientError) || error.code !== ClientErrorCode.THROTTLED) return 0
  const ms = error.details.throttleMs
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? Math.min(ms, throttleWaitMsMax) : 0
}

/** Longest wait a THROTTLED answer can impose on a client (a broker holds answers at most 10 s). */
const throttleWaitMsMax = 10_000

/** True if `error` is a RillClientError, with `code` when given. */
export function isRillClientError(error: unknown, code?: ClientErrorCode): error is RillClientError {
  return error instanceof RillClientError && (code === undefined || error.code === code)
}
