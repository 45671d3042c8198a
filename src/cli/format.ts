/**
 * How `rill consume --format` prints one record, as bytes ending in a newline:
 *
 *   value  the value's bytes as stored
 *   kv     key, --key-separator (default a tab), value; a null key is empty
 *   json   one JSON object per line: topic, partition, offset, timestamp
 *          (ms since the epoch), time (ISO 8601, UTC), key (null when
 *          none), value, headers ([{key, value}], order and duplicates kept),
 *          encoding: "utf8" when key, value and header values are all valid
 *          UTF-8 (they are then strings as is), else "base64" (all three
 *          base64, so nothing is silently mangled)
 */
import type { ConsumerRecord } from '../../consumer/index.ts'

export const formats = ['value', 'kv', 'json'] as const
export type Format = (typeof formats)[number]

const newline = Buffer.from('\n')
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

function utf8OrNull(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes)
  } catch {
    return null
  }
}

/** A record as `--format json` prints it (before JSON.stringify). */
export interface JsonRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly timestamp: number
  readonly time: string
  readonly key: string | null
  readonly value: string
  readonly headers: { key: string; value: string }[]
  readonly encoding: 'utf8' | 'base64'
}

export function jsonRecord(topic: string, partition: number, r: ConsumerRecord): JsonRecord {
  const key = r.key === null ? null : utf8OrNull(r.key)
  const value = utf8OrNull(r.value)
  const headers = r.headers.map((h) => ({ key: h.key, value: utf8OrNull(h.value) }))
  const utf8 = (r.key === null || key !== null) && value !== null && headers.every((h) => h.value !== null)
  const b64 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
  const time = Number.isFinite(r.timestamp) && Math.abs(r.timestamp) <= 8.64e15 ? new Date(r.timestamp).toISOString() : ''
  return {
    topic,
    partition,
    offset: r.offset,
    timestamp: r.timestamp,
    time,
    key: r.key === null ? null : utf8 ? key! : b64(r.key),
    value: utf8 ? value! : b64(r.value),
    headers: utf8 ? headers.map((h) => ({ key: h.key, value: h.value! })) : r.headers.map((h) => ({ key: h.key, value: b64(h.value) })),
    encoding: utf8 ? 'utf8' : 'base64',
  }
}

/** The line printed for `r` (newline included). */
export function formatRecord(format: Format, topic: string, partition: number, r: ConsumerRecord, keySeparator: Uint8Array): Uint8Array {
  switch (format) {
    case 'value':
      return Buffer.concat([r.value, newline])
    case 'kv':
      return Buffer.concat([r.key ?? new Uint8Array(0), keySeparator, r.value, newline])
    case 'json':
      return Buffer.from(`${JSON.stringify(jsonRecord(topic, partition, r))}\n`)
  }
}
