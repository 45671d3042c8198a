/**
 * A partition log on disk (`sync` and `async` modes): a directory of
 * segments plus two small atomically replaced files.
 *
 *   logs/<name>/00000000000000000001.seg   entries 1..k      (sealed, + .idx)
 *               0000000000000000000k+1.seg entries k+1..     (active)
 *               state                      hard state {term, vote, commit}
 *               start                      compaction point {index, term}
 *
 * An `async` log writes each append to the active segment's page cache
 * synchronously, in call order (io.ts says why), and resolves; the store
 * fsyncs it on an interval. A `sync` log notes the entries in its in-memory
 * index, hands a WAL record to the store's shared WAL and resolves when the
 * WAL's group fsync covers it; the segment bytes wait in one pending write
 * that reaches the page cache in a single writev when the WAL cycle carrying
 * the first of them starts (or earlier, before anything reads, flushes or
 * changes the segment). Why: a 1 KiB write to a growing file costs ~7 us
 * here while the WAL's fdatasync runs (ext4 journal), so 32 appends of one
 * log in a cycle cost ~220 us one by one and ~20 us as one write. Pending
 * bytes are part of queued WAL requests, so `walQueueBytesMax` bounds them.
 * The entry bodies are never copied: writev takes each entry's header and
 * the caller's `data` (which must not change until `append` resolves).
 *
 * Crash recovery at open. The store keeps, per log, a durable mark: the
 * (segment, length) known fsynced. Bytes before the mark must be intact: a
 * bad entry there is damage (bit rot, a lost write), and the log opens
 * read-only up to it with a DamageReport naming file, position and the
 * index range to refetch. Bytes after the mark were not yet fsynced, so a
 * bad entry there is a torn write: the segment is cut back to the last good
 * entry (and a sync log gets the rest back from the WAL). Truncating below
 * the mark lowers the mark durably first, so that a power loss cannot make
 * rewritten bytes look like damage.
 *
 * Mutations (append, truncate, compact, retention, close) run one at a time
 * through `#serial`; reads run concurrently and are fenced from truncation:
 * a segment's fd is closed or cut only after its in-flight reads drain.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ErrorCode, RillError, assert, isRillError, type Runtime } from '../base/index.ts'
import { appendEntriesMax, assertAppend, checkReadStart, cutReadFailed, termOutOfRange } from './checks.ts'
import {
  decodeEntryHeader,
  encodeEntryHeader,
  encodeWalFlushedRecord,
  encodeWalRecordHeader,
  entryChecksumHolds,
  entryFromHeader,
  entryHeaderBytes,
  fileHeaderBytes,
  walFlushedPayloadBytes,
  walRecordHeaderBytes,
  WalRecordKind,
  type WalFlushed,
  type EntryHeader,
  type EntryToAppend,
  type HardState,
  type LogEntry,
  type SnapshotMeta,
} from './format.ts'
import { fsyncDir, isErrorCode, readAt, readFileSync, storageError, writeAllSync, writeFileAtomic, type LogIo } from './io.ts'
import { timedSync, type LogMetrics } from './metrics.ts'
import { Segment, indexFileName, parseSegmentFileName, scanSegment, segmentFileName } from './segment.ts'
import type { DamageReport, OpenLogOptions, PartitionLog, RetentionResult } from './types.ts'
import type { DirectFlush, Wal, WalLog, WalPosition } from './wal.ts'

/** Default segment size. */
export const segmentBytesDefault = 128 * 1024 * 1024
/** Smallest segment size accepted (tests use small segments to exercise rolling). */
export const segmentBytesMin = 1024
/** Default bytes between sparse-index points. */
export const indexIntervalBytesDefault = 64 * 1024
/** Default fsync interval of `async` logs. */
export const flushIntervalMsDefault = 100
/** Largest read chunk: a read asks the OS for at most this much at once. */
const readChunkBytesMax = 8 * 1024 * 1024
/** Smallest read chunk. */
const readChunkBytesMin = 64 * 1024

/** Where a log is known durable: everything before `bytes` of segment `segmentBase`, and all earlier segments. */
export interface Mark {
  readonly segmentBase: number
  readonly bytes: number
}

/** The epoch of a flush planned while its log cuts its end: its mark never counts (see DiskLog.#markEpoch). */
const markEpochVoid = -1

/** True if mark `a` is before mark `b`. */
export function markBefore(a: Mark, b: Mark): boolean {
  return a.segmentBase < b.segmentBase || (a.segmentBase === b.segmentBase && a.bytes < b.bytes)
}

/** What a DiskLog needs from its store. */
export interface LogStoreContext {
  readonly io: LogIo
  /** Clock of the fsync timings. */
  readonly runtime: Runtime
  readonly logger: Logger
  readonly metrics: LogMetrics
  /** The shared WAL (sync logs). */
  readonly wal: Wal | undefined
  /** Where the WAL is written up to now (a mark recorded with it voids the log's earlier `flushed` records). */
  walPosition(): WalPosition
  /** The durable mark recorded for a log (at recovery: raised by its `flushed` WAL records). */
  markOf(name: string): Mark | undefined
  /** Records a lower mark durably before the log cuts below its old one. */
  lowerMark(name: string, mark: Mark): Promise<void>
  /** Records a log's flushed mark, planned at WAL position `since` (written with the next marks file). */
  flushed(name: string, mark: Mark, since: WalPosition): Promise<void>
  /** fsyncs the log now and records its mark durably. */
  flushNow(log: DiskLog): Promise<void>
  /** The log closed. */
  closed(log: DiskLog): void
}

/** A flush (fsync of a log's dirty segments), started: what it makes durable once `done` resolves. */
export interface FlushPlan {
  readonly mark: Mark
  /** The WAL position when it was planned: every `flushed` record of the log before it is covered by `mark`. */
  readonly since: WalPosition
  readonly epoch: number
  readonly done: Promise<void>
}

/** One entry as written: its header and body, or one whole encoded entry (WAL replay). */
type EncodedEntry = readonly Uint8Array[]

/** A sync log's entries noted in its index but not yet written to its active segment (see the top comment). */
interface PendingWrite {
  readonly seg: Segment
  readonly buffers: Uint8Array[]
  /** The segment's state before the first pending entry: what a failed write rolls back to. */
  readonly before: { lastIndex: number; lastTerm: number; position: number; offsetEnd: number }
  /** Written, or failed (then `error` is set and the entries are rolled back). */
  done: boolean
  error: RillError | undefined
}

function bytesOf(pieces: EncodedEntry): number {
  let n = 0
  for (const p of pieces) n += p.length
  return n
}

const hardStateZero: HardState = { term: 0, vote: 0, commit: 0 }
const startZero: SnapshotMeta = { index: 0, term: 0 }

function readJson<T>(io: LogIo, path: string, check: (v: Record<string, unknown>) => boolean): T | undefined {
  let text: string
  try {
    text = readFileSync(io, path).toString('utf8')
  } catch (error) {
    if (isErrorCode(error, 'ENOENT')) return undefined
    throw storageError(error, path)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    value = undefined
  }
  if (typeof value !== 'object' || value === null || !check(value as Record<string, unknown>)) {
    throw new RillError(ErrorCode.STORAGE_UNUSABLE, `${path}: unreadable (${JSON.stringify(text.slice(0, 80))})`, { details: { file: path } })
  }
  return value as T
}

const isCount = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/** A sync or async partition log in one directory. */
export class DiskLog implements PartitionLog, WalLog {
  readonly name: string
  readonly mode: 'sync' | 'async'
  readonly dir: string
  readonly flushIntervalMs: number
  #damage: DamageReport | undefined
  readonly #ctx: LogStoreContext
  readonly #nameBytes: Buffer
  readonly #segmentBytesMax: number
  readonly #indexIntervalBytes: number
  readonly #retentionMs: number
  readonly #retentionBytes: number
  #segments: Segment[] = []
  #start: SnapshotMeta = startZero
  #hardState: HardState = hardStateZero
  #hardStateChain: Promise<void> = Promise.resolve()
  #hardStateWritten: HardState = hardStateZero
  #serial: Promise<unknown> = Promise.resolve()
  #closed = false
  /** Set by abandon (a simulated crash): an operation that was waiting must not touch the files after. */
  #abandoned = false
  /** Set when a write failed half-way in a way the log cannot undo: it refuses writes until reopened. */
  #failed: RillError | undefined
  #dirDirty = false
  /** Known durable (fsynced): the recorded mark, raised by flushes (also direct ones, which the store's marks file does not see). */
  #mark: Mark | undefined
  /** The mark as the store last recorded it (marks file). */
  #markRecorded: Mark | undefined
  /** Highest mark a direct flush made durable (for crash tests), lowered by cuts. */
  #directSynced: Mark | undefined
  /** Direct flushes whose cycle has not ended. */
  readonly #directInFlight = new Set<Promise<void>>()
  /** The last flush started, until it settles: a later flush waits for it (its dirty segments were taken by that one). */
  #flushInFlight: Promise<void> | undefined
  /** Set while the log cuts its end or a compaction resets it: no direct flush then (its mark would describe the old end). */
  #cutting = false
  /** Set while #cut runs (it awaits between reading the end and changing the files): flushes planned then are void. */
  #cuttingEnd = false
  /**
   * Bumped when a cut starts: a flush planned before must not raise the mark
   * again (above the cut). A flush planned while the cut runs (a WAL
   * checkpoint, the async flusher) gets `markEpochVoid` instead: it read the
   * end being cut, so its mark may cover bytes that are then cut away or
   * rewritten, never fsynced; recorded, a crash would make them look like
   * damage before the mark.
   */
  #markEpoch = 0
  /** Bumped by every truncation; a read that overlaps one re-checks what it returns. */
  #truncations = 0
  /** When the log was last fsynced (for the async flusher), ms. */
  lastFlushMs = 0
  /** Sync logs: entries not yet written to the active segment. */
  #pending: PendingWrite | undefined
  /** After a write failed (a sync log's pending write, an async log's append): appends past the end fail with its error (not an assertion). */
  #lost: RillError | undefined
  /**
   * After a cut failed to read where it goes (nothing changed): the entries
   * it was for are not there, so an append after them (queued behind it by a
   * pipelining caller) fails with its error too, even one whose own cut could
   * read: it would leave the old entries before it, a log the leader never
   * had. Cleared by a cut at or below `after` (the caller starting over).
   */
  #cutFailed: { after: number; error: RillError } | undefined

  private constructor(ctx: LogStoreContext, dir: string, options: OpenLogOptions) {
    assert(options.mode === 'sync' || options.mode === 'async', () => `DiskLog mode ${options.mode}`)
    this.#ctx = ctx
    this.name = options.name
    this.mode = options.mode
    this.dir = dir
    this.#nameBytes = Buffer.from(options.name, 'utf8')
    this.#segmentBytesMax = Math.max(segmentBytesMin, options.segmentBytesMax ?? segmentBytesDefault)
    this.#indexIntervalBytes = options.indexIntervalBytes ?? indexIntervalBytesDefault
    this.flushIntervalMs = options.flushIntervalMs ?? flushIntervalMsDefault
    this.#retentionMs = options.retentionMs ?? Infinity
    this.#retentionBytes = options.retentionBytes ?? Infinity
    assert(this.#indexIntervalBytes > 0 && this.flushIntervalMs > 0, 'log options: intervals must be positive')
  }

  /** Opens (creating if needed) the log in `dir`, recovering from a crash. */
  static open(ctx: LogStoreContext, dir: string, options: OpenLogOptions): DiskLog {
    const log = new DiskLog(ctx, dir, options)
    log.#load()
    ctx.metrics.openLogs.inc({ mode: log.mode })
    return log
  }

  get damage(): DamageReport | undefined {
    return this.#damage
  }

  firstIndex(): number {
    return Math.max(this.#start.index + 1, this.#segments[0]!.baseIndex)
  }

  lastIndex(): number {
    return Math.max(this.#active().lastIndex, this.firstIndex() - 1)
  }

  term(index: number): number {
    const first = this.firstIndex()
    if (index === this.#start.index && index === first - 1) return this.#start.term
    if (index === 0) return 0
    const seg = this.#segmentOf(index)
    if (index < first - 1 || index > this.lastIndex() || seg === undefined) throw termOutOfRange(this.name, index, first, this.lastIndex())
    return seg.termAt(index)
  }

  hardState(): HardState {
    return this.#hardState
  }

  // ---- open and recovery -------------------------------------------------

  #load(): void {
    const io = this.#ctx.io
    io.mkdirSync(this.dir)
    this.#hardState = readJson<HardState>(io, join(this.dir, 'state'), (v) => isCount(v.term) && isCount(v.vote) && isCount(v.commit)) ?? hardStateZero
    this.#hardStateWritten = this.#hardState
    this.#start = readJson<SnapshotMeta>(io, join(this.dir, 'start'), (v) => isCount(v.index) && isCount(v.term)) ?? startZero
    this.#mark = this.#ctx.markOf(this.name)
    this.#markRecorded = this.#mark
    const bases = io
      .readdirSync(this.dir)
      .map(parseSegmentFileName)
      .filter((b): b is number => b !== undefined)
      .sort((a, b) => a - b)
    const stats = { scanned: 0, trusted: 0, tornBytes: 0, deleted: 0 }
    // Segments wholly below the compaction point are garbage (their delete may not have reached the disk).
    while (bases.length > 1 && bases[1]! <= this.#start.index + 1) this.#removeFile(bases.shift()!, stats)
    let running = -1
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i]!
      const prev = this.#segments.at(-1)
      const stop = this.#loadSegment({ base, prev, running, stats, later: bases.slice(i + 1) })
      if (stop === 'damaged') break
      if (stop === 'torn') {
        for (const b of bases.slice(i + 1)) this.#removeFile(b, stats)
        break
      }
      running = this.#segments.at(-1)!.offsetEnd
    }
    const active = this.#segments.at(-1)
    if (active === undefined || active.lastIndex < this.#start.index) this.#resetSegments(this.#start.index + 1)
    this.#ctx.logger.info(
      {
        log: this.name,
        mode: this.mode,
        firstIndex: this.firstIndex(),
        lastIndex: this.lastIndex(),
        segments: this.#segments.length,
        segmentsScanned: stats.scanned,
        segmentsTrusted: stats.trusted,
        tornBytesDropped: stats.tornBytes,
        damage: this.#damage,
      },
      this.#damage === undefined ? 'log opened' : 'log opened read-only: damage before the tail',
    )
  }

  /** Where the untrusted (not known fsynced) part of segment `base` starts. */
  #tolerantFrom(base: number): number {
    const mark = this.#mark
    if (mark === undefined || base > mark.segmentBase) return 0
    if (base < mark.segmentBase) return Infinity
    return mark.bytes
  }

  #loadSegment(o: { base: number; prev: Segment | undefined; running: number; stats: { scanned: number; trusted: number; tornBytes: number; deleted: number }; later: number[] }): 'ok' | 'torn' | 'damaged' {
    const { base, prev, stats } = o
    const tolerantFrom = this.#tolerantFrom(base)
    const expect = prev === undefined ? base : prev.lastIndex + 1
    if (base !== expect) {
      return this.#recoveryFailure({ path: join(this.dir, segmentFileName(base)), position: 0, reason: `segment starts at ${base}, expected ${expect}`, tolerantFrom, prev, later: [base, ...o.later] })
    }
    let seg: Segment
    try {
      seg = Segment.open({ io: this.#ctx.io, dir: this.dir, baseIndex: base, indexIntervalBytes: this.#indexIntervalBytes })
    } catch (error) {
      if (!(error instanceof RillError) || error.code !== ErrorCode.STORAGE_CORRUPT) throw error
      if (tolerantFrom < fileHeaderBytes) {
        this.#removeFile(base, stats)
        return 'torn'
      }
      return this.#recoveryFailure({ path: join(this.dir, segmentFileName(base)), position: 0, reason: error.message, tolerantFrom, prev, later: [base, ...o.later] })
    }
    const fileBytes = seg.fileBytes()
    if (fileBytes <= tolerantFrom && seg.tryLoadIndexFile()) {
      stats.trusted++
      this.#segments.push(seg)
      return 'ok'
    }
    stats.scanned++
    seg.offsetEnd = o.running
    let running = o.running
    const result = scanSegment({
      io: this.#ctx.io,
      fd: seg.fd,
      fileBytes,
      from: fileHeaderBytes,
      expectIndex: base,
      prevTerm: prev?.lastTerm ?? 0,
      onEntry: (h, position) => {
        seg.noteEntry(h, position, running)
        running = seg.offsetEnd
      },
    })
    this.#segments.push(seg)
    // Bytes kept past the mark were never known fsynced: fsync them before serving them (store.openLog does).
    if (result.endPosition > tolerantFrom) seg.dirty = true
    if (result.failure === undefined && (tolerantFrom === Infinity || fileBytes >= tolerantFrom)) return 'ok'
    if (result.failure === undefined) {
      // Clean end, but shorter than the durable mark: fsynced bytes are gone.
      return this.#recoveryFailure({ path: seg.path, position: fileBytes, reason: `file ends at ${fileBytes}, fsynced up to ${tolerantFrom}`, tolerantFrom, prev: seg, later: o.later })
    }
    return this.#recoveryFailure({ path: seg.path, position: result.failure.position, reason: result.failure.reason, tolerantFrom, prev: seg, later: o.later, cut: seg })
  }

  /** A scan stopped early: a torn tail (cut it) or damage (go read-only). */
  #recoveryFailure(o: { path: string; position: number; reason: string; tolerantFrom: number; prev: Segment | undefined; later: number[]; cut?: Segment }): 'torn' | 'damaged' {
    if (o.position >= o.tolerantFrom) {
      if (o.cut === undefined) {
        // The whole file is past the durable mark and unusable (torn header, gap): it goes.
        this.#ctx.io.rmSync(o.path)
        this.#ctx.io.rmSync(o.path.replace(/\.seg$/, '.idx'))
        this.#ctx.logger.warn({ log: this.name, file: o.path, reason: o.reason }, 'recovery: unsynced segment file dropped')
      } else {
        const dropped = o.cut.fileBytes() - o.position
        this.#ctx.io.ftruncateSync(o.cut.fd, o.position)
        o.cut.dirty = true
        this.#ctx.logger.warn({ log: this.name, file: o.path, position: o.position, bytesDropped: dropped, reason: o.reason }, 'recovery: torn tail cut back to the last whole entry')
      }
      return 'torn'
    }
    const indexFirst = (o.prev?.lastIndex ?? this.#start.index) + 1
    const indexLast = Math.max(indexFirst, ...o.later.map((b) => b - 1), this.#lastIndexIn(o.later.at(-1)))
    this.#damage = { file: o.path, position: o.position, reason: o.reason, indexFirst, indexLast }
    this.#ctx.logger.error({ log: this.name, ...this.#damage }, 'recovery: damage before the tail; log is read-only up to it')
    return 'damaged'
  }

  /** Last index in a segment file we will not load (for a damage report); 0 if unknown. */
  #lastIndexIn(base: number | undefined): number {
    if (base === undefined) return 0
    try {
      const io = this.#ctx.io
      const seg = Segment.open({ io, dir: this.dir, baseIndex: base, indexIntervalBytes: this.#indexIntervalBytes })
      try {
        return scanSegment({ io, fd: seg.fd, fileBytes: seg.fileBytes(), from: fileHeaderBytes, expectIndex: base, prevTerm: 0, onEntry: () => {} }).lastIndex
      } finally {
        io.closeSync(seg.fd)
      }
    } catch {
      return 0
    }
  }

  #removeFile(base: number, stats: { deleted: number }): void {
    this.#ctx.io.rmSync(join(this.dir, segmentFileName(base)))
    this.#ctx.io.rmSync(join(this.dir, indexFileName(base)))
    stats.deleted++
  }

  /** Drops every segment (closing without waiting: used at open only) and starts empty at `base`. */
  #resetSegments(base: number): void {
    for (const seg of this.#segments) {
      this.#ctx.io.closeSync(seg.fd)
      this.#removeFile(seg.baseIndex, { deleted: 0 })
    }
    this.#segments = [this.#newSegment(base)]
  }

  #newSegment(base: number): Segment {
    const io = this.#ctx.io
    try {
      const seg = Segment.create({ io, dir: this.dir, baseIndex: base, indexIntervalBytes: this.#indexIntervalBytes, write: (fd, b) => writeAllSync(io, fd, [b], 0) })
      this.#dirDirty = true
      return seg
    } catch (error) {
      throw storageError(error, `log ${this.name}: creating segment ${base}`)
    }
  }

  // ---- lookups -----------------------------------------------------------

  #active(): Segment {
    return this.#segments[this.#segments.length - 1]!
  }

  /** The segment holding `index`, if loaded. */
  #segmentOf(index: number): Segment | undefined {
    const segs = this.#segments
    let lo = 0
    let hi = segs.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const s = segs[mid]!
      if (index < s.baseIndex) hi = mid - 1
      else if (index > s.lastIndex) lo = mid + 1
      else return s
    }
    return undefined
  }

  // ---- writes ------------------------------------------------------------

  /**
   * Runs `fn` after every mutation queued before it. A mutation that must
   * wait for the WAL returns `{ durable }` (wrapped, so that the chain does
   * not wait for the fsync: the next append goes into the same group commit).
   */
  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn, fn)
    this.#serial = run.catch(() => {})
    return run
  }

  #checkWritable(): void {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is closed`)
    if (this.#failed !== undefined) throw this.#failed
    if (this.#damage !== undefined) {
      throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is damaged at ${this.#damage.file}:${this.#damage.position}; truncate to ${this.#damage.indexFirst - 1} and refetch`, {
        details: { ...this.#damage },
      })
    }
  }

  async append(entries: readonly EntryToAppend[]): Promise<void> {
    this.#checkWritable()
    const encoded: EncodedEntry[] = entries.map((e) => [encodeEntryHeader(e), e.data])
    const durable = await this.#serialize(async () => {
      this.#checkWritable()
      let bytes = 0
      for (const e of encoded) bytes += bytesOf(e)
      const wal = this.mode === 'sync' ? this.#ctx.wal : undefined
      if (wal !== undefined) await wal.waitForRoom(bytes)
      // From here on nothing awaits before the entries are noted, so a pending write failing
      // meanwhile (it rolls the log back) cannot slip between the checks and the write.
      const first = entries[0]!.index
      if (this.#lost !== undefined && first > this.lastIndex() + 1) throw this.#lost
      if (this.#cutFailed !== undefined && first > this.#cutFailed.after + 1) throw this.#cutFailed.error
      assertAppend({ name: this.name, entries, firstIndex: this.firstIndex(), lastIndex: this.lastIndex(), termBefore: (i) => this.term(i) })
      this.#lost = undefined
      if (first <= this.lastIndex()) await this.#cutAfter(first - 1)
      let pending: PendingWrite | undefined
      try {
        pending = this.#writeEntries(entries, encoded, wal !== undefined)
      } catch (error) {
        // Appends already queued behind this one (a pipelining caller) fail with this error, not an assertion.
        if (error instanceof RillError) this.#lost = error
        throw error
      }
      this.#ctx.metrics.appendBytes.inc({ mode: this.mode }, bytes)
      this.#ctx.metrics.appendEntries.inc({ mode: this.mode }, entries.length)
      if (wal === undefined) return { durable: undefined }
      const header = encodeWalRecordHeader({ kind: WalRecordKind.append, name: this.#nameBytes, payloadBytes: bytes, entryCount: entries.length, index: first })
      return { durable: wal.submit([header, ...encoded.flat()], { log: this, prepare: pending === undefined ? undefined : () => this.#ensureWritten(pending) }) }
    })
    await durable.durable
  }

  /**
   * Writes encoded entries to the active segment(s), rolling as needed;
   * undoes a partial write. With `defer` (sync logs) the last segment's part
   * joins the pending write instead, which is returned.
   */
  #writeEntries(entries: readonly EntryToAppend[], encoded: readonly EncodedEntry[], defer: boolean): PendingWrite | undefined {
    const sizes = encoded.map(bytesOf)
    let i = 0
    while (i < entries.length) {
      let seg = this.#active()
      if (seg.lastIndex >= seg.baseIndex && seg.bytes + sizes[i]! > this.#segmentBytesMax) {
        const pending = this.#pending
        this.#writePending()
        if (pending?.error !== undefined) throw pending.error
        seg = this.#roll()
      }
      let j = i
      let end = seg.bytes
      while (j < entries.length && (j === i || end + sizes[j]! <= this.#segmentBytesMax)) end += sizes[j++]!
      const buffers = encoded.slice(i, j).flat()
      if (defer) this.#defer(seg, buffers)
      else this.#writeNow(seg, buffers)
      for (let k = i; k < j; k++) seg.noteEntry(headerOf(entries[k]!), seg.bytes, seg.offsetEnd)
      i = j
    }
    return this.#pending
  }

  #writeNow(seg: Segment, buffers: readonly Uint8Array[]): void {
    try {
      writeAllSync(this.#ctx.io, seg.fd, buffers, seg.bytes)
    } catch (error) {
      this.#undoPartialWrite(seg, seg.bytes)
      throw storageError(error, `log ${this.name}: writing ${seg.path}`)
    }
    seg.dirty = true
  }

  #defer(seg: Segment, buffers: readonly Uint8Array[]): void {
    if (this.#pending === undefined) {
      const before = { lastIndex: seg.lastIndex, lastTerm: seg.lastTerm, position: seg.bytes, offsetEnd: seg.offsetEnd }
      this.#pending = { seg, buffers: [], before, done: false, error: undefined }
    }
    assert(this.#pending.seg === seg, () => `log ${this.name}: pending write for ${this.#pending!.seg.path}, appending to ${seg.path}`)
    for (const b of buffers) this.#pending.buffers.push(b)
  }

  /**
   * Writes the pending entries to the segment in one writev. On failure the
   * partial write is undone, the entries are forgotten (the log ends where
   * it did before them) and the error is kept for their appends, which the
   * WAL then rejects; it does not throw.
   */
  #writePending(): void {
    const p = this.#pending
    if (p === undefined) return
    this.#pending = undefined
    p.done = true
    try {
      writeAllSync(this.#ctx.io, p.seg.fd, p.buffers, p.before.position)
      p.seg.dirty = true
    } catch (error) {
      p.error = storageError(error, `log ${this.name}: writing ${p.seg.path}`)
      this.#undoPartialWrite(p.seg, p.before.position)
      this.#truncations++
      p.seg.forgetAfter(p.before)
      this.#lost = p.error
      this.#ctx.logger.error({ log: this.name, err: p.error, lastIndex: p.before.lastIndex }, 'segment write failed; pending appends fail')
    }
  }

  /** The WAL's hook before it writes a record: the record's entries must be in the segment first (or its append fails). */
  #ensureWritten(p: PendingWrite): void {
    if (!p.done) {
      assert(this.#pending === p, () => `log ${this.name}: pending writes out of order`)
      this.#writePending()
    }
    if (p.error !== undefined) throw p.error
  }

  /** Fails the pending write without writing it (a failed or abandoned log). */
  #dropPending(error: RillError): void {
    const p = this.#pending
    if (p === undefined) return
    this.#pending = undefined
    p.done = true
    p.error = error
  }

  #undoPartialWrite(seg: Segment, position: number): void {
    try {
      this.#ctx.io.ftruncateSync(seg.fd, position)
    } catch (error) {
      this.#failed = storageError(error, `log ${this.name}: undoing a partial write to ${seg.path}; reopen the log`)
    }
  }

  /** Seals the active segment and starts the next. */
  #roll(): Segment {
    assert(this.#pending === undefined, () => `log ${this.name}: roll with a pending write`)
    const old = this.#active()
    const seg = this.#newSegment(old.lastIndex + 1)
    seg.offsetEnd = old.offsetEnd
    old.writeIndexFile()
    this.#segments.push(seg)
    return seg
  }

  async truncateAfter(index: number): Promise<void> {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is closed`)
    const durable = await this.#serialize(async () => {
      assert(index >= this.firstIndex() - 1, () => `log ${this.name}: truncate after ${index} below first index ${this.firstIndex()}`)
      const repairs = this.#damage !== undefined && index < this.#damage.indexFirst
      if (!repairs) this.#checkWritable()
      if (index >= this.lastIndex() && !repairs) return { durable: undefined }
      await this.#cutAfter(index)
      if (repairs) this.#repair()
      const wal = this.mode === 'sync' ? this.#ctx.wal : undefined
      return { durable: wal?.submit([encodeWalRecordHeader({ kind: WalRecordKind.truncate, name: this.#nameBytes, payloadBytes: 0, entryCount: 0, index })], { log: this }) }
    })
    await durable.durable
  }

  /** Deletes the damaged part after a truncation at or below it; the log is writable again. */
  #repair(): void {
    const damage = this.#damage!
    const loaded = new Set(this.#segments.map((s) => s.baseIndex))
    for (const name of this.#ctx.io.readdirSync(this.dir)) {
      const base = parseSegmentFileName(name)
      if (base !== undefined && !loaded.has(base) && base > this.#active().baseIndex) this.#removeFile(base, { deleted: 0 })
    }
    this.#ctx.io.ftruncateSync(this.#active().fd, this.#active().bytes)
    this.#damage = undefined
    this.#ctx.logger.warn({ log: this.name, damage }, 'damaged part dropped; refetch from the leader')
  }

  /** Drops entries after `index` from memory and disk (within #serial). */
  async #cutAfter(index: number): Promise<void> {
    this.#cutting = true
    this.#cuttingEnd = true
    try {
      await this.#cut(index)
    } finally {
      this.#cutting = false
      this.#cuttingEnd = false
    }
  }

  async #cut(index: number): Promise<void> {
    this.#writePending()
    this.#truncations++
    const keep = index < this.#segments[0]!.baseIndex ? this.#segments[0]! : this.#segmentOf(Math.max(index, this.#segments[0]!.baseIndex))
    assert(keep !== undefined, () => `log ${this.name}: no segment holds ${index}`)
    let found: { position: number; offsetEnd: number }
    try {
      found = await this.#positionAfter(keep, index)
    } catch (error) {
      // The read that finds where the cut goes failed (EIO: a bad sector, a disk in trouble) before
      // anything changed: the log is as it was, so the caller may try again once the disk reads
      // (raft-storage.ts does). Appends queued behind this one fail with the same error, not an assertion.
      if (!isRillError(error, ErrorCode.STORAGE_UNUSABLE)) throw error
      const failed = cutReadFailed(this.name, index, keep.path, error)
      if (this.#cutFailed === undefined || index < this.#cutFailed.after) this.#cutFailed = { after: index, error: failed }
      throw failed
    }
    const { position, offsetEnd } = found
    await this.#lowerMarkTo({ segmentBase: keep.baseIndex, bytes: position })
    // A simulated crash while this cut waited: files stay as the crash left them.
    if (this.#abandoned) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} abandoned`)
    const dropped = this.#segments.splice(this.#segments.indexOf(keep) + 1)
    for (const seg of dropped) {
      await seg.close()
      this.#removeFile(seg.baseIndex, { deleted: 0 })
    }
    // The unlinks must be durable before a mark past the cut is (a flush that may stand in for the truncate record).
    if (dropped.length > 0) this.#dirDirty = true
    if (position < keep.bytes) {
      await keep.drain()
      keep.removeIndexFile()
      try {
        this.#ctx.io.ftruncateSync(keep.fd, position)
      } catch (error) {
        this.#failed = storageError(error, `log ${this.name}: truncating ${keep.path}; reopen the log`)
        throw this.#failed
      }
      keep.dirty = true
    }
    const lastIndex = Math.min(index, keep.lastIndex)
    const lastTerm = lastIndex >= keep.baseIndex ? keep.termAt(lastIndex) : 0
    keep.forgetAfter({ lastIndex, lastTerm, position, offsetEnd })
    if (this.#cutFailed !== undefined && index <= this.#cutFailed.after) this.#cutFailed = undefined
  }

  /** Position just after entry `index` in `seg` (header end if index < base), and the log's next offset there. */
  async #positionAfter(seg: Segment, index: number): Promise<{ position: number; offsetEnd: number }> {
    if (index >= seg.lastIndex) return { position: seg.bytes, offsetEnd: seg.offsetEnd }
    const segIdx = this.#segments.indexOf(seg)
    const carry = segIdx > 0 ? this.#segments[segIdx - 1]!.offsetEnd : -1
    if (index < seg.baseIndex) return { position: fileHeaderBytes, offsetEnd: carry }
    const point = seg.pointAtOrBefore(index)
    let offsetEnd = point?.offsetNext ?? carry
    let found: { position: number; offsetEnd: number } | undefined
    const from = point === undefined ? { position: fileHeaderBytes, index: seg.baseIndex } : { position: point.position, index: point.index }
    await this.#walk(seg, from, seg.bytes, false, (h, _position, entryEnd) => {
      if (h.recordCount > 0) offsetEnd = h.baseOffset + h.recordCount
      if (h.index !== index) return 'skip'
      found = { position: entryEnd, offsetEnd }
      return 'stop'
    })
    assert(found !== undefined, () => `log ${this.name}: entry ${index} not found in ${seg.path}`)
    return found
  }

  /**
   * Before a cut at `mark`: if it is below the durable mark, records the
   * lower mark durably first. Direct flushes raise the mark through
   * `flushed` WAL records; the lowered mark is recorded with the WAL position
   * now, which voids them (store.ts). A direct flush in flight is waited for
   * (a cut below recent data is rare): once its cycle ends, the mark counts
   * what it made durable, and the lowered mark keeps what is below the cut.
   */
  async #lowerMarkTo(mark: Mark): Promise<void> {
    while (this.#directInFlight.size > 0) await Promise.all(this.#directInFlight)
    const old = this.#mark
    const below = old === undefined || markBefore(mark, old)
    this.#markEpoch++
    if (old !== undefined && !below) return
    this.#mark = mark
    this.#markRecorded = mark
    if (this.#directSynced !== undefined && markBefore(mark, this.#directSynced)) this.#directSynced = mark
    await this.#ctx.lowerMark(this.name, mark)
  }

  async compact(snapshot: SnapshotMeta): Promise<void> {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is closed`)
    const durable = await this.#serialize(async () => {
      if (snapshot.index <= this.#start.index) return { durable: undefined }
      this.#writePending()
      assert(snapshot.index < this.lastIndex() || this.#damage === undefined, () => `log ${this.name}: reset of a damaged log`)
      await this.#writeAtomic('start', { index: snapshot.index, term: snapshot.term })
      const reset = snapshot.index >= this.lastIndex()
      this.#cutting = reset
      this.#start = { index: snapshot.index, term: snapshot.term }
      let removed = 0
      if (reset) {
        this.#truncations++
        this.#cutFailed = undefined
        const old = this.#segments
        const fresh = this.#newSegment(snapshot.index + 1)
        this.#segments = [fresh]
        for (const seg of old) {
          // An empty old active segment (rolled, then cut or torn back) has the new one's base:
          // #newSegment reopened its file, which must stay; deleting it lost every later append.
          if (seg.baseIndex !== fresh.baseIndex) await this.#deleteSegment(seg)
          else {
            seg.removeIndexFile()
            await seg.close()
          }
        }
        removed = old.length
      } else {
        while (this.#segments.length > 1 && this.#segments[0]!.lastIndex <= snapshot.index) {
          await this.#deleteSegment(this.#segments.shift()!)
          removed++
        }
      }
      await this.#keepFirstSegmentDurable()
      this.#cutting = false
      this.#ctx.logger.info({ log: this.name, snapshot, segmentsDeleted: removed, firstIndex: this.firstIndex() }, 'log compacted')
      const wal = reset && this.mode === 'sync' ? this.#ctx.wal : undefined
      return { durable: wal?.submit([encodeWalRecordHeader({ kind: WalRecordKind.truncate, name: this.#nameBytes, payloadBytes: 0, entryCount: 0, index: snapshot.index })], { log: this }) }
    })
    await durable.durable
  }

  /**
   * After the segments before it are deleted, the first segment must be
   * durable (file, directory entry, mark): if a crash could lose it while
   * later segments survive, the log would come back with a hole at its start
   * that no WAL replay can fill. Compaction and retention are rare; one
   * fsync here is cheap.
   */
  async #keepFirstSegmentDurable(): Promise<void> {
    const first = this.#segments[0]!
    if (this.#mark !== undefined && this.#mark.segmentBase >= first.baseIndex) return
    await this.#ctx.flushNow(this)
  }

  async #deleteSegment(seg: Segment): Promise<void> {
    await seg.close()
    this.#removeFile(seg.baseIndex, { deleted: 0 })
  }

  async applyRetention(options: { indexAllowed: number; nowMs: number }): Promise<RetentionResult> {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is closed`)
    return this.#serialize(async () => {
      let total = this.#segments.reduce((n, s) => n + s.bytes, 0)
      let segmentsDeleted = 0
      let bytesDeleted = 0
      while (this.#segments.length > 1) {
        const seg = this.#segments[0]!
        if (seg.lastIndex > options.indexAllowed) break
        const old = seg.timestampMaxMs > 0 && seg.timestampMaxMs < options.nowMs - this.#retentionMs
        if (!old && total <= this.#retentionBytes) break
        this.#segments.shift()
        total -= seg.bytes
        bytesDeleted += seg.bytes
        segmentsDeleted++
        await this.#deleteSegment(seg)
      }
      if (segmentsDeleted > 0) await this.#keepFirstSegmentDurable()
      const result = { segmentsDeleted, bytesDeleted, firstIndex: this.firstIndex() }
      if (segmentsDeleted > 0) this.#ctx.logger.info({ log: this.name, ...result, indexAllowed: options.indexAllowed }, 'retention deleted old segments')
      return result
    })
  }

  async setHardState(state: HardState): Promise<void> {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} is closed`)
    assert(isCount(state.term) && isCount(state.vote) && isCount(state.commit), () => `log ${this.name}: bad hard state ${JSON.stringify(state)}`)
    assert(state.term >= this.#hardState.term, () => `log ${this.name}: hard state term ${state.term} below ${this.#hardState.term}`)
    this.#hardState = { term: state.term, vote: state.vote, commit: state.commit }
    const run = this.#hardStateChain.then(async () => {
      const latest = this.#hardState
      if (latest === this.#hardStateWritten) return // a newer call already wrote it (coalesced)
      await this.#writeAtomic('state', latest)
      this.#hardStateWritten = latest
    })
    this.#hardStateChain = run.catch(() => {})
    await run
  }

  async #writeAtomic(file: string, value: object): Promise<void> {
    const { runtime, metrics } = this.#ctx
    const startMs = runtime.nowMs()
    try {
      await writeFileAtomic(this.#ctx.io, join(this.dir, file), Buffer.from(JSON.stringify(value)))
    } catch (error) {
      throw storageError(error, `log ${this.name}: writing ${file}`)
    }
    metrics.fsyncSeconds.observe({ kind: 'state' }, (runtime.nowMs() - startMs) / 1000)
    metrics.fsyncs.inc({ kind: 'state' }, 2)
  }

  // ---- flushing ----------------------------------------------------------

  /** True if something was written since the last flush. */
  isDirty(): boolean {
    return this.#dirDirty || this.#segments.some((s) => s.dirty)
  }

  /**
   * True if a flush would change the store's marks: dirty, a flush in flight
   * (its bytes are no longer dirty, its mark not yet recorded), or a direct
   * flush raised the mark past the recorded one. A checkpoint flushes these
   * before it deletes the WAL files that still cover them.
   */
  needsFlush(): boolean {
    if (this.isDirty() || this.#flushInFlight !== undefined) return true
    return this.#mark !== undefined && (this.#markRecorded === undefined || markBefore(this.#markRecorded, this.#mark))
  }

  /** The highest mark direct flushes made durable (crash tests tear only past it). */
  directSynced(): Mark | undefined {
    return this.#directSynced
  }

  /**
   * Starts an fsync of everything written so far: the mark it will make
   * durable and the work. Called synchronously, so the mark covers exactly
   * the bytes written before it. It waits for the flush started before it,
   * whose dirty segments it does not see: if that one fails, so does this.
   */
  planFlush(): FlushPlan {
    this.#writePending()
    const active = this.#active()
    const mark = { segmentBase: active.baseIndex, bytes: active.bytes }
    const dirty = this.#segments.filter((s) => s.dirty)
    const dirDirty = this.#dirDirty
    for (const s of dirty) s.dirty = false
    this.#dirDirty = false
    const ctx = this.#ctx
    const before = this.#flushInFlight
    const done = (async () => {
      try {
        await before
        await Promise.all(dirty.map((s) => s.io(() => timedSync(ctx, 'segment', () => ctx.io.fdatasync(s.fd)))))
        if (dirDirty) await timedSync(ctx, 'dir', () => fsyncDir(ctx.io, this.dir))
      } catch (error) {
        for (const s of dirty) s.dirty = true
        this.#dirDirty ||= dirDirty
        throw storageError(error, `log ${this.name}: fsync`)
      }
    })()
    this.#flushInFlight = done
    done.then(
      () => this.#flushSettled(done),
      () => this.#flushSettled(done),
    )
    return { mark, since: ctx.walPosition(), epoch: this.#cuttingEnd ? markEpochVoid : this.#markEpoch, done }
  }

  #flushSettled(done: Promise<void>): void {
    if (this.#flushInFlight === done) this.#flushInFlight = undefined
  }

  /**
   * After a flush is durable, what the store does with its mark: `record`
   * it; nothing if it is `covered` (a later flush's mark, at or past it, is
   * recorded already: flushes of one log finish in order, but a checkpoint's
   * waits for every log it flushes, so it may be acknowledged after a later
   * one); nothing if it is `void` (the log cut its end since it was planned,
   * or while it was: see #markEpoch). Going back to the older mark would
   * unprotect what the later one covers, whose WAL records may be gone; after
   * a compaction, a segment it deleted.
   */
  markFlushed(plan: FlushPlan): 'record' | 'covered' | 'void' {
    if (plan.epoch !== this.#markEpoch) return 'void'
    if (this.#mark === undefined || markBefore(this.#mark, plan.mark)) this.#mark = plan.mark
    if (this.#markRecorded !== undefined && !markBefore(this.#markRecorded, plan.mark)) return 'covered'
    this.#markRecorded = plan.mark
    return 'record'
  }

  /**
   * The WAL takes this log's requests as a direct flush (wal.ts): fsync
   * everything written; the `flushed` record says up to where. Declines
   * while the log is closed, failed, damaged or cutting its end.
   */
  flushDirect(): DirectFlush | undefined {
    if (this.#closed || this.#failed !== undefined || this.#cutting || this.#damage !== undefined) return undefined
    const plan = this.planFlush()
    const index = this.lastIndex()
    const term = this.term(index)
    const name = this.#nameBytes
    let settle!: () => void
    const inFlight = new Promise<void>((resolve) => (settle = resolve))
    this.#directInFlight.add(inFlight)
    return {
      recordBytes: walRecordHeaderBytes + name.length + walFlushedPayloadBytes,
      record: (cycleEnd) => encodeWalFlushedRecord(name, { ...plan.mark, index, term, cycleEnd }),
      done: plan.done,
      finished: (completed) => {
        if (completed && plan.epoch === this.#markEpoch) {
          if (this.#mark === undefined || markBefore(this.#mark, plan.mark)) this.#mark = plan.mark
          if (this.#directSynced === undefined || markBefore(this.#directSynced, plan.mark)) this.#directSynced = plan.mark
        }
        this.#directInFlight.delete(inFlight)
        settle()
      },
    }
  }

  /**
   * Recovery: true if the log as loaded holds what a `flushed` record of the
   * WAL's last cycle says (that cycle may have crashed before its fsyncs
   * returned): last index and term, ending exactly at the record's mark.
   */
  async holdsFlushed(f: WalFlushed): Promise<boolean> {
    if (this.#damage !== undefined) return false
    const seg = this.#segments.find((s) => s.baseIndex === f.segmentBase)
    if (seg === undefined || seg.bytes < f.bytes) return false
    if (f.index < this.firstIndex() - 1 || f.index > this.lastIndex() || this.term(f.index) !== f.term) return false
    if (f.index < seg.baseIndex) return f.bytes === fileHeaderBytes
    if (f.index > seg.lastIndex) return false
    return (await this.#positionAfter(seg, f.index)).position === f.bytes
  }

  // ---- reads -------------------------------------------------------------

  async read(options: { indexStart: number; bytesMax: number }): Promise<LogEntry[]> {
    this.#writePending()
    checkReadStart(this.name, options.indexStart, this.firstIndex())
    const last = this.lastIndex()
    if (options.indexStart > last) return []
    const truncations = this.#truncations
    const out: LogEntry[] = []
    let bytes = 0
    let seg = this.#segmentOf(options.indexStart)
    let from = seg?.locateIndex(options.indexStart) ?? { position: fileHeaderBytes, index: 0 }
    while (seg !== undefined && out.length < appendEntriesMax) {
      const done = await this.#walk(seg, from, seg.bytes, true, (h, _position, _end, entry) => {
        if (h.index < options.indexStart) return 'skip'
        if (h.index > last || (out.length > 0 && bytes + entryHeaderBytes + h.bodyBytes > options.bytesMax)) return 'stop'
        out.push(entry!)
        bytes += entryHeaderBytes + h.bodyBytes
        return 'take'
      }, options.bytesMax)
      if (done) break
      seg = this.#segments[this.#segments.indexOf(seg) + 1]
      from = { position: fileHeaderBytes, index: seg?.baseIndex ?? 0 }
    }
    return this.#fence(out, truncations)
  }

  async readByOffset(options: { offsetStart: number; bytesMax: number }): Promise<LogEntry[]> {
    this.#writePending()
    const last = this.lastIndex()
    const first = this.firstIndex()
    const truncations = this.#truncations
    const out: LogEntry[] = []
    let bytes = 0
    let k = this.#segments.findIndex((s) => s.offsetEnd > options.offsetStart)
    if (k < 0) return []
    let seg: Segment | undefined = this.#segments[k]!
    let from = seg.locateOffset(options.offsetStart)
    while (seg !== undefined && out.length < appendEntriesMax) {
      const done = await this.#walk(seg, from, seg.bytes, true, (h, _position, _end, entry) => {
        if (h.index > last) return 'stop'
        if (h.index < first || h.recordCount === 0 || h.baseOffset + h.recordCount <= options.offsetStart) return 'skip'
        if (out.length > 0 && bytes + entryHeaderBytes + h.bodyBytes > options.bytesMax) return 'stop'
        out.push(entry!)
        bytes += entryHeaderBytes + h.bodyBytes
        return 'take'
      }, options.bytesMax)
      if (done) break
      seg = this.#segments[++k]
      from = { position: fileHeaderBytes, index: seg?.baseIndex ?? 0 }
    }
    return this.#fence(out, truncations)
  }

  /** Drops entries a truncation overlapping the read has removed or replaced. */
  #fence(out: LogEntry[], truncations: number): LogEntry[] {
    if (truncations === this.#truncations) return out
    const first = this.firstIndex()
    const last = this.lastIndex()
    const kept: LogEntry[] = []
    for (const e of out) {
      if (e.index < first || e.index > last || this.term(e.index) !== e.term) break
      kept.push(e)
    }
    return kept
  }

  /** Reads a chunk of a segment; an I/O error is a coded storage error naming the file (never a raw EIO). */
  async #readChunk(seg: Segment, position: number, length: number): Promise<Buffer> {
    try {
      return await seg.io(() => readAt(seg.fileIo, seg.fd, position, length))
    } catch (error) {
      throw storageError(error, `log ${this.name}: reading ${seg.path} at ${position}`)
    }
  }

  /**
   * Reads entries of `seg` from `from` (a position and the index of the
   * entry there) up to `end`, calling `visit` for each; with `bodies`, taken
   * entries are checksummed and built. Skipped entries are not checksummed
   * but their indexes must follow one another, so a damaged length cannot
   * silently misalign the walk. Returns true if `visit` stopped the walk.
   */
  async #walk(
    seg: Segment,
    from: { position: number; index: number },
    end: number,
    bodies: boolean,
    visit: (h: EntryHeader, position: number, entryEnd: number, entry: LogEntry | undefined) => 'skip' | 'take' | 'stop',
    bytesMax = 0,
  ): Promise<boolean> {
    const chunkBytes = Math.min(readChunkBytesMax, Math.max(readChunkBytesMin, bytesMax + this.#indexIntervalBytes))
    let chunk: Buffer = Buffer.alloc(0)
    let chunkStart = from.position
    let position = from.position
    let expect = from.index
    while (position < end) {
      if (position + entryHeaderBytes > chunkStart + chunk.length) {
        chunkStart = position
        chunk = await this.#readChunk(seg, position, Math.min(chunkBytes, end - position))
        if (chunk.length < entryHeaderBytes) throw this.#corrupt(seg, position, 'short read')
      }
      let h = decodeEntryHeader(chunk, position - chunkStart)
      if (h.index !== expect) throw this.#corrupt(seg, position, `index ${h.index} where ${expect} was expected`)
      expect++
      const entryEnd = position + entryHeaderBytes + h.bodyBytes
      if (entryEnd > end) throw this.#corrupt(seg, position, `entry length ${h.bodyBytes} runs past the segment end`)
      let entry: LogEntry | undefined
      if (bodies) {
        if (entryEnd > chunkStart + chunk.length) {
          chunkStart = position
          chunk = await this.#readChunk(seg, position, Math.min(Math.max(chunkBytes, entryEnd - position), end - position))
          if (chunk.length < entryEnd - position) throw this.#corrupt(seg, position, 'short read')
          h = decodeEntryHeader(chunk, 0)
        }
        entry = entryFromHeader(chunk, position - chunkStart, h)
      }
      const verdict = visit(h, position, entryEnd, entry)
      if (verdict === 'stop') return true
      if (verdict === 'take' && !entryChecksumHolds(chunk, position - chunkStart, h)) throw this.#corrupt(seg, position, 'checksum mismatch')
      position = entryEnd
    }
    return false
  }

  #corrupt(seg: Segment, position: number, reason: string): RillError {
    const error = new RillError(ErrorCode.STORAGE_CORRUPT, `log ${this.name}: ${seg.path} at ${position}: ${reason}`, {
      details: { file: seg.path, position, reason },
    })
    this.#ctx.logger.error({ log: this.name, file: seg.path, position, reason }, 'read found damage')
    return error
  }

  // ---- replay and close --------------------------------------------------

  /** Applies one WAL record at store open (the log is opened as `async`, nothing else runs). */
  async replay(record: { kind: number; index: number; entries: EntryToAppend[]; encoded: Buffer[] }): Promise<void> {
    if (this.#damage !== undefined || record.kind === WalRecordKind.flushed) return
    if (record.kind === WalRecordKind.truncate) {
      if (record.index >= this.firstIndex() - 1 && record.index < this.lastIndex()) await this.#serialize(() => this.#cutAfter(record.index))
      return
    }
    const skip = record.entries.findIndex((e) => e.index >= this.firstIndex())
    if (skip < 0) return
    const entries = record.entries.slice(skip)
    const encoded = record.encoded.slice(skip)
    const first = entries[0]!.index
    if (first > this.lastIndex() + 1) {
      this.#ctx.logger.error({ log: this.name, first, lastIndex: this.lastIndex() }, 'WAL replay: gap before record; dropped')
      return
    }
    await this.#serialize(async () => {
      if (first <= this.lastIndex()) await this.#cutAfter(first - 1)
      this.#writeEntries(entries, encoded.map((b) => [b]), false)
    })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#serialize(async () => {})
    await this.#hardStateChain
    if (this.#failed !== undefined) this.#dropPending(this.#failed)
    // A damaged log wrote nothing; its mark stays where it was, so the next open reports the damage again.
    if (this.#failed === undefined && this.#damage === undefined) {
      this.#writePending()
      this.#active().writeIndexFile()
      const plan = this.planFlush()
      await plan.done
      if (this.markFlushed(plan) === 'record') await this.#ctx.flushed(this.name, plan.mark, plan.since)
    }
    for (const seg of this.#segments) await seg.close()
    this.#ctx.metrics.openLogs.dec({ mode: this.mode })
    this.#ctx.closed(this)
  }

  /** Closes fds without flushing anything (a simulated crash). */
  async abandon(): Promise<void> {
    this.#closed = true
    this.#abandoned = true
    await this.#serial
    this.#dropPending(new RillError(ErrorCode.STORAGE_READ_ONLY, `log ${this.name} abandoned`))
    for (const seg of this.#segments) await seg.close()
    this.#ctx.metrics.openLogs.dec({ mode: this.mode })
  }
}

function headerOf(e: EntryToAppend): EntryHeader {
  return {
    crc: 0,
    bodyBytes: e.data.length,
    index: e.index,
    term: e.term,
    baseOffset: e.baseOffset,
    timestampMinMs: e.timestampMinMs,
    timestampMaxMs: e.timestampMaxMs,
    recordCount: e.recordCount,
    type: e.type,
  }
}

