/**
 * Bounds on everything a client controls (DESIGN.md decision 12). Exceeding
 * one is TOO_LARGE (413); a bound is never silently clamped except where a
 * request asks for "up to" something (fetch sizes, waits).
 */
import { defaultBatchLimits, type BatchLimits } from '../wire/index.ts'

export interface ApiLimits {
  /** Whole request body as received (JSON text or msgpack bytes). JSON base64 inflates data by 4/3, hence above `batch.batchBytesMax`. */
  readonly bodyBytesMax: number
  /** Record batch bounds: records per request, key/value/header sizes, batch bytes (src/wire). */
  readonly batch: BatchLimits
  /** Largest `maxBytes` a fetch may ask for; larger asks are clamped. */
  readonly fetchBytesMax: number
  /** `maxBytes` of a fetch that names none (as Kafka's max.partition.fetch.bytes). */
  readonly fetchBytesDefault: number
  /** Largest `maxRecords` a fetch may ask for; larger asks are clamped. */
  readonly fetchRecordsMax: number
  /** `maxRecords` of a fetch that names none (as Kafka's max.poll.records). */
  readonly fetchRecordsDefault: number
  /** Longest long-poll (`maxWaitMs`); larger asks are clamped. */
  readonly fetchWaitMsMax: number
  /** Offsets in one `POST /v1/groups/:group/offsets`. */
  readonly groupOffsetsMax: number
}

export const defaultApiLimits: ApiLimits = {
  bodyBytesMax: 16 * 1024 * 1024,
  batch: defaultBatchLimits,
  fetchBytesMax: 16 * 1024 * 1024,
  fetchBytesDefault: 1024 * 1024,
  fetchRecordsMax: 100_000,
  fetchRecordsDefault: 500,
  fetchWaitMsMax: 30_000,
  groupOffsetsMax: 10_000,
}

/** Limits with some fields replaced (tests and broker config lower them). */
export function apiLimits(overrides: Partial<Omit<ApiLimits, 'batch'>> & { batch?: Partial<BatchLimits> } = {}): ApiLimits {
  return { ...defaultApiLimits, ...overrides, batch: { ...defaultApiLimits.batch, ...overrides.batch } }
}

/**
 * Bounds on what HTTP connections hold of the broker (connections.ts). A
 * client that does not read its answers gets refusals, not memory.
 */
export interface ConnectionLimits {
  /**
   * Requests of one connection whose answer is not yet written. At the cap
   * the socket is paused (no more requests are read: Kafka mutes a
   * connection with a request in flight); pipelined requests already read
   * beyond it are answered 503 OVERLOADED and the connection closes.
   */
  readonly requestsInflightPerConnectionMax: number
  /** Bytes of answers built and not yet written, per connection; a fetch is clamped to what is left. */
  readonly answerBytesPerConnectionMax: number
  /** Bytes of answers built and not yet written, over all connections; a fetch is clamped to what is left, and refused (503 OVERLOADED) when nothing is. */
  readonly answerBytesMax: number
}

/**
 * Sixteen requests in flight covers the SDKs (one at a time per connection)
 * and modest pipelining. 32 MiB per connection holds one fetch of the
 * largest size (`fetchBytesMax`) with room for its JSON; 256 MiB for the
 * process is what answers may hold of a broker's memory at once.
 */
export const defaultConnectionLimits: ConnectionLimits = {
  requestsInflightPerConnectionMax: 16,
  answerBytesPerConnectionMax: 32 * 1024 * 1024,
  answerBytesMax: 256 * 1024 * 1024,
}

/** Connection limits with some fields replaced (tests and broker config). */
export function connectionLimits(overrides: Partial<ConnectionLimits> = {}): ConnectionLimits {
  return { ...defaultConnectionLimits, ...overrides }
}

/** Partitions of one topic a create may ask for. */
export const topicPartitionsMax = 10_000
/** Replication factor a create may ask for. */
export const replicationFactorMax = 15
/** Longest topic or group name (Kafka's bound for topics; the one rule is in wire). */
export { nameCharsMax as nameLengthMax } from '../wire/index.ts'
