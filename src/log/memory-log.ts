/**
 * The `memory` persistence mode: a PartitionLog whose entries live in
 * memory only, for tests, caches and the simulator. Same checks and same
 * answers as the disk log, so code tested against it behaves the same on
 * disk.
 *
 * The Raft hard state (term, vote) is the exception when the log is opened
 * through a LogStore: it is kept in a small file, written atomically and
 * durably before `setHardState` resolves (DESIGN.md decision 6: the hard
 * state is always durable before it is acted on). A replica that forgot its
 * vote at a restart could vote twice in one term, and two leaders of one
 * term commit different records at the same offset. Entries forgotten at a
 * restart are what this mode gives up: the leader sends them again.
 *
 *   <store>/logs/<name>/hardstate     32 bytes, replaced by writeFileAtomic:
 *   | u32 magic 'RHS' + version 1 | u64 term | u64 vote | u64 commit | u32 crc32c(bytes[0..28)) |
 *
 * One file per log, beside where a disk log of that name would live: the
 * logs' writes are independent (an election across a thousand partitions is
 * a thousand small files written in parallel, not one file rewritten a
 * thousand times or a batching scheme), `removeLog` deletes it with the
 * log's directory, and a store taken over after a crash fsyncs it with
 * every log directory.
 *
 * What a crash can leave: writeFileAtomic writes `.hardstate.tmp`, fsyncs
 * it, renames it over `hardstate`, fsyncs the directory. `hardstate` is
 * thus always a whole fsynced file, the old one or the new one; a torn or
 * empty write can only be in the temp file, which open ignores (it is the
 * previous value that counts) and deletes. So a `hardstate` of the wrong
 * size or checksum is damage, not a crash: STORAGE_CORRUPT, naming the file.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { assert, crc32c, ErrorCode, RillError, type Runtime } from '../base/index.ts'
import { appendEntriesMax, assertAppend, checkReadStart, entryBytes, termOutOfRange } from './checks.ts'
import type { EntryToAppend, HardState, LogEntry, SnapshotMeta } from './format.ts'
import { isErrorCode, mkdirDurable, readFileSync, storageError, writeFileAtomic, type LogIo } from './io.ts'
import type { LogMetrics } from './metrics.ts'
import type { DamageReport, PartitionLog, RetentionResult } from './types.ts'

/** Name of a memory log's hard-state file in its directory. */
export const hardStateFileName = 'hardstate'
/** Size of a hard-state file: magic, term, vote, commit, checksum. */
export const hardStateFileBytes = 32
/** 'RHS' and format version 1, as the file's first four bytes (little endian u32). */
const hardStateMagic = 0x01534852
/** The versionless part of the magic: a file with it and another version was written by another build. */
const hardStateMagicMask = 0x00ffffff

const hardStateZero: HardState = { term: 0, vote: 0, commit: 0 }
const isCount = (v: number): boolean => Number.isSafeInteger(v) && v >= 0

/** The bytes of a hard-state file holding `state`. */
export function encodeHardStateFile(state: HardState): Buffer {
  const out = Buffer.alloc(hardStateFileBytes)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  view.setUint32(0, hardStateMagic, true)
  view.setBigUint64(4, BigInt(state.term), true)
  view.setBigUint64(12, BigInt(state.vote), true)
  view.setBigUint64(20, BigInt(state.commit), true)
  view.setUint32(28, crc32c(0, out.subarray(0, 28)), true)
  return out
}

/** Parses a hard-state file read from `path`; throws STORAGE_CORRUPT (STORAGE_UNUSABLE for another format version). */
export function decodeHardStateFile(bytes: Uint8Array, path: string): HardState {
  const corrupt = (reason: string): RillError =>
    new RillError(ErrorCode.STORAGE_CORRUPT, `${path}: hard state file is damaged (${reason}); it holds the replica's term and vote, so the replica cannot vote safely without it`, {
      details: { file: path, reason },
    })
  if (bytes.byteLength !== hardStateFileBytes) throw corrupt(`${bytes.byteLength} bytes, expected ${hardStateFileBytes}`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (crc32c(0, bytes.subarray(0, 28)) !== view.getUint32(28, true)) throw corrupt('checksum fails')
  const magic = view.getUint32(0, true)
  if (magic !== hardStateMagic) {
    if ((magic & hardStateMagicMask) !== (hardStateMagic & hardStateMagicMask)) throw corrupt(`bad magic 0x${magic.toString(16)}`)
    throw new RillError(ErrorCode.STORAGE_UNUSABLE, `${path}: unknown hard state format version ${magic >>> 24}; this build reads version 1`, { details: { file: path } })
  }
  const field = (at: number): number => {
    const v = view.getBigUint64(at, true)
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`field at byte ${at} is ${v}`)
    return Number(v)
  }
  return { term: field(4), vote: field(12), commit: field(20) }
}

/**
 * A memory log's durable hard state: one file in the log's directory,
 * replaced atomically (see the top of this file). Open with `open`.
 */
export class HardStateFile {
  readonly path: string
  /** What the file held at open (zeros if there was none). */
  readonly initial: HardState
  readonly #io: LogIo
  readonly #runtime: Runtime
  readonly #metrics: LogMetrics | undefined

  private constructor(o: { io: LogIo; path: string; initial: HardState; runtime: Runtime; metrics: LogMetrics | undefined }) {
    this.#io = o.io
    this.path = o.path
    this.initial = o.initial
    this.#runtime = o.runtime
    this.#metrics = o.metrics
  }

  /**
   * Creates `dir` durably if needed and reads the hard state in it. A temp
   * file left by a crash is deleted: whatever it holds was never renamed
   * into place, so never acted on.
   */
  static async open(o: { io: LogIo; dir: string; runtime: Runtime; metrics?: LogMetrics }): Promise<HardStateFile> {
    const path = join(o.dir, hardStateFileName)
    try {
      await mkdirDurable(o.io, o.dir)
      o.io.rmSync(join(o.dir, `.${hardStateFileName}.tmp`))
    } catch (error) {
      throw storageError(error, `${o.dir}: opening the hard state directory`)
    }
    let initial = hardStateZero
    try {
      initial = decodeHardStateFile(readFileSync(o.io, path), path)
    } catch (error) {
      if (error instanceof RillError) throw error
      if (!isErrorCode(error, 'ENOENT')) throw storageError(error, path)
    }
    return new HardStateFile({ io: o.io, path, initial, runtime: o.runtime, metrics: o.metrics })
  }

  /** Replaces the file with `state`; durable when it resolves. Throws STORAGE_FULL / STORAGE_UNUSABLE. */
  async write(state: HardState): Promise<void> {
    const startMs = this.#runtime.nowMs()
    try {
      await writeFileAtomic(this.#io, this.path, encodeHardStateFile(state))
    } catch (error) {
      throw storageError(error, `${this.path}: writing the hard state`)
    }
    this.#metrics?.fsyncSeconds.observe({ kind: 'state' }, (this.#runtime.nowMs() - startMs) / 1000)
    this.#metrics?.fsyncs.inc({ kind: 'state' }, 2)
  }
}

/** Options of a memory log. */
export interface MemoryLogOptions {
  readonly name: string
  readonly metrics?: LogMetrics
  readonly logger?: Logger
  readonly retentionBytes?: number
  readonly retentionMs?: number
  /**
   * Where the hard state is kept durable (LogStore.openLog gives every
   * memory log one). Without it the hard state is memory-only too: fine for
   * tests and for a replica that never restarts.
   */
  readonly hardStateFile?: HardStateFile
  /** Called once the log is closed or abandoned (its store forgets it). */
  readonly onClose?: (log: MemoryLog) => void
}

/** A log held in memory; `retentionBytes` and `retentionMs` apply to whole entries. */
export class MemoryLog implements PartitionLog {
  readonly name: string
  readonly mode = 'memory' as const
  readonly damage: DamageReport | undefined = undefined
  #entries: LogEntry[] = []
  /** Index of #entries[0]. */
  #first = 1
  #snapshot: SnapshotMeta = { index: 0, term: 0 }
  #hardState: HardState
  readonly #hardStateFile: HardStateFile | undefined
  /** Hard-state writes, one after the other (a later call coalesces with a queued one). */
  #hardStateChain: Promise<void> = Promise.resolve()
  #hardStateWritten: HardState
  #closed = false
  /** Set by abandon (a simulated crash): nothing more is written. */
  #abandoned = false
  readonly #metrics: LogMetrics | undefined
  readonly #retentionBytes: number
  readonly #retentionMs: number
  readonly #onClose: ((log: MemoryLog) => void) | undefined

  constructor(options: MemoryLogOptions) {
    this.name = options.name
    this.#metrics = options.metrics
    this.#retentionBytes = options.retentionBytes ?? Infinity
    this.#retentionMs = options.retentionMs ?? Infinity
    this.#hardStateFile = options.hardStateFile
    this.#hardState = options.hardStateFile?.initial ?? hardStateZero
    this.#hardStateWritten = this.#hardState
    this.#onClose = options.onClose
    this.#metrics?.openLogs.inc({ mode: 'memory' })
    const kept = options.hardStateFile === undefined ? 'nothing is persisted' : 'only the hard state is persisted'
    options.logger?.info({ log: this.name, mode: 'memory', hardState: this.#hardState }, `log opened (memory mode: ${kept})`)
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

  /** Keeps `state`; with a hard-state file, resolves once it is durable (writes are serialized and coalesced). */
  async setHardState(state: HardState): Promise<void> {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is closed`)
    assert(isCount(state.term) && isCount(state.vote) && isCount(state.commit), () => `log ${this.name}: bad hard state ${JSON.stringify(state)}`)
    assert(state.term >= this.#hardState.term, () => `log ${this.name}: hard state term ${state.term} below ${this.#hardState.term}`)
    this.#hardState = { term: state.term, vote: state.vote, commit: state.commit }
    const file = this.#hardStateFile
    if (file === undefined) return
    const run = this.#hardStateChain.then(async () => {
      if (this.#abandoned) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} was abandoned`)
      const latest = this.#hardState
      if (latest === this.#hardStateWritten) return // a later call's state, already written by an earlier run
      await file.write(latest)
      this.#hardStateWritten = latest
    })
    this.#hardStateChain = run.catch(() => {})
    await run
  }

  /** Waits for hard-state writes under way, then closes. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#hardStateChain
    this.#metrics?.openLogs.dec({ mode: 'memory' })
    this.#onClose?.(this)
  }

  /** A simulated crash (LogStore.abandon): writes not yet started never are, the log is closed. */
  abandon(): void {
    this.#abandoned = true
    if (this.#closed) return
    this.#closed = true
    this.#metrics?.openLogs.dec({ mode: 'memory' })
    this.#onClose?.(this)
  }

  #checkOpen(): void {
    assert(!this.#closed, () => `log ${this.name}: used after close`)
  }
}
