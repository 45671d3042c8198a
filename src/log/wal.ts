/**
 * The store's shared write-ahead log: the group commit of every `sync` log.
 *
 * Why one WAL and not one fsync per log (RabbitMQ Ra's design), measured on
 * this machine, 1 KiB per log per cycle, ext4 on virtio:
 *
 *   logs written per cycle      1        10       100       1000
 *   fdatasync each, concurrent  0.66 ms  2.74 ms  22.6 ms   241 ms
 *   one WAL write + fdatasync   0.80 ms  0.69 ms  1.05 ms   3.2 ms
 *
 * Per-log fsyncs cost ~0.24 ms each however they are batched (the thread
 * pool runs 4 at a time and each flushes its own data and journal), so a
 * cycle's cost grows with the number of partitions in it; the WAL's stays
 * flat. So: a sync append notes its entries in its log's index and its
 * record (header + the encoded entries) joins the WAL queue; when a cycle
 * takes the record, the log first writes all its pending entries to its
 * segment's page cache in one writev (disk-log.ts), once per log per cycle.
 *
 *   appends (any log) --> queue --> cycle: one writev to the WAL file,
 *                          ^         one fdatasync, resolve every request
 *                          |         in it; the next cycle takes whatever
 *                          +-------- queued meanwhile (group commit)
 *
 * Direct flushes: large appends are not written twice. A record carries its
 * entries, which also go to the segment: every byte reaches the disk twice
 * (WAL now, segment at the checkpoint), which halves the bandwidth of big
 * batches. So when a cycle takes a log with at least `directBytesMin` bytes
 * queued, it takes ALL that log's queued requests, writes none of their
 * entries to the WAL, and fsyncs the log's segments instead (a "direct
 * flush", in parallel with the WAL's fdatasync); the WAL gets a small
 * `flushed` record (log name, mark: segment and length, last index and term,
 * and where this cycle's WAL bytes end):
 *
 *   cycle: WAL: small logs' records + flushed(L, mark) | fdatasync WAL
 *          log L: pending -> segment                  | fdatasync L's segments  (parallel)
 *          both done -> resolve every request of the cycle
 *
 * Recovery (store.ts) trusts a `flushed` record like a durable mark when its
 * cycle completed, which the WAL shows by bytes after the cycle's end (a
 * later cycle starts only after this one's fsyncs): then damage under the
 * mark is damage, never a torn tail. In the last cycle the segment fsync may
 * not have finished; there the record counts only if the log, as found,
 * holds that last index and term ending exactly at the mark.
 *
 * Why a log's requests are all taken at once: every record of that log
 * before the `flushed` record is then about entries the flush has made
 * durable, and recovery replays only the records after a log's last counted
 * `flushed` record -- replaying an older one would cut entries that exist
 * only in the segment. A cut below the log's durable mark waits for its
 * direct flushes in flight and records the lowered mark with the WAL
 * position (store.ts), which voids every earlier `flushed` record of the
 * log. The per-cycle cost of many small logs stays one WAL fsync; a direct
 * flush costs one more fsync per large log per cycle, in parallel.
 *
 * Segments are fsynced otherwise only at a checkpoint: when the WAL file passes
 * `walBytesMax` a new one is started and, in the background, every dirty
 * sync log is fsynced, the store's durable marks written, and the old WAL
 * file deleted. At most two WAL files exist; a cycle waits for the previous
 * checkpoint before starting a third. After a crash the store replays the
 * WAL onto the segments at open (store.ts).
 *
 * Cycles run one at a time: at most one cycle's bytes (`walCycleBytesMax`,
 * or one larger request) are ever unsynced, which is how recovery tells a
 * torn tail from damage in the middle.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ErrorCode, RillError, assert, isRillError, type Runtime } from '../base/index.ts'
import { appendBytesMax } from './checks.ts'
import {
  decodeEntryHeader,
  decodeFileHeader,
  decodeWalFlushedPayload,
  decodeWalRecordHeader,
  encodeFileHeader,
  entryChecksumHolds,
  entryFromHeader,
  entryHeaderBytes,
  fileHeaderBytes,
  walFlushedPayloadBytes,
  walFormatVersion,
  walFormatVersionsRead,
  walMagic,
  WalRecordKind,
  type EntryToAppend,
  type WalFlushed,
} from './format.ts'
import { fsyncDir, readFileSync, storageError, writeAllSync, type LogIo } from './io.ts'
import { timedSync, type LogMetrics } from './metrics.ts'

/** Default WAL file size before rotation and checkpoint. */
export const walBytesMaxDefault = 64 * 1024 * 1024
/** Bytes one cycle takes from the queue (at least one request; a direct log's requests all go). */
export const walCycleBytesMax = 8 * 1024 * 1024
/** Bytes waiting in the queue before appenders wait for room. */
export const walQueueBytesMax = 64 * 1024 * 1024
/** Unsynced bytes a crash can leave at the WAL's end: a bad record closer than this to the end is a torn tail. */
export const walTailBytesMax = walCycleBytesMax + appendBytesMax + 64 * 1024
/**
 * Default queued bytes of one log from which a cycle flushes that log's
 * segments instead of copying its entries. Measured (bench/results/log.md,
 * 64 appenders on one log): at 1 KiB and 16 KiB batches (69 KiB and 1 MiB
 * queued) direct and WAL-only run even; at 256 KiB (16 MiB queued) direct
 * wins by about a quarter or more. Below this, an extra fsync per log per
 * cycle buys nothing and costs the many-small-logs case its shared fsync.
 */
export const walDirectBytesMinDefault = 256 * 1024

/** WAL file name for a sequence number. */
export function walFileName(seq: number): string {
  return `${String(seq).padStart(20, '0')}.wal`
}

/** Sequence numbers of the WAL files in `dir`, ascending. */
export function listWalFiles(io: LogIo, dir: string): number[] {
  return io
    .readdirSync(dir)
    .map((n) => /^(\d{20})\.wal$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b)
}

/** A place in the WAL: file sequence number and byte offset in it. */
export interface WalPosition {
  readonly seq: number
  readonly bytes: number
}

/** Orders WAL positions: negative if a is before b. */
export function compareWalPositions(a: WalPosition, b: WalPosition): number {
  return a.seq !== b.seq ? a.seq - b.seq : a.bytes - b.bytes
}

/** A sync log as the WAL sees it: it can make its entries durable in its own segments. */
export interface WalLog {
  /**
   * Starts an fsync of everything the log has written (a direct flush), or
   * says no (undefined: closed, failed, or cutting its end right now); then
   * its requests' own records are written instead.
   */
  flushDirect(): DirectFlush | undefined
}

/** A direct flush in flight (see the top comment). */
export interface DirectFlush {
  /** Bytes of the `flushed` record. */
  readonly recordBytes: number
  /** The `flushed` record, given where the cycle's WAL bytes end. */
  record(cycleEnd: number): Buffer
  /** Settles when the segments are fsynced. */
  readonly done: Promise<void>
  /** The cycle ended: completed (the segments are durable up to the mark, the record too), or failed / crashed. */
  finished(completed: boolean): void
}

interface Request {
  readonly buffers: readonly Uint8Array[]
  readonly bytes: number
  /** The log the request belongs to, if it may go direct. */
  readonly log: WalLog | undefined
  /** Runs when a cycle takes the request, before its record is written; a throw fails the request alone. */
  readonly prepare: (() => void) | undefined
  resolve(): void
  reject(error: unknown): void
}

/** A direct flush and the requests it makes durable. */
interface DirectGroup {
  readonly flush: DirectFlush
  readonly requests: Request[]
}

/** What the WAL needs from its store. */
export interface WalContext {
  readonly io: LogIo
  /** Clock of the fsync timings. */
  readonly runtime: Runtime
  readonly metrics: LogMetrics
  readonly logger: Logger
  /**
   * fsyncs every dirty sync log and records their marks durably (a
   * checkpoint); false if some log's mark could not be recorded (it cut its
   * end meanwhile): then the old WAL files must stay.
   */
  checkpoint(): Promise<boolean>
}

/** The shared WAL of one store. */
export class Wal {
  readonly #ctx: WalContext
  readonly #dir: string
  readonly #walBytesMax: number
  readonly #directBytesMin: number
  #fd: number
  #seq: number
  #bytes = fileHeaderBytes
  #syncedBytes = fileHeaderBytes
  #queue: Request[] = []
  #queuedBytes = 0
  /** Queued bytes per log: what decides a direct flush. */
  #queuedBytesOf = new Map<WalLog, number>()
  #roomWaiters: (() => void)[] = []
  #loop: Promise<void> | undefined
  #checkpoint: Promise<void> | undefined
  #failed: RillError | undefined
  /** Set by abandon: the cycle in flight counts as not done (a crash before its fsyncs returned). */
  #crashed = false

  private constructor(ctx: WalContext, options: { dir: string; seq: number; fd: number; walBytesMax: number; directBytesMin: number }) {
    this.#ctx = ctx
    this.#dir = options.dir
    this.#seq = options.seq
    this.#fd = options.fd
    this.#walBytesMax = options.walBytesMax
    this.#directBytesMin = options.directBytesMin
  }

  /** Starts a new, empty WAL file `seq` (durably created). */
  static async create(ctx: WalContext, options: { dir: string; seq: number; walBytesMax: number; directBytesMin: number }): Promise<Wal> {
    assert(options.directBytesMin >= 0, () => `WAL directBytesMin ${options.directBytesMin}`)
    const fd = await Wal.#createFile(ctx, options.dir, options.seq)
    return new Wal(ctx, { ...options, fd })
  }

  static async #createFile(ctx: WalContext, dir: string, seq: number): Promise<number> {
    const path = join(dir, walFileName(seq))
    const fd = ctx.io.openSync(path, 'wx')
    try {
      writeAllSync(ctx.io, fd, [encodeFileHeader(walMagic, seq, walFormatVersion)], 0)
      await timedSync(ctx, 'wal', () => ctx.io.fdatasync(fd))
      await timedSync(ctx, 'dir', () => fsyncDir(ctx.io, dir))
    } catch (error) {
      ctx.io.closeSync(fd)
      throw storageError(error, `creating ${path}`)
    }
    return fd
  }

  /** The current file and how much of it is known durable (for crash tests). */
  state(): { path: string; bytes: number; syncedBytes: number } {
    return { path: join(this.#dir, walFileName(this.#seq)), bytes: this.#bytes, syncedBytes: this.#syncedBytes }
  }

  /** Where the next record will be written: every record written so far is before it. */
  position(): WalPosition {
    return { seq: this.#seq, bytes: this.#bytes }
  }

  /** Waits until the queue has room for `bytes` (bounded queue: back-pressure on appenders). */
  async waitForRoom(bytes: number): Promise<void> {
    while (this.#queue.length > 0 && this.#queuedBytes + bytes > walQueueBytesMax && this.#failed === undefined) {
      await new Promise<void>((resolve) => this.#roomWaiters.push(resolve))
    }
    if (this.#failed !== undefined) throw this.#failed
  }

  /**
   * Queues a record; resolves once it (or a direct flush of `log` that
   * covers it) is durable. `prepare` runs when a cycle takes it (a sync log
   * writes its pending segment bytes there, once per cycle); if it throws,
   * the record is not written and the promise rejects with that error.
   */
  submit(buffers: readonly Uint8Array[], options: { log?: WalLog; prepare?: () => void } = {}): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed)
    let bytes = 0
    for (const b of buffers) bytes += b.length
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ buffers, bytes, log: options.log, prepare: options.prepare, resolve, reject })
      this.#queuedBytes += bytes
      if (options.log !== undefined) this.#queuedBytesOf.set(options.log, (this.#queuedBytesOf.get(options.log) ?? 0) + bytes)
      this.#loop ??= this.#run().finally(() => {
        this.#loop = undefined
      })
    })
  }

  async #run(): Promise<void> {
    while (this.#queue.length > 0 && this.#failed === undefined) {
      const { batch, direct } = this.#take()
      if (batch.length === 0 && direct.length === 0) continue
      try {
        await this.#writeAndSync(batch, direct)
      } catch (error) {
        this.#fail(storageError(error, `WAL ${walFileName(this.#seq)}`), batch, direct)
        return
      }
      if (this.#crashed) {
        this.#fail(this.#failed!, batch, direct)
        return
      }
      this.#syncedBytes = this.#bytes
      for (const r of batch) r.resolve()
      for (const g of direct) {
        g.flush.finished(true)
        for (const r of g.requests) r.resolve()
      }
      this.#ctx.metrics.groupCommitRequests.observe(batch.length + direct.reduce((n, g) => n + g.requests.length, 0))
      if (this.#bytes >= this.#walBytesMax && this.#failed === undefined) {
        try {
          await this.#rotate()
        } catch (error) {
          this.#fail(storageError(error, 'WAL rotation'), [], [])
          return
        }
      }
    }
  }

  /**
   * Takes the next cycle's requests (up to walCycleBytesMax, at least one),
   * plus every queued request of a log that goes direct; runs their
   * `prepare` and starts the direct flushes.
   */
  #take(): { batch: Request[]; direct: DirectGroup[] } {
    let bytes = 0
    let n = 0
    while (n < this.#queue.length && (n === 0 || bytes + this.#queue[n]!.bytes <= walCycleBytesMax)) bytes += this.#queue[n++]!.bytes
    const taken = this.#queue.splice(0, n)
    const directLogs = new Set<WalLog>()
    for (const r of taken) if (r.log !== undefined && this.#queuedBytesOf.get(r.log)! >= this.#directBytesMin) directLogs.add(r.log)
    if (directLogs.size > 0) {
      const rest: Request[] = []
      for (const r of this.#queue) (r.log !== undefined && directLogs.has(r.log) ? taken : rest).push(r)
      this.#queue = rest
    }
    for (const r of taken) this.#dequeued(r)
    for (const wake of this.#roomWaiters.splice(0)) wake()
    const batch: Request[] = []
    const groups = new Map<WalLog, Request[]>()
    for (const r of taken) {
      try {
        r.prepare?.()
      } catch (error) {
        r.reject(error)
        continue
      }
      if (r.log === undefined || !directLogs.has(r.log)) batch.push(r)
      else if (groups.has(r.log)) groups.get(r.log)!.push(r)
      else groups.set(r.log, [r])
    }
    const direct: DirectGroup[] = []
    for (const [log, requests] of groups) {
      const flush = log.flushDirect()
      if (flush === undefined) batch.push(...requests)
      else {
        direct.push({ flush, requests })
        for (const r of requests) this.#ctx.metrics.directBytes.inc(r.bytes)
      }
    }
    return { batch, direct }
  }

  #dequeued(r: Request): void {
    this.#queuedBytes -= r.bytes
    if (r.log === undefined) return
    const left = this.#queuedBytesOf.get(r.log)! - r.bytes
    if (left > 0) this.#queuedBytesOf.set(r.log, left)
    else this.#queuedBytesOf.delete(r.log)
  }

  /** One cycle's I/O: the records (the `flushed` ones last) and the WAL fdatasync, and the direct flushes, in parallel. */
  async #writeAndSync(batch: Request[], direct: DirectGroup[]): Promise<void> {
    const buffers = batch.flatMap((r) => r.buffers)
    const at = this.#bytes
    let cycleEnd = at
    for (const b of buffers) cycleEnd += b.length
    for (const g of direct) cycleEnd += g.flush.recordBytes
    for (const g of direct) buffers.push(g.flush.record(cycleEnd))
    try {
      this.#bytes += writeAllSync(this.#ctx.io, this.#fd, buffers, at)
    } catch (error) {
      // Cut the partial record away so that later records do not follow garbage.
      this.#ctx.io.ftruncateSync(this.#fd, at)
      throw error
    }
    assert(this.#bytes === cycleEnd, () => `WAL cycle wrote ${this.#bytes - at} bytes, expected ${cycleEnd - at}`)
    await Promise.all([timedSync(this.#ctx, 'wal', () => this.#ctx.io.fdatasync(this.#fd)), ...direct.map((g) => g.flush.done)])
  }

  /** A failed WAL write or fsync: every sync append fails until the store is reopened (and recovers). */
  #fail(error: RillError, batch: Request[], direct: DirectGroup[]): void {
    this.#failed = error
    if (!this.#crashed) this.#ctx.logger.error({ err: error, wal: walFileName(this.#seq) }, 'WAL write failed; sync logs refuse writes until the store is reopened')
    for (const g of direct) g.flush.finished(false)
    for (const r of [...batch, ...direct.flatMap((g) => g.requests), ...this.#queue.splice(0)]) r.reject(error)
    this.#queuedBytes = 0
    this.#queuedBytesOf.clear()
    for (const wake of this.#roomWaiters.splice(0)) wake()
  }

  async #rotate(): Promise<void> {
    if (this.#checkpoint !== undefined) await this.#checkpoint
    const oldSeq = this.#seq
    const fd = await Wal.#createFile(this.#ctx, this.#dir, oldSeq + 1)
    this.#ctx.io.closeSync(this.#fd)
    this.#fd = fd
    this.#seq = oldSeq + 1
    this.#bytes = fileHeaderBytes
    this.#syncedBytes = fileHeaderBytes
    this.#checkpoint = this.#runCheckpoint(oldSeq).finally(() => {
      this.#checkpoint = undefined
    })
  }

  async #runCheckpoint(upToSeq: number): Promise<void> {
    try {
      if (!(await this.#ctx.checkpoint())) {
        // A log cut its end during the checkpoint; its records in the old files may be all that covers its last entries.
        this.#ctx.logger.info({ upToSeq }, 'WAL checkpoint incomplete (a log was cut meanwhile); old WAL files kept for the next one')
        return
      }
      for (const seq of listWalFiles(this.#ctx.io, this.#dir)) if (seq <= upToSeq) this.#ctx.io.rmSync(join(this.#dir, walFileName(seq)))
      this.#ctx.logger.debug({ upToSeq }, 'WAL checkpoint done')
    } catch (error) {
      // The old WAL file stays; the next rotation's checkpoint covers it.
      this.#ctx.logger.error({ err: error }, 'WAL checkpoint failed; old WAL files kept')
    }
  }

  /** Waits for queued records and any checkpoint; the WAL is idle after. */
  async drain(): Promise<void> {
    while (this.#loop !== undefined || this.#checkpoint !== undefined) {
      await this.#loop
      await this.#checkpoint
    }
  }

  /** Closes the file (after drain). */
  close(): void {
    this.#ctx.io.closeSync(this.#fd)
  }

  /**
   * Simulated crash: refuse everything queued; the cycle in flight counts as
   * not done (its requests fail, its bytes stay "unsynced" in `state()`, its
   * direct flushes are not reported finished), as if the power went before
   * its fsyncs returned. Closes the file.
   */
  async abandon(): Promise<void> {
    this.#crashed = true
    this.#failed ??= new RillError(ErrorCode.STORAGE_READ_ONLY, 'store abandoned')
    for (const r of this.#queue.splice(0)) r.reject(this.#failed)
    await this.#loop?.catch(() => {})
    await this.#checkpoint?.catch(() => {})
    this.#fail(this.#failed, [], [])
    this.#ctx.io.closeSync(this.#fd)
  }
}

/** One record read back from a WAL file. */
export interface WalRecord {
  readonly name: string
  readonly kind: number
  readonly index: number
  /** Offset of the record in its file. */
  readonly position: number
  readonly entries: EntryToAppend[]
  readonly encoded: Buffer[]
  /** `flushed` records: what the record says, and whether its cycle is known to have completed. */
  readonly flushed: (WalFlushed & { readonly completed: boolean }) | undefined
}

/**
 * Reads every record of WAL file `path`. `last` says whether it is the
 * newest file: only there may a bad record be a torn tail (within
 * walTailBytesMax of the end); anywhere else it is damage (STORAGE_CORRUPT).
 */
export function readWalFile(io: LogIo, path: string, last: boolean): { records: WalRecord[]; tornBytes: number } {
  const bytes = readFileSync(io, path)
  try {
    decodeFileHeader(bytes, walMagic, path, walFormatVersionsRead)
  } catch (error) {
    // The newest file, no longer than a header, and that header bad: the power went while the file was
    // being created. Its header is fsynced before any record is written to it, so it holds nothing.
    if (last && bytes.length <= fileHeaderBytes && isRillError(error, ErrorCode.STORAGE_CORRUPT)) return { records: [], tornBytes: bytes.length }
    throw error
  }
  const records: WalRecord[] = []
  let at = fileHeaderBytes
  while (at < bytes.length) {
    const record = parseRecord(bytes, at, last)
    if (record === undefined) {
      if (last && bytes.length - at <= walTailBytesMax) return { records, tornBytes: bytes.length - at }
      throw new RillError(ErrorCode.STORAGE_CORRUPT, `${path}: bad WAL record at ${at} of ${bytes.length}`, { details: { file: path, position: at } })
    }
    records.push(record.record)
    at = record.end
  }
  return { records, tornBytes: 0 }
}

/** Parses the record at `at`; a `flushed` record's cycle completed if the file goes on past its end, or a later file exists (not `last`). */
function parseRecord(bytes: Buffer, at: number, last: boolean): { record: WalRecord; end: number } | undefined {
  const h = decodeWalRecordHeader(bytes, at)
  if (h === undefined) return undefined
  const start = at + h.headerBytes
  const end = start + h.payloadBytes
  if (end > bytes.length) return undefined
  const base = { name: h.name, kind: h.kind, index: h.index, position: at, entries: [], encoded: [], flushed: undefined }
  if (h.kind === WalRecordKind.truncate) return h.payloadBytes === 0 ? { record: base, end } : undefined
  if (h.kind === WalRecordKind.flushed) {
    const flushed = h.payloadBytes === walFlushedPayloadBytes ? decodeWalFlushedPayload(bytes, start, h.index) : undefined
    if (flushed === undefined || flushed.cycleEnd < end) return undefined
    return { record: { ...base, flushed: { ...flushed, completed: !last || bytes.length > flushed.cycleEnd } }, end }
  }
  if (h.kind !== WalRecordKind.append || h.entryCount === 0) return undefined
  const entries: EntryToAppend[] = []
  const encoded: Buffer[] = []
  let p = start
  for (let i = 0; i < h.entryCount; i++) {
    if (end - p < entryHeaderBytes) return undefined
    const eh = decodeEntryHeader(bytes, p)
    const entryEnd = p + entryHeaderBytes + eh.bodyBytes
    if (entryEnd > end || !entryChecksumHolds(bytes, p, eh) || eh.index !== h.index + i) return undefined
    entries.push(entryFromHeader(bytes, p, eh))
    encoded.push(bytes.subarray(p, entryEnd))
    p = entryEnd
  }
  if (p !== end) return undefined
  assert(entries.length === h.entryCount, 'WAL record entry count')
  return { record: { ...base, entries, encoded }, end }
}
