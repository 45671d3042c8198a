/**
 * Fetched batches waiting for the application, in arrival order. The
 * fetcher stops fetching while `records` or `bytes` are at their bounds
 * (backpressure: a slow application holds at most that much in memory), and
 * each partition has at most one batch queued, so one busy partition cannot
 * starve the others.
 */
import type { ConsumerRecord } from './decode.ts'
import type { PartitionState } from './partition-state.ts'

/** A batch fetched for a partition, not yet handed out. */
export interface ReadyBatch {
  readonly state: PartitionState
  /** `state.fetchEpoch` when it was fetched: a seek or revocation since makes it stale. */
  readonly fetchEpoch: number
  readonly records: readonly ConsumerRecord[]
  readonly highWatermark: number
  /** Bytes of the fetched batches (the records are views into them). */
  readonly bytes: number
}

export class ReadyQueue {
  readonly #batches: ReadyBatch[] = []
  /** At most one: the consumer hands batches to one reader at a time. */
  #waiter: (() => void) | null = null
  records = 0
  bytes = 0

  get length(): number {
    return this.#batches.length
  }

  push(batch: ReadyBatch): void {
    this.#batches.push(batch)
    batch.state.queued++
    this.records += batch.records.length
    this.bytes += batch.bytes
    this.wake()
  }

  /** The oldest batch whose partition `usable` accepts (not paused, still current), removed from the queue. */
  take(usable: (batch: ReadyBatch) => boolean): ReadyBatch | null {
    const i = this.#batches.findIndex(usable)
    if (i < 0) return null
    return this.#remove(i)
  }

  /** Drops every queued batch of `state` (seek, revocation, drop). */
  dropPartition(state: PartitionState): void {
    for (let i = this.#batches.length - 1; i >= 0; i--) if (this.#batches[i]!.state === state) this.#remove(i)
  }

  /** Resolves on the next push or `wake()`; one waiter at a time. */
  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiter?.()
      this.#waiter = resolve
    })
  }

  /** Lets the waiter look again (resume, close, a partition released). */
  wake(): void {
    const w = this.#waiter
    this.#waiter = null
    w?.()
  }

  #remove(i: number): ReadyBatch {
    const [batch] = this.#batches.splice(i, 1)
    batch!.state.queued--
    this.records -= batch!.records.length
    this.bytes -= batch!.bytes
    return batch!
  }
}
