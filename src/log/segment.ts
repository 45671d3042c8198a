/**
 * One segment file of a partition log: a file header, then entries back to
 * back (format.ts). A segment is appended to until it would pass
 * `segmentBytesMax`, then sealed (its sparse index written beside it) and a
 * new one started; old segments go away whole (compaction, retention), so no
 * file is ever rewritten in the middle.
 *
 * The sparse index maps Raft index and record offset to a file position:
 * one (index, offsetNext, position, term) point every `indexIntervalBytes`
 * and at every term change, kept in a Float64Array. Both keys grow with the
 * position, so one table answers both lookups; a lookup gives a position at
 * or before the entry wanted and the reader scans forward at most one
 * interval. Because there is a point at every term change, the same table
 * answers `term(index)` without touching the disk. On open the index file
 * is trusted only if it covers exactly the segment's length and checksums;
 * otherwise it is rebuilt by scanning the segment.
 *
 *   memory per segment = segmentBytesMax / indexIntervalBytes x 32 B
 *   (128 MiB / 64 KiB -> 64 KiB, plus a point per term change)
 */
import { join } from 'node:path'
import { assert } from '../base/index.ts'
import {
  decodeEntryHeader,
  decodeFileHeader,
  decodeIndexFile,
  encodeFileHeader,
  encodeIndexFile,
  entryBodyBytesMax,
  entryChecksumHolds,
  entryHeaderBytes,
  fileHeaderBytes,
  segmentMagic,
  type EntryHeader,
} from './format.ts'
import { readAtSync, readFileSync, writeFileSync, type LogIo } from './io.ts'

/** Bytes read per step of a recovery scan. */
const scanChunkBytes = 4 * 1024 * 1024
/** Initial sparse-index capacity in points; it doubles as needed. */
const pointsInitial = 64
/** Float64 fields per sparse-index point: index, offsetNext, position, term. */
const pointFields = 4

/** Segment file name for a base index: 20 digits so that names sort as numbers. */
export function segmentFileName(baseIndex: number): string {
  return `${String(baseIndex).padStart(20, '0')}.seg`
}

/** Index file name for a segment. */
export function indexFileName(baseIndex: number): string {
  return `${String(baseIndex).padStart(20, '0')}.idx`
}

/** Parses a segment file name; undefined for other files. */
export function parseSegmentFileName(name: string): number | undefined {
  const m = /^(\d{20})\.seg$/.exec(name)
  return m ? Number(m[1]) : undefined
}

/** Why a scan stopped before the end of the file. */
export interface ScanFailure {
  readonly position: number
  readonly reason: string
}

/** What a scan found. */
export interface ScanResult {
  /** Position after the last good entry. */
  readonly endPosition: number
  /** Index of the last good entry (base - 1 if none). */
  readonly lastIndex: number
  readonly lastTerm: number
  /** Set if the scan stopped before the end of the file. */
  readonly failure: ScanFailure | undefined
}

/** One segment file, open for append (the last one) or read. */
export class Segment {
  /** The file operations of the segment's store. */
  readonly fileIo: LogIo
  readonly dir: string
  readonly baseIndex: number
  readonly path: string
  readonly fd: number
  /** Valid bytes (the next entry goes here). */
  bytes = fileHeaderBytes
  /** Index of the last entry, baseIndex - 1 if empty. */
  lastIndex: number
  /** Offset after the last record of the log up to this segment's end; -1 if no data yet. */
  offsetEnd = -1
  /** Largest record timestamp in the segment; 0 if it holds no data. */
  timestampMaxMs = 0
  /** Term of the last entry; 0 if empty. */
  lastTerm = 0
  /** Written since its last fsync. */
  dirty = false
  #points: Float64Array = new Float64Array(pointsInitial * pointFields)
  #count = 0
  #lastIndexedPosition = -Infinity
  readonly #indexIntervalBytes: number
  #ioInflight = 0
  #drained: (() => void)[] = []

  private constructor(options: { io: LogIo; dir: string; baseIndex: number; fd: number; indexIntervalBytes: number }) {
    this.fileIo = options.io
    this.dir = options.dir
    this.baseIndex = options.baseIndex
    this.path = join(options.dir, segmentFileName(options.baseIndex))
    this.fd = options.fd
    this.lastIndex = options.baseIndex - 1
    this.#indexIntervalBytes = options.indexIntervalBytes
  }

  /** Creates an empty segment file (header only). The directory entry is not yet durable. */
  static create(options: { io: LogIo; dir: string; baseIndex: number; indexIntervalBytes: number; write: (fd: number, b: Buffer) => void }): Segment {
    const { io } = options
    const path = join(options.dir, segmentFileName(options.baseIndex))
    // 'w+': a file of that name can only be an unsynced leftover past the log's end (recovery dropped it).
    const fd = io.openSync(path, 'w+')
    try {
      options.write(fd, encodeFileHeader(segmentMagic, options.baseIndex))
    } catch (error) {
      io.closeSync(fd)
      io.rmSync(path)
      throw error
    }
    const segment = new Segment({ ...options, fd })
    segment.dirty = true
    return segment
  }

  /** Opens an existing segment file and checks its header (version, base index). */
  static open(options: { io: LogIo; dir: string; baseIndex: number; indexIntervalBytes: number }): Segment {
    const { io } = options
    const path = join(options.dir, segmentFileName(options.baseIndex))
    const fd = io.openSync(path, 'r+')
    try {
      const base = decodeFileHeader(readAtSync(io, fd, 0, fileHeaderBytes), segmentMagic, path)
      assert(base === options.baseIndex, () => `${path}: header says base index ${base}`)
    } catch (error) {
      io.closeSync(fd)
      throw error
    }
    return new Segment({ ...options, fd })
  }

  /** File size on disk (may exceed `bytes` before recovery truncates it). */
  fileBytes(): number {
    return this.fileIo.fstatSync(this.fd).size
  }

  /** Records an entry appended or found at `position`; `offsetNext` is the log's next offset before it. */
  noteEntry(h: EntryHeader, position: number, offsetNext: number): void {
    assert(h.index === this.lastIndex + 1, () => `${this.path}: entry ${h.index} after ${this.lastIndex}`)
    assert(position === this.bytes, () => `${this.path}: entry ${h.index} at ${position}, end is ${this.bytes}`)
    if (position - this.#lastIndexedPosition >= this.#indexIntervalBytes || h.term !== this.lastTerm || this.#count === 0) {
      this.#addPoint(h.index, offsetNext, position, h.term)
      this.#lastIndexedPosition = position
    }
    this.lastIndex = h.index
    this.lastTerm = h.term
    this.bytes = position + entryHeaderBytes + h.bodyBytes
    if (h.recordCount > 0) this.offsetEnd = h.baseOffset + h.recordCount
    else if (this.offsetEnd < offsetNext) this.offsetEnd = offsetNext
    if (h.timestampMaxMs > this.timestampMaxMs) this.timestampMaxMs = h.timestampMaxMs
  }

  #addPoint(index: number, offsetNext: number, position: number, term: number): void {
    if ((this.#count + 1) * pointFields > this.#points.length) {
      const grown = new Float64Array(this.#points.length * 2)
      grown.set(this.#points)
      this.#points = grown
    }
    const at = this.#count * pointFields
    this.#points[at] = index
    this.#points[at + 1] = offsetNext
    this.#points[at + 2] = position
    this.#points[at + 3] = term
    this.#count++
  }

  /** Term of entry `index` (which must be in this segment). */
  termAt(index: number): number {
    assert(index >= this.baseIndex && index <= this.lastIndex, () => `${this.path}: term of ${index} outside ${this.baseIndex}..${this.lastIndex}`)
    const at = this.#find(0, index)
    assert(at >= 0, () => `${this.path}: no index point at or before ${index}`)
    return this.#points[at * pointFields + 3]!
  }

  /** Where to start reading for entry `index`: a point at or before it (the header end if none), and the index there. */
  locateIndex(index: number): { position: number; index: number } {
    return this.#locate(0, index)
  }

  /** Where to start reading for offset `offset`: a point at or before the first entry holding it or later. */
  locateOffset(offset: number): { position: number; index: number } {
    return this.#locate(1, offset)
  }

  /** The sparse-index point at or before entry `index`, if any. */
  pointAtOrBefore(index: number): { position: number; index: number; offsetNext: number } | undefined {
    const at = this.#find(0, index)
    if (at < 0) return undefined
    const p = at * pointFields
    return { index: this.#points[p]!, offsetNext: this.#points[p + 1]!, position: this.#points[p + 2]! }
  }

  #locate(key: 0 | 1, value: number): { position: number; index: number } {
    const at = this.#find(key, value)
    if (at < 0) return { position: fileHeaderBytes, index: this.baseIndex }
    return { position: this.#points[at * pointFields + 2]!, index: this.#points[at * pointFields]! }
  }

  /** Last point whose `key` field is <= value; -1 if none. */
  #find(key: 0 | 1, value: number): number {
    let lo = 0
    let hi = this.#count - 1
    let found = -1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const k = this.#points[mid * pointFields + key]!
      // offsetNext -1 means "no data seen yet": it sorts before every offset, which is right.
      if (k <= value) {
        found = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    return found
  }

  /** Forgets entries after `lastIndex`, which end at `position`. The caller truncates the file. */
  forgetAfter(options: { lastIndex: number; lastTerm: number; position: number; offsetEnd: number }): void {
    while (this.#count > 0 && this.#points[(this.#count - 1) * pointFields + 2]! >= options.position) this.#count--
    this.#lastIndexedPosition = this.#count > 0 ? this.#points[(this.#count - 1) * pointFields + 2]! : -Infinity
    this.lastIndex = options.lastIndex
    this.lastTerm = options.lastIndex >= this.baseIndex ? options.lastTerm : 0
    this.bytes = options.position
    this.offsetEnd = options.offsetEnd
  }

  /** Writes the sparse index file (sealed segments); best effort, it can always be rebuilt. */
  writeIndexFile(): void {
    const path = join(this.dir, indexFileName(this.baseIndex))
    try {
      const summary = { lastIndex: this.lastIndex, lastTerm: this.lastTerm, offsetEnd: this.offsetEnd, timestampMaxMs: this.timestampMaxMs }
      writeFileSync(this.fileIo, path, encodeIndexFile({ points: this.#points.subarray(0, this.#count * pointFields), segmentBytes: this.bytes, summary }))
    } catch {
      this.fileIo.rmSync(path)
    }
  }

  /** Removes the sparse index file (the segment is about to change). */
  removeIndexFile(): void {
    this.fileIo.rmSync(join(this.dir, indexFileName(this.baseIndex)))
  }

  /**
   * Loads the sparse index file if it is valid for this segment's current
   * file length, so that a sealed segment need not be scanned at open.
   * Returns false (and changes nothing) if it is missing or stale.
   */
  tryLoadIndexFile(): boolean {
    const path = join(this.dir, indexFileName(this.baseIndex))
    let bytes: Buffer
    try {
      bytes = readFileSync(this.fileIo, path)
    } catch {
      return false
    }
    const fileBytes = this.fileBytes()
    const loaded = decodeIndexFile(bytes, fileBytes)
    if (loaded === undefined || loaded.points.length < pointFields || loaded.points[0] !== this.baseIndex) return false
    this.#points = loaded.points
    this.#count = loaded.points.length / pointFields
    this.#lastIndexedPosition = this.#points[(this.#count - 1) * pointFields + 2]!
    this.bytes = fileBytes
    this.lastIndex = loaded.summary.lastIndex
    this.lastTerm = loaded.summary.lastTerm
    this.offsetEnd = loaded.summary.offsetEnd
    this.timestampMaxMs = loaded.summary.timestampMaxMs
    return true
  }

  /** Runs `fn` as I/O on this segment's fd; `close` waits for it. */
  async io<T>(fn: () => Promise<T>): Promise<T> {
    this.#ioInflight++
    try {
      return await fn()
    } finally {
      this.#ioInflight--
      if (this.#ioInflight === 0) for (const wake of this.#drained.splice(0)) wake()
    }
  }

  /** Waits for in-flight reads and fsyncs on this segment to finish. */
  async drain(): Promise<void> {
    if (this.#ioInflight === 0) return
    await new Promise<void>((resolve) => this.#drained.push(resolve))
  }

  /** Closes the fd after in-flight I/O. */
  async close(): Promise<void> {
    await this.drain()
    this.fileIo.closeSync(this.fd)
  }
}

/**
 * Scans a segment's entries from `from` (a position at an entry boundary,
 * the header end by default), checking every checksum, that indexes follow
 * one another and that terms do not go down. Calls `onEntry` for each good
 * entry. Stops at the end of the file or at the first bad entry.
 */
export function scanSegment(options: {
  io: LogIo
  fd: number
  fileBytes: number
  from: number
  expectIndex: number
  prevTerm: number
  onEntry: (h: EntryHeader, position: number) => void
}): ScanResult {
  const { fd, fileBytes } = options
  let chunk: Buffer = Buffer.alloc(0)
  let chunkStart = 0
  const view = (position: number, length: number): Buffer => {
    if (position < chunkStart || position + length > chunkStart + chunk.length) {
      // A chunk, but no more than the file holds: a small segment must not cost a 4 MiB buffer.
      chunk = readAtSync(options.io, fd, position, Math.max(length, Math.min(scanChunkBytes, fileBytes - position)))
      chunkStart = position
    }
    return chunk.subarray(position - chunkStart, position - chunkStart + length)
  }
  let position = options.from
  let expect = options.expectIndex
  let lastTerm = options.prevTerm
  const fail = (reason: string): ScanResult => ({ endPosition: position, lastIndex: expect - 1, lastTerm, failure: { position, reason } })
  while (position < fileBytes) {
    if (fileBytes - position < entryHeaderBytes) return fail('partial entry header')
    const h = decodeEntryHeader(view(position, entryHeaderBytes), 0)
    if (h.bodyBytes > entryBodyBytesMax) return fail(`entry length ${h.bodyBytes} over the limit`)
    const entryBytes = entryHeaderBytes + h.bodyBytes
    if (fileBytes - position < entryBytes) return fail('partial entry')
    if (!entryChecksumHolds(view(position, entryBytes), 0, h)) return fail('checksum mismatch')
    if (h.index !== expect) return fail(`index ${h.index} where ${expect} was expected`)
    if (h.term < lastTerm) return fail(`term ${h.term} after term ${lastTerm}`)
    options.onEntry(h, position)
    position += entryBytes
    expect++
    lastTerm = h.term
  }
  return { endPosition: position, lastIndex: expect - 1, lastTerm, failure: undefined }
}
