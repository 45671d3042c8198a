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
  /**
   * Connections open at once (issue 10, hole 4: 1,100 idle connections took
   * every descriptor of a broker with 1,024). One more is refused at accept:
   * a 503 OVERLOADED answer and closed (over TLS: closed).
   */
  readonly connectionsMax: number
  /** Connections open at once from one client address (Kafka's max.connections.per.ip); beyond it refused as above. */
  readonly connectionsPerAddressMax: number
  /**
   * A connection without a request in flight (new, or kept alive after an
   * answer) is closed after this long without traffic, ms; so is one whose
   * answers the client has stopped reading (bytes waiting to be written).
   * A request being worked on (a long poll) is never cut by it.
   */
  readonly idleMs: number
  /** Longest a client may take to send a whole request (headers and body), ms; then 408 and closed. */
  readonly requestMs: number
  /** Longest a client may take to send a request's headers, ms (at most `requestMs`). */
  readonly headersMs: number
}

/**
 * Sixteen requests in flight covers the SDKs (one at a time per connection)
 * and modest pipelining. 32 MiB per connection holds one fetch of the
 * largest size (`fetchBytesMax`) with room for its JSON; 256 MiB for the
 * process is what answers may hold of a broker's memory at once. 1,024
 * connections (256 from one address) is what a broker's descriptors afford
 * beside its logs (the broker lowers it to half its descriptor limit);
 * a minute idle is longer than any SDK keeps a connection unused (undici:
 * 4 s); 30 s for a request covers the largest body on a slow link, 10 s
 * for headers a client that is not trickling them on purpose.
 */
export const defaultConnectionLimits: ConnectionLimits = {
  requestsInflightPerConnectionMax: 16,
  answerBytesPerConnectionMax: 32 * 1024 * 1024,
  answerBytesMax: 256 * 1024 * 1024,
  connectionsMax: 1024,
  connectionsPerAddressMax: 256,
  idleMs: 60_000,
  requestMs: 30_000,
  headersMs: 10_000,
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
