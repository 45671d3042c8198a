/**
 * Turns a msgpack fetch answer with `format=batches` into the records the
 * application gets: stored batches split, checked end to end (CRC32C, the
 * same walk the broker does) and decoded, records below the requested
 * offset skipped (the first batch may start before it: batches are not cut).
 */
import { ClientErrorCode, RillClientError } from '../client/index.ts'
import { decodeBatch, splitConcatenatedBatches } from '../src/wire/index.ts'
import type { FetchResponseMsgpack, RecordHeader } from '../src/wire/index.ts'

/** A record as the application sees it. `key`, `value` and header values are views into the fetched bytes. */
export interface ConsumerRecord {
  readonly offset: number
  /** Creation time, ms since the epoch. */
  readonly timestamp: number
  readonly key: Uint8Array | null
  readonly value: Uint8Array
  readonly headers: readonly RecordHeader[]
}

/** Records at or past `offsetMin` in a fetch answer, in offset order. Throws INVALID_REQUEST (from the batch checks) on a damaged answer. */
export function decodeFetchAnswer(answer: FetchResponseMsgpack, offsetMin: number): ConsumerRecord[] {
  const out: ConsumerRecord[] = []
  if (answer.batches !== undefined) {
    let expected = offsetMin
    for (const bytes of splitConcatenatedBatches(answer.batches)) {
      for (const r of decodeBatch(bytes).records) {
        if (r.offset < expected) continue
        out.push({ offset: r.offset, timestamp: r.timestampMs, key: r.key, value: r.value, headers: r.headers })
        expected = r.offset + 1
      }
    }
    return out
  }
  // A broker that answered with records (format ignored): same shape, already cut at the offset.
  for (const r of answer.records ?? []) {
    if (r.offset < offsetMin) continue
    out.push({ offset: r.offset, timestamp: r.timestamp, key: r.key, value: r.value, headers: r.headers })
  }
  return out
}

/** Checks that an answer's offsets are sane for a fetch at `offset`: a broker bug must not move a position backwards. */
export function checkFetchAnswer(answer: FetchResponseMsgpack, offset: number, where: string): void {
  if (!Number.isSafeInteger(answer.nextOffset) || answer.nextOffset < offset || !Number.isSafeInteger(answer.highWatermark)) {
    throw new RillClientError(ClientErrorCode.BAD_RESPONSE, `${where}: fetch at ${offset} answered nextOffset ${answer.nextOffset}, highWatermark ${answer.highWatermark}`)
  }
}
