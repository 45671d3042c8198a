/**
 * Every file operation of src/log and the partition snapshot store goes
 * through this one seam, `LogIo`, and `nodeIo` below is the only code there
 * that touches node:fs. Why a seam: a full disk, a failing fsync or a crash
 * at a chosen moment must be testable without mocking node:fs globally, and
 * the simulator runs the real log over its crashing in-memory disk
 * (src/sim/disk.ts: unsynced writes and directory entries lost or torn).
 *
 * The seam is small on purpose: descriptors (open, close, size, read,
 * write, truncate, fsync), directory entries (list, mkdir, rename, remove,
 * exists) and the process identity the directory lock records. Whole-file
 * reads and writes, atomic replacement and directory fsyncs are helpers
 * built on it here, so a second implementation has fewer places to differ.
 *
 * Why writes are synchronous: appends write to the page cache with
 * `writevSync`. Measured here, a 1 KiB `fs.write` through libuv's thread
 * pool runs at ~30k/s while `writeSync` runs at ~250k/s, and the pool has
 * only 4 threads, which the WAL's fsync must not queue behind. A page-cache
 * write is a memory copy; writes are bounded per call (`appendBytesMax`), so
 * the event loop blocks for at most a copy of that size (or for the kernel's
 * dirty-page throttling under sustained overload, which is then the honest
 * back-pressure). fsyncs and reads of entries go through the pool (async);
 * recovery at open reads synchronously (nothing else runs then).
 */
import fs from 'node:fs'
import { dirname, join, basename } from 'node:path'
import { ErrorCode, RillError } from '../base/index.ts'

/**
 * How a file is opened (node's flag strings): `r` read (also a directory,
 * to fsync it), `r+` read and write, `w` / `w+` create or empty (write, or
 * read and write), `wx` create, failing with EEXIST if it exists.
 */
export type OpenFlags = 'r' | 'r+' | 'w' | 'w+' | 'wx'

/**
 * The file operations of src/log and the snapshot store. Errors are node's:
 * an Error with `code` ('ENOENT', 'EEXIST', 'ENOSPC', 'EIO', ...), which
 * callers test and `storageError` maps.
 */
export interface LogIo {
  /** Opens `path`; returns a descriptor. */
  openSync(path: string, flags: OpenFlags): number
  closeSync(fd: number): void
  /** The file's size in bytes. */
  fstatSync(fd: number): { readonly size: number }
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; returns bytes read (0 at end of file). */
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number
  /** `readSync` through the thread pool. */
  read(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>
  /** Writes `buffers` back to back at `position`; returns bytes written (may be short). */
  writevSync(fd: number, buffers: readonly Uint8Array[], position: number): number
  ftruncateSync(fd: number, length: number): void
  /** Makes the file's data (and size) durable. */
  fdatasync(fd: number): Promise<void>
  /** Makes the file durable; on a directory's descriptor, its entries (creates, renames, unlinks). */
  fsync(fd: number): Promise<void>
  /** Names in directory `path` (no order promised). */
  readdirSync(path: string): string[]
  /** Creates directory `path` and any missing parents; nothing if it exists. Not durable until the parents are fsynced. */
  mkdirSync(path: string): void
  /** Renames `from` to `to`, replacing `to` atomically. */
  renameSync(from: string, to: string): void
  /** Removes a file (a directory tree with `recursive`); nothing if it does not exist. */
  rmSync(path: string, options?: { readonly recursive?: boolean }): void
  existsSync(path: string): boolean
  /** This process's id, as the directory lock records it (lock.ts). */
  pid(): number
  /** True if process `pid` is alive (a lock holding a dead pid is stale). */
  processAlive(pid: number): boolean
}

const fsyncCallback =
  (resolve: () => void, reject: (e: Error) => void) =>
  (e: Error | null): void =>
    e ? reject(e) : resolve()

/** Calls straight into node:fs. */
export const nodeIo: LogIo = {
  openSync: (path, flags) => fs.openSync(path, flags),
  closeSync: (fd) => fs.closeSync(fd),
  fstatSync: (fd) => fs.fstatSync(fd),
  readSync: (fd, buffer, offset, length, position) => fs.readSync(fd, buffer, offset, length, position),
  read: (fd, buffer, offset, length, position) =>
    new Promise((resolve, reject) => fs.read(fd, buffer, offset, length, position, (error, n) => (error ? reject(error) : resolve(n)))),
  writevSync: (fd, buffers, position) => fs.writevSync(fd, buffers as Uint8Array[], position),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, fsyncCallback(resolve, reject))),
  fsync: (fd) => new Promise((resolve, reject) => fs.fsync(fd, fsyncCallback(resolve, reject))),
  readdirSync: (path) => fs.readdirSync(path),
  mkdirSync: (path) => void fs.mkdirSync(path, { recursive: true }),
  renameSync: (from, to) => fs.renameSync(from, to),
  rmSync: (path, options) => fs.rmSync(path, { force: true, recursive: options?.recursive === true }),
  existsSync: (path) => fs.existsSync(path),
  pid: () => process.pid,
  processAlive(pid) {
    try {
      process.kill(pid, 0)
      return true
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM'
    }
  },
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
    // Short write: drop what was written, keep the rest. A write that makes no progress
    // would loop for ever: a file system returns an error (ENOSPC) instead, and so must a shim.
    if (n <= 0) throw Object.assign(new Error(`writev wrote ${n} of ${want} bytes`), { code: 'EIO' })
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

/** True if `error` is a node:fs error with `code`. */
export function isErrorCode(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code
}

/** fsyncs a directory so that creates, renames and unlinks in it are durable. */
export async function fsyncDir(io: LogIo, dir: string): Promise<void> {
  const fd = io.openSync(dir, 'r')
  try {
    await io.fsync(fd)
  } finally {
    io.closeSync(fd)
  }
}

/** Per seam: directories whose entry in their parent this process has fsynced (so is durable). */
const durableDirs = new WeakMap<LogIo, Set<string>>()

/**
 * Creates `dir` and its missing parents, and makes the path durable: the
 * parent of each directory on it is fsynced, up to one this process already
 * made durable (or the root). Existing is not enough: a directory created
 * by a process that crashed before it fsynced the parent is in the page
 * cache only, and a power loss would take it, with everything made durable
 * inside it, away.
 */
export async function mkdirDurable(io: LogIo, dir: string): Promise<void> {
  let known = durableDirs.get(io)
  if (known === undefined) {
    known = new Set()
    durableDirs.set(io, known)
  }
  if (known.has(dir) && io.existsSync(dir)) return
  io.mkdirSync(dir)
  for (let d = dir; dirname(d) !== d && !known.has(d); d = dirname(d)) {
    await fsyncDir(io, dirname(d))
    known.add(d)
  }
}

/** Reads a whole file. Throws node's ENOENT if it does not exist. */
export function readFileSync(io: LogIo, path: string): Buffer {
  const fd = io.openSync(path, 'r')
  try {
    return readAtSync(io, fd, 0, io.fstatSync(fd).size)
  } finally {
    io.closeSync(fd)
  }
}

/** Reads a whole file through the thread pool. Throws node's ENOENT if it does not exist. */
export async function readFile(io: LogIo, path: string): Promise<Buffer> {
  const fd = io.openSync(path, 'r')
  try {
    const size = io.fstatSync(fd).size
    const buffer = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const n = await io.read(fd, buffer, got, size - got, got)
      if (n === 0) break
      got += n
    }
    return buffer.subarray(0, got)
  } finally {
    io.closeSync(fd)
  }
}

/** Writes a whole file (not durable: no fsync). */
export function writeFileSync(io: LogIo, path: string, bytes: Uint8Array): void {
  const fd = io.openSync(path, 'w')
  try {
    writeAllSync(io, fd, [bytes], 0)
  } finally {
    io.closeSync(fd)
  }
}

/**
 * Replaces `path` atomically and durably: write a temp file, fsync it,
 * rename it over `path`, fsync the directory. A crash leaves either the old
 * or the new content, never a mix.
 */
export async function writeFileAtomic(io: LogIo, path: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp`)
  const fd = io.openSync(tmp, 'w')
  try {
    writeAllSync(io, fd, [bytes], 0)
    await io.fsync(fd)
  } finally {
    io.closeSync(fd)
  }
  io.renameSync(tmp, path)
  await fsyncDir(io, dirname(path))
}

/** Reads up to `length` bytes at `position` into a fresh buffer (short at end of file). */
export async function readAt(io: LogIo, fd: number, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length)
  const n = await io.read(fd, buffer, 0, length, position)
  return buffer.subarray(0, n)
}

/** Synchronous variant for recovery scans at open. */
export function readAtSync(io: LogIo, fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(length)
  let got = 0
  while (got < length) {
    const n = io.readSync(fd, buffer, got, length - got, position + got)
    if (n === 0) break
    got += n
  }
  return buffer.subarray(0, got)
}
