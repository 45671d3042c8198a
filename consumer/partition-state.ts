/**
 * One partition the consumer holds, and the positions it tracks:
 *
 *   committed ≤ processed ≤ delivered ≤ fetchOffset ≤ highWatermark
 *       │           │           │            └ next offset to fetch
 *       │           │           └ next offset to hand to the application
 *       │           └ after the last record whose batch the application finished (what commits)
 *       └ the group's stored offset, as far as we know
 *
 * `fetchEpoch` bumps on every seek, rewind and revocation: a fetch answer
 * or queued batch of an older one is stale. `seekEpoch` bumps on seek and
 * rewind only: a batch handed out before it no longer moves `processed`
 * when it finishes (a revocation must still count it). A dropped partition
 * is a new PartitionState if it comes back, so nothing old matches it.
 */
import type { BrokerRef } from '../src/wire/index.ts'

/** Where a partition without a usable position starts (Kafka's auto.offset.reset). */
export type ResetTo = 'earliest' | 'latest'

export type PartitionPhase =
  /** Waiting for the group's committed offset (or the log's bounds) to know where to start. */
  | 'starting'
  /** Fetching and handing out records. */
  | 'active'
  /** Taken away by the coordinator: no more fetches; waiting for the application to finish, then commit and release. */
  | 'revoking'

export class PartitionState {
  readonly topic: string
  readonly partition: number
  readonly key: string
  phase: PartitionPhase = 'starting'
  /** Next offset to fetch; null until the start is known (then `resetTo` decides). */
  fetchOffset: number | null = null
  resetTo: ResetTo
  /** Next offset to hand out. */
  delivered = 0
  /** Next offset after the last processed record; null until something is processed or a seek. */
  processed: number | null = null
  /** The group's stored offset for this partition, as the last commit (or offsets fetch) answered. */
  committed: number | null = null
  /** A seek moved the position: the next commit may move the stored offset backwards. */
  allowBackwards = false
  highWatermark = 0
  logStartOffset = 0
  fetchEpoch = 0
  seekEpoch = 0
  /** A revoked partition's last commit is under way. */
  releasing = false
  /** The fetch under way, aborted on seek, revoke, drop and close. */
  fetch: AbortController | null = null
  /** Batches of this partition waiting in the ready queue. */
  queued = 0
  /** Batches handed to the application and not finished. */
  handedOut = 0
  replica: BrokerRef | null = null
  /** Read-your-writes after a seek: fetches wait until the replica has committed this offset; cleared once it has. */
  minCommitted: number | null = null
  /** No fetch before this time (ms since the epoch): backoff after a failure. */
  retryAtMs = 0
  /** Failed fetches in a row (for the backoff). */
  failures = 0

  constructor(topic: string, partition: number, resetTo: ResetTo) {
    this.topic = topic
    this.partition = partition
    this.key = partitionKey(topic, partition)
    this.resetTo = resetTo
  }

  /** Starts consuming at `offset`: everything before it counts as delivered (not as processed). */
  startAt(offset: number): void {
    this.fetchOffset = offset
    this.delivered = offset
    this.phase = 'active'
  }

  /** Records between the position and the high watermark, as of the last fetch answer. */
  get lag(): number {
    return Math.max(0, this.highWatermark - this.delivered)
  }

  /** What to commit now, or null if the stored offset is already there. */
  get pendingCommit(): number | null {
    if (this.processed === null || this.processed === this.committed) return null
    return this.processed
  }
}

/** `topic:partition`; topic names cannot hold `:`. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}:${partition}`
}

/** A topic and one of its partitions. */
export interface TopicPartition {
  readonly topic: string
  readonly partition: number
}
