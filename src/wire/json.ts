/**
 * The JSON edge (API.md): produce bodies from people and curl become
 * `RecordInput`s once, here, and are then encoded into a record batch
 * (DESIGN.md decision 3); fetch answers in JSON are made from decoded
 * records.
 *
 * In JSON, keys, values and header values are UTF-8 strings, or base64 when
 * the request says `"encoding": "base64"`. Header keys are always plain
 * strings. Headers are an array of `{ key, value }` (order and duplicates
 * kept, as Kafka's); on input an object `{ "k": "v" }` is accepted too.
 *
 * Every malformed input is an INVALID_REQUEST naming the field
 * (`records[3].headers[0].value: ...`); a bound exceeded is TOO_LARGE.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import { decodeUtf8, encodeUtf8, fromBase64, isWellFormed, toBase64 } from './bytes.ts'
import { defaultBatchLimits, type BatchLimits, type DecodedRecord, type RecordHeader, type RecordInput } from './record-batch.ts'

/** How keys, values and header values are spelled in JSON bodies. */
export type RecordEncoding = 'utf8' | 'base64'

/** The encodings, for schemas and checks. */
export const recordEncodings: readonly RecordEncoding[] = ['utf8', 'base64']

/** One header in JSON. */
export interface JsonRecordHeader {
  key: string
  value: string
}

/** A record in a JSON produce body. */
export interface JsonRecordIn {
  key?: string | null
  value: string
  headers?: JsonRecordHeader[] | Record<string, string>
  /** Creation time, ms since the epoch; the broker's clock when absent. */
  timestamp?: number
}

/** A record in a JSON fetch answer. */
export interface JsonRecordOut {
  offset: number
  timestamp: number
  key: string | null
  value: string
  headers: JsonRecordHeader[]
}

const recordFields: ReadonlySet<string> = new Set(['key', 'value', 'headers', 'timestamp'])

function invalid(path: string, message: string): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, `${path}: ${message}`, { details: { field: path } })
}

function tooLarge(path: string, actual: number, limit: number): RillError {
  return new RillError(ErrorCode.TOO_LARGE, `${path}: ${actual} bytes, above the limit of ${limit}`, {
    details: { field: path, limit, actual },
  })
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

/** `encoding` from a request: absent means utf8. */
export function parseRecordEncoding(encoding: unknown): RecordEncoding {
  if (encoding === undefined || encoding === 'utf8') return 'utf8'
  if (encoding === 'base64') return 'base64'
  throw invalid('encoding', `must be "utf8" or "base64", got ${JSON.stringify(encoding) ?? String(encoding)}`)
}

function bytesFromJson(x: unknown, path: string, encoding: RecordEncoding, bytesMax: number): Uint8Array {
  if (typeof x !== 'string') throw invalid(path, `must be a string, got ${x === null ? 'null' : typeof x}`)
  let bytes: Uint8Array
  if (encoding === 'base64') {
    const decoded = fromBase64(x)
    if (decoded === null) throw invalid(path, 'is not valid base64 (standard alphabet, no whitespace)')
    bytes = decoded
  } else {
    if (!isWellFormed(x)) throw invalid(path, 'has a lone surrogate (not encodable as UTF-8)')
    bytes = encodeUtf8(x)
  }
  if (bytes.length > bytesMax) throw tooLarge(path, bytes.length, bytesMax)
  return bytes
}

function headerKeyFromJson(x: unknown, path: string, limits: BatchLimits): string {
  if (typeof x !== 'string') throw invalid(path, 'must be a string')
  if (!isWellFormed(x)) throw invalid(path, 'has a lone surrogate (not encodable as UTF-8)')
  if (x.length > limits.headerKeyBytesMax) {
    const n = encodeUtf8(x).length
    if (n > limits.headerKeyBytesMax) throw tooLarge(path, n, limits.headerKeyBytesMax)
  }
  return x
}

function headersFromJson(x: unknown, path: string, encoding: RecordEncoding, limits: BatchLimits): RecordHeader[] {
  const entries: [unknown, unknown, string][] = []
  if (Array.isArray(x)) {
    for (let h = 0; h < x.length && h <= limits.headersMax; h++) {
      const entry: unknown = x[h]
      const at = `${path}[${h}]`
      if (!isPlainObject(entry)) throw invalid(at, 'must be an object { key, value }')
      for (const k of Object.keys(entry)) if (k !== 'key' && k !== 'value') throw invalid(at, `unknown field "${k}"`)
      entries.push([entry.key, entry.value, at])
    }
    if (x.length > limits.headersMax) throw new RillError(ErrorCode.TOO_LARGE, `${path}: ${x.length} headers, above the limit of ${limits.headersMax}`)
  } else if (isPlainObject(x)) {
    const keys = Object.keys(x)
    if (keys.length > limits.headersMax) throw new RillError(ErrorCode.TOO_LARGE, `${path}: ${keys.length} headers, above the limit of ${limits.headersMax}`)
    for (const k of keys) entries.push([k, x[k], `${path}.${k}`])
  } else {
    throw invalid(path, 'must be an array of { key, value } or an object of string values')
  }
  return entries.map(([key, value, at]) => ({
    key: headerKeyFromJson(key, `${at}.key`, limits),
    value: bytesFromJson(value, `${at}.value`, encoding, limits.headerValueBytesMax),
  }))
}

function recordFromJson(x: unknown, path: string, encoding: RecordEncoding, limits: BatchLimits): RecordInput {
  if (!isPlainObject(x)) throw invalid(path, 'must be an object { key?, value, headers?, timestamp? }')
  for (const k of Object.keys(x)) if (!recordFields.has(k)) throw invalid(path, `unknown field "${k}"`)
  if (x.value === undefined) throw invalid(`${path}.value`, 'is required')
  const value = bytesFromJson(x.value, `${path}.value`, encoding, limits.valueBytesMax)
  const key = x.key === undefined || x.key === null ? null : bytesFromJson(x.key, `${path}.key`, encoding, limits.keyBytesMax)
  const headers = x.headers === undefined ? [] : headersFromJson(x.headers, `${path}.headers`, encoding, limits)
  const ts = x.timestamp
  if (ts === undefined) return { key, value, headers }
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) {
    throw invalid(`${path}.timestamp`, 'must be an integer number of ms since the epoch in [0, 2^53)')
  }
  return { key, value, headers, timestampMs: ts }
}

/**
 * Turns `body.records` of a JSON produce request into records to encode,
 * checking every field and the batch limits (count first, before any
 * decoding).
 */
export function recordsFromJson(records: unknown, encoding: RecordEncoding = 'utf8', limits: BatchLimits = defaultBatchLimits): RecordInput[] {
  if (!Array.isArray(records)) throw invalid('records', 'must be an array')
  if (records.length === 0) throw invalid('records', 'must not be empty')
  if (records.length > limits.recordsMax) {
    throw new RillError(ErrorCode.TOO_LARGE, `records: ${records.length} records, above the limit of ${limits.recordsMax}`, {
      details: { field: 'records', limit: limits.recordsMax, actual: records.length },
    })
  }
  const out: RecordInput[] = new Array<RecordInput>(records.length)
  for (let i = 0; i < records.length; i++) out[i] = recordFromJson(records[i], `records[${i}]`, encoding, limits)
  return out
}

function bytesToJson(bytes: Uint8Array, encoding: RecordEncoding, path: string, offset: number): string {
  if (encoding === 'base64') return toBase64(bytes)
  try {
    return decodeUtf8(bytes)
  } catch (cause) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `record at offset ${offset}: ${path} is not valid UTF-8; fetch with encoding=base64`, {
      cause,
      details: { offset },
    })
  }
}

/**
 * Decoded records as a JSON fetch answer's `records`. With utf8, a key or
 * value that is not valid UTF-8 is refused (INVALID_REQUEST, asking for
 * base64) rather than silently mangled.
 */
export function recordsToJson(records: readonly DecodedRecord[], encoding: RecordEncoding = 'utf8'): JsonRecordOut[] {
  const out: JsonRecordOut[] = new Array<JsonRecordOut>(records.length)
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!
    out[i] = {
      offset: r.offset,
      timestamp: r.timestampMs,
      key: r.key === null ? null : bytesToJson(r.key, encoding, 'key', r.offset),
      value: bytesToJson(r.value, encoding, 'value', r.offset),
      headers: r.headers.map((h, j) => ({ key: h.key, value: bytesToJson(h.value, encoding, `headers[${j}].value`, r.offset) })),
    }
  }
  return out
}
