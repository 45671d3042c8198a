/**
 * One batch of one partition, from its first record to its settlement:
 *
 *   open ──(full, lingered, flush)──▶ sequenced + encoded ──▶ in flight ──▶ acknowledged
 *                                         ▲                      │
 *                                         └── waiting (retry) ◀──┘ retriable error
 *
 * The bytes are encoded once, when the batch gets its sequence, and resent
 * unchanged on retries (the broker recognises a retry by producer id,
 * sequence and record count). Only a renumbering (after a batch before it
 * failed for good) encodes it again.
 */
import { encodeBatch } from '../src/wire/index.ts'
import type { RecordInput } from '../src/wire/index.ts'
import type { RillClientError } from '../client/index.ts'
import type { RecordMetadata } from './records.ts'

/** A producer identity from `POST /v1/producers`. */
export interface ProducerIdentity {
  readonly producerId: number
  readonly producerEpoch: number
  /** Sent with every batch of this identity: the broker refuses one without it (403 INVALID_PRODUCER_TOKEN). */
  readonly producerToken: string
}

/**
 * Who learns the fate of records: told once per record, by its slot (its
 * place in the caller's list). A `send` call is one sink for all its
 * records, so a record costs no promise of its own.
 */
export interface RecordSink {
  acked(slot: number, metadata: RecordMetadata): void
  failed(slot: number, error: Error): void
}

/** Records `recordStart ..+ count` of a batch belong to `sink` at slots `slotStart ..+ count` (a send's records mostly arrive in one run). */
interface SinkRun {
  readonly sink: RecordSink
  readonly slotStart: number
  readonly recordStart: number
  count: number
}

export type BatchState = 'open' | 'ready' | 'in-flight' | 'waiting' | 'done'

export class ProducerBatch {
  readonly topic: string
  readonly partition: number
  readonly createdAtMs: number
  /** Records fail with TIMEOUT when not acknowledged by then. */
  readonly deadlineMs: number
  readonly records: RecordInput[] = []
  readonly #runs: SinkRun[] = []
  sizeBytes = 0
  state: BatchState = 'open'
  /** Sequence of the first record; -1 until sequenced (and always when not idempotent). */
  baseSequence = -1
  identity: ProducerIdentity | null = null
  encoded: Uint8Array | null = null
  /** Sends so far. */
  attempts = 0
  /** When a waiting batch may be resent. */
  retryAtMs = 0
  /** Some attempt failed in a way that may follow the append (no answer, TIMEOUT, NOT_LEADER): the broker may have written it. Sticky. */
  maybeWritten = false
  /** The last error, for the message when the batch finally fails. */
  lastError: RillClientError | null = null
  /** Resolved when every record is settled (acknowledged or failed). */
  readonly settled: Promise<void>
  #settle!: () => void

  constructor(options: { topic: string; partition: number; nowMs: number; deliveryTimeoutMs: number }) {
    this.topic = options.topic
    this.partition = options.partition
    this.createdAtMs = options.nowMs
    this.deadlineMs = options.nowMs + options.deliveryTimeoutMs
    this.settled = new Promise((resolve) => (this.#settle = resolve))
  }

  get recordCount(): number {
    return this.records.length
  }

  /** Adds a record whose fate `sink` learns as `slot`. */
  add(record: RecordInput, sizeBytes: number, sink: RecordSink, slot: number): void {
    const last = this.#runs.at(-1)
    if (last !== undefined && last.sink === sink && last.slotStart + last.count === slot) last.count++
    else this.#runs.push({ sink, slotStart: slot, recordStart: this.records.length, count: 1 })
    this.records.push(record)
    this.sizeBytes += sizeBytes
  }

  /** Gives the batch its sequence (idempotent producers) and encodes it. */
  encode(identity: ProducerIdentity | null, baseSequence: number): void {
    this.identity = identity
    this.baseSequence = identity === null ? -1 : baseSequence
    this.encoded =
      identity === null
        ? encodeBatch({ records: this.records })
        : encodeBatch({ records: this.records, producerId: identity.producerId, producerEpoch: identity.producerEpoch, baseSequence })
  }

  /** Every record written at `baseOffset + i`. */
  succeed(baseOffset: number): void {
    this.state = 'done'
    const { topic, partition } = this
    for (const run of this.#runs) {
      for (let i = 0; i < run.count; i++) run.sink.acked(run.slotStart + i, { topic, partition, offset: baseOffset + run.recordStart + i })
    }
    this.#runs.length = 0
    this.#settle()
  }

  fail(error: Error): void {
    this.state = 'done'
    for (const run of this.#runs) {
      for (let i = 0; i < run.count; i++) run.sink.failed(run.slotStart + i, error)
    }
    this.#runs.length = 0
    this.#settle()
  }
}
