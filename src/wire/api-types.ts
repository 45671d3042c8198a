/**
 * Shapes of the HTTP API's bodies (API.md), shared by the broker (src/api)
 * and the SDKs (producer/, consumer/), which import them with `import type`.
 *
 * JSON and msgpack carry the same fields; where they differ (keys and values
 * are strings in JSON, bytes in msgpack; msgpack may carry stored record
 * batches) there is one type per content type. Offsets, producer ids and
 * timestamps are numbers below 2^53.
 */
import type { ErrorCode } from '../base/index.ts'
import type { JsonRecordIn, JsonRecordOut, RecordEncoding } from './json.ts'

/** Content types the API speaks. */
export const contentType = {
  json: 'application/json',
  msgpack: 'application/msgpack',
} as const

/**
 * Topic and group names, one rule everywhere (Kafka's): 1..249 of
 * [a-zA-Z0-9._-], and not "." or ".." (a URL path could not name them).
 */
export const nameCharsMax = 249
export const namePattern = '^(?!\\.\\.?$)[a-zA-Z0-9._-]+$'

/** When a produce is answered: after commit on a majority, or after the leader's local append. */
export type Acks = 'all' | 'leader'

/** Persistence mode of a topic (DESIGN.md decision 6). */
export type PersistenceMode = 'sync' | 'async' | 'memory'

// ---- errors ----------------------------------------------------------------

/** Every error answer: `{ error: { code, message, ... } }` with the HTTP status that fits the code. */
export interface ErrorBody {
  error: {
    code: ErrorCode
    message: string
    /** 421 NOT_LEADER: where the leader is, when known. */
    leader?: BrokerRef | null
    [detail: string]: unknown
  }
}

/** A broker as clients address it. */
export interface BrokerRef {
  id: number
  url: string
}

// ---- health, metadata ----------------------------------------------------------

/** `GET /health`. */
export interface HealthResponse {
  ok: true
  broker: number
}

/** One partition in metadata. `leader` is null while an election is under way. */
export interface PartitionMetadata {
  partition: number
  leader: number | null
  replicas: number[]
  highWatermark: number
  /**
   * Replicas assigned but not open on their broker (it ran out of file
   * descriptors, or the open failed; it retries): each broker names only
   * itself. Absent when none.
   */
  offlineReplicas?: number[]
}

export interface TopicMetadata {
  name: string
  partitions: PartitionMetadata[]
  /** Set on the broker's own topics (`__consumer_offsets`): no produce or fetch. */
  internal?: boolean
}

/** `GET /v1/metadata`. */
export interface MetadataResponse {
  /** `fenced`: the controller has not heard from the broker lately (it leads nothing new). */
  brokers: (BrokerRef & { rack?: string; fenced?: boolean })[]
  controller: { leader: number | null }
  topics: TopicMetadata[]
}

// ---- topics ----------------------------------------------------------------

/** Per-topic configuration; absent fields take the broker's defaults. */
export interface TopicConfig {
  persistence?: PersistenceMode
  /** Records older than this are deleted; -1 keeps them forever. */
  retentionMs?: number
  /** Per partition; the oldest segments go first; -1 for no bound. */
  retentionBytes?: number
}

/** `POST /v1/topics`. */
export interface CreateTopicRequest {
  name: string
  partitions: number
  replicationFactor: number
  config?: TopicConfig
}

/** `POST /v1/topics` → 201 (409 TOPIC_EXISTS if it exists). */
export interface CreateTopicResponse {
  name: string
  partitions: number
  /**
   * True: when answered, every live broker knew the topic and every partition
   * had a leader all its live replicas followed. False: not within the wait
   * (or `"wait": false`); the topic exists all the same.
   */
  ready: boolean
}

/** `GET /v1/topics/:topic`. */
export interface TopicDescription extends TopicMetadata {
  replicationFactor: number
  config: TopicConfig
}

/** `GET /v1/topics`. */
export interface TopicListResponse {
  topics: TopicDescription[]
}

// ---- producers -------------------------------------------------------------

/** `POST /v1/producers` → a fresh idempotent-producer identity. */
export interface InitProducerResponse {
  /** Unique in the cluster, not guessable (a keyed permutation of a counter). */
  producerId: number
  producerEpoch: number
  /**
   * Proof of having obtained this id and epoch (64 hex digits, a MAC with
   * the cluster secret): every produce with the id must carry it, or it is
   * refused with 403 INVALID_PRODUCER_TOKEN.
   */
  producerToken: string
}

/**
 * Idempotence fields of a produce (DESIGN.md decision 9): producerId,
 * producerEpoch and sequence all three or none; producerToken whenever the
 * batch has a producer id (from these fields or a stored-format batch's header).
 */
export interface ProducerIdentity {
  producerId?: number
  producerEpoch?: number
  /** Sequence of the batch's first record, per producer and partition, from 0; the next batch's is this plus its record count. */
  sequence?: number
  /** The token `POST /v1/producers` answered with the producer id. */
  producerToken?: string
}

/** `POST /v1/topics/:topic[/partitions/:p]/records` in JSON. */
export interface ProduceRequestJson extends ProducerIdentity {
  records: JsonRecordIn[]
  /** How keys and values are spelled; utf8 when absent. */
  encoding?: RecordEncoding
  acks?: Acks
}

/** A record in a msgpack produce body: bytes, not strings. */
export interface MsgpackRecordIn {
  key?: Uint8Array | null
  value: Uint8Array
  headers?: { key: string; value: Uint8Array }[]
  timestamp?: number
}

/**
 * A produce in msgpack: either `records`, or `batch` — one record batch in
 * the stored format (docs/record-batch.md), checked and appended without
 * re-encoding. With `batch`, producer id, epoch and sequence are read from
 * the batch header; body fields, if given, must match it.
 */
export interface ProduceRequestMsgpack extends ProducerIdentity {
  records?: MsgpackRecordIn[]
  batch?: Uint8Array
  acks?: Acks
}

/** Answer to a produce on one partition. A retried produce gets the original offsets. */
export interface ProduceResponse {
  partition: number
  baseOffset: number
  lastOffset: number
}

/**
 * A partition whose part of a topic produce was not written: the records to
 * send again are those at `records` (indexes into the request's `records`).
 */
export interface TopicProduceFailure {
  partition: number
  code: ErrorCode
  message: string
  /** The same part may succeed later (a new leader, a healed quorum); false: resending it unchanged fails again. */
  retriable: boolean
  /** Indexes in the request's `records` of this part's records, in order. */
  records: number[]
  /** NOT_LEADER: where the leader is, when known. */
  leader?: BrokerRef | null
}

/**
 * Answer to `POST /v1/topics/:topic/records` (partitions chosen by key), one
 * result per partition as Kafka's ProduceResponse: 200 when every part was
 * written; 207 with `failed` when some were and some were not (resend only
 * the failed parts). When none was written the answer is an error whose body
 * carries the same `offsets` (empty) and `failed`.
 */
export interface TopicProduceResponse {
  /** The parts written, in partition order. */
  offsets: ProduceResponse[]
  /** The parts not written, in partition order (absent when every part was written). */
  failed?: TopicProduceFailure[]
}

// ---- fetch -----------------------------------------------------------------

/** Query of `GET /v1/topics/:topic/partitions/:p/records`. */
export interface FetchQuery {
  offset: number
  maxRecords?: number
  maxBytes?: number
  /** Long poll: wait up to this long for records past `offset`. */
  maxWaitMs?: number
  /** Read-your-writes on a follower: wait (bounded) until its commit index covers this offset. */
  minCommitted?: number
  encoding?: RecordEncoding
  /** msgpack only: answer with stored batches (`batches`) rather than `records`. */
  format?: 'records' | 'batches'
}

/** Fields of every fetch answer. */
interface FetchResponseBase {
  partition: number
  /** Offset to fetch next. */
  nextOffset: number
  highWatermark: number
  logStartOffset: number
}

/** Fetch answer in JSON. */
export interface FetchResponseJson extends FetchResponseBase {
  records: JsonRecordOut[]
}

/** A record in a msgpack fetch answer. */
export interface MsgpackRecordOut {
  offset: number
  timestamp: number
  key: Uint8Array | null
  value: Uint8Array
  headers: { key: string; value: Uint8Array }[]
}

/**
 * Fetch answer in msgpack: `records`, or `batches` — stored batches back to
 * back (split with `splitConcatenatedBatches`, decode with `decodeBatch`).
 * The first batch may start before the requested offset (batches are not
 * cut): skip records below it.
 */
export interface FetchResponseMsgpack extends FetchResponseBase {
  records?: MsgpackRecordOut[]
  batches?: Uint8Array
}

// ---- consumer group offsets ------------------------------------------------

export interface TopicPartitionOffset {
  topic: string
  partition: number
  offset: number
}

/**
 * `POST /v1/groups/:group/offsets`. `offset` is the next offset to consume
 * (Kafka's convention). A member commits with its `memberId` and may commit
 * only partitions it owns (else 409 FENCED_MEMBER); without `memberId` the
 * group must have no members. A commit below the stored offset is ignored
 * unless `allowBackwards` (the consumer seeked).
 */
export interface CommitOffsetsRequest {
  offsets: TopicPartitionOffset[]
  memberId?: string
  allowBackwards?: boolean
}

/** `GET /v1/groups/:group/offsets`, and the answer to a commit (the offsets now stored). */
export interface GroupOffsetsResponse {
  offsets: TopicPartitionOffset[]
}

// ---- consumer group membership (docs/groups.md) ---------------------------------

/** Partitions of one topic. */
export interface TopicPartitions {
  topic: string
  partitions: number[]
}

/** `POST /v1/groups/:group/members`: join. */
export interface JoinGroupRequest {
  /** Topics the member subscribes to (1..100). */
  topics: string[]
  clientId?: string
  /** The consumer's rack (follower reads prefer a replica on it). */
  rack?: string
  /** 1,000..60,000; default 10,000. */
  sessionTimeoutMs?: number
}

/** `POST /v1/groups/:group/members/:memberId/heartbeat`. */
export interface HeartbeatRequest {
  /** Partitions the member still holds (it has stopped consuming all others). */
  owned: TopicPartitions[]
  /**
   * The `memberEpoch` of the latest answer the member has acted on. Giving
   * partitions up counts only with the current epoch, so a delayed or
   * reordered heartbeat cannot release a partition the member still holds.
   * Without it, a heartbeat keeps the session alive but releases nothing.
   */
  memberEpoch?: number
  /** A changed subscription; absent keeps the current one. */
  topics?: string[]
}

/** Answer to join and heartbeat: what the member may consume now. */
export interface MemberAssignmentResponse {
  memberId: string
  /** Group generation: bumps whenever any member's assignment changes. */
  generation: number
  /** Generation at which this member's assignment last changed; an answer with a lower one than already seen is stale: ignore it. */
  memberEpoch: number
  /** Partitions the member owns now. Partitions it holds but that are missing here must be given up. */
  assignment: TopicPartitions[]
  heartbeatIntervalMs: number
  sessionTimeoutMs: number
}

/** A member in `GET /v1/groups/:group`. */
export interface GroupMemberDescription {
  memberId: string
  clientId: string
  rack: string | null
  topics: string[]
  assignment: TopicPartitions[]
  /** Partitions taken from the member that it has not yet confirmed giving up. */
  revoking: TopicPartitions[]
  sessionTimeoutMs: number
}

/** `GET /v1/groups/:group`. */
export interface GroupDescription {
  group: string
  generation: number
  /** Broker id of the coordinator (the leader of the group's offsets partition). */
  coordinator: number
  members: GroupMemberDescription[]
  offsets: TopicPartitionOffset[]
}

// ---- the broker service's produce and fetch calls (src/api calls them, src/broker answers) ----

/** A produce as the broker takes it: one stored record batch for one partition. */
export interface ProduceCall {
  readonly topic: string
  readonly partition: number
  /** One record batch in the stored format, already checked by `validateBatch` at the edge. */
  readonly batch: Uint8Array
  readonly acks: Acks
  /** Needed when the batch has a producer id: the token issued with it (refused with INVALID_PRODUCER_TOKEN otherwise). */
  readonly producerToken?: string
  /**
   * The authenticated client (null or absent: anonymous, authentication off):
   * a producer token binds it, so a token is good only for the principal it
   * was issued to.
   */
  readonly principal?: string | null
}

export interface ProduceOutcome {
  readonly partition: number
  readonly baseOffset: number
  readonly lastOffset: number
}

export interface FetchCall {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly maxBytes: number
  readonly maxWaitMs: number
  /** Wait (bounded) until this replica's high watermark reaches it (read-your-writes on a follower). */
  readonly minCommitted?: number
}

export interface FetchOutcome {
  readonly partition: number
  /** Stored record batches, back to back, all committed; the first may start before `offset`. */
  readonly batches: readonly Uint8Array[]
  readonly nextOffset: number
  readonly highWatermark: number
  readonly logStartOffset: number
}
