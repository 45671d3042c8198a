/**
 * Where the time of one record goes inside a broker (bench/trace.ts): off
 * by default, and then each call is one boolean test. A broker started with
 * RILL_TRACE_STAGES=1 enables it (src/broker/broker.ts) with its clock and a
 * sink (a /metrics histogram, `rill_trace_stage_seconds{stage}`).
 *
 *   mark(key)            remembers when `key` happened (a record's propose, its receipt on a follower, ...)
 *   since(stage, key)    reports the time from `key`'s mark to now as `stage`
 *
 * Keys are `group#index` for one entry, `group@event` for the last event of
 * a group (the bench sends one record at a time, so "the last" is "this
 * record's"). The marks are bounded: past `marksMax` the oldest half goes.
 *
 * One process-wide tracer, not one per broker: several brokers in one
 * process (the tests, the simulator) never enable it.
 */
import type { Clock } from './runtime.ts'

/** Marks kept at most (each a string key and a number); the oldest go first. */
const marksMax = 4096

export type StageSink = (stage: string, seconds: number) => void

class StageTrace {
  /** Read on the hot path: false unless a broker enabled tracing. */
  enabled = false
  #clock: Clock | null = null
  #sink: StageSink | null = null
  readonly #marks = new Map<string, number>()

  enable(clock: Clock, sink: StageSink): void {
    this.#clock = clock
    this.#sink = sink
    this.enabled = true
  }

  disable(): void {
    this.enabled = false
    this.#clock = null
    this.#sink = null
    this.#marks.clear()
  }

  now(): number {
    return this.#clock === null ? 0 : this.#clock.nowMs()
  }

  mark(key: string, atMs = this.now()): void {
    if (!this.enabled) return
    if (this.#marks.size >= marksMax) {
      let drop = marksMax / 2
      for (const k of this.#marks.keys()) {
        this.#marks.delete(k)
        if (--drop === 0) break
      }
    }
    this.#marks.delete(key)
    this.#marks.set(key, atMs)
  }

  /** Reports now − mark(`key`) as `stage`, if `key` was marked; `forget` drops the mark (reported once). */
  since(stage: string, key: string, forget = false): void {
    if (!this.enabled) return
    const at = this.#marks.get(key)
    if (at === undefined) return
    if (forget) this.#marks.delete(key)
    this.#sink!(stage, Math.max(0, this.now() - at) / 1000)
  }

  /** Reports a duration measured elsewhere (fastify's `reply.elapsedTime`) as `stage`. */
  report(stage: string, seconds: number): void {
    if (!this.enabled) return
    this.#sink!(stage, Math.max(0, seconds))
  }

  /** Reports now − `fromMs` as `stage`. */
  sinceMs(stage: string, fromMs: number): void {
    if (!this.enabled) return
    this.#sink!(stage, Math.max(0, this.now() - fromMs) / 1000)
  }
}

/** The process's stage tracer (disabled unless a broker enabled it). */
export const stageTrace = new StageTrace()
