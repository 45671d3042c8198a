/**
 * The log store: one per broker data directory. It holds the directory lock,
 * the shared WAL of the `sync` logs, the durable marks of every log, and the
 * flusher of the `async` logs; partition logs are opened through it.
 *
 *   <dir>/LOCK            pid of the owning process (lock.ts)
 *   <dir>/marks.json      per log: (segment, length) known fsynced, and the
 *                         WAL position when that was recorded
 *   <dir>/wal/<seq>.wal   shared WAL (wal.ts)
 *   <dir>/logs/<name>/    one directory per log (disk-log.ts); a `memory`
 *                         log's holds only its hard state (memory-log.ts)
 *
 * A mark is recorded with the WAL position when it was planned (a flush) or
 * lowered (a cut): the log's records before that position are then in its
 * segments up to the mark, or cut away.
 *
 * Open = lock, read marks, replay the WAL, in two passes. First the
 * `flushed` records (direct flushes, wal.ts): one written after its log's
 * mark was recorded raises that mark (one before it is covered by the mark,
 * or voided by it if the log was cut since). Then every other record is
 * applied to its log's segments (each log's torn tail cut first, see
 * disk-log.ts), except a log's records before its mark's WAL position or up
 * to its last counted `flushed` record: their effects are durable in the
 * segments, and replaying them would cut entries that are only there. Those logs are fsynced, marks
 * written, WAL files deleted, a fresh WAL started. So a log opened later
 * finds everything in its segments, and the WAL never holds records of a log
 * nobody opens.
 *
 * The `async` flusher runs every `flushIntervalMs` (the smallest of the open
 * async logs): it fsyncs the due dirty logs together and writes the marks
 * once per pass. Its cost grows with the number of dirty async logs (one
 * fdatasync each, ~0.24 ms here): that is the price of async mode not
 * writing twice.
 */
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import type { Registry } from 'prom-client'
import { ErrorCode, RillError, assert, systemRuntime, type Runtime, type TimerHandle } from '../base/index.ts'
import { DiskLog, flushIntervalMsDefault, markBefore, type FlushPlan, type LogStoreContext, type Mark } from './disk-log.ts'
import { logNameBytesMax, type WalFlushed } from './format.ts'
import { parseSegmentFileName } from './segment.ts'
import { fsyncDir, isErrorCode, mkdirDurable, nodeIo, readFileSync, storageError, writeFileAtomic, type LogIo } from './io.ts'
import { lockDir, type DirLock } from './lock.ts'
import { HardStateFile, hardStateFileName, MemoryLog } from './memory-log.ts'
import { createLogMetrics, timedSync, type LogMetrics } from './metrics.ts'
import type { OpenLogOptions, PartitionLog } from './types.ts'
import { Wal, compareWalPositions, listWalFiles, readWalFile, walBytesMaxDefault, walDirectBytesMinDefault, walFileName, type WalPosition } from './wal.ts'

/** Options of a store. */
export interface LogStoreOptions {
  /** The data directory (created if missing). */
  readonly dir: string
  /** Where metrics go (not the global registry). */
  readonly registry: Registry
  /** Logs open, recovery and retention; silent if absent. */
  readonly logger?: Logger
  /** WAL bytes before rotation and a checkpoint. Default 64 MiB: bounds replay time and WAL disk use (x2). */
  readonly walBytesMax?: number
  /**
   * Bytes a sync log must have queued for a WAL cycle to fsync its segments
   * instead of copying its entries into the WAL (wal.ts, "direct flushes").
   * Default 256 KiB, measured (wal.ts, bench/results/log.md); Infinity turns them off.
   */
  readonly walDirectBytesMin?: number
  /** File operations: node:fs by default; tests inject faults, the simulator passes its disk. */
  readonly io?: LogIo
  /** Clock and timers (the async flusher, fsync timings): the process's by default, virtual in the simulator. */
  readonly runtime?: Runtime
}

/** What survives a simulated crash, for tests: bytes beyond these may be lost or torn. */
export interface CrashImage {
  /** The current WAL file and its fsynced length. */
  readonly wal: { path: string; syncedBytes: number }
  /** Durable marks as last written to marks.json. */
  readonly marks: ReadonlyMap<string, Mark>
  /** Per log, the mark its direct flushes made durable (a `flushed` WAL record may or may not have followed). */
  readonly synced: ReadonlyMap<string, Mark>
  /** Directory of each log. */
  readonly logDirs: ReadonlyMap<string, string>
}

const logNamePattern = /^[A-Za-z0-9._-]+$/
/** Directory and segment fsyncs in flight at once after an unclean stop (the thread pool runs 4; more only queue). */
const dirSyncsInflightMax = 16

/** A mark as the marks file holds it: with the WAL position when it was recorded. */
interface StoredMark extends Mark {
  readonly since: WalPosition
}

const walPositionZero: WalPosition = { seq: 0, bytes: 0 }

/** A log's `flushed` records found at recovery: the last of a completed cycle, and those of the last cycle. */
interface FlushedSeen {
  completed: WalPosition | undefined
  readonly unsure: { readonly at: WalPosition; readonly flushed: WalFlushed }[]
}

/** Opens (creating if needed) a store; recovers from a crash. Throws STORAGE_LOCKED if another process holds it. */
export async function openLogStore(options: LogStoreOptions): Promise<LogStore> {
  const io = options.io ?? nodeIo
  try {
    // Durably: a WAL file fsynced into a directory a power loss then takes away is lost all the same.
    await mkdirDurable(io, join(options.dir, 'logs'))
    await mkdirDurable(io, join(options.dir, 'wal'))
  } catch (error) {
    throw storageError(error, `log store ${options.dir}`)
  }
  let lock: DirLock
  try {
    lock = await lockDir(io, options.dir)
  } catch (error) {
    throw storageError(error, `log store ${options.dir}: lock`)
  }
  try {
    const store = new LogStore(options, lock)
    await store.recover()
    return store
  } catch (error) {
    lock.release()
    // A failing disk at open is a coded error (STORAGE_FULL / STORAGE_UNUSABLE), never a raw errno.
    throw storageError(error, `log store ${options.dir}`)
  }
}

/** One data directory's logs. Create with `openLogStore`. */
export class LogStore {
  readonly dir: string
  readonly #io: LogIo
  readonly #runtime: Runtime
  readonly #logger: Logger
  readonly #metrics: LogMetrics
  readonly #lock: DirLock
  readonly #walBytesMax: number
  readonly #walDirectBytesMin: number
  #wal: Wal | undefined
  /** Sequence number of the WAL file the store will start (until it has one). */
  #walSeqNext = 1
  /** Recovery: position of the WAL record being replayed. */
  #replaying: WalPosition | undefined
  #marks = new Map<string, StoredMark>()
  #marksDurable = new Map<string, StoredMark>()
  #marksChain: Promise<void> = Promise.resolve()
  #logs = new Map<string, PartitionLog>()
  /** Names whose openLog is under way (awaiting a directory fsync): a second open is refused. */
  #opening = new Set<string>()
  #flushTimer: TimerHandle | undefined
  #flushPass: Promise<void> | undefined
  #closed = false
  #abandoned = false

  /** Use openLogStore. */
  constructor(options: LogStoreOptions, lock: DirLock) {
    this.dir = options.dir
    this.#io = options.io ?? nodeIo
    this.#runtime = options.runtime ?? systemRuntime
    this.#logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'log-store' })
    this.#metrics = createLogMetrics(options.registry)
    this.#lock = lock
    this.#walBytesMax = options.walBytesMax ?? walBytesMaxDefault
    this.#walDirectBytesMin = options.walDirectBytesMin ?? walDirectBytesMinDefault
  }

  /** Reads marks, replays the WAL, starts a fresh one. Called once by openLogStore. */
  async recover(): Promise<void> {
    if (this.#lock.tookOver) await this.#syncDirectories()
    this.#marks = this.#readMarks()
    if (this.#lock.tookOver) await this.#syncUnmarkedSegments()
    this.#marksDurable = new Map(this.#marks)
    const walDir = join(this.dir, 'wal')
    const seqs = listWalFiles(this.#io, walDir)
    // WAL sequence numbers only grow, also across clean closes (which delete every WAL file): a mark's WAL position must stay behind every later record.
    this.#walSeqNext = Math.max(seqs.at(-1) ?? 0, ...[...this.#marks.values()].map((m) => m.since.seq)) + 1
    const files = seqs.map((seq, i) => ({ seq, path: join(walDir, walFileName(seq)), last: i === seqs.length - 1 }))
    const flushed = this.#applyFlushedRecords(files)
    const replayed = new Map<string, DiskLog>()
    const replayFrom = new Map<string, { since: WalPosition; after: WalPosition | undefined }>()
    let records = 0
    let tornBytes = 0
    for (const file of files) {
      const read = readWalFile(this.#io, file.path, file.last)
      tornBytes += read.tornBytes
      for (const r of read.records) {
        let log = replayed.get(r.name)
        if (log === undefined) {
          if (!this.#io.existsSync(join(this.dir, 'logs', r.name))) continue // log removed since
          log = DiskLog.open(this.#context(), join(this.dir, 'logs', r.name), { name: r.name, mode: 'async' })
          replayed.set(r.name, log)
          replayFrom.set(r.name, { since: this.#marks.get(r.name)?.since ?? walPositionZero, after: await this.#replayStart(log, flushed.get(r.name)) })
        }
        // Records before the log's mark was recorded are in its segments up to the mark; so are those up to its last counted flushed record.
        const at = { seq: file.seq, bytes: r.position }
        const from = replayFrom.get(r.name)!
        if (compareWalPositions(at, from.since) < 0 || (from.after !== undefined && compareWalPositions(at, from.after) <= 0)) continue
        // A mark lowered by this replay is recorded at this record: a crash during recovery replays from it again.
        this.#replaying = at
        await log.replay(r)
        this.#replaying = undefined
        records++
      }
    }
    for (const log of replayed.values()) await log.close()
    this.#logs.clear()
    await this.#writeMarks()
    for (const seq of seqs) this.#io.rmSync(join(walDir, walFileName(seq)))
    this.#wal = await Wal.create(
      { io: this.#io, runtime: this.#runtime, metrics: this.#metrics, logger: this.#logger, checkpoint: () => this.#checkpoint() },
      { dir: walDir, seq: this.#walSeqNext, walBytesMax: this.#walBytesMax, directBytesMin: this.#walDirectBytesMin },
    )
    this.#logger.info(
      { dir: this.dir, walFiles: seqs.length, walRecords: records, walTornBytes: tornBytes, logsReplayed: replayed.size, logsFlushedDirect: flushed.size },
      'log store opened',
    )
  }

  /**
   * After a crash of the process that held the store (its lock was taken
   * over), its creates, renames and unlinks may be in the page cache only:
   * a segment file it created, a `state` it renamed into place. This process
   * sees them and would act on them (fsync the file's bytes, record a mark,
   * vote), and a power loss would then take them back. So every directory
   * of the store is fsynced first: the store's, the WAL's, `logs/` and each
   * log's. Only after an unclean stop: a clean close leaves nothing unsynced.
   */
  async #syncDirectories(): Promise<void> {
    const logsDir = join(this.dir, 'logs')
    const dirs = [this.dir, join(this.dir, 'wal'), logsDir, ...this.#io.readdirSync(logsDir).sort().map((n) => join(logsDir, n))]
    await this.#syncAll(dirs, 'dir', (fd) => this.#io.fsync(fd))
    this.#logger.info({ dir: this.dir, directories: dirs.length }, 'previous process did not close the store: directories fsynced')
  }

  /**
   * After an unclean stop, also the segment files at and past each log's
   * mark: the dead process may have left writes and truncations there in the
   * page cache only. A segment as long as its mark looks clean (the log
   * does not fsync it at open), yet a write that failed half-way and was cut
   * back (ENOSPC), both unsynced, can come back after the next power loss as
   * entries this process never saw: the log would serve up to its mark now
   * and hold more later.
   */
  async #syncUnmarkedSegments(): Promise<void> {
    const logsDir = join(this.dir, 'logs')
    const files: string[] = []
    for (const name of this.#io.readdirSync(logsDir).sort()) {
      const from = this.#marks.get(name)?.segmentBase ?? 0
      for (const file of this.#io.readdirSync(join(logsDir, name)).sort()) {
        const base = parseSegmentFileName(file)
        if (base !== undefined && base >= from) files.push(join(logsDir, name, file))
      }
    }
    await this.#syncAll(files, 'segment', (fd) => this.#io.fdatasync(fd))
  }

  /** Opens each of `paths` read-only and syncs it, `dirSyncsInflightMax` at a time. */
  async #syncAll(paths: readonly string[], kind: string, sync: (fd: number) => Promise<void>): Promise<void> {
    const ctx = { metrics: this.#metrics, runtime: this.#runtime }
    const one = async (path: string): Promise<void> => {
      const fd = this.#io.openSync(path, 'r')
      try {
        await timedSync(ctx, kind, () => sync(fd))
      } finally {
        this.#io.closeSync(fd)
      }
    }
    for (let i = 0; i < paths.length; i += dirSyncsInflightMax) await Promise.all(paths.slice(i, i + dirSyncsInflightMax).map(one))
  }

  /**
   * First recovery pass over the `flushed` records written after their
   * log's mark was recorded (earlier ones are covered or voided by it). One
   * whose cycle completed raises the log's mark: its segments were fsynced.
   * Returns per log the last such record, and the later ones of the WAL's
   * last cycle, which count only if the log holds what they say.
   */
  #applyFlushedRecords(files: readonly { seq: number; path: string; last: boolean }[]): Map<string, FlushedSeen> {
    const seen = new Map<string, FlushedSeen>()
    for (const file of files) {
      for (const r of readWalFile(this.#io, file.path, file.last).records) {
        if (r.flushed === undefined || !this.#io.existsSync(join(this.dir, 'logs', r.name))) continue
        const at = { seq: file.seq, bytes: r.position }
        const mark = this.#marks.get(r.name)
        if (mark !== undefined && compareWalPositions(at, mark.since) < 0) continue
        const s = seen.get(r.name) ?? { completed: undefined, unsure: [] }
        seen.set(r.name, s)
        if (!r.flushed.completed) {
          s.unsure.push({ at, flushed: r.flushed })
          continue
        }
        s.completed = at
        if (mark === undefined || markBefore(mark, r.flushed)) {
          this.#marks.set(r.name, { segmentBase: r.flushed.segmentBase, bytes: r.flushed.bytes, since: mark?.since ?? walPositionZero })
        }
      }
    }
    return seen
  }

  /** Where a log's replay starts: after its last `flushed` record that counts (see #applyFlushedRecords). */
  async #replayStart(log: DiskLog, seen: FlushedSeen | undefined): Promise<WalPosition | undefined> {
    if (seen === undefined) return undefined
    for (let i = seen.unsure.length - 1; i >= 0; i--) if (await log.holdsFlushed(seen.unsure[i]!.flushed)) return seen.unsure[i]!.at
    return seen.completed
  }

  /**
   * Where the WAL is written up to now: a mark recorded with it covers the
   * log's records before it. During recovery, the record being replayed, or
   * after the replay the start of the file the store will begin.
   */
  #walPosition(): WalPosition {
    return this.#wal?.position() ?? this.#replaying ?? { seq: this.#walSeqNext, bytes: 0 }
  }

  #readMarks(): Map<string, StoredMark> {
    const path = join(this.dir, 'marks.json')
    let text: string
    try {
      text = readFileSync(this.#io, path).toString('utf8')
    } catch (error) {
      if (isErrorCode(error, 'ENOENT')) return new Map()
      throw storageError(error, path)
    }
    try {
      // [segmentBase, bytes, sinceSeq, sinceBytes]; files from before direct flushes have no since (zero: every flushed record counts).
      const parsed = JSON.parse(text) as { version: number; marks: Record<string, [number, number, number?, number?]> }
      if (parsed.version !== 1) {
        throw new RillError(ErrorCode.STORAGE_UNUSABLE, `${path}: unknown format version ${parsed.version}; this build reads version 1`, { details: { file: path } })
      }
      return new Map(Object.entries(parsed.marks).map(([name, [segmentBase, bytes, seq, sinceBytes]]) => [name, { segmentBase, bytes, since: { seq: seq ?? 0, bytes: sinceBytes ?? 0 } }]))
    } catch (error) {
      if (error instanceof RillError) throw error
      throw new RillError(ErrorCode.STORAGE_UNUSABLE, `${path}: unreadable`, { details: { file: path }, cause: error })
    }
  }

  /** Writes the marks file with the marks as they are now (serialized; each call sees its own changes). */
  #writeMarks(): Promise<void> {
    const run = this.#marksChain.then(async () => {
      // A crashed store writes nothing more; whoever waits for these marks must not go on as if they were durable.
      if (this.#abandoned) throw new RillError(ErrorCode.STORAGE_READ_ONLY, 'log store abandoned')
      const snapshot = new Map(this.#marks)
      const marks = Object.fromEntries([...snapshot].map(([n, m]) => [n, [m.segmentBase, m.bytes, m.since.seq, m.since.bytes]]))
      const path = join(this.dir, 'marks.json')
      await writeFileAtomic(this.#io, path, Buffer.from(JSON.stringify({ version: 1, marks }))).catch((error: unknown) => {
        throw storageError(error, path)
      })
      this.#metrics.fsyncs.inc({ kind: 'marks' }, 2)
      this.#marksDurable = snapshot
    })
    this.#marksChain = run.catch(() => {})
    return run
  }

  #context(): LogStoreContext {
    return {
      io: this.#io,
      runtime: this.#runtime,
      logger: this.#logger,
      metrics: this.#metrics,
      wal: this.#wal,
      walPosition: () => this.#walPosition(),
      markOf: (name) => {
        const m = this.#marks.get(name)
        return m === undefined ? undefined : { segmentBase: m.segmentBase, bytes: m.bytes }
      },
      lowerMark: async (name, mark) => {
        this.#marks.set(name, { ...mark, since: this.#walPosition() })
        await this.#writeMarks()
      },
      flushed: async (name, mark, since) => {
        this.#marks.set(name, { ...mark, since })
        if (this.#wal !== undefined) await this.#writeMarks()
      },
      flushNow: async (log) => {
        await this.#flushLogs([log])
      },
      closed: (log) => {
        if (this.#logs.get(log.name) === log) this.#logs.delete(log.name)
      },
    }
  }

  /**
   * Opens a log of this store. Throws STORAGE_LOCKED if it is already open,
   * STORAGE_UNUSABLE if its directory holds a log of the other kind (memory
   * vs disk: a topic's persistence never changes, so that is not ours to
   * convert), STORAGE_CORRUPT if a memory log's hard-state file is damaged.
   */
  async openLog(options: OpenLogOptions): Promise<PartitionLog> {
    if (this.#closed) throw new RillError(ErrorCode.STORAGE_READ_ONLY, 'log store is closed')
    const name = options.name
    if (!logNamePattern.test(name) || name === '.' || name === '..' || Buffer.byteLength(name) > logNameBytesMax) {
      throw new RillError(ErrorCode.INVALID_REQUEST, `bad log name ${JSON.stringify(name)}: use [A-Za-z0-9._-], at most ${logNameBytesMax} bytes`)
    }
    if (this.#logs.has(name) || this.#opening.has(name)) throw new RillError(ErrorCode.STORAGE_LOCKED, `log ${name} is already open`)
    const dir = join(this.dir, 'logs', name)
    this.#checkKind(dir, options.mode)
    this.#opening.add(name)
    try {
      return options.mode === 'memory' ? await this.#openMemoryLog(dir, options) : await this.#openDiskLog(dir, options)
    } finally {
      this.#opening.delete(name)
    }
  }

  /** Refuses a log directory that holds the other kind of log (a memory log's hard state vs a disk log's files). */
  #checkKind(dir: string, mode: OpenLogOptions['mode']): void {
    if (!this.#io.existsSync(dir)) return
    const files = this.#io.readdirSync(dir)
    const memoryFiles = new Set([hardStateFileName, `.${hardStateFileName}.tmp`])
    const other = mode === 'memory' ? files.find((f) => !memoryFiles.has(f)) : files.find((f) => f === hardStateFileName)
    if (other === undefined) return
    const kind = mode === 'memory' ? 'a sync or async log' : 'a memory log'
    throw new RillError(ErrorCode.STORAGE_UNUSABLE, `${dir}: holds ${kind} (${other}), cannot open it as a ${mode} log`, { details: { file: join(dir, other) } })
  }

  /** Entries in memory, the hard state in `<dir>/hardstate` (memory-log.ts). */
  async #openMemoryLog(dir: string, options: OpenLogOptions): Promise<PartitionLog> {
    const hardStateFile = await HardStateFile.open({ io: this.#io, dir, runtime: this.#runtime, metrics: this.#metrics })
    const log = new MemoryLog({
      ...options,
      metrics: this.#metrics,
      logger: this.#logger,
      hardStateFile,
      onClose: (l) => {
        if (this.#logs.get(l.name) === l) this.#logs.delete(l.name)
      },
    })
    this.#logs.set(options.name, log)
    return log
  }

  async #openDiskLog(dir: string, options: OpenLogOptions): Promise<PartitionLog> {
    const name = options.name
    const created = !this.#io.existsSync(dir)
    let log: DiskLog
    try {
      log = DiskLog.open(this.#context(), dir, options)
    } catch (error) {
      // A failing disk while scanning the log at open: a coded error, never a raw errno.
      throw storageError(error, `log ${name}: open`)
    }
    if (created) await fsyncDir(this.#io, join(this.dir, 'logs'))
    this.#logs.set(name, log)
    // What recovery kept beyond the durable mark is made durable before anyone reads it:
    // a replica must not report entries that the next crash could take back.
    if (log.isDirty()) {
      try {
        await this.#flushLogs([log])
      } catch (error) {
        await log.close().catch(() => {})
        throw storageError(error, `log ${name}: fsync at open`)
      }
    }
    if (log.mode === 'async') this.#scheduleFlush()
    return log
  }

  /** Deletes a closed log's files (a partition moved away), a memory log's hard state too. */
  async removeLog(name: string): Promise<void> {
    assert(!this.#logs.has(name), () => `removeLog(${name}) while it is open`)
    this.#io.rmSync(join(this.dir, 'logs', name), { recursive: true })
    await fsyncDir(this.#io, join(this.dir, 'logs'))
    this.#marks.delete(name)
    await this.#writeMarks()
  }

  #diskLogs(mode: 'sync' | 'async'): DiskLog[] {
    return [...this.#logs.values()].filter((l): l is DiskLog => l instanceof DiskLog && l.mode === mode)
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined || this.#closed) return
    const intervals = this.#diskLogs('async').map((l) => l.flushIntervalMs)
    if (intervals.length === 0) return
    this.#flushTimer = this.#runtime.setTimer(
      () => {
        this.#flushTimer = undefined
        this.#flushPass = this.#flushAsyncLogs().finally(() => {
          this.#flushPass = undefined
          this.#scheduleFlush()
        })
      },
      Math.min(flushIntervalMsDefault, ...intervals),
      { background: true },
    )
  }

  /** One pass of the async flusher: fsync the due dirty logs together, write the marks once. */
  async #flushAsyncLogs(): Promise<void> {
    try {
      const now = this.#runtime.nowMs()
      const due = this.#diskLogs('async').filter((l) => l.isDirty() && now - l.lastFlushMs >= l.flushIntervalMs)
      await this.#flushLogs(due)
      for (const l of due) l.lastFlushMs = now
    } catch (error) {
      this.#logger.error({ err: error }, 'async flush failed; will retry')
    }
  }

  /** fsyncs `logs` and records their marks; false if a log cut its end meanwhile (its mark was not recorded). */
  async #flushLogs(logs: DiskLog[]): Promise<boolean> {
    const plans: [DiskLog, FlushPlan][] = logs.map((l) => [l, l.planFlush()])
    await Promise.all(plans.map(([, p]) => p.done))
    let changed = false
    let all = true
    for (const [log, plan] of plans) {
      const outcome = log.markFlushed(plan)
      if (outcome === 'record') {
        this.#marks.set(log.name, { ...plan.mark, since: plan.since })
        changed = true
      } else if (outcome === 'void') all = false
    }
    if (changed) await this.#writeMarks()
    return all
  }

  /** WAL checkpoint: fsync every dirty sync log, record their marks (also of logs whose direct flushes raised them: their records are in the WAL file about to go). */
  async #checkpoint(): Promise<boolean> {
    return this.#flushLogs(this.#diskLogs('sync').filter((l) => l.needsFlush()))
  }

  /** Closes every log (flushing them), the WAL, and releases the lock. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#flushTimer?.cancel()
    await this.#flushPass
    for (const log of [...this.#logs.values()]) await log.close()
    await this.#wal?.drain()
    await this.#marksChain
    this.#wal?.close()
    // Every sync log was fsynced at close and its mark written: the WAL holds nothing needed.
    for (const seq of listWalFiles(this.#io, join(this.dir, 'wal'))) this.#io.rmSync(join(this.dir, 'wal', walFileName(seq)))
    this.#lock.release()
    this.#logger.info({ dir: this.dir }, 'log store closed')
  }

  /**
   * Simulates a crash (tests, simulator): no flush, no marks, fds closed,
   * lock released. Pending appends are refused. Returns what a power loss
   * would be guaranteed to keep, so a test can tear the rest.
   */
  async abandon(): Promise<CrashImage> {
    this.#closed = true
    this.#flushTimer?.cancel()
    await this.#flushPass
    await this.#marksChain
    this.#abandoned = true
    await this.#wal!.abandon()
    const walState = this.#wal!.state()
    const logDirs = new Map<string, string>()
    const synced = new Map<string, Mark>()
    for (const log of [...this.#logs.values()]) {
      if (log instanceof MemoryLog) log.abandon()
      if (log instanceof DiskLog) {
        logDirs.set(log.name, log.dir)
        await log.abandon()
        const mark = log.directSynced()
        if (mark !== undefined) synced.set(log.name, mark)
      }
    }
    await this.#marksChain
    this.#logs.clear()
    this.#lock.release()
    return { wal: { path: walState.path, syncedBytes: walState.syncedBytes }, marks: new Map(this.#marksDurable), synced, logDirs }
  }
}
