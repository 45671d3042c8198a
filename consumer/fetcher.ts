/**
 * Fetches records for the partitions the consumer holds: one long-poll at a
 * time per partition, at most `fetchesInflightMax` over all of them, none
 * while the ready queue is at its bounds or the partition already has a
 * batch queued (backpressure). Runs at its own pace: `pump()` is called
 * whenever something changed (a batch taken, a fetch done, a partition
 * added, resumed or seeked) and starts what may start.
 *
 *   pump ──▶ replica (readFrom, rack, brokers that failed lately skipped)
 *        ──▶ GET …/records?offset=&maxBytes=&maxWaitMs=&format=batches[&minCommitted=]  (msgpack)
 *        ──▶ decode, skip records below the offset ──▶ ready queue
 *
 * A partition whose start is unknown (no committed offset) is "reset"
 * first: a fetch at an offset past any log answers 416 with the log's
 * bounds, and it starts at the log start (fromBeginning) or the high
 * watermark. A fetch below the log start (retention) resets the same way,
 * as Kafka's auto.offset.reset. Above the high watermark of a follower that
 * lags, it waits and tries again, then asks the leader.
 */
import { ClientErrorCode, RillClientError, backoffMs, throttleMsOf, type RillClient } from '../client/index.ts'
import type { FetchResponseMsgpack } from '../src/wire/index.ts'
import { checkFetchAnswer, decodeFetchAnswer } from './decode.ts'
import type { ConsumerConfig } from './options.ts'
import type { PartitionState } from './partition-state.ts'
import type { ReadyQueue } from './ready-queue.ts'
import { chooseReplica } from './replica.ts'

/** An offset past any log: the reset fetch's 416 answer tells the log's bounds. */
const offsetProbe = Number.MAX_SAFE_INTEGER
/** A broker that failed a fetch is avoided this long while another replica is there. */
const brokerAvoidMs = 5_000
const fetchBackoff = { baseMs: 50, maxMs: 2_000 } as const
/** Fetches above a lagging follower's high watermark before the leader is asked instead. */
const aheadOfFollowerRetriesMax = 10

/** How the fetcher tells the consumer about positions it had to move. */
export interface FetcherHost {
  /** Partitions held, in a stable order (the fetcher rotates through them for fairness). */
  partitions(): readonly PartitionState[]
  isPaused(state: PartitionState): boolean
  /** The state is still the one held for its partition (not dropped or replaced). */
  isCurrent(state: PartitionState): boolean
  /** A position was reset (no committed offset, or out of range). */
  reset(state: PartitionState, from: number | null, to: number): void
  warn(error: unknown): void
}

export class Fetcher {
  readonly #client: RillClient
  readonly #config: ConsumerConfig
  readonly #queue: ReadyQueue
  readonly #host: FetcherHost
  /** Broker id → until when (ms since the epoch) it is avoided. */
  readonly #avoid = new Map<number, number>()
  #inflight = 0
  /** Where the next pump starts in the partition list (fairness under `fetchesInflightMax`). */
  #cursor = 0
  #timer: NodeJS.Timeout | null = null
  #closed = false

  constructor(client: RillClient, config: ConsumerConfig, queue: ReadyQueue, host: FetcherHost) {
    this.#client = client
    this.#config = config
    this.#queue = queue
    this.#host = host
  }

  /** Starts every fetch that may start now; schedules the next pump for partitions backing off. */
  pump(): void {
    if (this.#closed) return
    const all = this.#host.partitions()
    const now = Date.now()
    let retryAtMs = Infinity
    for (let i = 0; i < all.length && this.#hasRoom(); i++) {
      const p = all[(this.#cursor + i) % all.length]!
      if (!this.#wants(p)) continue
      if (p.retryAtMs > now) {
        retryAtMs = Math.min(retryAtMs, p.retryAtMs)
        continue
      }
      this.#cursor = (this.#cursor + i + 1) % all.length
      void this.#fetch(p)
    }
    if (retryAtMs !== Infinity) this.#schedule(retryAtMs - now)
  }

  /** Aborts the fetch of `state` and forgets what it queued; its next fetch starts at `state.fetchOffset`. */
  stop(state: PartitionState): void {
    state.fetchEpoch++
    state.fetch?.abort()
    state.fetch = null
    this.#queue.dropPartition(state)
  }

  close(): void {
    this.#closed = true
    if (this.#timer !== null) clearTimeout(this.#timer)
    for (const p of this.#host.partitions()) p.fetch?.abort()
  }

  #hasRoom(): boolean {
    return (
      this.#inflight < this.#config.fetchesInflightMax &&
      this.#queue.records < this.#config.bufferedRecordsMax &&
      this.#queue.bytes < this.#config.bufferedBytesMax
    )
  }

  #wants(p: PartitionState): boolean {
    return p.phase === 'active' && p.fetch === null && p.queued === 0 && !this.#host.isPaused(p)
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== null) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.pump()
    }, Math.max(1, delayMs))
  }

  async #fetch(p: PartitionState): Promise<void> {
    const controller = new AbortController()
    p.fetch = controller
    const epoch = p.fetchEpoch
    const offset = p.fetchOffset
    this.#inflight++
    try {
      const replica = await this.#replica(p)
      const answer = await this.#client.request<FetchResponseMsgpack>({
        url: replica.url,
        method: 'GET',
        path: this.#path(p, offset ?? offsetProbe, offset === null ? 0 : this.#config.maxWaitMs),
        timeoutMs: this.#config.maxWaitMs + this.#config.requestTimeoutMs,
        signal: controller.signal,
      })
      if (this.#isStale(p, epoch)) return
      this.#accept(p, offset, answer)
    } catch (error) {
      if (!this.#isStale(p, epoch)) this.#failed(p, offset, error)
    } finally {
      this.#inflight--
      if (p.fetch === controller) p.fetch = null
      this.pump()
    }
  }

  #isStale(p: PartitionState, epoch: number): boolean {
    return this.#closed || p.fetchEpoch !== epoch || !this.#host.isCurrent(p)
  }

  #path(p: PartitionState, offset: number, waitMs: number): string {
    const c = this.#config
    const wanted = p.minCommitted ?? c.minCommitted
    const minCommitted = wanted === null ? '' : `&minCommitted=${wanted}`
    return `/v1/topics/${encodeURIComponent(p.topic)}/partitions/${p.partition}/records?offset=${offset}&maxBytes=${c.maxBytes}&maxWaitMs=${waitMs}&format=batches${minCommitted}`
  }

  async #replica(p: PartitionState): Promise<{ id: number; url: string }> {
    const metadata = await this.#client.metadata.get()
    const info = metadata.topics.get(p.topic)?.partitions[p.partition]
    if (info === undefined) {
      throw new RillClientError(ClientErrorCode.UNKNOWN_PARTITION, `no partition ${p.topic}/${p.partition} in metadata`, { status: 404, retriable: true })
    }
    const now = Date.now()
    const avoid = new Set([...this.#avoid].filter(([, untilMs]) => untilMs > now).map(([id]) => id))
    // A follower that stayed behind the offset we want: read the leader for a while.
    if (p.failures >= aheadOfFollowerRetriesMax && p.replica !== null && p.replica.id !== info.leader) avoid.add(p.replica.id)
    const replica = chooseReplica(info, metadata.brokers, { readFrom: this.#config.readFrom, rack: this.#config.rack, avoid })
    if (replica === null) {
      throw new RillClientError(ClientErrorCode.NOT_LEADER, `no replica of ${p.topic}/${p.partition} with a known URL`, { retriable: true })
    }
    p.replica = replica
    return replica
  }

  #accept(p: PartitionState, offset: number | null, answer: FetchResponseMsgpack): void {
    const where = `${p.topic}/${p.partition}`
    if (offset === null) {
      throw new RillClientError(ClientErrorCode.BAD_RESPONSE, `${where}: a fetch at offset ${offsetProbe} was answered with records`)
    }
    checkFetchAnswer(answer, offset, where)
    const records = decodeFetchAnswer(answer, offset)
    p.highWatermark = answer.highWatermark
    p.logStartOffset = answer.logStartOffset
    p.failures = 0
    if (p.minCommitted !== null && p.highWatermark >= p.minCommitted) p.minCommitted = null
    const last = records.at(-1)
    p.fetchOffset = Math.max(answer.nextOffset, last === undefined ? offset : last.offset + 1)
    if (records.length === 0) return
    const bytes = answer.batches?.length ?? records.reduce((n, r) => n + r.value.length + (r.key?.length ?? 0), 0)
    this.#queue.push({ state: p, fetchEpoch: p.fetchEpoch, records, highWatermark: answer.highWatermark, bytes })
  }

  #failed(p: PartitionState, offset: number | null, error: unknown): void {
    if (error instanceof RillClientError && error.code === ClientErrorCode.CLOSED) return
    if (error instanceof RillClientError && error.code === ClientErrorCode.OFFSET_OUT_OF_RANGE) {
      if (this.#outOfRange(p, offset, error)) return
    } else if (throttleMsOf(error) > 0) {
      // Over quota (429 THROTTLED): no fault of the broker's; wait as long as it says, below.
    } else {
      this.#host.warn(error)
      if (p.replica !== null && isBrokerFault(error)) this.#avoid.set(p.replica.id, Date.now() + brokerAvoidMs)
      void this.#client.metadata.refresh().catch(() => undefined)
    }
    p.retryAtMs = Date.now() + Math.max(backoffMs(p.failures, fetchBackoff), throttleMsOf(error))
    p.failures++
  }

  /** Handles a 416; true when the position moved (fetch again at once), false to back off. */
  #outOfRange(p: PartitionState, offset: number | null, error: RillClientError): boolean {
    const logStart = error.details.logStartOffset
    const hw = error.details.highWatermark
    if (typeof logStart !== 'number' || typeof hw !== 'number') return false
    const isLeader = p.replica !== null && this.#client.metadata.leader(p.topic, p.partition)?.id === p.replica.id
    // Ahead of a follower that has not caught up yet: wait for it (then the leader, by `failures`).
    if (offset !== null && offset > hw && !isLeader) return false
    // No start yet, below the log start (retention), or above the leader's end: as Kafka's auto.offset.reset.
    const to = p.resetTo === 'earliest' ? logStart : hw
    p.fetchOffset = to
    p.delivered = to
    p.failures = 0
    this.#host.reset(p, offset, to)
    return true
  }
}

/** Errors that say the broker itself is the problem (not the request): try another replica. */
function isBrokerFault(error: unknown): boolean {
  if (!(error instanceof RillClientError)) return true
  const c = error.code
  return c === ClientErrorCode.UNREACHABLE || c === ClientErrorCode.TIMEOUT || c === ClientErrorCode.BAD_RESPONSE || c === ClientErrorCode.INVALID_REQUEST || error.status >= 500
}
