/**
 * Producer ids: brokerId · 2^32 + n, with n reserved in blocks in a small
 * file of the data directory, so an id never repeats — not across restarts
 * (a restart starts after the last reserved block, losing at most the
 * unused rest of it) and not between concurrent callers: one reservation
 * runs at a time and everyone waiting for ids shares it. (Two reservations
 * at once used to read the same counter and write the same block, handing
 * one id to two producers.) The file is replaced atomically and durably:
 * temp file, fsync, rename, directory fsync.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import { isErrorCode, readFile, storageError, writeFileAtomic, type LogIo } from '../log/index.ts'

/** Ids reserved per write of the file. */
export const producerIdBlock = 1000
/** Ids per broker (the low 32 bits). */
const producerIdsPerBroker = 2 ** 32

export class ProducerIds {
  readonly #brokerId: number
  readonly #path: string
  readonly #io: LogIo
  #next = 0
  #limit = 0
  #reserving: Promise<void> | null = null

  constructor(options: { brokerId: number; path: string; io: LogIo }) {
    this.#brokerId = options.brokerId
    this.#path = options.path
    this.#io = options.io
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
    return this.#brokerId * producerIdsPerBroker + this.#next++
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
