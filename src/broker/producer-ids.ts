/**
 * Producer ids: unique in the cluster and unpredictable to anyone without
 * the cluster secret.
 *
 *   counter n (this broker's, reserved in blocks on disk) ──▶ u = brokerId · 2^32 + n   (unique: distinct brokers, never-repeating n)
 *   u ──▶ id = π(u), π a keyed permutation of [0, 2^53)                                  (unpredictable: π's key comes from the secret)
 *
 * Uniqueness comes from the counter, unpredictability from π, and neither
 * gives up anything for the other: π is a bijection, so distinct u give
 * distinct ids, and every broker uses the same π (its key is derived from
 * the cluster secret), so two brokers' ranges stay disjoint after it. Plain
 * random 53-bit ids were the other choice, and the worse one: by the
 * birthday bound a cluster that hands out 10^8 ids over its life (one per
 * producer start) has about even odds of giving one id to two producers,
 * who would then share sequence numbers on a partition and could have each
 * other's batches answered as duplicates — records lost with a 200.
 * (Issue 10, hole 3: ids were brokerId · 2^32 + n in the clear, so anyone
 * could name a live producer's id.) Ids alone are not the guard — the
 * producer token (producer-tokens.ts) is what stops a third party writing
 * with an id it learnt — but a guessable id leaked how many producers a
 * broker had started and which ids were live.
 *
 * π is a Feistel network on 54 bits (two 27-bit halves, `feistelRounds`
 * rounds of HMAC-SHA256 under the derived key), walked until the result is
 * below 2^53 (cycle walking: at most a few steps, as half the 54-bit values
 * are below 2^53; it ends because the cycle through u returns to u < 2^53).
 *
 * The counter: n is reserved in blocks in a small file of the data
 * directory, so it never repeats — not across restarts (a restart starts
 * after the last reserved block, losing at most the unused rest of it) and
 * not between concurrent callers: one reservation runs at a time and
 * everyone waiting for ids shares it. (Two reservations at once used to
 * read the same counter and write the same block, handing one id to two
 * producers.) The file is replaced atomically and durably: temp file,
 * fsync, rename, directory fsync.
 *
 * A new cluster secret is a new π: ids handed out before and after a
 * change of secret come from different permutations and may, with
 * probability about (live producers × new ids) / 2^53, meet. Changing the
 * secret already means stopping every broker (they must share it) and
 * every producer taking a new id (old tokens no longer verify).
 */
import { createHmac } from 'node:crypto'
import { ErrorCode, RillError, assert } from '../base/index.ts'
import { isErrorCode, readFile, storageError, writeFileAtomic, type LogIo } from '../log/index.ts'

/** Ids reserved per write of the file. */
export const producerIdBlock = 1000
/** Ids per broker (the low 32 bits of the unique value before the permutation). */
const producerIdsPerBroker = 2 ** 32
/** Bits of each Feistel half: 2 · 27 = 54 ≥ 53. */
const halfBits = 27
const halfSize = 2 ** halfBits
const halfMask = halfSize - 1
/** Producer ids are below this (the batch header's u64 must stay a safe integer). */
const producerIdLimit = 2 ** 53
/**
 * Feistel rounds. Four make a keyed pseudorandom permutation (Luby–Rackoff);
 * more widen the margin on so small a domain. Ids are handed out rarely,
 * so 8 HMACs per walk step cost nothing that matters.
 */
const feistelRounds = 8
/** Cycle-walking steps before giving up: each step leaves [2^53, 2^54) with probability 1/2, so 64 is never reached. */
const walkStepsMax = 64

/** The permutation's key: derived from the cluster secret under a label of its own (never a MAC key of anything else). */
export function producerIdKey(secret: Uint8Array): Buffer {
  return createHmac('sha256', secret).update('rill/producer-id-permutation/1').digest()
}

function feistel(key: Uint8Array, value: number): number {
  let left = Math.floor(value / halfSize)
  let right = value % halfSize
  const input = Buffer.alloc(5)
  for (let round = 0; round < feistelRounds; round++) {
    input[0] = round
    input.writeUInt32BE(right, 1)
    const f = createHmac('sha256', key).update(input).digest().readUInt32BE(0) & halfMask
    const next = (left ^ f) & halfMask
    left = right
    right = next
  }
  return left * halfSize + right
}

/**
 * The keyed permutation of [0, 2^53) that turns unique counter values into
 * producer ids: a bijection, so distinct inputs give distinct ids.
 */
export function permuteProducerId(key: Uint8Array, unique: number): number {
  assert(Number.isSafeInteger(unique) && unique >= 0, `producer id input ${unique} is not in [0, 2^53)`)
  let value = unique
  for (let step = 0; step < walkStepsMax; step++) {
    value = feistel(key, value)
    if (value < producerIdLimit) return value
  }
  throw new RillError(ErrorCode.INTERNAL, `producer id permutation did not leave [2^53, 2^54) in ${walkStepsMax} steps`)
}

export class ProducerIds {
  readonly #brokerId: number
  readonly #path: string
  readonly #io: LogIo
  readonly #key: Uint8Array
  #next = 0
  #limit = 0
  #reserving: Promise<void> | null = null

  /** `key`: the permutation's key, `producerIdKey(cluster secret)` — the same on every broker. */
  constructor(options: { brokerId: number; path: string; io: LogIo; key: Uint8Array }) {
    this.#brokerId = options.brokerId
    this.#path = options.path
    this.#io = options.io
    this.#key = options.key
  }

  /** A producer id no one else was or will be given. */
  async next(): Promise<number> {
    // Bounded: each pass either takes an id or waits for a reservation that raised the limit (or threw).
    while (this.#next >= this.#limit) {
      this.#reserving ??= this.#reserve().finally(() => {
        this.#reserving = null
      })
      await this.#reserving
    }
    return permuteProducerId(this.#key, this.#brokerId * producerIdsPerBroker + this.#next++)
  }

  async #reserve(): Promise<void> {
    let next = 0
    try {
      const text = (await readFile(this.#io, this.#path)).toString('utf8').trim()
      next = Number(text)
      if (!/^\d+$/.test(text) || !Number.isSafeInteger(next)) throw new RillError(ErrorCode.STORAGE_CORRUPT, `${this.#path}: not a counter`)
    } catch (error) {
      if (!isErrorCode(error, 'ENOENT')) throw storageError(error, `${this.#path}: reading the producer id counter`)
    }
    // Never below what this process already handed out (the file may be older than memory after a failed write).
    const from = Math.max(next, this.#limit)
    const limit = from + producerIdBlock
    if (limit >= producerIdsPerBroker) throw new RillError(ErrorCode.INTERNAL, 'producer ids of this broker exhausted')
    try {
      await writeFileAtomic(this.#io, this.#path, Buffer.from(`${limit}\n`))
    } catch (error) {
      throw storageError(error, `${this.#path}: writing the producer id counter`)
    }
    this.#next = from
    this.#limit = limit
  }
}
