/**
 * One topic-partition's queue of batches and its pipeline to the leader.
 *
 *   append ──▶ pending [open | ready ...] ──▶ unacked [in-flight | waiting ...] ──▶ settled
 *                      (not yet sequenced)     (sequenced, in sequence order)
 *
 * Normal: up to `maxInFlight` batches in flight, each with the next
 * sequence numbers. The broker appends batch n+1 only right after n
 * (src/partition/state.ts checkSequence), so pipelining keeps order.
 *
 * Recovery: when a batch fails and may be retried, nothing new is sent;
 * once every request in flight has come back, the unacknowledged batches
 * are resent one at a time in sequence order (a batch after the failed one
 * was refused with OUT_OF_ORDER_SEQUENCE, or it was written and its resend
 * is answered with its original offsets). Pipelining resumes when none is
 * left waiting.
 *
 * A batch that fails for good (a refusal, or the delivery timeout) leaves a
 * hole in the sequence; nothing after it was written (it could not be), so
 * the batches after it are renumbered. When its fate is unknown (no answer
 * came back), the sequence is unknown too: the partition takes a fresh
 * producer identity, batches after it that may have been written fail as
 * well, and the others start again at sequence 0.
 *
 * Time and I/O come in through `SenderContext`, so tests drive this
 * against a fake broker.
 */
import type { Random } from '../src/base/index.ts'
import type { Acks, ProduceResponse } from '../src/wire/index.ts'
import { ClientErrorCode, RillClientError, backoffMs, throttleMsOf } from '../client/index.ts'
import { ProducerBatch, type ProducerIdentity, type RecordSink } from './batch.ts'
import type { PreparedRecord, RecordMetadata } from './records.ts'

/** What a sender needs from the producer: the wire, identities, time, and its settings. */
export interface SenderContext {
  readonly acks: Acks
  readonly idempotent: boolean
  readonly lingerMs: number
  readonly batchBytes: number
  readonly batchRecordsMax: number
  readonly maxInFlight: number
  readonly retries: number
  readonly deliveryTimeoutMs: number
  readonly retryBackoffMs: number
  readonly retryBackoffMaxMs: number
  readonly random: Random | undefined
  /** True while a flush (or close) waits: batches go out without lingering. */
  flushing(): boolean
  /** Sends a batch to the partition's leader; throws RillClientError. */
  produce(req: ProduceAttempt): Promise<ProduceResponse>
  /** The producer's identity (`fresh`: a new one, for a partition whose sequence is lost). */
  identity(fresh: boolean): Promise<ProducerIdentity>
  /** A batch left the open state: the sticky partitioner moves on. */
  batchClosed(topic: string, partition: number): void
  /** A batch settled: its bytes go back to the buffer. */
  batchSettled(batch: ProducerBatch): void
}

/** One send of one batch: the token of the identity it was encoded with goes along (idempotent producers). */
export interface ProduceAttempt {
  readonly topic: string
  readonly partition: number
  readonly batch: Uint8Array
  readonly acks: Acks
  readonly producerToken?: string
}

/** Largest sequence number (i32). A partition about to pass it takes a fresh identity. */
const sequenceMax = 0x7fffffff
/** Codes the broker answers that the sender retries besides `retriable` ones: metadata that is not there yet (a topic just created). */
const retriedCodes: ReadonlySet<string> = new Set([ClientErrorCode.UNKNOWN_PARTITION, ClientErrorCode.UNKNOWN_TOPIC])
/**
 * Answers that refuse a batch before the leader appends it. Any other
 * failure may come after the append: no answer at all, or the broker's own
 * 503 TIMEOUT (appended, not committed in time) and NOT_LEADER (leadership
 * lost after the append) — the entry may still be committed, by this leader
 * or the next. Such a batch must never have its sequence reused by another.
 */
const refusedBeforeAppendCodes: ReadonlySet<string> = new Set([
  ClientErrorCode.INVALID_REQUEST,
  // Over quota: refused before the broker was called (the answers of its other requests are being held).
  ClientErrorCode.THROTTLED,
  ClientErrorCode.UNAUTHORIZED,
  ClientErrorCode.FORBIDDEN,
  ClientErrorCode.INVALID_PRODUCER_TOKEN,
  ClientErrorCode.UNKNOWN_TOPIC,
  ClientErrorCode.UNKNOWN_PARTITION,
  ClientErrorCode.TOO_LARGE,
  ClientErrorCode.OUT_OF_ORDER_SEQUENCE,
  ClientErrorCode.NO_QUORUM,
  ClientErrorCode.PROPOSAL_DROPPED,
  // Refused at the door (too many requests in flight on the connection, no memory for answers): never appended.
  ClientErrorCode.OVERLOADED,
  ClientErrorCode.BUSY,
])

export class PartitionSender {
  readonly topic: string
  readonly partition: number
  readonly #ctx: SenderContext
  /** Not yet sequenced, in append order; the last may be open. */
  readonly #pending: ProducerBatch[] = []
  /** Sequenced, not acknowledged, in sequence order. */
  readonly #unacked: ProducerBatch[] = []
  /**
   * Sequenced batches from the oldest unacknowledged one to the newest,
   * acknowledged ones in between included: what the broker must still
   * remember for a resend of the oldest to be recognised (it keeps five).
   */
  #window: ProducerBatch[] = []
  #inFlight = 0
  #identity: ProducerIdentity | null = null
  #nextSequence = 0
  /** Set when a batch failed for good and the ones after it must be renumbered from this sequence. */
  #renumberFrom: number | null = null
  /** Set when the sequence is lost: take a fresh identity before sending again. */
  #resetIdentity = false
  /** An identity request under way. */
  #identityWait = false
  #identityAttempts = 0
  #identityRetryAtMs = 0
  #timer: ReturnType<typeof setTimeout> | null = null
  #timerAtMs = Infinity

  constructor(topic: string, partition: number, ctx: SenderContext) {
    this.topic = topic
    this.partition = partition
    this.#ctx = ctx
  }

  /** Batches not yet settled (for flush). */
  batches(): ProducerBatch[] {
    return [...this.#unacked, ...this.#pending]
  }

  get idle(): boolean {
    return this.#pending.length === 0 && this.#unacked.length === 0
  }

  /** Adds a record to the open batch (a new one when it is full); resolves when it is acknowledged. */
  append(record: PreparedRecord, nowMs: number): Promise<RecordMetadata> {
    return new Promise<RecordMetadata>((resolve, reject) => {
      this.appendTo(record, nowMs, { acked: (_slot, m) => resolve(m), failed: (_slot, e) => reject(e) }, 0)
    })
  }

  /** Adds a record to the open batch (a new one when it is full); `sink` learns its fate as `slot`. */
  appendTo(record: PreparedRecord, nowMs: number, sink: RecordSink, slot: number): void {
    let batch = this.#pending.at(-1)
    if (batch !== undefined && batch.state === 'open' && !this.#fits(batch, record.sizeBytes)) {
      this.#close(batch)
      batch = undefined
    }
    if (batch === undefined || batch.state !== 'open') {
      batch = new ProducerBatch({ topic: this.topic, partition: this.partition, nowMs, deliveryTimeoutMs: this.#ctx.deliveryTimeoutMs })
      this.#pending.push(batch)
    }
    batch.add(record.input, record.sizeBytes, sink, slot)
    if (batch.sizeBytes >= this.#ctx.batchBytes || batch.recordCount >= this.#ctx.batchRecordsMax) this.#close(batch)
    this.pump()
  }

  /**
   * Closes the open batch if a record of `sizeBytes` would not fit it (and
   * lets it go); true if it did. Lets the sticky partitioner move on before
   * the record is placed.
   */
  closeIfFull(sizeBytes: number): boolean {
    const batch = this.#pending.at(-1)
    if (batch === undefined || batch.state !== 'open' || this.#fits(batch, sizeBytes)) return false
    this.#close(batch)
    this.pump()
    return true
  }

  /** Fails everything not yet settled (close without flush, or a fatal producer error). */
  abort(error: RillClientError): void {
    this.#clearTimer()
    this.#window = []
    for (const b of [...this.#pending.splice(0), ...this.#unacked.splice(0)]) this.#settle(b, error)
  }

  /** Sends what can be sent now and arms the timer for the next thing to do. Called on every event. */
  pump(): void {
    const nowMs = Date.now()
    this.#expire(nowMs)
    if (!this.#sequenceReady(nowMs)) return this.#arm(nowMs, false)
    const recovering = this.#unacked.some((b) => b.state === 'waiting')
    if (recovering) this.#recover(nowMs)
    else this.#sendReady(nowMs)
    this.#arm(nowMs, !recovering)
  }

  #fits(batch: ProducerBatch, sizeBytes: number): boolean {
    return batch.sizeBytes + sizeBytes <= this.#ctx.batchBytes && batch.recordCount < this.#ctx.batchRecordsMax
  }

  #close(batch: ProducerBatch): void {
    if (batch.state !== 'open') return
    batch.state = 'ready'
    this.#ctx.batchClosed(this.topic, this.partition)
  }

  /** Recovery: once nothing is in flight, resend the first unacknowledged batch (one at a time, in order). */
  #recover(nowMs: number): void {
    if (this.#inFlight > 0) return
    const first = this.#unacked[0]!
    if (first.state !== 'waiting' || first.retryAtMs > nowMs) return
    this.#send(first)
  }

  /**
   * Normal: new batches, while the window from the oldest unacknowledged
   * batch holds fewer than maxInFlight. Not counted by requests in flight
   * nor by unacknowledged batches: answers come back out of order (several
   * connections), and batches acknowledged after the oldest one still take
   * places in the broker's memory of the last five.
   */
  #sendReady(nowMs: number): void {
    while (this.#window.length < this.#ctx.maxInFlight && this.#pending.length > 0) {
      const batch = this.#pending[0]!
      if (batch.state === 'open') {
        const lingered = nowMs - batch.createdAtMs >= this.#ctx.lingerMs
        if (!lingered && !this.#ctx.flushing()) return
        this.#close(batch)
      }
      if (this.#ctx.idempotent && this.#nextSequence + batch.recordCount - 1 > sequenceMax) {
        this.#resetIdentity = true
        this.#sequenceReady(nowMs)
        return
      }
      this.#pending.shift()
      batch.encode(this.#identity, this.#nextSequence)
      if (this.#ctx.idempotent) this.#nextSequence += batch.recordCount
      this.#unacked.push(batch)
      this.#window.push(batch)
      this.#send(batch)
    }
  }

  #send(batch: ProducerBatch): void {
    batch.state = 'in-flight'
    batch.attempts++
    this.#inFlight++
    const token = batch.identity === null ? {} : { producerToken: batch.identity.producerToken }
    const req: ProduceAttempt = { topic: this.topic, partition: this.partition, batch: batch.encoded!, acks: this.#ctx.acks, ...token }
    this.#ctx.produce(req).then(
      (answer) => this.#answered(batch, answer),
      (error: unknown) => this.#failed(batch, asClientError(error)),
    )
  }

  #answered(batch: ProducerBatch, answer: ProduceResponse): void {
    this.#inFlight--
    const i = this.#unacked.indexOf(batch)
    if (i >= 0) this.#unacked.splice(i, 1)
    batch.succeed(answer.baseOffset)
    this.#ctx.batchSettled(batch)
    this.#trimWindow()
    this.pump()
  }

  #failed(batch: ProducerBatch, error: RillClientError): void {
    this.#inFlight--
    batch.lastError = error
    if (!refusedBeforeAppendCodes.has(error.code)) batch.maybeWritten = true
    // The identity's token is not (or no longer: a new cluster secret) accepted: the batch fails, the next ones go with a fresh identity.
    if (error.code === ClientErrorCode.INVALID_PRODUCER_TOKEN && batch.identity === this.#identity) this.#resetIdentity = true
    if (error.code === ClientErrorCode.OUT_OF_ORDER_SEQUENCE) this.#outOfOrder(batch)
    else if (error.retriable || retriedCodes.has(error.code)) this.#retryLater(batch, error)
    else this.#failForGood(batch, error)
    this.pump()
  }

  /**
   * OUT_OF_ORDER_SEQUENCE: expected when a batch before this one is not
   * written yet (it failed and waits, or is being renumbered) — resend in
   * order. If it is the first unacknowledged batch, the broker lost track
   * of this producer's sequence: start over with a fresh identity.
   */
  #outOfOrder(batch: ProducerBatch): void {
    batch.state = 'waiting'
    batch.retryAtMs = 0
    const expected = this.#unacked[0] !== batch || this.#renumberFrom !== null || this.#resetIdentity
    if (!expected) {
      this.#resetIdentity = true
      this.#renumberFrom = null
    }
  }

  #retryLater(batch: ProducerBatch, error: RillClientError): void {
    batch.state = 'waiting'
    // A NOT_LEADER that names the leader is followed at once; anything else backs off.
    const redirect = error.code === ClientErrorCode.NOT_LEADER && error.leader !== null && error.leader !== undefined && batch.attempts <= 1
    // THROTTLED: not before the broker says the client is back under its quota.
    const waitMs = redirect ? 0 : Math.max(backoffMs(batch.attempts - 1, this.#backoff()), throttleMsOf(error))
    batch.retryAtMs = Date.now() + waitMs
  }

  #backoff(): { baseMs: number; maxMs: number; random?: Random } {
    const o = { baseMs: this.#ctx.retryBackoffMs, maxMs: this.#ctx.retryBackoffMaxMs }
    return this.#ctx.random === undefined ? o : { ...o, random: this.#ctx.random }
  }

  /** A batch that will not be written: its records fail; the batches after it need other sequence numbers. */
  #failForGood(batch: ProducerBatch, error: RillClientError): void {
    const i = this.#unacked.indexOf(batch)
    if (i >= 0) this.#unacked.splice(i, 1)
    // Not written (or the identity is replaced): the broker does not remember it.
    const w = this.#window.indexOf(batch)
    if (w >= 0) this.#window.splice(w, 1)
    this.#settle(batch, error)
    this.#trimWindow()
    if (!this.#ctx.idempotent || batch.baseSequence < 0) return
    if (batch.maybeWritten) this.#resetIdentity = true
    else if (!this.#resetIdentity) this.#renumberFrom = Math.min(this.#renumberFrom ?? Infinity, batch.baseSequence)
  }

  /** Fails batches past their delivery deadline or out of retries (only those not in flight: a request in flight is bounded by its own timeout). */
  #expire(nowMs: number): void {
    for (const b of [...this.#unacked]) {
      if (b.state !== 'waiting' || (b.deadlineMs > nowMs && b.attempts <= this.#ctx.retries)) continue
      this.#failForGood(b, expiredError(b, nowMs))
    }
    while (this.#pending.length > 0 && this.#pending[0]!.deadlineMs <= nowMs) {
      const b = this.#pending.shift()!
      this.#close(b)
      this.#settle(b, expiredError(b, nowMs))
    }
  }

  /**
   * Makes the sequence usable before anything is sent: the first identity,
   * a renumbering after a hole, a fresh identity after a lost sequence.
   * Renumbering waits until nothing is in flight. False while waiting.
   */
  #sequenceReady(nowMs: number): boolean {
    if (!this.#ctx.idempotent) return true
    if (this.#inFlight > 0 && (this.#renumberFrom !== null || this.#resetIdentity)) return false
    if (this.#renumberFrom !== null) {
      this.#renumberAfterHole(this.#renumberFrom)
      this.#renumberFrom = null
    }
    if (this.#identity !== null && !this.#resetIdentity) return true
    if (!this.#identityWait && nowMs >= this.#identityRetryAtMs) this.#fetchIdentity(this.#identity !== null)
    return false
  }

  #fetchIdentity(fresh: boolean): void {
    this.#identityWait = true
    this.#ctx.identity(fresh).then(
      (identity) => {
        this.#identityWait = false
        this.#identityAttempts = 0
        if (fresh || this.#resetIdentity) this.#takeFreshIdentity(identity)
        else this.#identity = identity
        this.pump()
      },
      (error: unknown) => {
        this.#identityWait = false
        this.#identityRetryAtMs = Date.now() + backoffMs(this.#identityAttempts++, this.#backoff())
        const e = asClientError(error)
        for (const b of this.#pending) b.lastError = e
        if (!e.retriable) this.abort(e)
        else this.pump()
      },
    )
  }

  /** A fresh identity: batches that may have been written under the old one fail (their fate is unknown); the rest restart at 0. */
  #takeFreshIdentity(identity: ProducerIdentity): void {
    this.#resetIdentity = false
    for (const b of [...this.#unacked]) {
      if (!b.maybeWritten) continue
      this.#unacked.splice(this.#unacked.indexOf(b), 1)
      this.#settle(b, new RillClientError(ClientErrorCode.TIMEOUT, `${this.topic}/${this.partition}: ${b.recordCount} records may or may not have been written (an attempt's outcome is unknown, then the sequence was lost)`, { cause: b.lastError }))
    }
    this.#identity = identity
    this.#window = [...this.#unacked]
    let sequence = 0
    for (const b of this.#unacked) {
      b.encode(identity, sequence)
      sequence += b.recordCount
    }
    this.#nextSequence = sequence
  }

  /** Closes the hole a failed batch left at `fromSequence`: the batches after it move down (batches before it keep theirs). */
  #renumberAfterHole(fromSequence: number): void {
    let sequence = fromSequence
    for (const b of this.#unacked) {
      if (b.baseSequence < fromSequence) continue
      b.encode(this.#identity, sequence)
      sequence += b.recordCount
    }
    this.#nextSequence = sequence
  }

  /** Drops acknowledged batches from the front of the window. */
  #trimWindow(): void {
    let n = 0
    while (n < this.#window.length && this.#window[n]!.state === 'done') n++
    if (n > 0) this.#window.splice(0, n)
  }

  #settle(batch: ProducerBatch, error: RillClientError): void {
    batch.fail(error)
    this.#ctx.batchSettled(batch)
  }

  /**
   * One timer per partition, at the earliest of: the open batch's linger
   * (when new batches may go out), the next retry, the next deadline, the
   * next identity attempt. Answers and appends pump by themselves.
   */
  #arm(nowMs: number, sendingNew: boolean): void {
    let atMs = Infinity
    const first = this.#pending[0]
    if (first !== undefined && sendingNew && first.state === 'open' && this.#window.length < this.#ctx.maxInFlight) {
      atMs = first.createdAtMs + this.#ctx.lingerMs
    }
    for (const b of this.#unacked) if (b.state === 'waiting') atMs = Math.min(atMs, b.retryAtMs, b.deadlineMs)
    if (first !== undefined) atMs = Math.min(atMs, first.deadlineMs)
    if (this.#ctx.idempotent && (this.#identity === null || this.#resetIdentity) && !this.#identityWait && this.#inFlight === 0 && !this.idle) atMs = Math.min(atMs, this.#identityRetryAtMs)
    if (atMs === Infinity) return this.#clearTimer()
    atMs = Math.max(atMs, nowMs + 1)
    if (this.#timer !== null && this.#timerAtMs <= atMs) return
    this.#clearTimer()
    this.#timerAtMs = atMs
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerAtMs = Infinity
      this.pump()
    }, atMs - nowMs)
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAtMs = Infinity
  }
}

function expiredError(batch: ProducerBatch, nowMs: number): RillClientError {
  const why = batch.deadlineMs <= nowMs ? `not acknowledged within the delivery timeout` : `still failing after ${batch.attempts} attempts`
  const fate = batch.maybeWritten ? ' (may or may not have been written: an attempt failed after the leader may have appended it)' : ''
  const last = batch.lastError === null ? '' : `; last error: ${batch.lastError.message}`
  return new RillClientError(ClientErrorCode.TIMEOUT, `${batch.topic}/${batch.partition}: ${batch.recordCount} records ${why}${fate}${last}`, {
    retriable: false,
    cause: batch.lastError ?? undefined,
  })
}

function asClientError(error: unknown): RillClientError {
  if (error instanceof RillClientError) return error
  return new RillClientError(ClientErrorCode.INTERNAL, `producer: ${(error as Error)?.message ?? String(error)}`, { cause: error, retriable: false })
}
