/**
 * Choosing a partition for a record, shared by the broker's
 * `POST /v1/topics/:topic/records` and the producer SDK (API.md, issue 5).
 *
 * With a key: Kafka's default, `toPositive(murmur2(keyBytes)) % partitions`,
 * byte for byte, so a key lands on the same partition as it would in Kafka
 * (and kafkajs's JavaCompatiblePartitioner) with the same partition count.
 * Without a key: round-robin per record, or sticky (Kafka's KIP-480/794
 * idea: fill one partition's batch, then move on) to keep batches large.
 */
import type { Random } from '../base/index.ts'
import { ErrorCode, RillError } from '../base/index.ts'

const murmurSeed = 0x9747b28c
const murmurM = 0x5bd1e995
const murmurR = 24

/**
 * Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed 0x9747b28c, as a
 * signed int32 (the value Java returns).
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length
  let h = murmurSeed ^ length
  const length4 = length >>> 2
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24)
    k = Math.imul(k, murmurM)
    k ^= k >>> murmurR
    k = Math.imul(k, murmurM)
    h = Math.imul(h, murmurM)
    h ^= k
  }
  // Java's switch falls through 3 -> 2 -> 1; spelled out as ifs.
  const tail = length & ~3
  const rest = length & 3
  if (rest === 3) h ^= data[tail + 2]! << 16
  if (rest >= 2) h ^= data[tail + 1]! << 8
  if (rest >= 1) {
    h ^= data[tail]!
    h = Math.imul(h, murmurM)
  }
  h ^= h >>> 13
  h = Math.imul(h, murmurM)
  h ^= h >>> 15
  return h | 0
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not Math.abs: -2^31 stays in range). */
export function toPositive(n: number): number {
  return n & 0x7fffffff
}

function checkPartitionCount(partitionCount: number): void {
  if (!Number.isSafeInteger(partitionCount) || partitionCount < 1) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `partition count must be a positive integer, got ${partitionCount}`)
  }
}

/** The partition Kafka's default partitioner picks for a keyed record. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  checkPartitionCount(partitionCount)
  return toPositive(murmur2(key)) % partitionCount
}

/** A random start so that many producers do not all begin on partition 0. */
const mathRandom: Random = {
  next: () => Math.random(),
  int: (n) => Math.floor(Math.random() * n),
}

/** Keyless records, one partition after the other. */
export class RoundRobinPartitioner {
  #counter: number

  constructor(options: { random?: Random } = {}) {
    this.#counter = (options.random ?? mathRandom).int(0x7fffffff)
  }

  /** The partition for the next keyless record. */
  next(partitionCount: number): number {
    checkPartitionCount(partitionCount)
    const p = this.#counter % partitionCount
    this.#counter = (this.#counter + 1) % 0x7fffffff
    return p
  }
}

/**
 * Keyless records stick to one partition until `stickyBytes` have gone to
 * it, then move to the next (round-robin), so each partition's batch fills
 * before the producer spreads out — fewer, larger batches, as Kafka's
 * sticky partitioner.
 */
export class StickyPartitioner {
  readonly #stickyBytes: number
  #current: number
  #bytes = 0

  constructor(options: { stickyBytes: number; random?: Random }) {
    if (!(options.stickyBytes > 0)) throw new RillError(ErrorCode.INVALID_REQUEST, 'stickyBytes must be positive')
    this.#stickyBytes = options.stickyBytes
    this.#current = (options.random ?? mathRandom).int(0x7fffffff)
  }

  /** The partition for a keyless record of `recordBytes` bytes. */
  next(partitionCount: number, recordBytes: number): number {
    checkPartitionCount(partitionCount)
    if (this.#bytes >= this.#stickyBytes) {
      this.#current = (this.#current + 1) % 0x7fffffff
      this.#bytes = 0
    }
    this.#bytes += Math.max(1, recordBytes)
    return this.#current % partitionCount
  }
}
