/**
 * The file operations src/log performs, behind one small seam. Why a seam:
 * a full disk, a failing fsync or a crash at a chosen moment must be testable
 * (and the simulator's crashing disk will plug in here), without mocking
 * node:fs globally.
 *
 * Why writes are synchronous: appends write to the page cache with
 * `writevSync`. Measured here, a 1 KiB `fs.write` through libuv's thread
 * pool runs at ~30k/s while `writeSync` runs at ~250k/s, and the pool has
 * only 4 threads, which the WAL's fsync must not queue behind. A page-cache
 * write is a memory copy; writes are bounded per call (`appendBytesMax`), so
 * the event loop blocks for at most a copy of that size (or for the kernel's
 * dirty-page throttling under sustained overload, which is then the honest
 * back-pressure). fsyncs and reads go through the pool (async).
 */
import fs from 'node:fs'
import { dirname, join, basename } from 'node:path'
import { ErrorCode, RillError } from '../base/index.ts'

/** The file operations used on the write path; tests wrap them to inject faults. */
export interface LogIo {
  writevSync(fd: number, buffers: readonly Uint8Array[], position: number): number
  ftruncateSync(fd: number, length: number): void
  fdatasync(fd: number): Promise<void>
  fsync(fd: number): Promise<void>
}

/** Calls straight into node:fs. */
export const nodeIo: LogIo = {
  writevSync: (fd, buffers, position) => fs.writevSync(fd, buffers as Uint8Array[], position),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve()))),
  fsync: (fd) => new Promise((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve()))),
}

/** iovecs per writev call; libuv loops over more, but keep each call bounded. */
const iovecsPerWriteMax = 1024

/** Writes all of `buffers` at `position`; loops over short writes. Returns bytes written. */
export function writeAllSync(io: LogIo, fd: number, buffers: readonly Uint8Array[], position: number): number {
  let written = 0
  let pending = buffers.filter((b) => b.length > 0)
  while (pending.length > 0) {
    const chunk = pending.slice(0, iovecsPerWriteMax)
    const want = chunk.reduce((n, b) => n + b.length, 0)
    const n = io.writevSync(fd, chunk, position + written)
    written += n
    if (n === want) {
      pending = pending.slice(chunk.length)
      continue
    }
    // Short write: drop what was written, keep the rest.
    let skip = n
    const rest: Uint8Array[] = []
    for (const b of pending) {
      if (skip >= b.length) skip -= b.length
      else {
        rest.push(skip > 0 ? b.subarray(skip) : b)
        skip = 0
      }
    }
    pending = rest
  }
  return written
}

/** Maps a node:fs error to a RillError with a storage code, naming the file. */
export function storageError(error: unknown, what: string): RillError {
  if (error instanceof RillError) return error
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RillError(ErrorCode.STORAGE_FULL, `${what}: disk full (${code})`, { cause: error })
  }
  const message = error instanceof Error ? error.message : String(error)
  return new RillError(ErrorCode.STORAGE_UNUSABLE, `${what}: ${message}`, { cause: error })
}

/** fsyncs a directory so that creates, renames and unlinks in it are durable. */
export async function fsyncDir(io: LogIo, dir: string): Promise<void> {
  const fd = fs.openSync(dir, 'r')
  try {
    await io.fsync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Replaces `path` atomically and durably: write a temp file, fsync it,
 * rename it over `path`, fsync the directory. A crash leaves either the old
 * or the new content, never a mix.
 */
export async function writeFileAtomic(io: LogIo, path: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp`)
  const fd = fs.openSync(tmp, 'w')
  try {
    writeAllSync(io, fd, [bytes], 0)
    await io.fsync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, path)
  await fsyncDir(io, dirname(path))
}

/** Reads up to `length` bytes at `position` into a fresh buffer (short at end of file). */
export function readAt(fd: number, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length)
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, 0, length, position, (error, n) => (error ? reject(error) : resolve(buffer.subarray(0, n))))
  })
}

/** Synchronous variant for recovery scans at open. */
export function readAtSync(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(length)
  let got = 0
  while (got < length) {
    const n = fs.readSync(fd, buffer, got, length - got, position + got)
    if (n === 0) break
    got += n
  }
  return buffer.subarray(0, got)
}
