/**
 * The consumer: reads the partitions it holds and hands their records to the
 * application one batch at a time, committing what the application finished
 * (at least once: a record's position is committed only after the handler,
 * or the loop iteration, for its batch returned).
 *
 *   subscribe ──▶ hold partitions: all of the topics (no group), or what the
 *                 group's coordinator assigns (group.ts)
 *             ──▶ start each at the group's committed offset, else the log
 *                 start (fromBeginning) or end
 *   fetcher ──▶ ready queue (bounded) ──▶ for await / run({ eachBatch | eachRecord })
 *   finished batch ──▶ processed ──▶ commit (every autoCommitIntervalMs, on revocation, on close)
 *
 * A partition the coordinator revokes stops fetching at once; it is given up
 * (committed, then left out of the next heartbeat) once the batch the
 * application holds is finished. A member that expired gives everything up
 * without committing and joins again.
 */
import { ClientErrorCode, RillClient, RillClientError, backoffMs, isRillClientError, sleep, type TopicInfo } from '../client/index.ts'
import type { GroupOffsetsResponse, MemberAssignmentResponse, TopicPartitionOffset, TopicPartitions } from '../src/wire/index.ts'
import { Coordinator } from './coordinator.ts'
import type { ConsumerRecord } from './decode.ts'
import { Fetcher } from './fetcher.ts'
import { GroupMember, type GroupHost } from './group.ts'
import { checkTopicName, resolveConsumerOptions, type ConsumerConfig, type ConsumerOptions } from './options.ts'
import { PartitionState, partitionKey, type TopicPartition } from './partition-state.ts'
import { ReadyQueue, type ReadyBatch } from './ready-queue.ts'

/** Records of one partition, handed to the application. */
export interface ConsumerBatch {
  readonly topic: string
  readonly partition: number
  /** In offset order, at least one. */
  readonly records: readonly ConsumerRecord[]
  /** The replica's high watermark when it was fetched. */
  readonly highWatermark: number
  /** Records after this batch, up to the high watermark. */
  readonly lag: number
}

/** The coordinator's assignment changed (or, without a group, the partitions of the subscription). */
export interface AssignmentEvent {
  readonly generation: number
  readonly memberId: string | null
  /** Everything assigned now. */
  readonly assignment: readonly TopicPartition[]
  readonly added: readonly TopicPartition[]
  /** Taken away: given up once the application finished their records (and dropped at once by `lost`). */
  readonly revoked: readonly TopicPartition[]
  /** The partitions were dropped without a commit (expired member, no heartbeat for a session). */
  readonly lost: boolean
}

/** A position moved by itself: no committed offset, or out of the log's range (as Kafka's auto.offset.reset). */
export interface ResetEvent extends TopicPartition {
  /** Where it was (null: no start yet). */
  readonly from: number | null
  readonly to: number
}

export interface ConsumerEvents {
  assignment: (event: AssignmentEvent) => void
  reset: (event: ResetEvent) => void
  /** A request failed; the consumer retries by itself. For logs. */
  error: (error: unknown) => void
}

/** Per partition held: positions and lag. */
export interface PartitionLag extends TopicPartition {
  /** Next offset to hand out. */
  readonly position: number
  readonly committed: number | null
  readonly highWatermark: number
  readonly lag: number
  /** Broker id of the replica read last (readFrom), null before the first fetch. */
  readonly replica: number | null
}

export interface RunOptions {
  /** Called per batch; the batch counts as processed when it resolves. */
  readonly eachBatch?: (batch: ConsumerBatch) => Promise<void> | void
  /** Called per record, in order; each record counts as processed when it resolves. */
  readonly eachRecord?: (record: ConsumerRecord, batch: ConsumerBatch) => Promise<void> | void
}

/** Topics (with all or some partitions) to pause or resume, as kafkajs takes them. */
export type TopicPartitionsSelector = readonly { readonly topic: string; readonly partitions?: readonly number[] }[]

/** The batch the application holds (one at a time). */
interface Outstanding {
  readonly batch: ConsumerBatch
  readonly state: PartitionState
  readonly seekEpoch: number
  /** eachRecord: next offset after the last record finished. */
  progress: number | null
}

const topicsMax = 100
const listenersMax = 100
/** Seeks remembered for partitions not held yet, and paused partitions. */
const pendingMax = 100_000
const commitAttemptsMax = 5
const retryBackoff = { baseMs: 100, maxMs: 2_000 } as const
/** Connections per broker beyond the long-polls: heartbeats and commits must not queue behind them. */
const spareConnectionsPerBroker = 4

export class Consumer {
  readonly config: ConsumerConfig
  readonly #client: RillClient
  readonly #coordinator: Coordinator
  readonly #group: GroupMember | null
  readonly #queue = new ReadyQueue()
  readonly #fetcher: Fetcher
  readonly #partitions = new Map<string, PartitionState>()
  readonly #topics = new Set<string>()
  #assignment: TopicPartition[] = []
  #generation = 0
  readonly #pendingSeeks = new Map<string, { offset: number; minCommitted: number | null }>()
  readonly #paused = new Set<string>()
  readonly #pausedTopics = new Set<string>()
  readonly #listeners = new Map<keyof ConsumerEvents, Set<(event: never) => void>>()
  #outstanding: Outstanding | null = null
  /** A run() handler under way: settles after its batch is settled. */
  #handling: Promise<void> | null = null
  #reading = false
  #starting = false
  #commitChain: Promise<unknown> = Promise.resolve()
  #autoCommitTimer: NodeJS.Timeout | null = null
  #closed = false
  #closing: Promise<void> | null = null

  constructor(options: ConsumerOptions) {
    this.config = resolveConsumerOptions(options)
    const c = this.config
    this.#client = new RillClient({
      brokers: c.brokers,
      clientId: c.clientId,
      requestTimeoutMs: c.requestTimeoutMs,
      connectionsPerBroker: c.fetchesInflightMax + spareConnectionsPerBroker,
      ...(c.tls === undefined ? {} : { tls: c.tls }),
      ...(c.token === undefined ? {} : { token: c.token }),
    })
    this.#coordinator = new Coordinator(this.#client)
    this.#fetcher = new Fetcher(this.#client, c, this.#queue, {
      partitions: () => [...this.#partitions.values()],
      isPaused: (p) => this.#isPaused(p),
      isCurrent: (p) => this.#partitions.get(p.key) === p,
      reset: (p, from, to) => this.#emit('reset', { topic: p.topic, partition: p.partition, from, to }),
      warn: (error) => this.#emit('error', error),
    })
    const member = { coordinator: this.#coordinator, clientId: c.clientId, rack: c.rack, sessionTimeoutMs: c.sessionTimeoutMs, requestTimeoutMs: c.requestTimeoutMs }
    this.#group = c.groupId !== null && c.joinGroup ? new GroupMember({ ...member, groupId: c.groupId }, this.#groupHost()) : null
  }

  // ---- subscription and events -------------------------------------------

  /** Adds topics to the subscription and starts consuming them. UNKNOWN_TOPIC if one does not exist. */
  async subscribe(topics: string | readonly string[]): Promise<void> {
    this.#checkOpen()
    const list = (typeof topics === 'string' ? [topics] : [...topics]).map(checkTopicName)
    if (list.length === 0 || this.#topics.size + list.length > topicsMax) throw invalid(`subscribe: 1..${topicsMax} topics in all, got ${this.#topics.size + list.length}`)
    for (const topic of list) {
      const info = await this.#topicInfo(topic)
      if (info.internal) throw new RillClientError(ClientErrorCode.FORBIDDEN, `topic ${topic} is internal`, { status: 403, retriable: false })
    }
    for (const topic of list) this.#topics.add(topic)
    this.#startAutoCommit()
    if (this.#group !== null) return this.#group.subscribe([...this.#topics])
    await this.#holdAll()
  }

  /** The topic's metadata; while the broker has no controller leader (a cluster starting) an unknown topic is waited for, bounded. */
  async #topicInfo(topic: string): Promise<TopicInfo> {
    const deadlineMs = Date.now() + this.config.requestTimeoutMs
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#client.metadata.topic(topic)
      } catch (error) {
        if (!isRillClientError(error, ClientErrorCode.UNKNOWN_TOPIC) || Date.now() > deadlineMs) throw error
        if ((await this.#client.metadata.refresh()).controllerLeader !== null) throw error
        await sleep(backoffMs(attempt, retryBackoff))
      }
    }
  }

  /** Listens to assignment changes, position resets and retried errors. */
  on<E extends keyof ConsumerEvents>(event: E, listener: ConsumerEvents[E]): this {
    const set = this.#listeners.get(event) ?? new Set()
    if (set.size >= listenersMax) throw new RillClientError(ClientErrorCode.BUSY, `more than ${listenersMax} ${event} listeners`, { retriable: false })
    set.add(listener as (event: never) => void)
    this.#listeners.set(event, set)
    return this
  }

  off<E extends keyof ConsumerEvents>(event: E, listener: ConsumerEvents[E]): this {
    this.#listeners.get(event)?.delete(listener as (event: never) => void)
    return this
  }

  /** What the coordinator assigned (without a group: every partition of the subscription). */
  assignment(): TopicPartition[] {
    return [...this.#assignment]
  }

  /** Group generation of the last assignment (0 without a group). */
  get generation(): number {
    return this.#generation
  }

  get memberId(): string | null {
    return this.#group?.memberId ?? null
  }

  /** Per partition held: position, committed offset, high watermark and lag (from the last fetch answer). */
  lag(): PartitionLag[] {
    return [...this.#partitions.values()].map((p) => ({
      topic: p.topic,
      partition: p.partition,
      position: p.delivered,
      committed: p.committed,
      highWatermark: p.highWatermark,
      lag: p.lag,
      replica: p.replica?.id ?? null,
    }))
  }

  // ---- consuming -----------------------------------------------------------

  /**
   * `for await (const batch of consumer)`: a batch counts as processed (and
   * is committed) when the loop asks for the next one. Leaving the loop
   * (break, throw) does not count the batch in hand as processed: if the
   * consumer closes then, it is not committed and the group's next owner
   * reads it again; a new loop goes on after it (as Kafka's poll position).
   */
  [Symbol.asyncIterator](): AsyncIterator<ConsumerBatch> {
    return this.batches()[Symbol.asyncIterator]()
  }

  /** As `for await (const batch of consumer)`, ending also when `signal` aborts (the batch in hand then counts as left). */
  batches(options: { signal?: AbortSignal } = {}): AsyncIterable<ConsumerBatch> {
    const { signal } = options
    const iterator: AsyncIterator<ConsumerBatch> = {
      next: async () => {
        this.#finish('done')
        const batch = await this.#next(signal)
        return batch === null ? { done: true, value: undefined } : { done: false, value: batch }
      },
      return: async () => {
        this.#finish('left')
        return { done: true, value: undefined }
      },
    }
    return { [Symbol.asyncIterator]: () => iterator }
  }

  /**
   * Hands batches to `eachBatch` (or their records to `eachRecord`) until
   * `close()`. A handler that throws rejects `run`; its batch (from the first
   * record not finished) is not committed and is fetched again.
   */
  async run(handlers: RunOptions): Promise<void> {
    const { eachBatch, eachRecord } = handlers
    if ((eachBatch === undefined) === (eachRecord === undefined)) throw invalid('run: give exactly one of eachBatch and eachRecord')
    for (;;) {
      const batch = await this.#next()
      if (batch === null) return
      const handling = this.#handle(batch, handlers)
      // close() waits for this before it commits and leaves (the partition must not move while a handler works on it).
      this.#handling = handling.then(
        () => undefined,
        () => undefined,
      )
      try {
        await handling
      } finally {
        this.#handling = null
      }
    }
  }

  /** Runs the handler on one batch and settles the batch: processed, left (closed between records) or failed. */
  async #handle(batch: ConsumerBatch, { eachBatch, eachRecord }: RunOptions): Promise<void> {
    try {
      const complete = eachBatch !== undefined ? (await eachBatch(batch), true) : await this.#eachRecord(batch, eachRecord!)
      // Closed between two records: those finished are processed (by `progress`), the rest not.
      this.#finish(complete ? 'done' : 'left')
    } catch (error) {
      this.#finish('failed')
      throw error
    }
  }

  /** True when every record of the batch was handled (false: closed in between). */
  async #eachRecord(batch: ConsumerBatch, handler: NonNullable<RunOptions['eachRecord']>): Promise<boolean> {
    for (const record of batch.records) {
      if (this.#closed) return false
      await handler(record, batch)
      this.#progress(record.offset + 1)
    }
    return true
  }

  /** Moves a partition's position; the next commit stores it even if it is lower. `minCommitted`: read-your-writes from a follower. */
  seek(topic: string, partition: number, offset: number, options: { minCommitted?: number } = {}): void {
    this.#checkOpen()
    checkTopicName(topic)
    checkOffset('partition', partition)
    checkOffset('offset', offset)
    const minCommitted = options.minCommitted ?? null
    if (minCommitted !== null) checkOffset('minCommitted', minCommitted)
    const p = this.#partitions.get(partitionKey(topic, partition))
    if (p === undefined || p.phase === 'starting') {
      if (this.#pendingSeeks.size >= pendingMax) throw new RillClientError(ClientErrorCode.BUSY, `more than ${pendingMax} seeks pending`, { retriable: false })
      this.#pendingSeeks.set(partitionKey(topic, partition), { offset, minCommitted })
      return
    }
    if (p.phase === 'revoking') return
    this.#moveTo(p, offset)
    p.processed = offset
    p.allowBackwards = true
    p.minCommitted = minCommitted
    this.#fetcher.pump()
  }

  /** Stops fetching and handing out the given partitions (a topic without `partitions`: all of it). */
  pause(selector: TopicPartitionsSelector): void {
    for (const { topic, partitions } of selector) {
      checkTopicName(topic)
      if (partitions === undefined) this.#pausedTopics.add(topic)
      for (const partition of partitions ?? []) this.#paused.add(partitionKey(topic, partition))
    }
    if (this.#paused.size + this.#pausedTopics.size > pendingMax) throw new RillClientError(ClientErrorCode.BUSY, `more than ${pendingMax} paused partitions`, { retriable: false })
  }

  resume(selector: TopicPartitionsSelector): void {
    for (const { topic, partitions } of selector) {
      if (partitions === undefined) {
        this.#pausedTopics.delete(topic)
        for (const key of [...this.#paused]) if (key.startsWith(`${topic}:`)) this.#paused.delete(key)
      }
      for (const partition of partitions ?? []) this.#paused.delete(partitionKey(topic, partition))
    }
    this.#queue.wake()
    this.#fetcher.pump()
  }

  /** Paused partitions and topics, as given to `pause`. */
  paused(): TopicPartitionsSelector {
    const byTopic = new Map<string, number[]>()
    for (const key of this.#paused) {
      const i = key.lastIndexOf(':')
      const list = byTopic.get(key.slice(0, i)) ?? []
      list.push(Number(key.slice(i + 1)))
      byTopic.set(key.slice(0, i), list)
    }
    return [...[...this.#pausedTopics].map((topic) => ({ topic })), ...[...byTopic].map(([topic, partitions]) => ({ topic, partitions }))]
  }

  #isPaused(p: PartitionState): boolean {
    return this.#pausedTopics.has(p.topic) || this.#paused.has(p.key)
  }

  /** The next batch for the application, or null once closed. One reader at a time. */
  async #next(signal?: AbortSignal): Promise<ConsumerBatch | null> {
    if (this.#reading) throw new RillClientError(ClientErrorCode.BUSY, 'one reader at a time: a batch is already being awaited', { retriable: false })
    this.#reading = true
    const wake = (): void => this.#queue.wake()
    signal?.addEventListener('abort', wake, { once: true })
    try {
      for (;;) {
        if (this.#closed || signal?.aborted === true) return null
        const ready = this.#queue.take((b) => !this.#isPaused(b.state))
        if (ready !== null) return this.#handOut(ready)
        await this.#queue.wait()
      }
    } finally {
      signal?.removeEventListener('abort', wake)
      this.#reading = false
    }
  }

  #handOut(ready: ReadyBatch): ConsumerBatch {
    const p = ready.state
    const last = ready.records.at(-1)!
    p.handedOut++
    p.delivered = last.offset + 1
    const batch: ConsumerBatch = { topic: p.topic, partition: p.partition, records: ready.records, highWatermark: ready.highWatermark, lag: Math.max(0, ready.highWatermark - p.delivered) }
    this.#outstanding = { batch, state: p, seekEpoch: p.seekEpoch, progress: null }
    this.#fetcher.pump()
    return batch
  }

  #progress(next: number): void {
    const o = this.#outstanding
    if (o === null) return
    o.progress = next
    if (o.state.seekEpoch === o.seekEpoch) o.state.processed = next
  }

  /**
   * The application is done with the batch it holds: processed (`done`);
   * a handler threw (`failed`: fetched again from the first record not
   * finished); or the loop was left (`left`: neither processed nor fetched again).
   */
  #finish(how: 'done' | 'failed' | 'left'): void {
    const o = this.#outstanding
    if (o === null) return
    this.#outstanding = null
    const p = o.state
    p.handedOut--
    const current = this.#partitions.get(p.key) === p && o.seekEpoch === p.seekEpoch
    if (current && how === 'done') p.processed = o.batch.records.at(-1)!.offset + 1
    if (current && how === 'failed' && p.phase === 'active') this.#moveTo(p, o.progress ?? o.batch.records[0]!.offset)
    this.#maybeRelease(p)
    this.#fetcher.pump()
  }

  /** Fetches `p` from `offset` on, forgetting what was fetched past it. */
  #moveTo(p: PartitionState, offset: number): void {
    this.#fetcher.stop(p)
    p.seekEpoch++
    p.startAt(offset)
  }

  // ---- holding partitions ----------------------------------------------------------

  /** Without group membership: every partition of the subscription. */
  async #holdAll(): Promise<void> {
    const added: TopicPartition[] = []
    for (const topic of this.#topics) {
      const info = await this.#topicInfo(topic)
      for (const { partition } of info.partitions) {
        if (this.#partitions.has(partitionKey(topic, partition))) continue
        this.#hold(topic, partition)
        added.push({ topic, partition })
      }
    }
    this.#assignment = [...this.#partitions.values()].map((p) => ({ topic: p.topic, partition: p.partition }))
    if (added.length > 0) this.#emit('assignment', { generation: 0, memberId: null, assignment: this.assignment(), added, revoked: [], lost: false })
    void this.#startPartitions()
  }

  #hold(topic: string, partition: number): PartitionState {
    const p = new PartitionState(topic, partition, this.config.fromBeginning ? 'earliest' : 'latest')
    this.#partitions.set(p.key, p)
    return p
  }

  #groupHost(): GroupHost {
    return {
      held: () => this.#held(),
      assign: (answer) => this.#assign(answer),
      dropAll: (reason) => this.#dropAll(reason),
      warn: (error) => this.#emit('error', error),
    }
  }

  #held(): TopicPartitions[] {
    const byTopic = new Map<string, number[]>()
    for (const p of this.#partitions.values()) {
      const list = byTopic.get(p.topic) ?? []
      list.push(p.partition)
      byTopic.set(p.topic, list)
    }
    return [...byTopic].map(([topic, partitions]) => ({ topic, partitions }))
  }

  /** Applies the coordinator's answer: revoke what is missing, start what is new. */
  #assign(answer: MemberAssignmentResponse): void {
    const next = new Map<string, TopicPartition>()
    for (const { topic, partitions } of answer.assignment) for (const partition of partitions) next.set(partitionKey(topic, partition), { topic, partition })
    const revoked: TopicPartition[] = []
    const added: TopicPartition[] = []
    for (const p of this.#partitions.values()) {
      if (next.has(p.key) || p.phase === 'revoking') continue
      revoked.push({ topic: p.topic, partition: p.partition })
      this.#revoke(p)
    }
    for (const [key, tp] of next) {
      const p = this.#partitions.get(key)
      if (p === undefined) {
        this.#hold(tp.topic, tp.partition)
        added.push(tp)
      } else if (p.phase === 'revoking' && !p.releasing) {
        p.phase = 'active' // given back before we let go: keep going from where the application is
      }
    }
    const changed = answer.generation !== this.#generation || added.length > 0 || revoked.length > 0
    this.#generation = answer.generation
    this.#assignment = [...next.values()]
    if (changed) this.#emit('assignment', { generation: answer.generation, memberId: answer.memberId, assignment: this.assignment(), added, revoked, lost: false })
    void this.#startPartitions()
    this.#fetcher.pump()
  }

  #revoke(p: PartitionState): void {
    this.#fetcher.stop(p)
    p.phase = 'revoking'
    p.fetchOffset = p.delivered
    this.#maybeRelease(p)
  }

  /** A revoked partition whose batches the application finished: commit its position, then let the coordinator move it. */
  #maybeRelease(p: PartitionState): void {
    if (p.phase !== 'revoking' || p.handedOut > 0 || p.releasing) return
    p.releasing = true
    void this.#release(p)
  }

  async #release(p: PartitionState): Promise<void> {
    if (this.config.autoCommit && p.pendingCommit !== null) await this.#commitQuietly([p])
    if (this.#partitions.get(p.key) === p) this.#partitions.delete(p.key)
    this.#queue.wake()
    this.#group?.heartbeatSoon()
  }

  /** Gives up every partition without committing (expired, or cut off from the coordinator for a session). */
  #dropAll(reason: string): void {
    const revoked = [...this.#partitions.values()].map((p) => ({ topic: p.topic, partition: p.partition }))
    for (const p of this.#partitions.values()) this.#fetcher.stop(p)
    this.#partitions.clear()
    this.#assignment = []
    this.#queue.wake()
    this.#emit('error', new RillClientError(ClientErrorCode.UNKNOWN_MEMBER, `group ${this.config.groupId}: dropped ${revoked.length} partitions: ${reason}`))
    this.#emit('assignment', { generation: this.#generation, memberId: this.memberId, assignment: [], added: [], revoked, lost: true })
  }

  /** Finds where each newly held partition starts: a pending seek, the group's committed offset, else a reset. */
  async #startPartitions(): Promise<void> {
    if (this.#starting) return
    this.#starting = true
    try {
      for (let attempt = 0; !this.#closed; ) {
        const waiting = [...this.#partitions.values()].filter((p) => p.phase === 'starting')
        if (waiting.length === 0) return
        try {
          const committed = await this.#committedOffsets()
          for (const p of waiting) if (this.#partitions.get(p.key) === p && p.phase === 'starting') this.#begin(p, committed.get(p.key))
          attempt = 0
          this.#fetcher.pump()
        } catch (error) {
          this.#emit('error', error)
          await sleep(backoffMs(attempt++, retryBackoff))
        }
      }
    } finally {
      this.#starting = false
    }
  }

  async #committedOffsets(): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    if (this.config.groupId === null) return out
    const answer = await this.#coordinator.request<GroupOffsetsResponse>({ method: 'GET', path: `${this.#groupPath()}/offsets`, timeoutMs: this.config.requestTimeoutMs })
    for (const o of answer.offsets) out.set(partitionKey(o.topic, o.partition), o.offset)
    return out
  }

  #begin(p: PartitionState, committed: number | undefined): void {
    p.committed = committed ?? null
    const seek = this.#pendingSeeks.get(p.key)
    if (seek !== undefined) {
      this.#pendingSeeks.delete(p.key)
      p.startAt(seek.offset)
      p.processed = seek.offset
      p.allowBackwards = true
      p.minCommitted = seek.minCommitted
    } else if (committed !== undefined) {
      p.startAt(committed)
      p.processed = committed
    } else {
      p.phase = 'active' // fetchOffset null: the fetcher resets it
    }
  }

  // ---- commits -------------------------------------------------------------

  /**
   * Commits the processed position of every partition held (or the given
   * offsets: the next offset to consume, as Kafka's). Returns what the group
   * stores now. INVALID_REQUEST without a groupId; FENCED_MEMBER for a
   * partition given away (it is dropped); UNKNOWN_MEMBER when expired (the
   * member joins again).
   */
  async commit(offsets?: readonly TopicPartitionOffset[]): Promise<TopicPartitionOffset[]> {
    if (this.config.groupId === null) throw invalid('commit: the consumer has no groupId')
    for (const o of offsets ?? []) {
      checkTopicName(o.topic)
      checkOffset('partition', o.partition)
      checkOffset('offset', o.offset)
      const p = this.#partitions.get(partitionKey(o.topic, o.partition))
      if (p === undefined) throw invalid(`commit: ${o.topic}/${o.partition} is not held by this consumer`)
      p.processed = o.offset
    }
    const states = offsets === undefined ? [...this.#partitions.values()] : offsets.map((o) => this.#partitions.get(partitionKey(o.topic, o.partition))!)
    return this.#serialCommit(() => this.#commitWithRetries(states))
  }

  /** One commit at a time, so an older commit never lands after a newer one. */
  #serialCommit<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#commitChain.then(fn, fn)
    this.#commitChain = run.catch(() => undefined)
    return run
  }

  async #commitQuietly(states: PartitionState[]): Promise<void> {
    try {
      await this.#serialCommit(() => this.#commitWithRetries(states))
    } catch (error) {
      this.#emit('error', error)
    }
  }

  async #commitWithRetries(states: readonly PartitionState[]): Promise<TopicPartitionOffset[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#commitOnce(states)
      } catch (error) {
        this.#onCommitError(error)
        if (!(error instanceof RillClientError) || !error.retriable || attempt + 1 >= commitAttemptsMax) throw error
        await sleep(backoffMs(attempt, retryBackoff))
      }
    }
  }

  /** Commits what is pending; positions after a seek in their own request, with allowBackwards. */
  async #commitOnce(states: readonly PartitionState[]): Promise<TopicPartitionOffset[]> {
    const pending = states.filter((p) => p.pendingCommit !== null)
    const stored: TopicPartitionOffset[] = []
    for (const backwards of [true, false]) {
      const batch = pending.filter((p) => p.allowBackwards === backwards)
      if (batch.length === 0) continue
      const offsets = batch.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.pendingCommit! }))
      const memberId = this.#group?.memberId
      if (this.#group !== null && memberId === null) throw new RillClientError(ClientErrorCode.UNKNOWN_MEMBER, `group ${this.config.groupId}: not a member now (joining)`, { retriable: false })
      const body = { offsets, ...(memberId === undefined || memberId === null ? {} : { memberId }), ...(backwards ? { allowBackwards: true } : {}) }
      const answer = await this.#coordinator.request<GroupOffsetsResponse>({ method: 'POST', path: `${this.#groupPath()}/offsets`, body, timeoutMs: this.config.requestTimeoutMs })
      this.#committed(answer.offsets, backwards ? offsets : [])
      stored.push(...answer.offsets)
    }
    return stored
  }

  #committed(stored: readonly TopicPartitionOffset[], sentBackwards: readonly TopicPartitionOffset[]): void {
    for (const o of stored) {
      const p = this.#partitions.get(partitionKey(o.topic, o.partition))
      if (p === undefined) continue
      p.committed = o.offset
      if (sentBackwards.some((s) => s.topic === o.topic && s.partition === o.partition && s.offset === o.offset)) p.allowBackwards = false
    }
  }

  #onCommitError(error: unknown): void {
    if (isRillClientError(error, ClientErrorCode.UNKNOWN_MEMBER) && error.status !== 0) this.#group?.rejoin('a commit was refused: unknown member')
    if (!isRillClientError(error, ClientErrorCode.FENCED_MEMBER)) return
    const { topic, partition } = error.details
    const p = typeof topic === 'string' && typeof partition === 'number' ? this.#partitions.get(partitionKey(topic, partition)) : undefined
    if (p === undefined) return
    // Given away already: drop it without committing; the next heartbeat tells the coordinator.
    this.#fetcher.stop(p)
    this.#partitions.delete(p.key)
    this.#group?.heartbeatSoon()
  }

  #startAutoCommit(): void {
    if (!this.config.autoCommit || this.config.groupId === null || this.#autoCommitTimer !== null) return
    this.#autoCommitTimer = setInterval(() => {
      const pending = [...this.#partitions.values()].filter((p) => p.pendingCommit !== null && p.phase !== 'revoking')
      if (pending.length > 0) void this.#commitQuietly(pending)
    }, this.config.autoCommitIntervalMs)
    this.#autoCommitTimer.unref()
  }

  // ---- closing -------------------------------------------------------------

  /**
   * Stops fetching; waits for a run() handler under way to return (at most
   * `sessionTimeoutMs`: until then the member keeps its partitions, so no
   * other member reads what the handler is working on); commits what was
   * processed (autoCommit); leaves the group. A batch held in a for-await
   * loop is not committed. Do not await close() inside a handler: it waits
   * for that handler.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    this.#closed = true
    this.#queue.wake()
    if (this.#autoCommitTimer !== null) clearInterval(this.#autoCommitTimer)
    this.#fetcher.close()
    try {
      await this.#handlerReturned()
      if (this.config.autoCommit && this.config.groupId !== null) await this.#commitQuietly([...this.#partitions.values()])
      await this.#group?.close()
    } finally {
      await this.#client.close()
    }
  }

  /** Resolves when the run() handler under way (if any) has returned, or after `sessionTimeoutMs`. */
  async #handlerReturned(): Promise<void> {
    const handling = this.#handling
    if (handling === null) return
    const bound = new AbortController()
    await Promise.race([handling, sleep(this.config.sessionTimeoutMs, bound.signal)])
    bound.abort()
  }

  #checkOpen(): void {
    if (this.#closed) throw new RillClientError(ClientErrorCode.CLOSED, 'the consumer is closed', { retriable: false })
  }

  #groupPath(): string {
    return `/v1/groups/${encodeURIComponent(this.config.groupId!)}`
  }

  #emit<E extends keyof ConsumerEvents>(event: E, value: Parameters<ConsumerEvents[E]>[0]): void {
    for (const listener of this.#listeners.get(event) ?? []) {
      try {
        ;(listener as (v: typeof value) => void)(value)
      } catch {
        // A listener's failure is the listener's; the consumer goes on.
      }
    }
  }
}

function invalid(message: string): RillClientError {
  return new RillClientError(ClientErrorCode.INVALID_REQUEST, message, { retriable: false })
}

function checkOffset(field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`${field}: expected an integer in 0..2^53-1, got ${String(value)}`)
}
