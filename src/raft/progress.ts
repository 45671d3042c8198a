/**
 * The leader's view of each follower (etcd's tracker.Progress):
 *
 *   Probe      one append in flight at a time, until the follower's log is found
 *   Replicate  optimistic: `next` runs ahead of `match`, a bounded window in flight
 *   Snapshot   the follower needs a snapshot; chunks flow with their own window
 */
import type { LogIndex, Snapshot } from './types.ts'

export const ProgressState = {
  Probe: 'probe',
  Replicate: 'replicate',
  Snapshot: 'snapshot',
} as const
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState]

/** A ring of in-flight appends (last index and bytes of each), bounded in count and bytes. */
export class Inflights {
  readonly #countMax: number
  readonly #bytesMax: number
  #indexes: Float64Array
  #sizes: Float64Array
  #start = 0
  count = 0
  bytes = 0

  constructor(countMax: number, bytesMax: number) {
    this.#countMax = countMax
    this.#bytesMax = bytesMax
    this.#indexes = new Float64Array(countMax)
    this.#sizes = new Float64Array(countMax)
  }

  add(index: LogIndex, bytes: number): void {
    const slot = (this.#start + this.count) % this.#countMax
    this.#indexes[slot] = index
    this.#sizes[slot] = bytes
    this.count++
    this.bytes += bytes
  }

  /** Frees every in-flight append whose last index is <= `index`. */
  freeLE(index: LogIndex): void {
    while (this.count > 0 && this.#indexes[this.#start]! <= index) {
      this.bytes -= this.#sizes[this.#start]!
      this.#start = (this.#start + 1) % this.#countMax
      this.count--
    }
    if (this.count === 0) {
      this.#start = 0
      this.bytes = 0
    }
  }

  /** Frees the oldest in-flight append (the follower answers, so appends may have been lost). */
  freeFirstOne(): void {
    if (this.count === 0) return
    this.freeLE(this.#indexes[this.#start]!)
  }

  full(): boolean {
    return this.count === this.#countMax || (this.#bytesMax > 0 && this.bytes >= this.#bytesMax)
  }

  reset(): void {
    this.#start = 0
    this.count = 0
    this.bytes = 0
  }
}

export class Progress {
  match: LogIndex = 0
  next: LogIndex
  state: ProgressState = ProgressState.Probe
  /** Probe: an append is in flight; wait for its answer (or a heartbeat answer). */
  probeSent = false
  /** Snapshot: the snapshot index being sent. */
  pendingSnapshot: LogIndex = 0
  /** Heard from within the current election timeout (CheckQuorum). */
  recentActive = false
  isLearner: boolean
  readonly inflights: Inflights
  /** Leader ticks since this follower last answered an append; resets a stalled pipeline. */
  ticksSinceAppResp = 0
  /** Commit index last sent to this follower (commit propagation without a new entry). */
  sentCommit: LogIndex = 0
  /** Last ReadIndex round this follower acknowledged. */
  readRoundAcked = 0

  /** Snapshot being streamed to this follower, in chunks. */
  snapshot: Snapshot | null = null
  snapshotOffsetSent = 0
  snapshotOffsetAcked = 0
  snapshotIdleTicks = 0

  constructor(next: LogIndex, isLearner: boolean, inflightsMax: number, inflightBytesMax: number) {
    this.next = next
    this.isLearner = isLearner
    this.inflights = new Inflights(inflightsMax, inflightBytesMax)
  }

  #resetState(state: ProgressState): void {
    this.probeSent = false
    this.pendingSnapshot = 0
    this.state = state
    this.inflights.reset()
    this.snapshot = null
    this.snapshotOffsetSent = 0
    this.snapshotOffsetAcked = 0
    this.snapshotIdleTicks = 0
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot
      this.#resetState(ProgressState.Probe)
      this.next = Math.max(this.match + 1, pending + 1)
    } else {
      this.#resetState(ProgressState.Probe)
      this.next = this.match + 1
    }
  }

  /**
   * The follower lost entries it had acknowledged (its log ends below
   * `match`): nothing of it is known to match any more; probe from `next`.
   * The commit index never moves back, so what was committed stays committed.
   */
  forget(next: LogIndex): void {
    this.match = 0
    this.becomeProbe()
    this.next = Math.max(1, next)
  }

  becomeReplicate(): void {
    this.#resetState(ProgressState.Replicate)
    this.next = this.match + 1
  }

  becomeSnapshot(snapshot: Snapshot): void {
    this.#resetState(ProgressState.Snapshot)
    this.pendingSnapshot = snapshot.meta.index
    this.snapshot = snapshot
  }

  /** The follower has everything up to n. Returns true if that is news. */
  maybeUpdate(n: LogIndex): boolean {
    let updated = false
    if (this.match < n) {
      this.match = n
      updated = true
      this.probeSent = false
    }
    this.next = Math.max(this.next, n + 1)
    return updated
  }

  /** An append was sent ending at `last` carrying `bytes` (Replicate: optimistic next). */
  sentEntries(last: LogIndex, count: number, bytes: number): void {
    if (this.state === ProgressState.Replicate) {
      if (count > 0) {
        this.next = last + 1
        this.inflights.add(last, bytes)
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true
    }
  }

  /**
   * The follower rejected an append at `rejected`; `matchHint` is where its
   * log may match. Returns false for a stale rejection.
   */
  maybeDecrTo(rejected: LogIndex, matchHint: LogIndex): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1)
    this.probeSent = false
    return true
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent
      case ProgressState.Replicate:
        return this.inflights.full()
      case ProgressState.Snapshot:
        return true
    }
  }
}
