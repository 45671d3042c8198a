/**
 * The consumer's options: what the caller may pass, the defaults, and the
 * checks that turn a bad value into an INVALID_REQUEST naming the option
 * (DESIGN.md decision 10) before anything is sent.
 */
import { ClientErrorCode, RillClientError, parseBrokers, type ClientTlsOptions } from '../client/index.ts'

/** Which replica a partition is read from (DESIGN.md decision 8). */
export type ReadFrom = 'leader' | 'follower' | 'nearest'

export interface ConsumerOptions {
  /** Bootstrap broker URLs (`http://host:port`, a list or comma-separated); any one is enough, the rest come from metadata. */
  readonly brokers: string | readonly string[]
  /** Consumer group (docs/groups.md). Without it the consumer reads every partition of its topics and commits nothing. */
  readonly groupId?: string
  /**
   * With `groupId`: join the group as a member (default), or act for a group
   * that has no members — read every partition from the group's committed
   * offsets and commit without a member id, as tools do.
   */
  readonly joinGroup?: boolean
  /** `nearest` (default): a replica on `rack` when there is one, else the leader. */
  readonly readFrom?: ReadFrom
  /** The consumer's rack, matched against the brokers' `rack` in metadata. */
  readonly rack?: string
  /** Commit the processed position every `autoCommitIntervalMs`, on revocation and on close (default true). */
  readonly autoCommit?: boolean
  /** Default 5,000 ms, as Kafka's auto.commit.interval.ms. */
  readonly autoCommitIntervalMs?: number
  /** Where a partition without a committed offset starts: its log start (true) or its end (false, default), as Kafka's auto.offset.reset. */
  readonly fromBeginning?: boolean
  /** Group session timeout, 1,000..60,000 ms (default 10,000). */
  readonly sessionTimeoutMs?: number
  /** Bytes of stored batches asked for per fetch (default 1 MiB; the broker sends at least one batch). */
  readonly maxBytes?: number
  /** Long-poll of one fetch (default 1,000 ms). */
  readonly maxWaitMs?: number
  /** Read-your-writes: every fetch waits (bounded) until the replica has committed this offset. */
  readonly minCommitted?: number
  /** Sent with the join; 1..249 of `[A-Za-z0-9._-]`. */
  readonly clientId?: string
  /** Records fetched but not yet handed to the application; fetching stops above it (default 10,000). */
  readonly bufferedRecordsMax?: number
  /** Bytes of fetched batches not yet handed to the application (default 64 MiB). */
  readonly bufferedBytesMax?: number
  /** Fetches in flight at once, over all partitions (default 64). */
  readonly fetchesInflightMax?: number
  /** Longest a request other than a long-poll may take (default 10,000 ms). */
  readonly requestTimeoutMs?: number
  /** For https:// brokers: `{ ca }` (the cluster's CA certificate, PEM) and, for brokers that ask, `{ cert, key }`. */
  readonly tls?: ClientTlsOptions
  /** A bearer token (`rill acl token create`), sent as `authorization: Bearer TOKEN` to brokers started with `--auth required`. */
  readonly token?: string
}

/** Options after defaults and checks. */
export interface ConsumerConfig {
  readonly brokers: readonly string[]
  readonly groupId: string | null
  readonly joinGroup: boolean
  readonly readFrom: ReadFrom
  readonly rack: string | null
  readonly autoCommit: boolean
  readonly autoCommitIntervalMs: number
  readonly fromBeginning: boolean
  readonly sessionTimeoutMs: number
  readonly maxBytes: number
  readonly maxWaitMs: number
  readonly minCommitted: number | null
  readonly clientId: string
  readonly bufferedRecordsMax: number
  readonly bufferedBytesMax: number
  readonly fetchesInflightMax: number
  readonly requestTimeoutMs: number
  readonly tls: ClientTlsOptions | undefined
  readonly token: string | undefined
}

/** Group names, topic names and client ids (docs/groups.md). */
const namePattern = /^[A-Za-z0-9._-]{1,249}$/
const readFroms: readonly ReadFrom[] = ['leader', 'follower', 'nearest']

export const consumerDefaults = {
  readFrom: 'nearest',
  autoCommit: true,
  autoCommitIntervalMs: 5_000,
  fromBeginning: false,
  sessionTimeoutMs: 10_000,
  maxBytes: 1024 * 1024,
  maxWaitMs: 1_000,
  clientId: 'rill-consumer',
  bufferedRecordsMax: 10_000,
  bufferedBytesMax: 64 * 1024 * 1024,
  fetchesInflightMax: 64,
  requestTimeoutMs: 10_000,
} as const

function invalid(option: string, message: string): RillClientError {
  return new RillClientError(ClientErrorCode.INVALID_REQUEST, `consumer option ${option}: ${message}`, { details: { field: option }, retriable: false })
}

function int(options: ConsumerOptions, name: keyof ConsumerOptions, fallback: number, min: number, max: number): number {
  const value = options[name] ?? fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(name, `expected an integer in ${min}..${max}, got ${String(value)}`)
  }
  return value
}

function bool(options: ConsumerOptions, name: keyof ConsumerOptions, fallback: boolean): boolean {
  const value = options[name] ?? fallback
  if (typeof value !== 'boolean') throw invalid(name, `expected true or false, got ${String(value)}`)
  return value
}

function name(options: ConsumerOptions, option: 'groupId' | 'clientId' | 'rack'): string | null {
  const value = options[option]
  if (value === undefined) return null
  if (typeof value !== 'string' || !namePattern.test(value)) throw invalid(option, `expected 1..249 of [A-Za-z0-9._-], got ${JSON.stringify(value)}`)
  return value
}


/** Applies defaults and checks every option; throws INVALID_REQUEST naming the first bad one. */
export function resolveConsumerOptions(options: ConsumerOptions): ConsumerConfig {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'expected an object')
  const readFrom = options.readFrom ?? consumerDefaults.readFrom
  if (!readFroms.includes(readFrom)) throw invalid('readFrom', `expected leader, follower or nearest, got ${JSON.stringify(readFrom)}`)
  const minCommitted = options.minCommitted === undefined ? null : int(options, 'minCommitted', 0, 0, Number.MAX_SAFE_INTEGER)
  return {
    brokers: parseBrokers(options.brokers),
    groupId: name(options, 'groupId'),
    joinGroup: bool(options, 'joinGroup', true),
    readFrom,
    rack: name(options, 'rack'),
    autoCommit: bool(options, 'autoCommit', consumerDefaults.autoCommit),
    autoCommitIntervalMs: int(options, 'autoCommitIntervalMs', consumerDefaults.autoCommitIntervalMs, 10, 3_600_000),
    fromBeginning: bool(options, 'fromBeginning', consumerDefaults.fromBeginning),
    sessionTimeoutMs: int(options, 'sessionTimeoutMs', consumerDefaults.sessionTimeoutMs, 1_000, 60_000),
    maxBytes: int(options, 'maxBytes', consumerDefaults.maxBytes, 1, 16 * 1024 * 1024),
    maxWaitMs: int(options, 'maxWaitMs', consumerDefaults.maxWaitMs, 0, 30_000),
    minCommitted,
    clientId: name(options, 'clientId') ?? consumerDefaults.clientId,
    bufferedRecordsMax: int(options, 'bufferedRecordsMax', consumerDefaults.bufferedRecordsMax, 1, 10_000_000),
    bufferedBytesMax: int(options, 'bufferedBytesMax', consumerDefaults.bufferedBytesMax, 1024, 2 ** 40),
    fetchesInflightMax: int(options, 'fetchesInflightMax', consumerDefaults.fetchesInflightMax, 1, 10_000),
    requestTimeoutMs: int(options, 'requestTimeoutMs', consumerDefaults.requestTimeoutMs, 100, 600_000),
    tls: options.tls,
    token: options.token,
  }
}

/** Checks a topic name as the broker will (so a typo fails here, with the name). */
export function checkTopicName(topic: unknown): string {
  if (typeof topic !== 'string' || !namePattern.test(topic)) {
    throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `topic: expected 1..249 of [A-Za-z0-9._-], got ${JSON.stringify(topic)}`, {
      details: { field: 'topic' },
      retriable: false,
    })
  }
  return topic
}
