/**
 * The edge between HTTP bodies and record batches (DESIGN.md decision 3).
 *
 *   JSON records ──recordsFromJson──▶ RecordInput[] ──encodeBatch──▶ one batch
 *   msgpack records ─────────────────▶ RecordInput[] ──encodeBatch──▶ validateBatch (limits)
 *   msgpack batch ───────────────────────────────────────────────────▶ validateBatch (never re-encoded)
 *
 *   stored batches ──decodeBatch──▶ records from `offset`, at most maxRecords ──▶ JSON / msgpack
 *
 * Everything a produce can get wrong is found here, before the broker is
 * called, so a refused request changes nothing.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import {
  decodeBatch,
  encodeBatch,
  partitionForKey,
  recordsFromJson,
  recordsToJson,
  validateBatch,
  type BatchInfo,
  type BatchLimits,
  type DecodedRecord,
  type JsonRecordOut,
  type MsgpackRecordIn,
  type MsgpackRecordOut,
  type ProducerIdentity,
  type RecordEncoding,
  type RecordInput,
  type RoundRobinPartitioner,
} from '../wire/index.ts'
import { invalidRequest } from './errors.ts'

/** A produce body after schema validation (either content type). */
export interface ProduceBody extends ProducerIdentity {
  records?: unknown[]
  batch?: Uint8Array
  encoding?: RecordEncoding
  acks?: 'all' | 'leader'
}

interface Producer {
  producerId?: number
  producerEpoch?: number
  baseSequence?: number
}

/** The idempotence fields: all three or none (API.md). */
export function producerOf(body: ProducerIdentity): Producer {
  const given = [body.producerId, body.producerEpoch, body.sequence].filter((x) => x !== undefined).length
  if (given === 0) return {}
  if (given !== 3) throw invalidRequest('producerId, producerEpoch and sequence go together: give all three or none', 'producerId')
  return { producerId: body.producerId!, producerEpoch: body.producerEpoch!, baseSequence: body.sequence! }
}

function tooManyRecords(count: number, limit: number): RillError {
  return new RillError(ErrorCode.TOO_LARGE, `records: ${count} records, above the limit of ${limit}`, {
    details: { field: 'records', limit, actual: count },
  })
}

/** Msgpack records (bytes already checked by the schema) as encoder input. */
function recordsFromMsgpack(records: readonly unknown[], limits: BatchLimits): RecordInput[] {
  if (records.length > limits.recordsMax) throw tooManyRecords(records.length, limits.recordsMax)
  return (records as MsgpackRecordIn[]).map((r) => ({
    key: r.key ?? null,
    value: r.value,
    headers: r.headers ?? [],
    ...(r.timestamp === undefined ? {} : { timestampMs: r.timestamp }),
  }))
}

/** Record inputs of a body whose records are given (not a batch). */
export function recordInputs(body: ProduceBody, msgpack: boolean, limits: BatchLimits): RecordInput[] {
  const records = body.records ?? []
  if (msgpack) return recordsFromMsgpack(records, limits)
  return recordsFromJson(records, body.encoding ?? 'utf8', limits)
}

/**
 * One checked batch from record inputs: encoded once, then checked against
 * the limits as a client's batch would be (batch bytes, key/value/header
 * sizes — JSON inputs were checked field by field already).
 */
export function batchFromRecords(records: readonly RecordInput[], producer: Producer, limits: BatchLimits): { batch: Uint8Array; info: BatchInfo } {
  if (records.length > limits.recordsMax) throw tooManyRecords(records.length, limits.recordsMax)
  const batch = encodeBatch({ records, ...producer })
  return { batch, info: validateBatch(batch, limits) }
}

/**
 * A client's stored-format batch: checked, never re-encoded. Body producer
 * fields, if given, must match the batch header's.
 */
export function batchFromClient(batch: Uint8Array, producer: Producer, limits: BatchLimits): { batch: Uint8Array; info: BatchInfo } {
  const info = validateBatch(batch, limits)
  if (producer.producerId !== undefined) {
    const same = info.producerId === producer.producerId && info.producerEpoch === producer.producerEpoch && info.baseSequence === producer.baseSequence
    if (!same) {
      throw invalidRequest(
        `producerId/producerEpoch/sequence ${producer.producerId}/${producer.producerEpoch}/${producer.baseSequence} do not match the batch header's ${info.producerId}/${info.producerEpoch}/${info.baseSequence}`,
        'batch',
      )
    }
  }
  return { batch, info }
}

/** The checked batch of a partition produce. */
export function produceBatch(body: ProduceBody, msgpack: boolean, limits: BatchLimits): { batch: Uint8Array; info: BatchInfo } {
  const producer = producerOf(body)
  const built = body.batch === undefined ? batchFromRecords(recordInputs(body, msgpack, limits), producer, limits) : clientBatch(body.batch, msgpack, producer, limits)
  // The token is checked by the broker (it holds the secret); a token for a batch without a producer id is a mistake, said here.
  if (body.producerToken !== undefined && built.info.producerId < 0) {
    throw invalidRequest('producerToken goes with a producer id (producerId, producerEpoch, sequence, or a batch header that has them)', 'producerToken')
  }
  return built
}

function clientBatch(batch: Uint8Array, msgpack: boolean, producer: Producer, limits: BatchLimits): { batch: Uint8Array; info: BatchInfo } {
  if (!msgpack) throw invalidRequest('batch is only accepted in msgpack bodies', 'batch')
  return batchFromClient(batch, producer, limits)
}

/** The records of a topic produce that go to one partition, with their places in the request. */
export interface PartitionPart {
  readonly partition: number
  readonly records: RecordInput[]
  /** Index in the request's `records` of each record of the part, in order (what a partial failure names). */
  readonly indexes: number[]
}

/**
 * Splits the records of a topic produce by partition: murmur2 of the key as
 * Kafka's default partitioner; records without a key round-robin, one
 * partition per record. Returns the parts in partition order, each in record order.
 */
export function routeRecords(records: readonly RecordInput[], partitionCount: number, roundRobin: RoundRobinPartitioner): PartitionPart[] {
  const byPartition = new Map<number, PartitionPart>()
  records.forEach((r, index) => {
    const partition = r.key ? partitionForKey(r.key, partitionCount) : roundRobin.next(partitionCount)
    let part = byPartition.get(partition)
    if (part === undefined) byPartition.set(partition, (part = { partition, records: [], indexes: [] }))
    part.records.push(r)
    part.indexes.push(index)
  })
  return [...byPartition.values()].sort((a, b) => a.partition - b.partition)
}

/**
 * Records of stored batches from `offset` on, at most `recordsMax`. Batches
 * are checked end to end by `decodeBatch`. `nextOffset` is the offset after
 * the last record returned, or `nextOffsetStored` when every record was.
 */
export function recordsFrom(options: {
  batches: readonly Uint8Array[]
  offset: number
  recordsMax: number
  nextOffsetStored: number
}): { records: DecodedRecord[]; nextOffset: number } {
  const records: DecodedRecord[] = []
  for (const bytes of options.batches) {
    for (const r of decodeStored(bytes)) {
      if (r.offset < options.offset) continue
      if (records.length === options.recordsMax) return { records, nextOffset: r.offset }
      records.push(r)
    }
  }
  return { records, nextOffset: Math.max(options.nextOffsetStored, options.offset) }
}

/** A stored batch failing its checks is the broker's problem, not the client's: STORAGE_CORRUPT, not INVALID_REQUEST. */
function decodeStored(bytes: Uint8Array): DecodedRecord[] {
  try {
    return decodeBatch(bytes).records
  } catch (cause) {
    throw new RillError(ErrorCode.STORAGE_CORRUPT, `a stored batch failed its checks: ${(cause as Error).message}`, { cause })
  }
}

export function recordsToMsgpack(records: readonly DecodedRecord[]): MsgpackRecordOut[] {
  return records.map((r) => ({
    offset: r.offset,
    timestamp: r.timestampMs,
    key: r.key,
    value: r.value,
    headers: r.headers.map((h) => ({ key: h.key, value: h.value })),
  }))
}

export function recordsToJsonOut(records: readonly DecodedRecord[], encoding: RecordEncoding): JsonRecordOut[] {
  return recordsToJson(records, encoding)
}

/** Stored batches back to back, as one byte string (the msgpack `batches` answer). */
export function concatBatches(batches: readonly Uint8Array[]): Uint8Array {
  let total = 0
  for (const b of batches) total += b.length
  const out = new Uint8Array(total)
  let at = 0
  for (const b of batches) {
    out.set(b, at)
    at += b.length
  }
  return out
}
