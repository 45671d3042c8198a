/**
 * Producer options, their defaults (Kafka's where one exists) and their
 * checks: a bad option is an INVALID_REQUEST naming it, at construction.
 */
import type { Random } from '../src/base/index.ts'
import { defaultBatchLimits } from '../src/wire/index.ts'
import type { Acks } from '../src/wire/index.ts'
import { ClientErrorCode, RillClientError, type ClientTlsOptions } from '../client/index.ts'

/** What a custom partitioner is told about a record. */
export interface PartitionerInput {
  readonly topic: string
  readonly key: Uint8Array | null
  readonly value: Uint8Array
  readonly partitionCount: number
}

/**
 * How a record without an explicit `partition` finds one. Keyed records
 * always go to murmur2(key) (as Kafka's default partitioner) unless a
 * function is given; the name says what keyless records do.
 * - `sticky` (default): fill one partition's batch, then move to the next (Kafka's KIP-480)
 * - `round-robin`: one partition after the other, per record
 * - a function: decides for every record (keyed or not); must return an integer in [0, partitionCount)
 */
export type PartitionerOption = 'sticky' | 'round-robin' | ((input: PartitionerInput) => number)

export interface ProducerOptions {
  /** Broker URLs to bootstrap from (`http://host:port`), or one comma-separated string. */
  readonly brokers: string | readonly string[]
  /** `all` (default): acknowledged once a majority has the batch; `leader`: once the leader appended it. */
  readonly acks?: Acks
  /** Producer id + per-partition sequences, so a retried batch is never written twice (default true). */
  readonly idempotent?: boolean
  /** How long a partly filled batch waits for more records (ms, default 5). 0 sends at once when a request slot is free. */
  readonly lingerMs?: number
  /** A batch is sent once its records reach this many bytes (default 1 MiB); a larger single record goes alone. */
  readonly batchBytes?: number
  /** A batch is sent once it holds this many records (default 10,000; the broker takes at most 100,000). */
  readonly batchRecordsMax?: number
  /** Batches in flight per partition (default 5; at most 5 when idempotent: the broker remembers 5 per producer). */
  readonly maxInFlight?: number
  /** Bytes of records held by the producer, queued or in flight (default 32 MiB); `send` waits while it is full. */
  readonly bufferBytes?: number
  readonly partitioner?: PartitionerOption
  /** Resends of one batch before it fails (default: unbounded within `deliveryTimeoutMs`). */
  readonly retries?: number
  /** Timeout of one request (ms, default 30,000). */
  readonly requestTimeoutMs?: number
  /** A record not acknowledged this long after `send` fails with TIMEOUT (ms, default 120,000); also bounds waiting for buffer space. */
  readonly deliveryTimeoutMs?: number
  /** First retry backoff (ms, default 100), doubled per retry up to `retryBackoffMaxMs` (default 1,000), jittered. */
  readonly retryBackoffMs?: number
  readonly retryBackoffMaxMs?: number
  /** Sent as `user-agent`. */
  readonly clientId?: string
  /** Random source for backoff jitter and the first keyless partition (tests pass a seeded one). */
  readonly random?: Random
  /** For https:// brokers: `{ ca }` (the cluster's CA certificate, PEM) and, for brokers that ask, `{ cert, key }`. */
  readonly tls?: ClientTlsOptions
  /** A bearer token (`rill acl token create`), sent as `authorization: Bearer TOKEN` to brokers started with `--auth required`. */
  readonly token?: string
}

/** The resolved options. */
export interface ProducerConfig {
  readonly brokers: string | readonly string[]
  readonly acks: Acks
  readonly idempotent: boolean
  readonly lingerMs: number
  readonly batchBytes: number
  readonly batchRecordsMax: number
  readonly maxInFlight: number
  readonly bufferBytes: number
  readonly partitioner: PartitionerOption
  readonly retries: number
  readonly requestTimeoutMs: number
  readonly deliveryTimeoutMs: number
  readonly retryBackoffMs: number
  readonly retryBackoffMaxMs: number
  readonly clientId: string
  readonly random: Random | undefined
  readonly tls: ClientTlsOptions | undefined
  readonly token: string | undefined
}

/** Batches per producer and partition the broker remembers to answer retries (src/partition/state.ts producerBatchesRemembered). */
export const idempotentInFlightMax = 5
/** Largest record the producer accepts: one record alone in a batch must fit the broker's batch limit (header and lengths aside). */
export const recordBytesMax = defaultBatchLimits.batchBytesMax - 1024

export const defaultProducerOptions = {
  acks: 'all',
  idempotent: true,
  lingerMs: 5,
  batchBytes: 1024 * 1024,
  batchRecordsMax: 10_000,
  maxInFlight: 5,
  bufferBytes: 32 * 1024 * 1024,
  partitioner: 'sticky',
  retries: Number.MAX_SAFE_INTEGER,
  requestTimeoutMs: 30_000,
  deliveryTimeoutMs: 120_000,
  retryBackoffMs: 100,
  retryBackoffMaxMs: 1_000,
  clientId: 'rill-producer',
} as const

/** Options with defaults filled in, checked; INVALID_REQUEST naming the first bad one. */
export function resolveProducerOptions(options: ProducerOptions): ProducerConfig {
  if (options === null || typeof options !== 'object') throw invalid('options must be an object with at least `brokers`')
  const d = defaultProducerOptions
  const config: ProducerConfig = {
    brokers: options.brokers,
    acks: options.acks ?? d.acks,
    idempotent: options.idempotent ?? d.idempotent,
    lingerMs: options.lingerMs ?? d.lingerMs,
    batchBytes: options.batchBytes ?? d.batchBytes,
    batchRecordsMax: options.batchRecordsMax ?? d.batchRecordsMax,
    maxInFlight: options.maxInFlight ?? d.maxInFlight,
    bufferBytes: options.bufferBytes ?? d.bufferBytes,
    partitioner: options.partitioner ?? d.partitioner,
    retries: options.retries ?? d.retries,
    requestTimeoutMs: options.requestTimeoutMs ?? d.requestTimeoutMs,
    deliveryTimeoutMs: options.deliveryTimeoutMs ?? d.deliveryTimeoutMs,
    retryBackoffMs: options.retryBackoffMs ?? d.retryBackoffMs,
    retryBackoffMaxMs: options.retryBackoffMaxMs ?? d.retryBackoffMaxMs,
    clientId: options.clientId ?? d.clientId,
    random: options.random,
    tls: options.tls,
    token: options.token,
  }
  if (config.acks !== 'all' && config.acks !== 'leader') throw invalid(`acks must be "all" or "leader", got ${String(config.acks)}`)
  if (typeof config.idempotent !== 'boolean') throw invalid('idempotent must be a boolean')
  checkInt('lingerMs', config.lingerMs, 0, 60_000)
  checkInt('batchBytes', config.batchBytes, 1, defaultBatchLimits.batchBytesMax)
  checkInt('batchRecordsMax', config.batchRecordsMax, 1, defaultBatchLimits.recordsMax)
  checkInt('maxInFlight', config.maxInFlight, 1, config.idempotent ? idempotentInFlightMax : 100)
  checkInt('bufferBytes', config.bufferBytes, 1024, Number.MAX_SAFE_INTEGER)
  checkInt('retries', config.retries, 0, Number.MAX_SAFE_INTEGER)
  checkInt('requestTimeoutMs', config.requestTimeoutMs, 1, 3_600_000)
  checkInt('deliveryTimeoutMs', config.deliveryTimeoutMs, 1, 86_400_000)
  checkInt('retryBackoffMs', config.retryBackoffMs, 0, 3_600_000)
  checkInt('retryBackoffMaxMs', config.retryBackoffMaxMs, config.retryBackoffMs, 3_600_000)
  const p = config.partitioner
  if (p !== 'sticky' && p !== 'round-robin' && typeof p !== 'function') throw invalid('partitioner must be "sticky", "round-robin" or a function')
  return config
}

function checkInt(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`)
  }
}

function invalid(message: string): RillClientError {
  return new RillClientError(ClientErrorCode.INVALID_REQUEST, `producer: ${message}`, { retriable: false })
}
