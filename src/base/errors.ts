/**
 * One list of error codes for the whole project: HTTP bodies, SDK exceptions,
 * logs and the Raft core's results all use these strings (DESIGN.md, decision 10).
 */
export const ErrorCode = {
  INVALID_REQUEST: 'INVALID_REQUEST',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  UNKNOWN_TOPIC: 'UNKNOWN_TOPIC',
  UNKNOWN_PARTITION: 'UNKNOWN_PARTITION',
  TOPIC_EXISTS: 'TOPIC_EXISTS',
  TOO_LARGE: 'TOO_LARGE',
  OFFSET_OUT_OF_RANGE: 'OFFSET_OUT_OF_RANGE',
  NOT_LEADER: 'NOT_LEADER',
  NO_QUORUM: 'NO_QUORUM',
  TIMEOUT: 'TIMEOUT',
  OUT_OF_ORDER_SEQUENCE: 'OUT_OF_ORDER_SEQUENCE',
  /**
   * An idempotent produce (a batch with a producer id) without the
   * `producerToken` that `POST /v1/producers` answered with that id and
   * epoch, or with a token that does not match them: nothing is written.
   * The sequence space of a producer id belongs to the client that obtained it.
   */
  INVALID_PRODUCER_TOKEN: 'INVALID_PRODUCER_TOKEN',
  /** Consumer groups: the member is not (or no longer) in the group; rejoin without a member id. */
  UNKNOWN_MEMBER: 'UNKNOWN_MEMBER',
  /** Consumer groups: the member commits a partition it does not own (it was revoked or given away). */
  FENCED_MEMBER: 'FENCED_MEMBER',
  /** The Raft core refused a proposal it cannot take now (transfer under way, too much uncommitted). */
  PROPOSAL_DROPPED: 'PROPOSAL_DROPPED',
  /** A membership change was refused (one already pending, unknown member, would leave no voter). */
  CONF_CHANGE_REFUSED: 'CONF_CHANGE_REFUSED',
  /**
   * The broker is short of a resource it shares among clients (memory for
   * answers not yet written, file descriptors): nothing was done; retry
   * after a moment (503, Retry-After).
   */
  OVERLOADED: 'OVERLOADED',
  /**
   * A broker registration would take the id of a broker that is live: the
   * process at its registered address still answers as that broker (another
   * incarnation). Kafka's DUPLICATE_BROKER_REGISTRATION.
   */
  DUPLICATE_BROKER_REGISTRATION: 'DUPLICATE_BROKER_REGISTRATION',
  /**
   * Quotas: the client is over its quota and already has as many answers
   * held (delayed) as the broker holds for one client; refused before
   * anything was done. Retry after `throttleMs` (details). Kafka's
   * THROTTLING_QUOTA_EXCEEDED.
   */
  THROTTLED: 'THROTTLED',
  /**
   * A create would pass a bound the operator set on the cluster (partitions
   * of all topics, `--cluster-partitions-max`): nothing was created (409;
   * Kafka's RESOURCE_LIMIT_REACHED). Not retriable as it is.
   */
  RESOURCE_LIMIT_REACHED: 'RESOURCE_LIMIT_REACHED',
  /** Storage: the data directory or a file in it cannot be used. */
  STORAGE_UNUSABLE: 'STORAGE_UNUSABLE',
  /** Storage: checksums failed before the tail; the range must be refetched. */
  STORAGE_CORRUPT: 'STORAGE_CORRUPT',
  /** Storage: another process holds the directory lock. */
  STORAGE_LOCKED: 'STORAGE_LOCKED',
  /** Storage: the disk is full (ENOSPC). */
  STORAGE_FULL: 'STORAGE_FULL',
  /** Storage: the log is read-only (after damage) or closed. */
  STORAGE_READ_ONLY: 'STORAGE_READ_ONLY',
  INTERNAL: 'INTERNAL',
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/** Codes a client may retry after a moment (a new leader, a healed quorum). */
const retriableCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.NOT_LEADER,
  ErrorCode.NO_QUORUM,
  ErrorCode.TIMEOUT,
  ErrorCode.PROPOSAL_DROPPED,
  ErrorCode.THROTTLED,
  ErrorCode.OVERLOADED,
])

/** An operating error: expected, handled, reported with a code. */
export class RillError extends Error {
  override name = 'RillError'
  readonly code: ErrorCode
  readonly retriable: boolean
  /** Extra fields for the error body (leader hint, damaged range, ...). */
  readonly details: Readonly<Record<string, unknown>>

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.retriable = retriableCodes.has(code)
    this.details = options.details ?? {}
  }
}

/** True if `error` is a RillError with `code`. */
export function isRillError(error: unknown, code?: ErrorCode): error is RillError {
  return error instanceof RillError && (code === undefined || error.code === code)
}
