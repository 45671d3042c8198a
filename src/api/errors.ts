/**
 * Errors → HTTP (API.md, DESIGN.md decision 10). Every error answer is
 * `{ error: { code, message, ...details } }`; the status is a function of the
 * code alone, so clients and SDKs can switch on either.
 *
 * | status | codes |
 * | --- | --- |
 * | 400 | INVALID_REQUEST (schema failures, malformed JSON/msgpack, bad batches) |
 * | 401 | UNAUTHORIZED |
 * | 403 | FORBIDDEN, INVALID_PRODUCER_TOKEN |
 * | 404 | UNKNOWN_TOPIC, UNKNOWN_PARTITION, UNKNOWN_MEMBER (and unknown routes, as INVALID_REQUEST) |
 * | 409 | TOPIC_EXISTS, OUT_OF_ORDER_SEQUENCE, CONF_CHANGE_REFUSED, FENCED_MEMBER, DUPLICATE_BROKER_REGISTRATION, RESOURCE_LIMIT_REACHED |
 * | 413 | TOO_LARGE |
 * | 416 | OFFSET_OUT_OF_RANGE |
 * | 421 | NOT_LEADER (with `leader: {id, url}` or null) |
 * | 429 | THROTTLED (over quota with too many answers held; retriable; Retry-After, `throttleMs`) |
 * | 503 | NO_QUORUM, TIMEOUT, PROPOSAL_DROPPED, OVERLOADED (retriable; Retry-After: 1) |
 * | 507 | STORAGE_FULL |
 * | 500 | INTERNAL, other STORAGE_* |
 *
 * Requests node's HTTP parser refuses before any route sees them (a bad
 * request line, header bytes, length or chunking; a header block above the
 * bound; a request not received in time) are answered by
 * `clientErrorAnswer` in the same shape: 413 TOO_LARGE for the header
 * overflow, 408 (HTTP's own status for it; code INVALID_REQUEST: nothing
 * was done) for a request not received within --http-request-timeout, 400
 * INVALID_REQUEST for the rest.
 *
 * OUT_OF_ORDER_SEQUENCE is 409, not 400: the body is well formed; it
 * conflicts with the partition's producer state (a gap after a lost batch),
 * and the producer must not retry it unchanged.
 *
 * INVALID_PRODUCER_TOKEN is 403, not 401: the request may well be
 * authenticated (401 is for missing or bad client credentials); what it
 * lacks is proof that its sender obtained the producer id it writes with.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import type { BrokerRef } from '../wire/index.ts'

const statusByCode: Readonly<Record<ErrorCode, number>> = {
  INVALID_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  INVALID_PRODUCER_TOKEN: 403,
  UNKNOWN_TOPIC: 404,
  UNKNOWN_PARTITION: 404,
  TOPIC_EXISTS: 409,
  OUT_OF_ORDER_SEQUENCE: 409,
  CONF_CHANGE_REFUSED: 409,
  UNKNOWN_MEMBER: 404,
  FENCED_MEMBER: 409,
  DUPLICATE_BROKER_REGISTRATION: 409,
  RESOURCE_LIMIT_REACHED: 409,
  TOO_LARGE: 413,
  OFFSET_OUT_OF_RANGE: 416,
  NOT_LEADER: 421,
  THROTTLED: 429,
  NO_QUORUM: 503,
  TIMEOUT: 503,
  PROPOSAL_DROPPED: 503,
  OVERLOADED: 503,
  STORAGE_FULL: 507,
  STORAGE_UNUSABLE: 500,
  STORAGE_CORRUPT: 500,
  STORAGE_LOCKED: 500,
  STORAGE_READ_ONLY: 500,
  INTERNAL: 500,
}

/** The HTTP status that answers `code`. */
export function statusForCode(code: ErrorCode): number {
  return statusByCode[code] ?? 500
}

/** An error answer: status and body. */
export interface ErrorAnswer {
  readonly status: number
  readonly body: { error: { code: ErrorCode; message: string; [detail: string]: unknown } }
}

/** How an error found its way here, for `toErrorAnswer`. */
interface FastifyishError {
  readonly code?: unknown
  readonly statusCode?: unknown
  readonly message?: unknown
  readonly validation?: unknown
  readonly validationContext?: unknown
}

/** Fastify's own errors that mean "the request is too large". */
const fastifyTooLarge: ReadonlySet<string> = new Set(['FST_ERR_CTP_BODY_TOO_LARGE'])

function rillAnswer(error: RillError, resolveLeader: (leader: unknown) => BrokerRef | null): ErrorAnswer {
  const details: Record<string, unknown> = { ...error.details }
  if (error.code === ErrorCode.NOT_LEADER) details.leader = resolveLeader(details.leader)
  return { status: statusForCode(error.code), body: { error: { ...details, code: error.code, message: error.message } } }
}

/**
 * Maps anything thrown while answering to an error answer: RillErrors by
 * code; fastify's validation and parsing errors to INVALID_REQUEST (or
 * TOO_LARGE); everything else to a 500 INTERNAL whose message hides the
 * internals (the caller logs the original).
 */
export function toErrorAnswer(error: unknown, resolveLeader: (leader: unknown) => BrokerRef | null): ErrorAnswer {
  if (error instanceof RillError) return rillAnswer(error, resolveLeader)
  const e = (typeof error === 'object' && error !== null ? error : {}) as FastifyishError
  const message = typeof e.message === 'string' ? e.message : String(error)
  if (e.validation !== undefined) {
    return { status: 400, body: { error: { code: ErrorCode.INVALID_REQUEST, message, part: e.validationContext } } }
  }
  if (typeof e.code === 'string' && fastifyTooLarge.has(e.code)) {
    return { status: 413, body: { error: { code: ErrorCode.TOO_LARGE, message } } }
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500
  if (status >= 400 && status < 500) {
    // Malformed JSON, empty body with a JSON content type, unsupported media type, ...
    return { status: 400, body: { error: { code: ErrorCode.INVALID_REQUEST, message } } }
  }
  return { status: 500, body: { error: { code: ErrorCode.INTERNAL, message: 'internal error' } } }
}

/**
 * The answer to a request node's HTTP parser refused (`clientError`; its
 * error code, e.g. HPE_INVALID_METHOD). fastify's default answered these in
 * its own shape (`{"error":"Bad Request","message":"Client Error"}`), so a
 * client could not tell them apart by code.
 */
export function clientErrorAnswer(parserCode: string | undefined): ErrorAnswer {
  if (parserCode === 'HPE_HEADER_OVERFLOW') {
    return { status: 413, body: { error: { code: ErrorCode.TOO_LARGE, message: 'request line and headers are above the bound', field: 'headers' } } }
  }
  if (parserCode === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return { status: 408, body: { error: { code: ErrorCode.INVALID_REQUEST, message: 'the request was not received in time' } } }
  }
  return { status: 400, body: { error: { code: ErrorCode.INVALID_REQUEST, message: `malformed HTTP request (${String(parserCode ?? 'unparsable')})` } } }
}

/** Shorthand for an INVALID_REQUEST naming a field. */
export function invalidRequest(message: string, field?: string): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, message, field === undefined ? {} : { details: { field } })
}
