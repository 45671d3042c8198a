/**
 * A partition's replicated state, built by applying committed entries in
 * order (every replica derives the same): the high watermark (offset after
 * the last committed record), the log start offset, and the idempotent
 * producer table (producer id -> epoch and the last few batches' sequences
 * and offsets, as Kafka keeps five), which lets a retried batch get its
 * original offsets back and refuses a batch whose sequence skips ahead.
 * All of it goes into the partition's Raft snapshot.
 */
import { pack, unpack } from 'msgpackr'
import { ErrorCode, RillError } from '../base/index.ts'
import type { BatchHeader as WireBatchHeader } from '../wire/index.ts'

/** What the partition needs from a record batch header (src/wire reads it without decoding records). */
export type BatchHeader = Pick<
  WireBatchHeader,
  'baseOffset' | 'recordCount' | 'firstTimestampMs' | 'maxTimestampMs' | 'producerId' | 'producerEpoch' | 'baseSequence'
>

/** Batches remembered per producer to answer retries with their original offsets (Kafka: 5). */
export const producerBatchesRemembered = 5
/** Producers tracked per partition; the least recently written is forgotten beyond this. */
export const producersPerPartitionMax = 10_000

export interface RememberedBatch {
  readonly baseSequence: number
  readonly lastSequence: number
  readonly baseOffset: number
  readonly lastOffset: number
  /**
   * Leader only, for a batch accepted but maybe not committed: the Raft
   * entry that carries it. A retry is answered only once that very entry
   * (index and term) is applied. Never in snapshots.
   */
  readonly entry?: { readonly index: number; readonly term: number }
}

export interface ProducerState {
  epoch: number
  /** Oldest first. */
  batches: RememberedBatch[]
}

export type SequenceVerdict =
  | { readonly kind: 'append' }
  | { readonly kind: 'duplicate'; readonly batch: RememberedBatch }
  | { readonly kind: 'error'; readonly error: RillError }

/**
 * Decides what to do with a batch from an idempotent producer, given what is
 * known of the producer (committed state plus batches accepted but not yet
 * committed).
 */
export function checkSequence(prev: ProducerState | undefined, header: BatchHeader): SequenceVerdict {
  if (header.producerId < 0) return { kind: 'append' }
  const last = prev?.batches[prev.batches.length - 1]
  if (prev === undefined || last === undefined || header.producerEpoch > prev.epoch) {
    if (header.baseSequence === 0) return { kind: 'append' }
    return outOfOrder(`producer ${header.producerId} epoch ${header.producerEpoch} must start at sequence 0, not ${header.baseSequence}`)
  }
  if (header.producerEpoch < prev.epoch) {
    return { kind: 'error', error: new RillError(ErrorCode.INVALID_REQUEST, `producer ${header.producerId} epoch ${header.producerEpoch} is fenced by epoch ${prev.epoch}`) }
  }
  const lastSequence = header.baseSequence + header.recordCount - 1
  for (const b of prev.batches) {
    if (b.baseSequence === header.baseSequence && b.lastSequence === lastSequence) return { kind: 'duplicate', batch: b }
  }
  if (header.baseSequence === last.lastSequence + 1) return { kind: 'append' }
  if (header.baseSequence <= last.lastSequence) {
    return outOfOrder(`producer ${header.producerId}: sequence ${header.baseSequence} is older than the remembered batches`)
  }
  return outOfOrder(`producer ${header.producerId}: sequence ${header.baseSequence} skips ahead of ${last.lastSequence + 1}`)
}

function outOfOrder(message: string): SequenceVerdict {
  return { kind: 'error', error: new RillError(ErrorCode.OUT_OF_ORDER_SEQUENCE, message) }
}

/** Records `header` (just accepted or applied) into the producer table. */
export function rememberBatch(
  producers: Map<number, ProducerState>,
  header: BatchHeader,
  entry?: { readonly index: number; readonly term: number },
): void {
  if (header.producerId < 0) return
  let p = producers.get(header.producerId)
  if (p === undefined || header.producerEpoch > p.epoch) {
    p = { epoch: header.producerEpoch, batches: [] }
  }
  producers.delete(header.producerId)
  producers.set(header.producerId, p) // Map order = least recently written first
  p.batches.push({
    baseSequence: header.baseSequence,
    lastSequence: header.baseSequence + header.recordCount - 1,
    baseOffset: header.baseOffset,
    lastOffset: header.baseOffset + header.recordCount - 1,
    ...(entry === undefined ? {} : { entry }),
  })
  if (p.batches.length > producerBatchesRemembered) p.batches.shift()
  if (producers.size > producersPerPartitionMax) {
    const oldest = producers.keys().next().value as number
    producers.delete(oldest)
  }
}

export class PartitionState {
  /** Offset after the last committed record. */
  highWatermark = 0
  /** First offset still readable (moves with retention). */
  logStartOffset = 0
  /** Raft index of the last applied entry. */
  appliedIndex = 0
  readonly producers = new Map<number, ProducerState>()

  /** Applies one committed data entry. Offsets must continue where the last batch ended. */
  applyBatch(index: number, header: BatchHeader): void {
    if (header.baseOffset !== this.highWatermark) {
      throw new RillError(
        ErrorCode.INTERNAL,
        `partition state: batch at index ${index} starts at offset ${header.baseOffset}, expected ${this.highWatermark}`,
      )
    }
    this.highWatermark = header.baseOffset + header.recordCount
    this.appliedIndex = index
    rememberBatch(this.producers, header)
  }

  /** Applies a committed entry without records (no-op, membership change). */
  applyOther(index: number): void {
    this.appliedIndex = index
  }

  snapshot(): Uint8Array {
    const producers: unknown[] = []
    for (const [id, p] of this.producers) {
      producers.push([id, p.epoch, p.batches.map((b) => [b.baseSequence, b.lastSequence, b.baseOffset, b.lastOffset])])
    }
    return pack([1, this.highWatermark, this.logStartOffset, this.appliedIndex, producers])
  }

  static restore(bytes: Uint8Array): PartitionState {
    const s = new PartitionState()
    if (bytes.byteLength === 0) return s
    const bad = (): RillError => new RillError(ErrorCode.STORAGE_CORRUPT, 'partition snapshot: malformed state')
    const parsed: unknown = unpack(bytes)
    if (!Array.isArray(parsed) || parsed[0] !== 1 || parsed.length !== 5) throw bad()
    const [, hw, start, applied, producers] = parsed as [number, unknown, unknown, unknown, unknown]
    if (!isCount(hw) || !isCount(start) || !isCount(applied) || !Array.isArray(producers)) throw bad()
    s.highWatermark = hw
    s.logStartOffset = start
    s.appliedIndex = applied
    for (const row of producers) {
      if (!Array.isArray(row) || row.length !== 3 || !Number.isSafeInteger(row[0]) || !isCount(row[1]) || !Array.isArray(row[2])) throw bad()
      const batches: RememberedBatch[] = []
      for (const b of row[2] as unknown[]) {
        if (!Array.isArray(b) || b.length !== 4 || !b.every(isCount)) throw bad()
        batches.push({ baseSequence: b[0], lastSequence: b[1], baseOffset: b[2], lastOffset: b[3] })
      }
      s.producers.set(row[0] as number, { epoch: row[1] as number, batches })
    }
    return s
  }
}

function isCount(x: unknown): x is number {
  return Number.isSafeInteger(x) && (x as number) >= 0
}
