/**
 * The `memory` persistence mode: a PartitionLog with no files, for tests,
 * caches and the simulator. Same checks and same answers as the disk log,
 * so code tested against it behaves the same on disk.
 */
import type { Logger } from 'pino'
import { assert } from '../base/index.ts'
import { appendEntriesMax, assertAppend, checkReadStart, entryBytes, termOutOfRange } from './checks.ts'
import type { EntryToAppend, HardState, LogEntry, SnapshotMeta } from './format.ts'
import type { LogMetrics } from './metrics.ts'
import type { DamageReport, PartitionLog, RetentionResult } from './types.ts'

/** A log held in memory; `retentionBytes` and `retentionMs` apply to whole entries. */
export class MemoryLog implements PartitionLog {
  readonly name: string
  readonly mode = 'memory' as const
  readonly damage: DamageReport | undefined = undefined
  #entries: LogEntry[] = []
  /** Index of #entries[0]. */
  #first = 1
  #snapshot: SnapshotMeta = { index: 0, term: 0 }
  #hardState: HardState = { term: 0, vote: 0, commit: 0 }
  #closed = false
  readonly #metrics: LogMetrics | undefined
  readonly #retentionBytes: number
  readonly #retentionMs: number

  constructor(options: { name: string; metrics?: LogMetrics; logger?: Logger; retentionBytes?: number; retentionMs?: number }) {
    this.name = options.name
    this.#metrics = options.metrics
    this.#retentionBytes = options.retentionBytes ?? Infinity
    this.#retentionMs = options.retentionMs ?? Infinity
    this.#metrics?.openLogs.inc({ mode: 'memory' })
    options.logger?.info({ log: this.name, mode: 'memory' }, 'log opened (memory mode: nothing is persisted)')
  }

  firstIndex(): number {
    return this.#first
  }

  lastIndex(): number {
    return this.#first + this.#entries.length - 1
  }

  term(index: number): number {
    if (index === this.#first - 1 && index === this.#snapshot.index) return this.#snapshot.term
    if (index === 0) return 0
    if (index < this.#first || index > this.lastIndex()) throw termOutOfRange(this.name, index, this.#first, this.lastIndex())
    return this.#entries[index - this.#first]!.term
  }

  async append(entries: readonly EntryToAppend[]): Promise<void> {
    this.#checkOpen()
    assertAppend({ name: this.name, entries, firstIndex: this.#first, lastIndex: this.lastIndex(), termBefore: (i) => this.term(i) })
    const first = entries[0]!.index
    this.#entries.length = first - this.#first
    let bytes = 0
    for (const e of entries) {
      this.#entries.push({ ...e, data: Uint8Array.prototype.slice.call(e.data) })
      bytes += entryBytes(e)
    }
    this.#metrics?.appendBytes.inc({ mode: 'memory' }, bytes)
    this.#metrics?.appendEntries.inc({ mode: 'memory' }, entries.length)
  }

  async read(options: { indexStart: number; bytesMax: number }): Promise<LogEntry[]> {
    checkReadStart(this.name, options.indexStart, this.#first)
    const out: LogEntry[] = []
    let bytes = 0
    for (let i = options.indexStart - this.#first; i < this.#entries.length && out.length < appendEntriesMax; i++) {
      const e = this.#entries[i]!
      if (out.length > 0 && bytes + entryBytes(e) > options.bytesMax) break
      out.push(e)
      bytes += entryBytes(e)
    }
    return out
  }

  async readByOffset(options: { offsetStart: number; bytesMax: number }): Promise<LogEntry[]> {
    const out: LogEntry[] = []
    let bytes = 0
    for (const e of this.#entries) {
      if (e.recordCount === 0 || e.baseOffset + e.recordCount <= options.offsetStart) continue
      if (out.length > 0 && bytes + entryBytes(e) > options.bytesMax) break
      out.push(e)
      bytes += entryBytes(e)
    }
    return out
  }

  async truncateAfter(index: number): Promise<void> {
    this.#checkOpen()
    assert(index >= this.#first - 1, () => `log ${this.name}: truncate after ${index} below first index ${this.#first}`)
    if (index < this.lastIndex()) this.#entries.length = index - this.#first + 1
  }

  async compact(snapshot: SnapshotMeta): Promise<void> {
    this.#checkOpen()
    if (snapshot.index <= this.#snapshot.index) return
    if (snapshot.index >= this.lastIndex()) this.#entries = []
    else this.#entries = this.#entries.slice(snapshot.index + 1 - this.#first)
    this.#first = snapshot.index + 1
    this.#snapshot = snapshot
  }

  async applyRetention(options: { indexAllowed: number; nowMs: number }): Promise<RetentionResult> {
    let total = this.#entries.reduce((n, e) => n + entryBytes(e), 0)
    let dropped = 0
    let bytesDeleted = 0
    while (dropped < this.#entries.length - 1) {
      const e = this.#entries[dropped]!
      if (e.index > options.indexAllowed) break
      const old = e.timestampMaxMs > 0 && e.timestampMaxMs < options.nowMs - this.#retentionMs
      if (!old && total <= this.#retentionBytes) break
      total -= entryBytes(e)
      bytesDeleted += entryBytes(e)
      dropped++
    }
    if (dropped > 0) {
      this.#entries = this.#entries.slice(dropped)
      this.#first += dropped
    }
    return { segmentsDeleted: dropped, bytesDeleted, firstIndex: this.#first }
  }

  hardState(): HardState {
    return this.#hardState
  }

  async setHardState(state: HardState): Promise<void> {
    this.#checkOpen()
    this.#hardState = { ...state }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#metrics?.openLogs.dec({ mode: 'memory' })
  }

  #checkOpen(): void {
    assert(!this.#closed, () => `log ${this.name}: used after close`)
  }
}
