/**
 * The simulator's `Runtime`: virtual milliseconds on an event heap. Every
 * timer a broker arms (ticks, flushes, deadlines, disk latency, network
 * delivery) is an event; the driver runs them in (time, sequence) order and,
 * after each, lets the promise callbacks it started run to completion before
 * the next event, so a schedule replays exactly from its seed.
 *
 *   VirtualRuntime (the clock, the heap, the driver)
 *     └─ scope(name) ── one per simulated broker process: `kill()` drops its
 *                       timers and refuses new ones (a crash: nothing it had
 *                       scheduled ever runs)
 *
 * Livelock: events at one virtual instant are bounded (`eventsPerInstantMax`):
 * code that reschedules itself without waiting for time to pass fails the
 * seed instead of hanging the simulator.
 */
import type { Runtime, TimerHandle, TimerOptions } from '../base/index.ts'
import { systemRuntime } from '../base/index.ts'
import { EventHeap } from './heap.ts'

/** Wall clock of virtual time 0 (2026-01-01T00:00:00Z): record timestamps look real. */
export const virtualEpochWallMs = 1_767_225_600_000
/** Events run at one virtual instant before the schedule is declared a livelock. */
export const eventsPerInstantMax = 200_000

export class LivelockError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'LivelockError'
  }
}

interface Slot {
  cancelled: boolean
}

/** What a process scope says of an event that came due: run it, drop it, or run it at this virtual time. */
type Gate = () => 'run' | 'drop' | number

/** Lets every promise callback queued so far (and those they queue) run: one real macrotask hop. */
export function settle(): Promise<void> {
  return new Promise((resolve) => systemRuntime.defer(resolve))
}

export class VirtualRuntime implements Runtime {
  readonly #heap = new EventHeap()
  #seq = 0
  #nowMs = 0
  #eventsAtInstant = 0
  #instantMs = -1
  /** Events run so far. */
  events = 0

  nowMs(): number {
    return this.#nowMs
  }

  wallMs(): number {
    return virtualEpochWallMs + Math.floor(this.#nowMs)
  }

  setTimer(fn: () => void, ms: number, _options?: TimerOptions): TimerHandle {
    return this.#schedule(fn, ms, null)
  }

  setRepeating(fn: () => void, ms: number, _options?: TimerOptions): TimerHandle {
    const period = Math.max(1, ms)
    const slot: Slot = { cancelled: false }
    const arm = (): void => {
      this.#push(this.#nowMs + period, () => {
        if (slot.cancelled) return
        arm()
        fn()
      })
    }
    arm()
    return { cancel: () => void (slot.cancelled = true) }
  }

  defer(fn: () => void): TimerHandle {
    return this.#schedule(fn, 0, null)
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal)
  }

  /** A runtime for one simulated process: same clock, its own timers, killed with it. */
  scope(): RuntimeScope {
    return new RuntimeScope(this)
  }

  /** Time of the next event, or undefined when nothing is scheduled. */
  nextEventMs(): number | undefined {
    return this.#heap.peek()?.timeMs
  }

  /**
   * Runs events in order until virtual time `untilMs` (events at exactly
   * `untilMs` included), settling promise callbacks after each. Throws
   * LivelockError when one instant holds more than `eventsPerInstantMax`.
   * `afterEvent` runs after each settled event (the simulator's checks).
   */
  async runUntil(untilMs: number, afterEvent?: () => void): Promise<void> {
    for (;;) {
      const next = this.#heap.peek()
      if (next === undefined || next.timeMs > untilMs) break
      this.#heap.pop()
      if (next.timeMs > this.#nowMs) this.#nowMs = next.timeMs
      if (this.#instantMs !== this.#nowMs) {
        this.#instantMs = this.#nowMs
        this.#eventsAtInstant = 0
      }
      if (++this.#eventsAtInstant > eventsPerInstantMax) {
        throw new LivelockError(`livelock: more than ${eventsPerInstantMax} events at virtual ${this.#nowMs.toFixed(3)} ms without time passing`)
      }
      this.events++
      next.run()
      await settle()
      afterEvent?.()
    }
    if (untilMs > this.#nowMs) this.#nowMs = untilMs
  }

  /** Used by scopes: schedules `fn`; when it comes due, `gate` says run it, drop it (a dead process) or run it later (a paused one). */
  schedule(fn: () => void, ms: number, gate: Gate | null): TimerHandle {
    return this.#schedule(fn, ms, gate)
  }

  #schedule(fn: () => void, ms: number, gate: Gate | null): TimerHandle {
    const slot: Slot = { cancelled: false }
    const run = (): void => {
      if (slot.cancelled) return
      const verdict = gate === null ? 'run' : gate()
      if (verdict === 'drop') return
      if (verdict !== 'run') {
        this.#push(verdict, run)
        return
      }
      fn()
    }
    this.#push(this.#nowMs + Math.max(0, ms), run)
    return { cancel: () => void (slot.cancelled = true) }
  }

  #push(timeMs: number, run: () => void): void {
    this.#heap.push({ timeMs, seq: this.#seq++, run })
  }
}

/** One simulated process's view of the virtual runtime. */
export class RuntimeScope implements Runtime {
  readonly #root: VirtualRuntime
  #alive = true
  #pausedUntilMs = 0
  /** Events this process ran (the livelock detector samples it per virtual second). */
  events = 0
  readonly #gate: Gate = () => {
    if (!this.#alive) return 'drop'
    if (this.#pausedUntilMs > this.#root.nowMs()) return this.#pausedUntilMs
    this.events++
    return 'run'
  }

  constructor(root: VirtualRuntime) {
    this.#root = root
  }

  get alive(): boolean {
    return this.#alive
  }

  /** The process died: nothing it scheduled runs, nothing new is scheduled. */
  kill(): void {
    this.#alive = false
  }

  /**
   * The process stops running for `ms` (SIGSTOP, a long GC pause, a VM
   * stall): its timers and the messages delivered to it wait until then.
   * (Promise callbacks of work already under way still run: a process
   * scope cannot hold those back.)
   */
  /** True while the process is paused. */
  get paused(): boolean {
    return this.#pausedUntilMs > this.#root.nowMs()
  }

  pause(ms: number): void {
    this.#pausedUntilMs = Math.max(this.#pausedUntilMs, this.#root.nowMs() + ms)
  }

  nowMs(): number {
    return this.#root.nowMs()
  }

  wallMs(): number {
    return this.#root.wallMs()
  }

  setTimer(fn: () => void, ms: number, _options?: TimerOptions): TimerHandle {
    return this.#root.schedule(fn, ms, this.#gate)
  }

  setRepeating(fn: () => void, ms: number, _options?: TimerOptions): TimerHandle {
    const period = Math.max(1, ms)
    let cancelled = false
    let current: TimerHandle
    const arm = (): void => {
      current = this.#root.schedule(
        () => {
          if (cancelled) return
          arm()
          fn()
        },
        period,
        this.#gate,
      )
    }
    arm()
    return {
      cancel: () => {
        cancelled = true
        current.cancel()
      },
    }
  }

  defer(fn: () => void): TimerHandle {
    return this.#root.schedule(fn, 0, this.#gate)
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    // A dead process's waits never end (it is gone); an aborted wait ends at once.
    if (!this.#alive) return new Promise(() => {})
    return sleepOn(this, ms, signal)
  }
}

/** `Runtime.sleep` on a runtime's own timers: resolves after `ms`, or at once when `signal` aborts. */
function sleepOn(runtime: Runtime, ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted === true) return Promise.resolve()
  return new Promise((resolve) => {
    const t = runtime.setTimer(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      t.cancel()
      resolve()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
