/**
 * The produce and fetch calls a Broker answers, as plain data. src/api
 * declares the same shapes in its BrokerService (the edge owns the interface
 * it calls, and src/broker imports nothing from the edge); a Broker satisfies
 * that interface structurally, which src/cli checks when it hands one to
 * `buildApi`.
 */
import type { Acks } from '../wire/index.ts'

export interface ProduceCall {
  readonly topic: string
  readonly partition: number
  /** One record batch in the stored format, already checked by `validateBatch` at the edge. */
  readonly batch: Uint8Array
  readonly acks: Acks
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
