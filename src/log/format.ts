/**
 * On-disk formats of src/log, in one place so that a reader can check them
 * against each other. All integers little-endian; 64-bit fields hold
 * non-negative safe integers (< 2^53) as lo/hi u32 pairs.
 *
 * Segment file `<baseIndex:20>.seg`:
 *
 *   +----------------- file header (32 B) ------------------+
 *   | magic "RILL-SEG" | u16 version | u16 headerBytes | u32 0 |
 *   | u64 baseIndex | u32 0 | u32 crc32c(header[0..28))     |
 *   +------------------ entry (56 B + body) ----------------+
 *   | u32 crc32c(entry[4..end)) | u32 bodyBytes | u64 index  |
 *   | u64 term | u64 baseOffset | u64 timestampMinMs         |
 *   | u64 timestampMaxMs | u32 recordCount | u8 type | 3 x 0 |
 *   | body (bodyBytes)                                       |
 *   +------------------------- ... --------------------------+
 *
 * The entry checksum covers header and body, so a torn write anywhere in the
 * entry, a zeroed page or a flipped bit fails it. Recovery also checks that
 * indexes are consecutive and terms do not go down, which catches whole,
 * well-checksummed entries from before a truncation reappearing after a
 * power loss.
 *
 * Index file `<baseIndex:20>.idx` (sparse, rebuilt when missing or stale):
 *   magic "RILL-IDX" | u16 version | u16 0 | u32 count | f64 segmentBytes |
 *   u32 crc32c(body) | u32 crc32c(header[0..28)) | body:
 *   f64 lastIndex | f64 lastTerm | f64 offsetEnd | f64 timestampMaxMs |
 *   count x (f64 index, f64 offsetNext, f64 position, f64 term)
 *
 * WAL file `<seq:20>.wal` (shared by the sync-mode logs of one store):
 *   file header as a segment's with magic "RILL-WAL" and u64 seq, then records:
 *   | u32 crc32c(record header[4..24+nameBytes)) | u32 payloadBytes | u8 kind |
 *   | u8 0 | u16 nameBytes | u32 entryCount | u64 index | name | payload |
 *   kind 1 = append (payload: entries as in a segment; index: the first one's),
 *   kind 2 = truncate after `index` (no payload),
 *   kind 3 = flushed (WAL version 2): the log's segments are fsynced up to a
 *            mark, written in the cycle whose fsyncs include that one
 *            (wal.ts); index: the log's last index then; payload (40 B):
 *            | u64 segmentBase | u64 bytes | u64 cycleEnd | u64 lastTerm |
 *            | u32 crc32c(payload[0..32)) | u32 0 |
 *            cycleEnd: the WAL offset where that cycle's writes end;
 *            lastTerm: the term of the last index.
 *   Payload entries carry their own checksums, so the record checksum covers
 *   only the record header and no byte is checksummed twice.
 *
 * WAL files are version 2 (version 1 files, without kind 3, are still read);
 * segments and index files are version 1.
 */
import { ErrorCode, RillError, assert } from '../base/index.ts'
import { crc32c } from '../base/index.ts'

/** The only format version this build reads and writes. */
export const formatVersion = 1
/** The WAL's format version: 2 added the `flushed` record; an older build refuses such a file by its header. */
export const walFormatVersion = 2
/** WAL versions this build reads. */
export const walFormatVersionsRead: readonly number[] = [1, 2]
/** Bytes of every file header (segment, WAL, index). */
export const fileHeaderBytes = 32
/** Bytes of an entry header. */
export const entryHeaderBytes = 56
/** Bytes of a WAL record header before the log name. */
export const walRecordHeaderBytes = 24
/** Largest entry body: a record batch bigger than this is refused (a producer limit is far below). */
export const entryBodyBytesMax = 16 * 1024 * 1024
/** Longest log name in bytes (it is a directory name and goes into WAL records). */
export const logNameBytesMax = 255

export const segmentMagic = 'RILL-SEG'
export const walMagic = 'RILL-WAL'
export const indexMagic = 'RILL-IDX'

/** WAL record kinds. */
export const WalRecordKind = { append: 1, truncate: 2, flushed: 3 } as const
export type WalRecordKind = (typeof WalRecordKind)[keyof typeof WalRecordKind]

/** An entry as the caller hands it to `append`. */
export interface EntryToAppend {
  /** Raft log index. */
  readonly index: number
  /** Raft term the entry was proposed in. */
  readonly term: number
  /** Entry type, 0..255, meaning defined by the caller (data, no-op, config change, ...). */
  readonly type: number
  /** The payload: a record batch for data entries. Stored and returned as is. */
  readonly data: Uint8Array
  /** Offset of the first record in `data`; 0 for non-data entries. */
  readonly baseOffset: number
  /** Records in `data`; 0 for non-data entries (they are skipped by offset reads). */
  readonly recordCount: number
  /** Smallest record timestamp (ms since the Unix epoch); 0 for non-data entries. */
  readonly timestampMinMs: number
  /** Largest record timestamp (ms since the Unix epoch); 0 for non-data entries. Used by time retention. */
  readonly timestampMaxMs: number
}

/** An entry as read back. `data` may be a view into a larger read buffer. */
export type LogEntry = EntryToAppend

/** Raft hard state. `vote` 0 means none. */
export interface HardState {
  readonly term: number
  readonly vote: number
  readonly commit: number
}

/** The snapshot a prefix is compacted up to: the last index it covers and its term. */
export interface SnapshotMeta {
  readonly index: number
  readonly term: number
}

/** Header fields of an entry, as parsed. */
export interface EntryHeader {
  crc: number
  bodyBytes: number
  index: number
  term: number
  baseOffset: number
  timestampMinMs: number
  timestampMaxMs: number
  recordCount: number
  type: number
}

function writeU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true)
  view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true)
}

function readU64(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 0x1_0000_0000
}

function isU64(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0
}

/** Checks the caller's fields; a bad entry is a programmer error upstream. */
export function assertEntry(entry: EntryToAppend): void {
  assert(isU64(entry.index) && entry.index > 0, () => `log entry: bad index ${entry.index}`)
  assert(isU64(entry.term), () => `log entry ${entry.index}: bad term ${entry.term}`)
  assert(Number.isInteger(entry.type) && entry.type >= 0 && entry.type <= 255, () => `log entry ${entry.index}: bad type ${entry.type}`)
  assert(isU64(entry.baseOffset), () => `log entry ${entry.index}: bad baseOffset ${entry.baseOffset}`)
  assert(Number.isInteger(entry.recordCount) && entry.recordCount >= 0 && entry.recordCount <= 0xffff_ffff, () => `log entry ${entry.index}: bad recordCount`)
  assert(isU64(entry.timestampMinMs) && isU64(entry.timestampMaxMs), () => `log entry ${entry.index}: bad timestamps`)
  assert(entry.data instanceof Uint8Array, () => `log entry ${entry.index}: data is not a Uint8Array`)
}

/**
 * Encodes one entry's 56-byte header, its checksum covering the header and
 * `entry.data`; the body is then written from `entry.data` itself (writev),
 * so an append copies its payload only into the page cache, never into an
 * intermediate buffer.
 */
export function encodeEntryHeader(entry: EntryToAppend): Buffer {
  if (entry.data.length > entryBodyBytesMax) {
    throw new RillError(ErrorCode.TOO_LARGE, `log entry ${entry.index} is ${entry.data.length} bytes; the limit is ${entryBodyBytesMax}`)
  }
  const out = Buffer.allocUnsafe(entryHeaderBytes)
  const view = new DataView(out.buffer, out.byteOffset, entryHeaderBytes)
  view.setUint32(4, entry.data.length, true)
  writeU64(view, 8, entry.index)
  writeU64(view, 16, entry.term)
  writeU64(view, 24, entry.baseOffset)
  writeU64(view, 32, entry.timestampMinMs)
  writeU64(view, 40, entry.timestampMaxMs)
  view.setUint32(48, entry.recordCount, true)
  view.setUint32(52, entry.type, true) // type in the low byte, three zero bytes
  view.setUint32(0, crc32c(crc32c(0, out.subarray(4)), entry.data), true)
  return out
}

/** Parses an entry header at `at` (caller ensures entryHeaderBytes are there). */
export function decodeEntryHeader(bytes: Uint8Array, at: number): EntryHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, entryHeaderBytes)
  return {
    crc: view.getUint32(0, true),
    bodyBytes: view.getUint32(4, true),
    index: readU64(view, 8),
    term: readU64(view, 16),
    baseOffset: readU64(view, 24),
    timestampMinMs: readU64(view, 32),
    timestampMaxMs: readU64(view, 40),
    recordCount: view.getUint32(48, true),
    type: view.getUint32(52, true),
  }
}

/** True if the entry at `at` (header + body present) checksums. */
export function entryChecksumHolds(bytes: Uint8Array, at: number, header: EntryHeader): boolean {
  if (header.type > 255) return false
  const end = at + entryHeaderBytes + header.bodyBytes
  return crc32c(0, bytes.subarray(at + 4, end)) === header.crc
}

/** Builds the LogEntry for a checked entry; `data` is a view, not a copy. */
export function entryFromHeader(bytes: Uint8Array, at: number, h: EntryHeader): LogEntry {
  const start = at + entryHeaderBytes
  return {
    index: h.index,
    term: h.term,
    type: h.type,
    data: bytes.subarray(start, start + h.bodyBytes),
    baseOffset: h.baseOffset,
    recordCount: h.recordCount,
    timestampMinMs: h.timestampMinMs,
    timestampMaxMs: h.timestampMaxMs,
  }
}

/** Encodes a 32-byte file header. */
export function encodeFileHeader(magic: string, value: number, version = formatVersion): Buffer {
  const out = Buffer.alloc(fileHeaderBytes)
  out.write(magic, 0, 8, 'latin1')
  const view = new DataView(out.buffer, out.byteOffset, fileHeaderBytes)
  view.setUint16(8, version, true)
  view.setUint16(10, fileHeaderBytes, true)
  writeU64(view, 16, value)
  view.setUint32(28, crc32c(0, out.subarray(0, 28)), true)
  return out
}

/**
 * Parses a file header. Every format version keeps magic, version and the
 * header checksum where version 1 has them, so the checks run in this order:
 * a short header, a wrong magic or a failing checksum is STORAGE_CORRUPT (a
 * torn or damaged file); a whole header of another version is
 * STORAGE_UNUSABLE naming the version. Returns the u64 it carries (base
 * index or WAL sequence).
 */
export function decodeFileHeader(bytes: Uint8Array, magic: string, path: string, versions: readonly number[] = [formatVersion]): number {
  if (bytes.length < fileHeaderBytes) {
    throw new RillError(ErrorCode.STORAGE_CORRUPT, `${path}: file header is ${bytes.length} bytes, expected ${fileHeaderBytes}`, { details: { file: path, position: 0 } })
  }
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, fileHeaderBytes)
  const view = new DataView(bytes.buffer, bytes.byteOffset, fileHeaderBytes)
  const seen = buf.toString('latin1', 0, 8)
  if (seen !== magic) {
    throw new RillError(ErrorCode.STORAGE_CORRUPT, `${path}: not a ${magic} file (magic ${JSON.stringify(seen)})`, { details: { file: path, position: 0 } })
  }
  const version = view.getUint16(8, true)
  if (crc32c(0, bytes.subarray(0, 28)) !== view.getUint32(28, true)) {
    throw new RillError(ErrorCode.STORAGE_CORRUPT, `${path}: file header checksum fails (version field ${version})`, { details: { file: path, position: 0 } })
  }
  if (!versions.includes(version)) {
    throw new RillError(
      ErrorCode.STORAGE_UNUSABLE,
      `${path}: unknown format version ${version}; this build reads version ${versions.join(', ')}`,
      { details: { file: path, version, versionSupported: Math.max(...versions) } },
    )
  }
  return readU64(view, 16)
}

/** Encodes a WAL record header + name. */
export function encodeWalRecordHeader(options: {
  kind: WalRecordKind
  name: Buffer
  payloadBytes: number
  entryCount: number
  index: number
}): Buffer {
  const out = Buffer.alloc(walRecordHeaderBytes + options.name.length)
  const view = new DataView(out.buffer, out.byteOffset, walRecordHeaderBytes)
  view.setUint32(4, options.payloadBytes, true)
  view.setUint8(8, options.kind)
  view.setUint16(10, options.name.length, true)
  view.setUint32(12, options.entryCount, true)
  writeU64(view, 16, options.index)
  out.set(options.name, walRecordHeaderBytes)
  view.setUint32(0, crc32c(0, out.subarray(4)), true)
  return out
}

/** A parsed WAL record header. */
export interface WalRecordHeader {
  kind: number
  payloadBytes: number
  entryCount: number
  index: number
  name: string
  headerBytes: number
}

/**
 * Parses the WAL record header at `at`; undefined if it is incomplete or its
 * checksum fails (the caller decides whether that is a torn tail).
 */
export function decodeWalRecordHeader(bytes: Uint8Array, at: number): WalRecordHeader | undefined {
  if (bytes.length - at < walRecordHeaderBytes) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, walRecordHeaderBytes)
  const nameBytes = view.getUint16(10, true)
  const headerBytes = walRecordHeaderBytes + nameBytes
  if (nameBytes > logNameBytesMax || bytes.length - at < headerBytes) return undefined
  if (crc32c(0, bytes.subarray(at + 4, at + headerBytes)) !== view.getUint32(0, true)) return undefined
  return {
    kind: view.getUint8(8),
    payloadBytes: view.getUint32(4, true),
    entryCount: view.getUint32(12, true),
    index: readU64(view, 16),
    name: Buffer.from(bytes.buffer, bytes.byteOffset + at + walRecordHeaderBytes, nameBytes).toString('utf8'),
    headerBytes,
  }
}

/** Payload bytes of a `flushed` WAL record. */
export const walFlushedPayloadBytes = 40

/** What a `flushed` record says: log segments durable up to (segmentBase, bytes), where entry `index` of term `term` ends. */
export interface WalFlushed {
  readonly segmentBase: number
  readonly bytes: number
  readonly index: number
  readonly term: number
  /** WAL offset where the writes of the record's cycle end: later bytes mean that cycle completed. */
  readonly cycleEnd: number
}

/** Encodes a whole `flushed` record of log `name`. */
export function encodeWalFlushedRecord(name: Buffer, f: WalFlushed): Buffer {
  const header = encodeWalRecordHeader({ kind: WalRecordKind.flushed, name, payloadBytes: walFlushedPayloadBytes, entryCount: 0, index: f.index })
  const payload = Buffer.alloc(walFlushedPayloadBytes)
  const view = new DataView(payload.buffer, payload.byteOffset, walFlushedPayloadBytes)
  writeU64(view, 0, f.segmentBase)
  writeU64(view, 8, f.bytes)
  writeU64(view, 16, f.cycleEnd)
  writeU64(view, 24, f.term)
  view.setUint32(32, crc32c(0, payload.subarray(0, 32)), true)
  return Buffer.concat([header, payload])
}

/** Parses a `flushed` record's payload at `at` (its header said `index`); undefined if its checksum fails. */
export function decodeWalFlushedPayload(bytes: Uint8Array, at: number, index: number): WalFlushed | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, walFlushedPayloadBytes)
  if (crc32c(0, bytes.subarray(at, at + 32)) !== view.getUint32(32, true) || view.getUint32(36, true) !== 0) return undefined
  return { segmentBase: readU64(view, 0), bytes: readU64(view, 8), cycleEnd: readU64(view, 16), term: readU64(view, 24), index }
}

/** Per-segment facts stored with its sparse index. */
export interface IndexSummary {
  readonly lastIndex: number
  readonly lastTerm: number
  readonly offsetEnd: number
  readonly timestampMaxMs: number
}

/** Float64 fields of the index summary. */
const indexSummaryFields = 4

/** Encodes a sparse index file: `points` is a flat array of 4-field points. */
export function encodeIndexFile(options: { points: Float64Array; segmentBytes: number; summary: IndexSummary }): Buffer {
  const { points, summary } = options
  const body = new Float64Array(indexSummaryFields + points.length)
  body.set([summary.lastIndex, summary.lastTerm, summary.offsetEnd, summary.timestampMaxMs])
  body.set(points, indexSummaryFields)
  const bodyBytes = Buffer.from(body.buffer)
  const out = Buffer.alloc(fileHeaderBytes + bodyBytes.length)
  out.write(indexMagic, 0, 8, 'latin1')
  const view = new DataView(out.buffer, out.byteOffset, fileHeaderBytes)
  view.setUint16(8, formatVersion, true)
  view.setUint32(12, points.length / 4, true)
  view.setFloat64(16, options.segmentBytes, true)
  out.set(bodyBytes, fileHeaderBytes)
  view.setUint32(24, crc32c(0, bodyBytes), true)
  view.setUint32(28, crc32c(0, out.subarray(0, 28)), true)
  return out
}

/**
 * Parses a sparse index file; undefined if it is damaged, of another version
 * or does not cover exactly `segmentBytes` (stale): the caller rebuilds it.
 */
export function decodeIndexFile(bytes: Uint8Array, segmentBytes: number): { points: Float64Array; summary: IndexSummary } | undefined {
  if (bytes.length < fileHeaderBytes) return undefined
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  const view = new DataView(bytes.buffer, bytes.byteOffset, fileHeaderBytes)
  if (buf.toString('latin1', 0, 8) !== indexMagic || view.getUint16(8, true) !== formatVersion) return undefined
  if (crc32c(0, bytes.subarray(0, 28)) !== view.getUint32(28, true)) return undefined
  const count = view.getUint32(12, true)
  if (view.getFloat64(16, true) !== segmentBytes) return undefined
  if (bytes.length !== fileHeaderBytes + (indexSummaryFields + count * 4) * 8) return undefined
  const body = bytes.subarray(fileHeaderBytes)
  if (crc32c(0, body) !== view.getUint32(24, true)) return undefined
  const all = new Float64Array(indexSummaryFields + count * 4)
  Buffer.from(all.buffer).set(body)
  const summary = { lastIndex: all[0]!, lastTerm: all[1]!, offsetEnd: all[2]!, timestampMaxMs: all[3]! }
  return { points: all.slice(indexSummaryFields), summary }
}
