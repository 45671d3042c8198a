/**
 * The producer's memory bound: every record holds its size from `send`
 * until its batch is settled. A `send` that does not fit waits (FIFO, so a
 * large record is not starved by small ones) — backpressure instead of
 * unbounded memory. Waiters are bounded too, and each wait has a deadline.
 */
import { ClientErrorCode, RillClientError } from '../client/index.ts'

interface Waiter {
  readonly bytes: number
  readonly resolve: () => void
  readonly reject: (error: RillClientError) => void
  timer: ReturnType<typeof setTimeout> | null
}

export class ByteBudget {
  readonly capacityBytes: number
  readonly #waitersMax: number
  #usedBytes = 0
  readonly #waiters: Waiter[] = []

  constructor(options: { capacityBytes: number; waitersMax: number }) {
    this.capacityBytes = options.capacityBytes
    this.#waitersMax = options.waitersMax
  }

  get usedBytes(): number {
    return this.#usedBytes
  }

  get waiting(): number {
    return this.#waiters.length
  }

  /** Takes `bytes` if they fit now and nobody waits before us (no promise: the common case of `send`); false otherwise. */
  tryReserve(bytes: number): boolean {
    if (this.#waiters.length > 0 || this.#usedBytes + bytes > this.capacityBytes) return false
    this.#usedBytes += bytes
    return true
  }

  /** Takes `bytes` now if they fit and nobody waits before us; else waits up to `waitMs` (TIMEOUT after). */
  reserve(bytes: number, waitMs: number): Promise<void> {
    if (bytes > this.capacityBytes) {
      return Promise.reject(new RillClientError(ClientErrorCode.TOO_LARGE, `record of ${bytes} bytes is larger than bufferBytes (${this.capacityBytes})`, { retriable: false }))
    }
    if (this.#waiters.length === 0 && this.#usedBytes + bytes <= this.capacityBytes) {
      this.#usedBytes += bytes
      return Promise.resolve()
    }
    if (this.#waiters.length >= this.#waitersMax) {
      return Promise.reject(new RillClientError(ClientErrorCode.BUSY, `more than ${this.#waitersMax} sends waiting for buffer space`, { retriable: true }))
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { bytes, resolve, reject, timer: null }
      waiter.timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter)
        if (i >= 0) this.#waiters.splice(i, 1)
        reject(new RillClientError(ClientErrorCode.TIMEOUT, `no buffer space for ${bytes} bytes within ${waitMs} ms (bufferBytes ${this.capacityBytes} full)`))
        this.#grant()
      }, waitMs)
      this.#waiters.push(waiter)
    })
  }

  /** Gives back bytes of settled records and wakes waiters that now fit. */
  release(bytes: number): void {
    this.#usedBytes -= bytes
    if (this.#usedBytes < 0) throw new Error(`ByteBudget: released more than reserved (${this.#usedBytes})`)
    this.#grant()
  }

  /** Fails every waiter (the producer is closing). */
  failWaiters(error: RillClientError): void {
    for (const w of this.#waiters.splice(0)) {
      if (w.timer !== null) clearTimeout(w.timer)
      w.reject(error)
    }
  }

  #grant(): void {
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0]!
      if (this.#usedBytes + w.bytes > this.capacityBytes) return
      this.#waiters.shift()
      if (w.timer !== null) clearTimeout(w.timer)
      this.#usedBytes += w.bytes
      w.resolve()
    }
  }
}
