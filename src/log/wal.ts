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
 * Segments are fsynced only at a checkpoint: when the WAL file passes
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
import fs from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ErrorCode, RillError, assert } from '../base/index.ts'
import { appendBytesMax } from './checks.ts'
import { timedSync } from './disk-log.ts'
import {
  decodeEntryHeader,
  decodeFileHeader,
  decodeWalRecordHeader,
  encodeFileHeader,
  entryChecksumHolds,
  entryFromHeader,
  entryHeaderBytes,
  fileHeaderBytes,
  walMagic,
  WalRecordKind,
  type EntryToAppend,
} from './format.ts'
import { fsyncDir, storageError, writeAllSync, type LogIo } from './io.ts'
import type { LogMetrics } from './metrics.ts'

/** Default WAL file size before rotation and checkpoint. */
export const walBytesMaxDefault = 64 * 1024 * 1024
/** Bytes one cycle takes from the queue (at least one request). */
export const walCycleBytesMax = 8 * 1024 * 1024
/** Bytes waiting in the queue before appenders wait for room. */
export const walQueueBytesMax = 64 * 1024 * 1024
/** Unsynced bytes a crash can leave at the WAL's end: a bad record closer than this to the end is a torn tail. */
export const walTailBytesMax = walCycleBytesMax + appendBytesMax + 64 * 1024

/** WAL file name for a sequence number. */
export function walFileName(seq: number): string {
  return `${String(seq).padStart(20, '0')}.wal`
}

/** Sequence numbers of the WAL files in `dir`, ascending. */
export function listWalFiles(dir: string): number[] {
  return fs
    .readdirSync(dir)
    .map((n) => /^(\d{20})\.wal$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b)
}

interface Request {
  readonly buffers: readonly Uint8Array[]
  readonly bytes: number
  /** Runs when a cycle takes the request, before its record is written; a throw fails the request alone. */
  readonly prepare: (() => void) | undefined
  resolve(): void
  reject(error: unknown): void
}

/** What the WAL needs from its store. */
export interface WalContext {
  readonly io: LogIo
  readonly metrics: LogMetrics
  readonly logger: Logger
  /** fsyncs every dirty sync log and records their marks durably (a checkpoint). */
  checkpoint(): Promise<void>
}

/** The shared WAL of one store. */
export class Wal {
  readonly #ctx: WalContext
  readonly #dir: string
  readonly #walBytesMax: number
  #fd: number
  #seq: number
  #bytes = fileHeaderBytes
  #syncedBytes = fileHeaderBytes
  #queue: Request[] = []
  #queuedBytes = 0
  #roomWaiters: (() => void)[] = []
  #loop: Promise<void> | undefined
  #checkpoint: Promise<void> | undefined
  #failed: RillError | undefined

  private constructor(ctx: WalContext, dir: string, seq: number, fd: number, walBytesMax: number) {
    this.#ctx = ctx
    this.#dir = dir
    this.#seq = seq
    this.#fd = fd
    this.#walBytesMax = walBytesMax
  }

  /** Starts a new, empty WAL file `seq` (durably created). */
  static async create(ctx: WalContext, dir: string, seq: number, walBytesMax: number): Promise<Wal> {
    const fd = await Wal.#createFile(ctx, dir, seq)
    return new Wal(ctx, dir, seq, fd, walBytesMax)
  }

  static async #createFile(ctx: WalContext, dir: string, seq: number): Promise<number> {
    const path = join(dir, walFileName(seq))
    const fd = fs.openSync(path, 'wx')
    try {
      writeAllSync(ctx.io, fd, [encodeFileHeader(walMagic, seq)], 0)
      await timedSync(ctx, 'wal', () => ctx.io.fdatasync(fd))
      await timedSync(ctx, 'dir', () => fsyncDir(ctx.io, dir))
    } catch (error) {
      fs.closeSync(fd)
      throw storageError(error, `creating ${path}`)
    }
    return fd
  }

  /** The current file and how much of it is known durable (for crash tests). */
  state(): { path: string; bytes: number; syncedBytes: number } {
    return { path: join(this.#dir, walFileName(this.#seq)), bytes: this.#bytes, syncedBytes: this.#syncedBytes }
  }

  /** Waits until the queue has room for `bytes` (bounded queue: back-pressure on appenders). */
  async waitForRoom(bytes: number): Promise<void> {
    while (this.#queue.length > 0 && this.#queuedBytes + bytes > walQueueBytesMax && this.#failed === undefined) {
      await new Promise<void>((resolve) => this.#roomWaiters.push(resolve))
    }
    if (this.#failed !== undefined) throw this.#failed
  }

  /**
   * Queues a record; resolves once it is fsynced. `prepare` runs when a
   * cycle takes it (a sync log writes its pending segment bytes there, once
   * per cycle); if it throws, the record is not written and the promise
   * rejects with that error.
   */
  submit(buffers: readonly Uint8Array[], prepare?: () => void): Promise<void> {
    if (this.#failed !== undefined) return Promise.reject(this.#failed)
    let bytes = 0
    for (const b of buffers) bytes += b.length
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ buffers, bytes, prepare, resolve, reject })
      this.#queuedBytes += bytes
      this.#loop ??= this.#run().finally(() => {
        this.#loop = undefined
      })
    })
  }

  async #run(): Promise<void> {
    while (this.#queue.length > 0 && this.#failed === undefined) {
      const batch = this.#take()
      if (batch.length === 0) continue
      try {
        await this.#writeAndSync(batch)
      } catch (error) {
        this.#fail(storageError(error, `WAL ${walFileName(this.#seq)}`), batch)
        return
      }
      this.#ctx.metrics.groupCommitRequests.observe(batch.length)
      for (const r of batch) r.resolve()
      if (this.#bytes >= this.#walBytesMax && this.#failed === undefined) {
        try {
          await this.#rotate()
        } catch (error) {
          this.#fail(storageError(error, 'WAL rotation'), [])
          return
        }
      }
    }
  }

  #take(): Request[] {
    let bytes = 0
    let n = 0
    while (n < this.#queue.length && (n === 0 || bytes + this.#queue[n]!.bytes <= walCycleBytesMax)) bytes += this.#queue[n++]!.bytes
    const taken = this.#queue.splice(0, n)
    this.#queuedBytes -= bytes
    for (const wake of this.#roomWaiters.splice(0)) wake()
    const batch: Request[] = []
    for (const r of taken) {
      try {
        r.prepare?.()
        batch.push(r)
      } catch (error) {
        r.reject(error)
      }
    }
    return batch
  }

  async #writeAndSync(batch: Request[]): Promise<void> {
    const buffers = batch.flatMap((r) => r.buffers)
    const at = this.#bytes
    try {
      this.#bytes += writeAllSync(this.#ctx.io, this.#fd, buffers, at)
    } catch (error) {
      // Cut the partial record away so that later records do not follow garbage.
      this.#ctx.io.ftruncateSync(this.#fd, at)
      throw error
    }
    await timedSync(this.#ctx, 'wal', () => this.#ctx.io.fdatasync(this.#fd))
    this.#syncedBytes = this.#bytes
  }

  /** A failed WAL write or fsync: every sync append fails until the store is reopened (and recovers). */
  #fail(error: RillError, batch: Request[]): void {
    this.#failed = error
    this.#ctx.logger.error({ err: error, wal: walFileName(this.#seq) }, 'WAL write failed; sync logs refuse writes until the store is reopened')
    for (const r of [...batch, ...this.#queue.splice(0)]) r.reject(error)
    this.#queuedBytes = 0
    for (const wake of this.#roomWaiters.splice(0)) wake()
  }

  async #rotate(): Promise<void> {
    if (this.#checkpoint !== undefined) await this.#checkpoint
    const oldSeq = this.#seq
    const fd = await Wal.#createFile(this.#ctx, this.#dir, oldSeq + 1)
    fs.closeSync(this.#fd)
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
      await this.#ctx.checkpoint()
      for (const seq of listWalFiles(this.#dir)) if (seq <= upToSeq) fs.rmSync(join(this.#dir, walFileName(seq)), { force: true })
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
    fs.closeSync(this.#fd)
  }

  /** Simulated crash: refuse everything queued, wait for the cycle in flight, close the file. */
  async abandon(): Promise<void> {
    this.#failed = new RillError(ErrorCode.STORAGE_READ_ONLY, 'store abandoned')
    for (const r of this.#queue.splice(0)) r.reject(this.#failed)
    await this.#loop?.catch(() => {})
    await this.#checkpoint?.catch(() => {})
    fs.closeSync(this.#fd)
  }
}

/** One record read back from a WAL file. */
export interface WalRecord {
  readonly name: string
  readonly kind: number
  readonly index: number
  readonly entries: EntryToAppend[]
  readonly encoded: Buffer[]
}

/**
 * Reads every record of WAL file `path`. `last` says whether it is the
 * newest file: only there may a bad record be a torn tail (within
 * walTailBytesMax of the end); anywhere else it is damage (STORAGE_CORRUPT).
 */
export function readWalFile(path: string, last: boolean): { records: WalRecord[]; tornBytes: number } {
  const bytes = fs.readFileSync(path)
  decodeFileHeader(bytes, walMagic, path)
  const records: WalRecord[] = []
  let at = fileHeaderBytes
  while (at < bytes.length) {
    const record = parseRecord(bytes, at)
    if (record === undefined) {
      if (last && bytes.length - at <= walTailBytesMax) return { records, tornBytes: bytes.length - at }
      throw new RillError(ErrorCode.STORAGE_CORRUPT, `${path}: bad WAL record at ${at} of ${bytes.length}`, { details: { file: path, position: at } })
    }
    records.push(record.record)
    at = record.end
  }
  return { records, tornBytes: 0 }
}

function parseRecord(bytes: Buffer, at: number): { record: WalRecord; end: number } | undefined {
  const h = decodeWalRecordHeader(bytes, at)
  if (h === undefined) return undefined
  const start = at + h.headerBytes
  const end = start + h.payloadBytes
  if (end > bytes.length) return undefined
  if (h.kind === WalRecordKind.truncate) {
    return h.payloadBytes === 0 ? { record: { name: h.name, kind: h.kind, index: h.index, entries: [], encoded: [] }, end } : undefined
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
  return { record: { name: h.name, kind: h.kind, index: h.index, entries, encoded }, end }
}
