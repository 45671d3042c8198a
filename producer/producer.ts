/**
 * The producer: records in, acknowledged offsets out.
 *
 *   send(topic, records) ──▶ intake (one at a time: call order = append order)
 *       │  metadata: partition count          (client/ metadata cache)
 *       │  buffer: wait for room              (ByteBudget, bufferBytes)
 *       │  partition: explicit > custom > murmur2(key) > sticky / round-robin
 *       ▼
 *   PartitionSender per topic-partition: batches by size and linger, sequences,
 *   pipelines up to maxInFlight, retries in order ──▶ POST leader /v1/topics/T/partitions/P/records
 *                                                       msgpack { batch, acks }
 *
 * Idempotent by default: one producer id from the cluster, a sequence per
 * partition, so a resent batch is answered with its original offsets
 * instead of being written twice (DESIGN.md decision 9).
 */
import type { ProduceResponse } from '../src/wire/index.ts'
import { RoundRobinPartitioner, partitionForKey } from '../src/wire/index.ts'
import { ClientErrorCode, MsgpackWithBytes, RillClient, RillClientError, backoffMs, sleep, type TopicInfo } from '../client/index.ts'
import type { InitProducerResponse } from '../src/wire/index.ts'
import type { ProducerBatch, ProducerIdentity, RecordSink } from './batch.ts'
import { ByteBudget } from './buffer.ts'
import { resolveProducerOptions, type ProducerConfig, type ProducerOptions } from './options.ts'
import { PartitionSender, type ProduceAttempt, type SenderContext } from './partition-sender.ts'
import { prepareRecord, type PreparedRecord, type ProducerRecord, type RecordMetadata } from './records.ts'

/** `send` calls waiting for their turn (for metadata or buffer room); one more is refused with BUSY. */
const sendsWaitingMax = 100_000
/** Topic-partitions with a sender (each keeps its sequence); one more is refused with BUSY. */
const sendersMax = 100_000

export class Producer {
  readonly config: ProducerConfig
  readonly #client: RillClient
  readonly #budget: ByteBudget
  readonly #senders = new Map<string, PartitionSender>()
  readonly #context: SenderContext
  /** Appends happen one send call at a time, in call order. */
  #intake: Promise<void> = Promise.resolve()
  #sendsWaiting = 0
  #flushing = 0
  #accepting = true
  #closing: Promise<void> | null = null
  #identity: Promise<ProducerIdentity> | null = null
  /** Topic -> the partition keyless records stick to until its batch closes. */
  readonly #sticky = new Map<string, number>()
  readonly #roundRobin: RoundRobinPartitioner

  constructor(options: ProducerOptions) {
    this.config = resolveProducerOptions(options)
    const c = this.config
    this.#client = new RillClient({ brokers: c.brokers, clientId: c.clientId, requestTimeoutMs: c.requestTimeoutMs, ...(c.tls === undefined ? {} : { tls: c.tls }), ...(c.token === undefined ? {} : { token: c.token }) })
    this.#budget = new ByteBudget({ capacityBytes: c.bufferBytes, waitersMax: sendsWaitingMax })
    this.#roundRobin = new RoundRobinPartitioner(c.random === undefined ? {} : { random: c.random })
    this.#context = {
      acks: c.acks,
      idempotent: c.idempotent,
      lingerMs: c.lingerMs,
      batchBytes: c.batchBytes,
      batchRecordsMax: c.batchRecordsMax,
      maxInFlight: c.maxInFlight,
      retries: c.retries,
      deliveryTimeoutMs: c.deliveryTimeoutMs,
      retryBackoffMs: c.retryBackoffMs,
      retryBackoffMaxMs: c.retryBackoffMaxMs,
      random: c.random,
      flushing: () => this.#flushing > 0,
      produce: (req) => this.#produce(req),
      identity: (fresh) => this.#producerIdentity(fresh),
      batchClosed: (topic, partition) => {
        if (this.#sticky.get(topic) === partition) this.#sticky.delete(topic)
      },
      batchSettled: (batch: ProducerBatch) => this.#budget.release(batch.sizeBytes),
    }
  }

  /** Bytes of records held now (queued or in flight). */
  get bufferedBytes(): number {
    return this.#budget.usedBytes
  }

  /**
   * Sends records to a topic; resolves once they are acknowledged (per
   * `acks`) with where each was written. Waits while the buffer is full.
   * Records of successive calls to one partition keep their call order.
   * Rejects with a RillClientError: INVALID_REQUEST / TOO_LARGE for a bad
   * record (nothing of this call is sent), UNKNOWN_TOPIC, UNKNOWN_PARTITION,
   * TIMEOUT (not acknowledged within `deliveryTimeoutMs`), CLOSED.
   */
  send(topic: string, record: ProducerRecord): Promise<RecordMetadata>
  send(topic: string, records: readonly ProducerRecord[]): Promise<RecordMetadata[]>
  async send(topic: string, records: ProducerRecord | readonly ProducerRecord[]): Promise<RecordMetadata | RecordMetadata[]> {
    if (!this.#accepting) throw closedError()
    if (typeof topic !== 'string' || topic.length === 0) throw new RillClientError(ClientErrorCode.INVALID_REQUEST, 'send: topic must be a non-empty string', { retriable: false })
    const list = Array.isArray(records) ? (records as readonly ProducerRecord[]) : [records as ProducerRecord]
    const nowMs = Date.now()
    const prepared = list.map((r, i) => {
      try {
        return prepareRecord(r, nowMs)
      } catch (error) {
        if (list.length > 1 && error instanceof RillClientError) (error as { message: string }).message = `record ${i}: ${error.message}`
        throw error
      }
    })
    if (this.#sendsWaiting >= sendsWaitingMax) throw new RillClientError(ClientErrorCode.BUSY, `more than ${sendsWaitingMax} send calls waiting`)
    const deadlineMs = nowMs + this.config.deliveryTimeoutMs
    const acks = new SendAcks(prepared.length)
    this.#sendsWaiting++
    const step = this.#intake.then(() => this.#appendAll(topic, prepared, acks, deadlineMs))
    this.#intake = step.catch(() => undefined)
    try {
      await step
    } finally {
      this.#sendsWaiting--
    }
    const results = await acks.done
    return Array.isArray(records) ? results : results[0]!
  }

  /**
   * The topic's partitions as metadata describes them (leader and replicas
   * by broker id); UNKNOWN_TOPIC if there is no such topic. What a caller
   * checks an explicit partition against before sending. Retriable
   * failures (no broker answers) are retried for `waitMs` (default: the
   * delivery timeout; 0 for one attempt).
   */
  async partitionsFor(topic: string, options: { waitMs?: number } = {}): Promise<{ partition: number; leader: number | null; replicas: number[] }[]> {
    if (!this.#accepting) throw closedError()
    const info = await this.#topicInfo(topic, Date.now() + (options.waitMs ?? this.config.deliveryTimeoutMs))
    return info.partitions.map((p) => ({ partition: p.partition, leader: p.leader, replicas: [...p.replicas] }))
  }

  /** Sends everything buffered now without lingering; resolves when all of it is settled (acknowledged or failed). */
  async flush(): Promise<void> {
    this.#flushing++
    try {
      await this.#intake
      const batches: ProducerBatch[] = []
      for (const s of this.#senders.values()) {
        s.pump()
        batches.push(...s.batches())
      }
      await Promise.all(batches.map((b) => b.settled))
    } finally {
      this.#flushing--
    }
  }

  /** Refuses new sends, delivers what was sent (bounded by the delivery timeout), then closes connections. */
  close(): Promise<void> {
    this.#accepting = false
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    try {
      await this.flush()
    } finally {
      for (const s of this.#senders.values()) s.abort(closedError())
      this.#budget.failWaiters(closedError())
      await this.#client.close()
    }
  }

  async #appendAll(topic: string, records: readonly PreparedRecord[], acks: SendAcks, deadlineMs: number): Promise<void> {
    const info = await this.#topicInfo(topic, deadlineMs)
    const partitionCount = info.partitions.length
    for (const r of records) {
      if (r.partition !== undefined && r.partition >= partitionCount) {
        throw new RillClientError(ClientErrorCode.UNKNOWN_PARTITION, `topic ${topic} has ${partitionCount} partitions; partition ${r.partition} is not one`, { retriable: false })
      }
    }
    for (let slot = 0; slot < records.length; slot++) {
      const r = records[slot]!
      if (!this.#budget.tryReserve(r.sizeBytes)) await this.#budget.reserve(r.sizeBytes, Math.max(1, deadlineMs - Date.now()))
      let sender: PartitionSender
      try {
        sender = this.#sender(topic, this.#partitionFor(topic, r, partitionCount))
        // Sticky: a record that does not fit the open batch closes it and goes to the next partition,
        // instead of starting a one-record batch behind it (a request of its own, KIP-480's abortOnNewBatch).
        if (this.#sticks(r) && sender.closeIfFull(r.sizeBytes)) sender = this.#sender(topic, this.#partitionFor(topic, r, partitionCount))
      } catch (error) {
        this.#budget.release(r.sizeBytes)
        throw error
      }
      sender.appendTo(r, Date.now(), acks, slot)
    }
  }

  /** The topic's metadata; retriable failures (no broker answers, no quorum yet) are retried until the deadline. */
  async #topicInfo(topic: string, deadlineMs: number): Promise<TopicInfo> {
    for (let attempt = 0; ; attempt++) {
      try {
        const info = await this.#client.metadata.topic(topic)
        if (info.internal) throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `topic ${topic} is internal to the brokers`, { retriable: false })
        if (info.partitions.length === 0) throw new RillClientError(ClientErrorCode.UNKNOWN_TOPIC, `topic ${topic} has no partitions yet`)
        return info
      } catch (error) {
        const waitMs = backoffMs(attempt, { baseMs: this.config.retryBackoffMs, maxMs: this.config.retryBackoffMaxMs, ...(this.config.random ? { random: this.config.random } : {}) })
        if (!(error instanceof RillClientError) || !error.retriable || Date.now() + waitMs >= deadlineMs) throw error
        await sleep(waitMs)
      }
    }
  }

  #partitionFor(topic: string, record: PreparedRecord, partitionCount: number): number {
    if (record.partition !== undefined) return record.partition
    const p = this.config.partitioner
    const key = record.input.key ?? null
    if (typeof p === 'function') {
      const chosen = p({ topic, key, value: record.input.value, partitionCount })
      if (!Number.isSafeInteger(chosen) || chosen < 0 || chosen >= partitionCount) {
        throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `partitioner returned ${String(chosen)} for topic ${topic} of ${partitionCount} partitions`, { retriable: false })
      }
      return chosen
    }
    if (key !== null) return partitionForKey(key, partitionCount)
    if (p === 'round-robin') return this.#roundRobin.next(partitionCount)
    let sticky = this.#sticky.get(topic)
    if (sticky === undefined || sticky >= partitionCount) {
      sticky = this.#roundRobin.next(partitionCount)
      this.#sticky.set(topic, sticky)
    }
    return sticky
  }

  /** True if `record` goes where the sticky partitioner points. */
  #sticks(record: PreparedRecord): boolean {
    return record.partition === undefined && this.config.partitioner === 'sticky' && (record.input.key ?? null) === null
  }

  #sender(topic: string, partition: number): PartitionSender {
    const id = `${partition}/${topic}`
    let s = this.#senders.get(id)
    if (s === undefined) {
      if (this.#senders.size >= sendersMax) throw new RillClientError(ClientErrorCode.BUSY, `producing to more than ${sendersMax} partitions`)
      s = new PartitionSender(topic, partition, this.#context)
      this.#senders.set(id, s)
    }
    return s
  }

  /** The shared identity (one request, shared by every partition), or a fresh one for a partition that lost its sequence. */
  #producerIdentity(fresh: boolean): Promise<ProducerIdentity> {
    if (fresh) return this.#initProducer()
    if (this.#identity === null) {
      const p = this.#initProducer()
      this.#identity = p
      p.catch(() => {
        if (this.#identity === p) this.#identity = null
      })
    }
    return this.#identity
  }

  async #initProducer(): Promise<ProducerIdentity> {
    const r = await this.#client.requestAny<InitProducerResponse>({ method: 'POST', path: '/v1/producers', body: {} })
    if (typeof r.producerToken !== 'string') {
      throw new RillClientError(ClientErrorCode.BAD_RESPONSE, 'POST /v1/producers answered no producerToken (a broker older than producer tokens?)', { retriable: false })
    }
    return { producerId: r.producerId, producerEpoch: r.producerEpoch, producerToken: r.producerToken }
  }

  /** One attempt at one batch on the partition's leader; what the answer teaches goes into the metadata cache. */
  async #produce(req: ProduceAttempt): Promise<ProduceResponse> {
    const metadata = this.#client.metadata
    let leader = metadata.leader(req.topic, req.partition)
    if (leader === null) {
      await metadata.refresh().catch(() => undefined)
      leader = metadata.leader(req.topic, req.partition)
    }
    if (leader === null) {
      throw new RillClientError(ClientErrorCode.NOT_LEADER, `${req.topic}/${req.partition}: no leader known (an election under way?)`, { details: { leader: null } })
    }
    const path = `/v1/topics/${encodeURIComponent(req.topic)}/partitions/${req.partition}/records`
    try {
      // The batch goes to the socket as it is, after a small msgpack head: `{ acks, producerToken?, batch }`.
      const head = req.producerToken === undefined ? { acks: req.acks } : { acks: req.acks, producerToken: req.producerToken }
      const body = new MsgpackWithBytes(head, 'batch', req.batch)
      return await this.#client.request<ProduceResponse>({ url: leader.url, method: 'POST', path, body })
    } catch (error) {
      if (error instanceof RillClientError) this.#learn(req.topic, req.partition, leader.url, error)
      throw error
    }
  }

  #learn(topic: string, partition: number, askedUrl: string, error: RillClientError): void {
    const metadata = this.#client.metadata
    const hint = error.leader
    if (hint !== null && hint !== undefined && hint.url !== askedUrl) {
      metadata.noteLeader(topic, partition, hint)
      return
    }
    const stale =
      error.code === ClientErrorCode.NOT_LEADER ||
      error.code === ClientErrorCode.UNKNOWN_PARTITION ||
      error.code === ClientErrorCode.UNKNOWN_TOPIC ||
      error.code === ClientErrorCode.UNREACHABLE ||
      error.code === ClientErrorCode.TIMEOUT
    if (!stale) return
    metadata.forgetLeader(topic, partition)
    void metadata.refresh().catch(() => undefined)
  }
}

/**
 * The acknowledgements of one `send` call: where each record was written,
 * in call order. Settles when the last record is acknowledged, or at the
 * first failure (as Promise.all over the records would).
 */
class SendAcks implements RecordSink {
  readonly results: RecordMetadata[]
  readonly done: Promise<RecordMetadata[]>
  #waiting: number
  #resolve!: (results: RecordMetadata[]) => void
  #reject!: (error: Error) => void
  #failed = false

  constructor(count: number) {
    this.results = new Array<RecordMetadata>(count)
    this.#waiting = count
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    if (count === 0) this.#resolve(this.results)
    // A failure may come before `send` awaits this (later records still waiting for buffer space), or never be awaited (appending failed).
    this.done.catch(() => undefined)
  }

  acked(slot: number, metadata: RecordMetadata): void {
    this.results[slot] = metadata
    if (--this.#waiting === 0 && !this.#failed) this.#resolve(this.results)
  }

  failed(_slot: number, error: Error): void {
    this.#waiting--
    if (this.#failed) return
    this.#failed = true
    this.#reject(error)
  }
}

function closedError(): RillClientError {
  return new RillClientError(ClientErrorCode.CLOSED, 'the producer is closed', { retriable: false })
}
