/**
 * Waiting between retries. Jittered exponential backoff so that many clients
 * that failed together (a leader died) do not all come back in the same
 * millisecond; the random source is injectable so tests replay.
 */
import type { Random } from '../src/base/index.ts'

export interface BackoffOptions {
  /** First wait, before jitter (ms). */
  readonly baseMs: number
  /** Longest wait (ms). */
  readonly maxMs: number
  /** Defaults to Math.random. */
  readonly random?: Random
}

const mathRandom: Random = { next: () => Math.random(), int: (n) => Math.floor(Math.random() * n) }

/** Attempts past this do not grow the wait further (keeps 2^attempt finite). */
const backoffDoublingsMax = 30

/**
 * The wait before retry number `attempt` (0 for the first retry):
 * `min(maxMs, baseMs * 2^attempt)`, then "equal jitter" — a uniform pick in
 * its upper half, so waits still grow but never collapse to zero.
 */
export function backoffMs(attempt: number, options: BackoffOptions): number {
  const random = options.random ?? mathRandom
  const doublings = Math.min(Math.max(0, Math.floor(attempt)), backoffDoublingsMax)
  const ceilingMs = Math.min(options.maxMs, options.baseMs * 2 ** doublings)
  return Math.round(ceilingMs / 2 + random.next() * (ceilingMs / 2))
}

/** Resolves after `ms`, or at once when `signal` aborts (the listener is removed either way); never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted === true || ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      resolve()
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
