/**
 * Time and timers above the Raft core come in through this interface, and
 * `systemRuntime` below is the only place in src/ that reads the clock or
 * arms a timer (test/base/runtime-seam.test.ts fails when another appears).
 * The broker, its partition groups, the log store, the transport and the
 * coordinators take a `Runtime`; the simulator passes a virtual one
 * (src/sim/runtime.ts), so it runs the very code a broker runs, on a clock
 * it controls, and replays a failure from its seed.
 *
 *   real:  systemRuntime ── performance.now, Date.now, setTimeout, setImmediate
 *   sim:   VirtualRuntime ── event heap in virtual ms; `defer` runs at the same
 *                             virtual instant, after the work already queued
 */

/** Cancels a timer; cancelling one that already ran (or twice) does nothing. */
export interface TimerHandle {
  cancel(): void
}

export interface TimerOptions {
  /** The timer alone does not keep the process alive (a background flusher). */
  readonly background?: boolean
}

/** Time comes in through this interface outside the Raft core (which sees only ticks). */
export interface Clock {
  /** Milliseconds since an arbitrary epoch; never goes backwards. */
  nowMs(): number
}

export interface Runtime extends Clock {
  /** Wall-clock milliseconds since the Unix epoch: record timestamps, retention by age, MAC freshness. */
  wallMs(): number
  /** Runs `fn` once after `ms` milliseconds (0 or less: as soon as the loop comes round). */
  setTimer(fn: () => void, ms: number, options?: TimerOptions): TimerHandle
  /** Runs `fn` every `ms` milliseconds until cancelled. */
  setRepeating(fn: () => void, ms: number, options?: TimerOptions): TimerHandle
  /** Runs `fn` after the work already queued (promise callbacks included), before any timer that is due later. */
  defer(fn: () => void): TimerHandle
  /** Resolves after `ms` milliseconds; `signal` ends the wait early (resolving, not rejecting). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
}

const cancelled: TimerHandle = { cancel: () => {} }

/** The process's own clock and timers: the one real adapter. */
export const systemRuntime: Runtime = {
  nowMs: () => performance.now(),
  wallMs: () => Date.now(),
  setTimer(fn, ms, options) {
    const t = setTimeout(fn, Math.max(0, ms))
    if (options?.background === true) t.unref()
    return { cancel: () => clearTimeout(t) }
  },
  setRepeating(fn, ms, options) {
    const t = setInterval(fn, Math.max(1, ms))
    if (options?.background === true) t.unref()
    return { cancel: () => clearInterval(t) }
  },
  defer(fn) {
    const t = setImmediate(fn)
    return { cancel: () => clearImmediate(t) }
  },
  sleep(ms, signal) {
    if (signal?.aborted === true) return Promise.resolve()
    return new Promise((resolve) => {
      const onAbort = (): void => {
        clearTimeout(t)
        resolve()
      }
      const t = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }, Math.max(0, ms))
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  },
}

/** The process's monotonic clock (kept for callers that need only the time). */
export const systemClock: Clock = systemRuntime

/** A timer handle for "nothing armed", so fields need no null checks. */
export const noTimer: TimerHandle = cancelled

/** An AbortSignal that aborts (TimeoutError) after `ms` on `runtime`'s clock: `AbortSignal.timeout` through the seam. */
export function timeoutSignal(runtime: Runtime, ms: number): AbortSignal {
  const controller = new AbortController()
  runtime.setTimer(() => controller.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')), ms, { background: true })
  return controller.signal
}
