/**
 * What the simulated clients were told, and the checks against it. Every
 * observation of a committed record — an acknowledgement (offset → value)
 * or a read from any replica — must agree with every earlier one at that
 * offset; at the end every acknowledged record must be in every replica's
 * log exactly once, at its offset. A broken rule throws `SimViolation`,
 * which fails the seed on the spot with what was seen.
 *
 * `memory` topics promise nothing across a restart (a restarted replica
 * comes back empty, so acknowledged records can go and offsets be reused):
 * a lossy ledger checks only what still holds there — one leader per term
 * (terms and votes are durable even in memory mode) and, at the end, that
 * every replica holds the same log.
 */

export class SimViolation extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SimViolation'
  }
}

/** A record as clients see it: its offset and its (unique) value. */
export interface SeenRecord {
  readonly offset: number
  readonly value: string
}

export class Ledger {
  /** Per partition: offset → value, from the first committed observation. */
  readonly #atOffset = new Map<number, Map<number, string>>()
  /** Per partition: acknowledged offset → value. */
  readonly acked = new Map<number, Map<number, string>>()
  readonly #producerIds = new Set<number>()
  /** Leader of each (group, term) ever seen: a second one breaks election safety. */
  readonly #leaders = new Map<string, number>()
  acks = 0
  /** acks=leader acknowledgements: the leader's disk only, so not checked. */
  leaderAcks = 0
  reads = 0
  recordsRead = 0
  /** Acknowledged records may be lost (`memory` topics across restarts). */
  readonly lossy: boolean

  constructor(options: { lossy?: boolean } = {}) {
    this.lossy = options.lossy === true
  }

  /** A producer id handed out: ids are never given twice, across brokers and restarts. */
  producerId(id: number, by: number): void {
    if (this.#producerIds.has(id)) throw new SimViolation(`producer id ${id} handed out twice (second time by broker ${by})`)
    this.#producerIds.add(id)
  }

  get producerIds(): number {
    return this.#producerIds.size
  }

  /** A produce acknowledged with acks=all: these records are committed at these offsets. */
  ack(partition: number, baseOffset: number, values: readonly string[], by: number): void {
    this.acks++
    const acked = getOrAdd(this.acked, partition)
    for (let i = 0; i < values.length; i++) {
      const offset = baseOffset + i
      this.#observe(partition, offset, values[i]!, `ack from broker ${by}`)
      acked.set(offset, values[i]!)
    }
  }

  /** Records a replica returned as committed. */
  read(partition: number, records: readonly SeenRecord[], by: number): void {
    this.reads++
    this.recordsRead += records.length
    for (const r of records) this.#observe(partition, r.offset, r.value, `read from broker ${by}`)
  }

  /** A replica leads `group` in `term`: no other may, ever. */
  leader(group: string, term: number, id: number): void {
    const key = `${group}@${term}`
    const known = this.#leaders.get(key)
    if (known === undefined) this.#leaders.set(key, id)
    else if (known !== id) throw new SimViolation(`two leaders of ${group} in term ${term}: brokers ${known} and ${id}`)
  }

  #observe(partition: number, offset: number, value: string, how: string): void {
    if (this.lossy) return
    const at = getOrAdd(this.#atOffset, partition)
    const known = at.get(offset)
    if (known === undefined) at.set(offset, value)
    else if (known !== value) throw new SimViolation(`partition ${partition} offset ${offset}: ${how} says ${JSON.stringify(value)}, earlier ${JSON.stringify(known)}`)
  }

  /** The highest acknowledged offset of a partition, or -1. */
  ackedEnd(partition: number): number {
    let end = -1
    for (const o of this.acked.get(partition)?.keys() ?? []) if (o > end) end = o
    return end
  }

  /**
   * The end check for one replica's whole log of a partition (from offset
   * 0): every acknowledged record at its offset, no value twice.
   */
  checkFullLog(partition: number, records: readonly SeenRecord[], by: number): void {
    if (this.lossy) return
    const byOffset = new Map<number, string>()
    const values = new Map<string, number>()
    for (const r of records) {
      const twice = values.get(r.value)
      if (twice !== undefined) throw new SimViolation(`partition ${partition} on broker ${by}: ${JSON.stringify(r.value)} at offsets ${twice} and ${r.offset} (written twice)`)
      values.set(r.value, r.offset)
      byOffset.set(r.offset, r.value)
    }
    for (const [offset, value] of this.acked.get(partition) ?? []) {
      const got = byOffset.get(offset)
      if (got !== value) throw new SimViolation(`partition ${partition} on broker ${by}: acknowledged ${JSON.stringify(value)} at offset ${offset}, the log has ${got === undefined ? 'nothing' : JSON.stringify(got)}`)
    }
    this.read(partition, records, by)
  }
}

function getOrAdd<K, V>(m: Map<number, Map<K, V>>, key: number): Map<K, V> {
  let inner = m.get(key)
  if (inner === undefined) m.set(key, (inner = new Map()))
  return inner
}
