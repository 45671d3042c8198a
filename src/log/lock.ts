/**
 * One process per data directory. Two brokers writing one log would
 * interleave appends and both believe they own the WAL, so the store takes
 * `<dir>/LOCK` (holding the owner's pid) at open and refuses a directory held
 * by a live process with STORAGE_LOCKED. A lock left by a dead process (kill
 * -9, power loss) is taken over: its pid no longer exists. If the pid was
 * reused by an unrelated process the lock looks held; the error names the
 * pid so an operator can check it and remove the file.
 *
 * Node has no flock(); the lock is a file created with O_EXCL. Takeover of a
 * stale lock renames it away first, so that of two processes racing for the
 * same stale lock only one can create the new one. The file is created and
 * its pid written in one synchronous step, so that a second open in this
 * process never sees it empty; the fsync after is only so that it survives
 * a power loss with its pid.
 *
 * Everything goes through the store's LogIo, process identity included: on
 * the simulator's disk the pid is the simulated process's, and a crash
 * makes it stale.
 */
import { join } from 'node:path'
import { ErrorCode, RillError } from '../base/index.ts'
import { isErrorCode, readFileSync, writeAllSync, type LogIo } from './io.ts'

/** Name of the lock file inside a store directory. */
export const lockFileName = 'LOCK'

/** A held directory lock. */
export interface DirLock {
  readonly path: string
  /**
   * True if the lock of a dead process was taken over: it did not close the
   * store, so what it created, renamed or deleted may be in the page cache
   * only (not durable), though this process sees it.
   */
  readonly tookOver: boolean
  release(): void
}

/** The pid in a lock file; undefined if it is gone or holds none. An I/O error throws: it says nothing of the owner. */
function readPid(io: LogIo, path: string): number | undefined {
  let text: string
  try {
    text = readFileSync(io, path).toString('utf8')
  } catch (error) {
    if (isErrorCode(error, 'ENOENT')) return undefined
    throw error
  }
  const pid = Number.parseInt(text.trim(), 10)
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

/** Creates the lock file holding our pid; undefined if it exists. Returns its fd (to fsync, then close). */
function tryCreate(io: LogIo, path: string): number | undefined {
  let fd: number
  try {
    fd = io.openSync(path, 'wx')
  } catch (error) {
    if (isErrorCode(error, 'EEXIST')) return undefined
    throw error
  }
  try {
    writeAllSync(io, fd, [Buffer.from(`${io.pid()}\n`)], 0)
  } catch (error) {
    io.closeSync(fd)
    throw error
  }
  return fd
}

function lockedError(io: LogIo, dir: string, pid: number | undefined): RillError {
  const who = pid === undefined ? 'another process' : pid === io.pid() ? 'this process (opened twice)' : `process ${pid}`
  return new RillError(ErrorCode.STORAGE_LOCKED, `data directory ${dir} is locked by ${who} (${join(dir, lockFileName)})`, {
    details: { dir, pid },
  })
}

/** Takes the lock of `dir` (synchronously) or throws STORAGE_LOCKED; returns the new lock file's fd and whether a stale lock was taken over. */
function take(io: LogIo, dir: string, path: string): { fd: number; tookOver: boolean } {
  const fd = tryCreate(io, path)
  if (fd !== undefined) return { fd, tookOver: false }
  const pid = readPid(io, path)
  if (pid !== undefined && (pid === io.pid() || io.processAlive(pid))) throw lockedError(io, dir, pid)
  // Stale (dead owner, or an empty file from a crash during creation).
  const aside = `${path}.stale.${io.pid()}`
  try {
    io.renameSync(path, aside)
  } catch {
    throw lockedError(io, dir, readPid(io, path))
  }
  const movedPid = readPid(io, aside)
  if (movedPid !== pid) {
    // Another process took the stale lock between our read and rename: put its lock back.
    io.renameSync(aside, path)
    throw lockedError(io, dir, movedPid)
  }
  io.rmSync(aside)
  const again = tryCreate(io, path)
  if (again === undefined) throw lockedError(io, dir, readPid(io, path))
  return { fd: again, tookOver: true }
}

/** Takes the lock of `dir` or throws STORAGE_LOCKED. */
export async function lockDir(io: LogIo, dir: string): Promise<DirLock> {
  const path = join(dir, lockFileName)
  const { fd, tookOver } = take(io, dir, path)
  let held = true
  const lock: DirLock = {
    path,
    tookOver,
    release(): void {
      if (!held) return
      held = false
      try {
        if (readPid(io, path) === io.pid()) io.rmSync(path)
      } catch {
        // Best effort: a lock file left behind holds a pid that will be dead, so it is stale.
      }
    },
  }
  try {
    await io.fsync(fd)
  } catch (error) {
    lock.release()
    throw error
  } finally {
    io.closeSync(fd)
  }
  return lock
}
