/**
 * Simulated clients of whole brokers, calling the broker service the HTTP
 * layer calls (produce, fetch, topics, producer ids), on the client's own
 * runtime scope (never crashed). Each call has a client-side deadline: a
 * broker that crashes mid-call never answers, exactly like a real one.
 *
 * - Producers are idempotent, one batch in flight per partition, and retry
 *   the same batch (same sequence) until it is acknowledged, following
 *   NOT_LEADER to the named leader — so a batch is never written twice.
 *   With `acks=all` every acknowledgement goes to the ledger; `acks=leader`
 *   promises only the leader's disk (a new leader may not have it), so its
 *   acknowledgements are counted, not checked, and a sequence gap it may
 *   leave behind starts the producer over as a new one.
 * - Readers fetch from any replica (followers included), sometimes with
 *   `minCommitted` just past an acknowledged batch (read-your-writes), and
 *   hand every record to the ledger.
 */
import { ErrorCode, RillError, isRillError } from '../base/index.ts'
import type { Runtime } from '../base/index.ts'
import type { RuntimeScope } from './runtime.ts'
import type { Broker } from '../broker/broker.ts'
import { decodeBatch, encodeBatch } from '../wire/index.ts'
import type { SimBrokerCluster } from './brokers.ts'
import { SimViolation, type Ledger, type SeenRecord } from './ledger.ts'

/** How long a client waits for one call before it counts the outcome as unknown. */
export const clientCallMsMax = 8000
export const simTopic = 'events'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Codes a client may see from a healthy cluster under faults; anything else fails the seed. */
const expectedCodes = new Set<string>([
  ErrorCode.NOT_LEADER,
  ErrorCode.NO_QUORUM,
  ErrorCode.TIMEOUT,
  ErrorCode.PROPOSAL_DROPPED,
  ErrorCode.UNKNOWN_TOPIC,
  ErrorCode.UNKNOWN_PARTITION,
  ErrorCode.OFFSET_OUT_OF_RANGE,
  ErrorCode.STORAGE_FULL,
  ErrorCode.STORAGE_UNUSABLE,
  ErrorCode.STORAGE_READ_ONLY,
])

/**
 * Runs `fn` against a broker with a deadline on the client's clock. With
 * `via`, the broker's process scope: a paused process takes the call only
 * when it runs again (through its own timers), a dead one never.
 */
export function withDeadline<T>(runtime: Runtime, ms: number, fn: () => Promise<T>, via?: RuntimeScope | null): Promise<T> {
  const call = via?.paused === true ? (): Promise<T> => new Promise<T>((res, rej) => via.setTimer(() => void fn().then(res, rej), 0)) : fn
  return new Promise<T>((resolve, reject) => {
    const timer = runtime.setTimer(() => reject(new RillError(ErrorCode.TIMEOUT, `client gave up after ${ms} ms`)), ms)
    call().then(
      (v) => {
        timer.cancel()
        resolve(v)
      },
      (e: unknown) => {
        timer.cancel()
        reject(e)
      },
    )
  })
}

/** Fails the seed for an error no client of a correct broker should see. */
export function expectOperatingError(error: unknown, what: string, lossy = false): RillError {
  if (isRillError(error) && expectedCodes.has(error.code)) return error
  // A `memory` replica that restarted forgot the producer's sequences.
  if (lossy && isRillError(error, ErrorCode.OUT_OF_ORDER_SEQUENCE)) return error
  if (error instanceof SimViolation) throw error
  throw new SimViolation(`${what}: unexpected ${isRillError(error) ? error.code : 'error'}: ${(error as Error)?.stack ?? String(error)}`)
}

/** The leader a NOT_LEADER error names, if any. */
function leaderHint(error: RillError): number {
  const l = error.details['leader']
  if (typeof l === 'number') return l
  if (l !== null && typeof l === 'object' && typeof (l as { id?: unknown }).id === 'number') return (l as { id: number }).id
  return 0
}

export function decodeRecords(batches: readonly Uint8Array[]): SeenRecord[] {
  const out: SeenRecord[] = []
  for (const b of batches) for (const r of decodeBatch(b).records) out.push({ offset: r.offset, value: decoder.decode(r.value) })
  return out
}

interface PendingBatch {
  readonly partition: number
  readonly baseSequence: number
  readonly values: string[]
  attempts: number
}

export class SimProducer {
  readonly name: string
  readonly acks: 'all' | 'leader'
  producerId = -1
  /** The token that came with `producerId`: every batch carries it (the broker refuses one without). */
  #producerToken = ''
  #next = new Map<number, number>()
  #inFlight = new Map<number, PendingBatch>()
  #leader = new Map<number, number>()
  #records = 0
  #closed = false

  constructor(name: string, acks: 'all' | 'leader' = 'all') {
    this.name = name
    this.acks = acks
  }

  close(): void {
    this.#closed = true
  }

  /** Gets a producer id from some broker (retried until one answers). */
  async init(c: SimBrokerCluster, client: Runtime, ledger: Ledger): Promise<void> {
    while (this.producerId < 0 && !this.#closed) {
      const b = c.up()[c.random.int(Math.max(1, c.up().length))]
      if (b?.broker != null) {
        const broker: Broker = b.broker
        try {
          const r = await withDeadline(client, clientCallMsMax, () => broker.newProducerId(), b.scope)
          ledger.producerId(r.producerId, b.id)
          this.producerId = r.producerId
          this.#producerToken = r.producerToken
          c.trace(`${this.name}: producer id ${r.producerId} from broker ${b.id}`)
          return
        } catch (error) {
          expectOperatingError(error, `${this.name}: producer id`)
        }
      }
      await client.sleep(100 + c.random.int(200))
    }
  }

  busy(partition: number): boolean {
    return this.#inFlight.has(partition)
  }

  /** Sends one new batch to `partition` and retries it until acknowledged (or the producer closes). */
  async produce(c: SimBrokerCluster, client: Runtime, ledger: Ledger, partition: number, count: number): Promise<void> {
    if (this.producerId < 0) await this.init(c, client, ledger)
    if (this.producerId < 0 || this.#inFlight.has(partition)) return
    const seq = this.#next.get(partition) ?? 0
    const values: string[] = []
    // Unique across the run: a producer that starts over gets a new id and counts from 0 again.
    for (let i = 0; i < count; i++) values.push(`${this.name}.${this.producerId}/p${partition}/${seq + i}`)
    const pending: PendingBatch = { partition, baseSequence: seq, values, attempts: 0 }
    this.#inFlight.set(partition, pending)
    this.#next.set(partition, seq + count)
    const producerId = this.producerId
    const producerToken = this.#producerToken
    while (!this.#closed) {
      // Another partition's batch made this producer start over as a new one: this batch goes with the old identity.
      if (this.producerId !== producerId) return
      pending.attempts++
      const target = this.#target(c, partition)
      if (target !== null) {
        const batch = encodeBatch({
          records: values.map((v) => ({ value: encoder.encode(v) })),
          producerId,
          producerEpoch: 0,
          baseSequence: seq,
          timestampMs: client.wallMs(),
        })
        try {
          const r = await withDeadline(client, clientCallMsMax, () => target.broker!.produce({ topic: simTopic, partition, batch, acks: this.acks, producerToken }), c.brokers.get(target.id)!.scope)
          if (r.lastOffset - r.baseOffset + 1 !== values.length) throw new SimViolation(`${this.name}: ${values.length} records acknowledged as offsets ${r.baseOffset}..${r.lastOffset}`)
          if (this.acks === 'all') ledger.ack(partition, r.baseOffset, values, target.id)
          else ledger.leaderAcks++
          this.#records += values.length
          this.#inFlight.delete(partition)
          return
        } catch (error) {
          const e = expectOperatingError(error, `${this.name}: produce to broker ${target.id}`, ledger.lossy || this.acks === 'leader')
          if (e.code === ErrorCode.OUT_OF_ORDER_SEQUENCE) {
            // A batch acknowledged by a leader only, then lost with it (or a memory replica's restart): start over as a new producer.
            this.producerId = -1
            this.#next.clear()
            this.#inFlight.clear()
            return
          }
          const hint = e.code === ErrorCode.NOT_LEADER ? leaderHint(e) : 0
          if (hint !== 0) this.#leader.set(partition, hint)
          else this.#leader.delete(partition)
          // Redirected to a broker that is up: go there at once (still through a timer: a client
          // loop that never waits would spin if brokers kept pointing at each other).
          if (hint !== 0 && hint !== target.id && c.brokers.get(hint)?.up === true && pending.attempts % 4 !== 0) {
            await client.sleep(1)
            continue
          }
        }
      }
      await client.sleep(20 + c.random.int(100 * Math.min(pending.attempts, 10)))
    }
  }

  #target(c: SimBrokerCluster, partition: number): { id: number; broker: Broker } | null {
    const guess = this.#leader.get(partition)
    const b = guess === undefined ? undefined : c.brokers.get(guess)
    if (b?.broker != null && b.up) return { id: b.id, broker: b.broker }
    const up = c.up()
    if (up.length === 0) return null
    const pick = up[c.random.int(up.length)]!
    return { id: pick.id, broker: pick.broker! }
  }
}

/** One read from a random replica (or a read-your-writes read after `ackedEnd`). */
export async function readOnce(c: SimBrokerCluster, client: Runtime, ledger: Ledger, partition: number): Promise<void> {
  const up = c.up()
  if (up.length === 0) return
  const b = up[c.random.int(up.length)]!
  const broker = b.broker!
  const end = ledger.ackedEnd(partition)
  const ryw = end >= 0 && c.random.next() < 0.3
  const offset = ryw ? end : c.random.int(end + 2)
  try {
    const r = await withDeadline(client, clientCallMsMax, () =>
      broker.fetch({ topic: simTopic, partition, offset, maxBytes: 16 * 1024, maxWaitMs: c.random.int(200), ...(ryw ? { minCommitted: end + 1 } : {}) }),
      b.scope,
    )
    const records = decodeRecords(r.batches)
    ledger.read(partition, records, b.id)
    if (ryw && r.highWatermark > end && !records.some((x) => x.offset === end)) {
      throw new SimViolation(`partition ${partition}: read-your-writes fetch at offset ${end} from broker ${b.id} (hw ${r.highWatermark}) did not return it`)
    }
  } catch (error) {
    expectOperatingError(error, `read of partition ${partition} from broker ${b.id}`)
  }
}
