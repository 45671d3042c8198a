/**
 * The record batch: the unit of storage, replication and fetch (DESIGN.md
 * decisions 3 and 4). The producer SDK (or the broker's JSON edge) builds it
 * once; the leader checks it with `validateBatch` (sizes, count, a walk over
 * the record lengths, checksum — no per-record allocation) and stamps its
 * base offset in place with `stampBaseOffset`; the same bytes then go to
 * disk, to followers and to consumers, which `decodeBatch` them.
 *
 * Modelled on Kafka's RecordBatch v2, simplified: little-endian fixed
 * header, CRC32C over everything after the crc field (so the leader's base
 * offset stamp does not invalidate it), no compression, no partition leader
 * epoch, no per-record length prefix, offsets dense (offsetDelta = index).
 * docs/record-batch.md documents it byte by byte with an example.
 *
 * ```
 *  0 ┌──────────────────────┐
 *    │ baseOffset      u64  │  stamped by the leader; NOT covered by crc
 *  8 │ batchLength     u32  │  whole batch, header included
 * 12 │ crc             u32  │  CRC32C of bytes [16, batchLength)
 * 16 ├──────────────────────┤ ┐
 *    │ magic u8, attrs u8   │ │
 * 18 │ producerEpoch   i16  │ │
 * 20 │ recordCount     u32  │ │ covered by crc
 * 24 │ firstTimestampMs u64 │ │
 * 32 │ maxTimestampMs  u64  │ │
 * 40 │ producerId      u64  │ │  (-1: all ones)
 * 48 │ baseSequence    i32  │ │
 * 52 ├──────────────────────┤ │
 *    │ records...           │ │
 *    └──────────────────────┘ ┘
 * record: attributes u8 | timestampDelta varlong | offsetDelta varint |
 *         keyLength varint (-1 = null) | key | valueLength varint | value |
 *         headerCount varint | (keyLength varint | key utf-8 | valueLength varint | value)*
 * ```
 * Varints are zigzag-encoded, as Kafka's.
 */
import { ErrorCode, RillError, assert, crc32c, systemRuntime } from '../base/index.ts'
import {
  ByteReader,
  decodeUtf8,
  isValidUtf8,
  isWellFormed,
  readU64,
  utf8Length,
  varintBytes,
  varlongBytes,
  writeU64,
  writeUtf8,
  writeVarint,
  writeVarlong,
} from './bytes.ts'

/** Format version in byte 16. Bumped when the layout changes. */
export const batchMagic = 1
/** Size of the fixed header; records start here. */
export const batchHeaderBytes = 52
/** First byte covered by the crc (everything after the crc field). */
export const batchCrcStart = 16

/** Byte positions of the header fields. */
export const batchField = {
  baseOffset: 0,
  batchLength: 8,
  crc: 12,
  magic: 16,
  attributes: 17,
  producerEpoch: 18,
  recordCount: 20,
  firstTimestampMs: 24,
  maxTimestampMs: 32,
  producerId: 40,
  baseSequence: 48,
} as const

/** Smallest possible record: six one-byte fields (attributes, two deltas, key/value lengths, header count). */
const recordBytesMin = 6
/** Smallest possible header entry: two one-byte lengths. */
const headerEntryBytesMin = 2
/** Largest length a zigzag varint (int32) can carry. */
const varintLengthMax = 0x7fffffff
/** Largest batch the u32 length field can describe. */
const batchBytesLimit = 0xffffffff
/** Range of timestamp - firstTimestamp: the zigzag varlong of the delta stays within 2^53 - 1. */
const timestampDeltaMaxMs = 2 ** 52 - 1
const timestampDeltaMinMs = -(2 ** 52)
const producerEpochMax = 0x7fff
const sequenceMax = 0x7fffffff

/** One record header. Keys are strings (UTF-8 in the batch), values bytes; order and duplicates are kept, as Kafka's. */
export interface RecordHeader {
  readonly key: string
  readonly value: Uint8Array
}

/** A record to encode. */
export interface RecordInput {
  /** null or absent: no key (the record is partitioned round-robin/sticky). */
  readonly key?: Uint8Array | null
  readonly value: Uint8Array
  readonly headers?: readonly RecordHeader[]
  /** Creation time in ms since the epoch; defaults to the batch's `timestampMs`. */
  readonly timestampMs?: number
}

/** A record read back from a batch. `key`, `value` and header values are views into the batch bytes (no copy). */
export interface DecodedRecord {
  readonly offset: number
  readonly timestampMs: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array
  readonly headers: readonly RecordHeader[]
}

/** The fixed header's fields. Producer fields are -1 for a non-idempotent batch. */
export interface BatchHeader {
  /** Offset of the first record; 0 until the leader stamps it. */
  readonly baseOffset: number
  /** Whole batch in bytes, header included. */
  readonly batchBytes: number
  /** Stored CRC32C of bytes [16, batchBytes). */
  readonly crc: number
  readonly magic: number
  readonly attributes: number
  readonly recordCount: number
  /** Timestamp of the first record (the base of the deltas). */
  readonly firstTimestampMs: number
  /** Largest record timestamp in the batch. */
  readonly maxTimestampMs: number
  readonly producerId: number
  readonly producerEpoch: number
  /** Sequence of the first record, per producer and partition (API.md); the last is baseSequence + recordCount - 1. */
  readonly baseSequence: number
}

/** A header that `validateBatch` checked, with the records behind it. */
export type BatchInfo = BatchHeader

/** Bounds `validateBatch` enforces; exceeding one is TOO_LARGE (DESIGN.md decision 12). */
export interface BatchLimits {
  /** Whole batch, header included. */
  readonly batchBytesMax: number
  readonly recordsMax: number
  readonly keyBytesMax: number
  readonly valueBytesMax: number
  /** Headers per record. */
  readonly headersMax: number
  readonly headerKeyBytesMax: number
  readonly headerValueBytesMax: number
}

/** The broker's defaults (config may lower or raise them). */
export const defaultBatchLimits: BatchLimits = {
  batchBytesMax: 8 * 1024 * 1024,
  recordsMax: 100_000,
  keyBytesMax: 64 * 1024,
  valueBytesMax: 8 * 1024 * 1024,
  headersMax: 64,
  headerKeyBytesMax: 1024,
  headerValueBytesMax: 64 * 1024,
}

/** Only the format's own bounds: for reading batches that a broker already accepted. */
export const formatBatchLimits: BatchLimits = {
  batchBytesMax: batchBytesLimit,
  recordsMax: batchBytesLimit,
  keyBytesMax: varintLengthMax,
  valueBytesMax: varintLengthMax,
  headersMax: varintLengthMax,
  headerKeyBytesMax: varintLengthMax,
  headerValueBytesMax: varintLengthMax,
}

/** Options of `encodeBatch`. Producer fields are all given (idempotent) or all absent. */
export interface EncodeBatchOptions {
  readonly records: readonly RecordInput[]
  readonly producerId?: number
  readonly producerEpoch?: number
  /** Sequence of the first record of this batch (API.md). */
  readonly baseSequence?: number
  /** Default record timestamp; defaults to the wall clock now. */
  readonly timestampMs?: number
}

/** A batch decoded: its header and its records with their offsets. */
export interface DecodedBatch {
  readonly info: BatchInfo
  readonly records: DecodedRecord[]
}

// ---- errors ----------------------------------------------------------------

function invalid(message: string): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, `record batch: ${message}`)
}

function tooLarge(what: string, actual: number, limit: number): RillError {
  return new RillError(ErrorCode.TOO_LARGE, `record batch: ${what} is ${actual}, above the limit of ${limit}`, {
    details: { limit, actual },
  })
}

function invalidRecord(index: number, message: string): RillError {
  return invalid(`record ${index}: ${message}`)
}

function isUint8Array(x: unknown): x is Uint8Array {
  return x instanceof Uint8Array
}

function isSafeNonNegative(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

// ---- encode ----------------------------------------------------------------

interface ProducerFields {
  producerId: number
  producerEpoch: number
  baseSequence: number
}

function producerFields(options: EncodeBatchOptions): ProducerFields {
  const { producerId, producerEpoch, baseSequence } = options
  if (producerId === undefined && producerEpoch === undefined && baseSequence === undefined) {
    return { producerId: -1, producerEpoch: -1, baseSequence: -1 }
  }
  if (!isSafeNonNegative(producerId)) throw invalid(`producerId must be an integer in [0, 2^53), got ${String(producerId)}`)
  if (!isSafeNonNegative(producerEpoch) || producerEpoch > producerEpochMax) {
    throw invalid(`producerEpoch must be an integer in [0, ${producerEpochMax}], got ${String(producerEpoch)}`)
  }
  if (!isSafeNonNegative(baseSequence) || baseSequence > sequenceMax) {
    throw invalid(`baseSequence must be an integer in [0, ${sequenceMax}], got ${String(baseSequence)}`)
  }
  return { producerId, producerEpoch, baseSequence }
}

/** Checks one record input and returns its encoded size. */
function recordSize(record: RecordInput, index: number, firstTimestampMs: number, timestampMs: number): number {
  if (record === null || typeof record !== 'object') throw invalidRecord(index, 'must be an object')
  const { key, value, headers } = record
  if (!isUint8Array(value)) throw invalidRecord(index, 'value must be a Uint8Array')
  if (key !== undefined && key !== null && !isUint8Array(key)) throw invalidRecord(index, 'key must be a Uint8Array, null or absent')
  const keyBytes = key ? key.length : 0
  if (keyBytes > varintLengthMax || value.length > varintLengthMax) throw invalidRecord(index, 'key or value longer than 2^31 - 1 bytes')
  let size = 1 + varlongBytes(timestampMs - firstTimestampMs) + varintBytes(index)
  size += varintBytes(key ? keyBytes : -1) + keyBytes + varintBytes(value.length) + value.length
  const headerCount = headers === undefined ? 0 : headers.length
  if (headers !== undefined && !Array.isArray(headers)) throw invalidRecord(index, 'headers must be an array')
  size += varintBytes(headerCount)
  for (let h = 0; h < headerCount; h++) {
    const header = headers![h]!
    if (header === null || typeof header !== 'object' || typeof header.key !== 'string' || !isUint8Array(header.value)) {
      throw invalidRecord(index, `header ${h} must be { key: string, value: Uint8Array }`)
    }
    if (!isWellFormed(header.key)) throw invalidRecord(index, `header ${h} key has a lone surrogate (not valid UTF-16)`)
    const keyLength = utf8Length(header.key)
    if (keyLength > varintLengthMax || header.value.length > varintLengthMax) throw invalidRecord(index, `header ${h} too long`)
    size += varintBytes(keyLength) + keyLength + varintBytes(header.value.length) + header.value.length
  }
  return size
}

function recordTimestamp(record: RecordInput, index: number, defaultMs: number, firstMs: number): number {
  const ts = record.timestampMs ?? defaultMs
  if (!isSafeNonNegative(ts)) throw invalidRecord(index, `timestampMs must be an integer in [0, 2^53), got ${String(ts)}`)
  const deltaMs = ts - firstMs
  if (deltaMs > timestampDeltaMaxMs || deltaMs < timestampDeltaMinMs) throw invalidRecord(index, 'timestamp more than 2^52 ms away from the first record')
  return ts
}

function writeRecord(out: Uint8Array, at: number, record: RecordInput, index: number, deltaMs: number): number {
  out[at++] = 0
  at = writeVarlong(out, at, deltaMs)
  at = writeVarint(out, at, index)
  const key = record.key
  if (key) {
    at = writeVarint(out, at, key.length)
    out.set(key, at)
    at += key.length
  } else {
    at = writeVarint(out, at, -1)
  }
  const value = record.value
  at = writeVarint(out, at, value.length)
  out.set(value, at)
  at += value.length
  const headers = record.headers
  const headerCount = headers === undefined ? 0 : headers.length
  at = writeVarint(out, at, headerCount)
  for (let h = 0; h < headerCount; h++) {
    const header = headers![h]!
    at = writeVarint(out, at, utf8Length(header.key))
    at = writeUtf8(out, at, header.key)
    at = writeVarint(out, at, header.value.length)
    out.set(header.value, at)
    at += header.value.length
  }
  return at
}

/**
 * Builds a batch in the stored format with baseOffset 0 (the leader stamps
 * it). Throws INVALID_REQUEST on malformed input (no records, a value that
 * is not bytes, inconsistent producer fields, a bad timestamp).
 */
export function encodeBatch(options: EncodeBatchOptions): Uint8Array {
  const records = options.records
  if (!Array.isArray(records) || records.length === 0) throw invalid('a batch needs at least one record')
  const producer = producerFields(options)
  const defaultMs = options.timestampMs ?? systemRuntime.wallMs()
  if (!isSafeNonNegative(defaultMs)) throw invalid(`timestampMs must be an integer in [0, 2^53), got ${String(defaultMs)}`)
  const first = records[0]!
  const firstMs = recordTimestamp(first ?? ({} as RecordInput), 0, defaultMs, defaultMs)
  let total = batchHeaderBytes
  let maxMs = firstMs
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    if (record === null || typeof record !== 'object') throw invalidRecord(i, 'must be an object')
    const ts = recordTimestamp(record, i, defaultMs, firstMs)
    if (ts > maxMs) maxMs = ts
    total += recordSize(record, i, firstMs, ts)
  }
  if (total > batchBytesLimit) throw invalid(`batch of ${total} bytes does not fit the u32 length field`)
  const out = new Uint8Array(total)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  view.setUint32(batchField.batchLength, total, true)
  out[batchField.magic] = batchMagic
  view.setInt16(batchField.producerEpoch, producer.producerEpoch, true)
  view.setUint32(batchField.recordCount, records.length, true)
  writeU64(view, batchField.firstTimestampMs, firstMs)
  writeU64(view, batchField.maxTimestampMs, maxMs)
  writeU64(view, batchField.producerId, producer.producerId)
  view.setInt32(batchField.baseSequence, producer.baseSequence, true)
  let at = batchHeaderBytes
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!
    at = writeRecord(out, at, record, i, (record.timestampMs ?? defaultMs) - firstMs)
  }
  assert(at === total, () => `encodeBatch: wrote ${at} bytes, sized ${total}`)
  view.setUint32(batchField.crc, crc32c(0, out.subarray(batchCrcStart)), true)
  return out
}

// ---- header ----------------------------------------------------------------

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function checkProducerFields(producerId: number, producerEpoch: number, baseSequence: number): void {
  if (producerId === -1 && producerEpoch === -1 && baseSequence === -1) return
  if (producerId < 0 || producerEpoch < 0 || baseSequence < 0) {
    throw invalid(`producerId ${producerId}, producerEpoch ${producerEpoch}, baseSequence ${baseSequence}: all -1 or all non-negative`)
  }
}

/**
 * Reads and checks the fixed header of the batch at the start of `bytes`
 * (magic, attributes, lengths, ranges; not the checksum, not the records).
 * `bytes` may extend past the batch. Throws INVALID_REQUEST.
 */
export function readBatchHeader(bytes: Uint8Array): BatchHeader {
  if (!isUint8Array(bytes)) throw invalid('not a byte array')
  if (bytes.length < batchHeaderBytes) throw invalid(`${bytes.length} bytes is shorter than the ${batchHeaderBytes}-byte header`)
  const view = viewOf(bytes)
  const magic = bytes[batchField.magic]!
  if (magic !== batchMagic) throw invalid(`unsupported magic ${magic} (this build reads ${batchMagic})`)
  const attributes = bytes[batchField.attributes]!
  if (attributes !== 0) throw invalid(`attributes 0x${attributes.toString(16)}: no attribute bits are defined (compression is not supported)`)
  const batchBytes = view.getUint32(batchField.batchLength, true)
  if (batchBytes < batchHeaderBytes) throw invalid(`batch length ${batchBytes} is shorter than the header`)
  if (batchBytes > bytes.length) throw invalid(`batch length ${batchBytes} exceeds the ${bytes.length} bytes given`)
  const baseOffset = readU64(view, batchField.baseOffset)
  if (!(baseOffset >= 0)) throw invalid('baseOffset is outside [0, 2^53)')
  const firstTimestampMs = readU64(view, batchField.firstTimestampMs)
  const maxTimestampMs = readU64(view, batchField.maxTimestampMs)
  if (!(firstTimestampMs >= 0) || !(maxTimestampMs >= firstTimestampMs)) {
    throw invalid('timestamps are outside [0, 2^53) or maxTimestampMs < firstTimestampMs')
  }
  const producerId = readU64(view, batchField.producerId)
  if (Number.isNaN(producerId)) throw invalid('producerId is outside [-1, 2^53)')
  const producerEpoch = view.getInt16(batchField.producerEpoch, true)
  const baseSequence = view.getInt32(batchField.baseSequence, true)
  checkProducerFields(producerId, producerEpoch, baseSequence)
  const recordCount = view.getUint32(batchField.recordCount, true)
  if (baseOffset + recordCount > Number.MAX_SAFE_INTEGER) throw invalid('baseOffset + recordCount is above 2^53 - 1')
  const crc = view.getUint32(batchField.crc, true)
  return {
    baseOffset,
    batchBytes,
    crc,
    magic,
    attributes,
    recordCount,
    firstTimestampMs,
    maxTimestampMs,
    producerId,
    producerEpoch,
    baseSequence,
  }
}

// ---- validate --------------------------------------------------------------

/** Walks the length fields of `count` records; returns the largest record timestamp. */
function walkRecords(bytes: Uint8Array, header: BatchHeader, limits: BatchLimits): number {
  const end = bytes.length
  const r = new ByteReader(bytes, batchHeaderBytes, end)
  const count = header.recordCount
  const firstMs = header.firstTimestampMs
  let maxMs = firstMs
  for (let i = 0; i < count; i++) {
    if (r.pos >= end) throw invalidRecord(i, `truncated: the batch ends after ${i} of ${count} records`)
    if (bytes[r.pos] !== 0) throw invalidRecord(i, `attributes 0x${bytes[r.pos]!.toString(16)}: no bits are defined`)
    r.pos++
    const deltaMs = r.varlong()
    if (Number.isNaN(deltaMs)) throw invalidRecord(i, 'malformed timestampDelta varint')
    if (i === 0 && deltaMs !== 0) throw invalidRecord(i, 'the first record\'s timestampDelta must be 0')
    const ts = firstMs + deltaMs
    if (ts < 0 || ts > Number.MAX_SAFE_INTEGER) throw invalidRecord(i, 'timestamp outside [0, 2^53)')
    if (ts > maxMs) maxMs = ts
    const offsetDelta = r.varint()
    if (offsetDelta !== i) throw invalidRecord(i, Number.isNaN(offsetDelta) ? 'malformed offsetDelta varint' : `offsetDelta ${offsetDelta}, expected ${i} (offsets are dense)`)
    const keyBytes = r.varint()
    if (!(keyBytes >= -1)) throw invalidRecord(i, Number.isNaN(keyBytes) ? 'malformed key length varint' : `key length ${keyBytes}`)
    if (keyBytes > limits.keyBytesMax) throw tooLarge(`record ${i} key length`, keyBytes, limits.keyBytesMax)
    if (keyBytes > end - r.pos) throw invalidRecord(i, `key length ${keyBytes} runs past the end of the batch`)
    if (keyBytes > 0) r.pos += keyBytes
    const valueBytes = r.varint()
    if (!(valueBytes >= 0)) throw invalidRecord(i, Number.isNaN(valueBytes) ? 'malformed value length varint' : `value length ${valueBytes} (values are not nullable)`)
    if (valueBytes > limits.valueBytesMax) throw tooLarge(`record ${i} value length`, valueBytes, limits.valueBytesMax)
    if (valueBytes > end - r.pos) throw invalidRecord(i, `value length ${valueBytes} runs past the end of the batch`)
    r.pos += valueBytes
    const headerCount = r.varint()
    if (!(headerCount >= 0)) throw invalidRecord(i, Number.isNaN(headerCount) ? 'malformed header count varint' : `header count ${headerCount}`)
    if (headerCount > limits.headersMax) throw tooLarge(`record ${i} header count`, headerCount, limits.headersMax)
    if (headerCount > (end - r.pos) / headerEntryBytesMin) throw invalidRecord(i, `header count ${headerCount} cannot fit in the rest of the batch`)
    if (headerCount > 0) walkHeaders(r, i, headerCount, limits)
  }
  if (r.pos !== end) throw invalid(`${end - r.pos} bytes after the last record`)
  return maxMs
}

function walkHeaders(r: ByteReader, index: number, headerCount: number, limits: BatchLimits): void {
  const end = r.end
  for (let h = 0; h < headerCount; h++) {
    const keyBytes = r.varint()
    if (!(keyBytes >= 0)) throw invalidRecord(index, `header ${h}: ${Number.isNaN(keyBytes) ? 'malformed key length varint' : `key length ${keyBytes}`}`)
    if (keyBytes > limits.headerKeyBytesMax) throw tooLarge(`record ${index} header ${h} key length`, keyBytes, limits.headerKeyBytesMax)
    if (keyBytes > end - r.pos) throw invalidRecord(index, `header ${h}: key length ${keyBytes} runs past the end of the batch`)
    if (!isValidUtf8(r.bytes, r.pos, r.pos + keyBytes)) throw invalidRecord(index, `header ${h}: key is not valid UTF-8`)
    r.pos += keyBytes
    const valueBytes = r.varint()
    if (!(valueBytes >= 0)) throw invalidRecord(index, `header ${h}: ${Number.isNaN(valueBytes) ? 'malformed value length varint' : `value length ${valueBytes}`}`)
    if (valueBytes > limits.headerValueBytesMax) throw tooLarge(`record ${index} header ${h} value length`, valueBytes, limits.headerValueBytesMax)
    if (valueBytes > end - r.pos) throw invalidRecord(index, `header ${h}: value length ${valueBytes} runs past the end of the batch`)
    r.pos += valueBytes
  }
}

/**
 * Checks a whole batch as the broker does on every produce: the header,
 * `bytes.length === batchLength`, the limits, the checksum, and a walk over
 * every record's lengths (bounds, dense offset deltas, timestamps within the
 * header's range, UTF-8 header keys, nothing left over) without decoding or
 * allocating per record. Returns the header. Throws INVALID_REQUEST, or
 * TOO_LARGE when a limit is exceeded; never anything else.
 */
export function validateBatch(bytes: Uint8Array, limits: BatchLimits = defaultBatchLimits): BatchInfo {
  if (!isUint8Array(bytes)) throw invalid('not a byte array')
  if (bytes.length > limits.batchBytesMax) throw tooLarge('batch size', bytes.length, limits.batchBytesMax)
  const header = readBatchHeader(bytes)
  if (header.batchBytes !== bytes.length) throw invalid(`batch length ${header.batchBytes} does not match the ${bytes.length} bytes given`)
  if (header.recordCount === 0) throw invalid('a batch needs at least one record')
  if (header.recordCount > limits.recordsMax) throw tooLarge('record count', header.recordCount, limits.recordsMax)
  if (header.recordCount > (bytes.length - batchHeaderBytes) / recordBytesMin) {
    throw invalid(`record count ${header.recordCount} cannot fit in ${bytes.length - batchHeaderBytes} bytes of records`)
  }
  const crc = crc32c(0, bytes.subarray(batchCrcStart))
  if (crc !== header.crc) {
    throw invalid(`checksum mismatch: stored 0x${header.crc.toString(16).padStart(8, '0')}, computed 0x${crc.toString(16).padStart(8, '0')}`)
  }
  const maxMs = walkRecords(bytes, header, limits)
  if (maxMs !== header.maxTimestampMs) throw invalid(`maxTimestampMs ${header.maxTimestampMs} but the largest record timestamp is ${maxMs}`)
  return header
}

// ---- stamp -----------------------------------------------------------------

/**
 * Writes `baseOffset` into the header of a validated batch, in place. The
 * field is outside the checksum, so the batch stays valid. `baseOffset` is
 * the leader's own number: a bad one is a programmer error (assertion).
 */
export function stampBaseOffset(bytes: Uint8Array, baseOffset: number): void {
  if (!isUint8Array(bytes) || bytes.length < batchHeaderBytes || bytes[batchField.magic] !== batchMagic) {
    throw invalid('stampBaseOffset: not a record batch')
  }
  const view = viewOf(bytes)
  const recordCount = view.getUint32(batchField.recordCount, true)
  assert(
    Number.isSafeInteger(baseOffset) && baseOffset >= 0 && baseOffset + recordCount <= Number.MAX_SAFE_INTEGER,
    () => `stampBaseOffset: baseOffset ${baseOffset} with ${recordCount} records leaves [0, 2^53)`,
  )
  writeU64(view, batchField.baseOffset, baseOffset)
}

// ---- decode ----------------------------------------------------------------

/**
 * Validates (including the checksum, DESIGN.md decision 3: consumers check
 * end to end) and decodes a batch. Records carry absolute offsets
 * (baseOffset + index). Keys, values and header values are views into
 * `bytes`. Default limits are the format's own, since the broker already
 * applied its limits when it accepted the batch.
 */
export function decodeBatch(bytes: Uint8Array, options: { limits?: BatchLimits } = {}): DecodedBatch {
  const info = validateBatch(bytes, options.limits ?? formatBatchLimits)
  const records: DecodedRecord[] = new Array<DecodedRecord>(info.recordCount)
  const r = new ByteReader(bytes, batchHeaderBytes, bytes.length)
  for (let i = 0; i < info.recordCount; i++) {
    r.pos++ // attributes
    const timestampMs = info.firstTimestampMs + r.varlong()
    r.varint() // offsetDelta, checked equal to i
    const keyBytes = r.varint()
    let key: Uint8Array | null = null
    if (keyBytes >= 0) {
      key = bytes.subarray(r.pos, r.pos + keyBytes)
      r.pos += keyBytes
    }
    const valueBytes = r.varint()
    const value = bytes.subarray(r.pos, r.pos + valueBytes)
    r.pos += valueBytes
    const headerCount = r.varint()
    const headers: RecordHeader[] = []
    for (let h = 0; h < headerCount; h++) {
      const hk = r.varint()
      const headerKey = decodeUtf8(bytes.subarray(r.pos, r.pos + hk))
      r.pos += hk
      const hv = r.varint()
      headers.push({ key: headerKey, value: bytes.subarray(r.pos, r.pos + hv) })
      r.pos += hv
    }
    records[i] = { offset: info.baseOffset + i, timestampMs, key, value, headers }
  }
  return { info, records }
}

/**
 * Splits a fetch answer that carries several stored batches back to back
 * into one view per batch (no copy). Checks the framing only (header size,
 * magic, each batch length within what is left); `decodeBatch` checks the
 * rest. Throws INVALID_REQUEST on a torn or garbled sequence.
 */
export function splitConcatenatedBatches(bytes: Uint8Array): Uint8Array[] {
  if (!isUint8Array(bytes)) throw invalid('not a byte array')
  const view = viewOf(bytes)
  const batches: Uint8Array[] = []
  let at = 0
  while (at < bytes.length) {
    const left = bytes.length - at
    const where = `batch ${batches.length} at byte ${at}`
    if (left < batchHeaderBytes) throw invalid(`${where}: ${left} bytes left, shorter than a header`)
    const magic = bytes[at + batchField.magic]!
    if (magic !== batchMagic) throw invalid(`${where}: unsupported magic ${magic}`)
    const batchBytes = view.getUint32(at + batchField.batchLength, true)
    if (batchBytes < batchHeaderBytes || batchBytes > left) throw invalid(`${where}: batch length ${batchBytes} with ${left} bytes left`)
    batches.push(bytes.subarray(at, at + batchBytes))
    at += batchBytes
  }
  return batches
}

/** `splitConcatenatedBatches` then `decodeBatch` on each, checking that offsets run in order. */
export function decodeBatches(bytes: Uint8Array, options: { limits?: BatchLimits } = {}): DecodedBatch[] {
  const batches = splitConcatenatedBatches(bytes).map((b) => decodeBatch(b, options))
  for (let i = 1; i < batches.length; i++) {
    const prev = batches[i - 1]!.info
    if (batches[i]!.info.baseOffset < prev.baseOffset + prev.recordCount) {
      throw invalid(`batch ${i} starts at offset ${batches[i]!.info.baseOffset}, before the end of batch ${i - 1}`)
    }
  }
  return batches
}
