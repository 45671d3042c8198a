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
 * same stale lock only one can create the new one.
 */
import fs from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, RillError } from '../base/index.ts'

/** Name of the lock file inside a store directory. */
export const lockFileName = 'LOCK'

/** A held directory lock. */
export interface DirLock {
  readonly path: string
  release(): void
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(path, 'utf8').trim(), 10)
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function tryCreate(path: string): boolean {
  try {
    const fd = fs.openSync(path, 'wx')
    try {
      fs.writeSync(fd, `${process.pid}\n`)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
}

function lockedError(dir: string, pid: number | undefined): RillError {
  const who = pid === undefined ? 'another process' : pid === process.pid ? 'this process (opened twice)' : `process ${pid}`
  return new RillError(ErrorCode.STORAGE_LOCKED, `data directory ${dir} is locked by ${who} (${join(dir, lockFileName)})`, {
    details: { dir, pid },
  })
}

/** Takes the lock of `dir` or throws STORAGE_LOCKED. */
export function lockDir(dir: string): DirLock {
  const path = join(dir, lockFileName)
  if (!tryCreate(path)) {
    const pid = readPid(path)
    if (pid !== undefined && (pid === process.pid || pidAlive(pid))) throw lockedError(dir, pid)
    // Stale (dead owner, or an empty file from a crash during creation).
    const aside = `${path}.stale.${process.pid}`
    try {
      fs.renameSync(path, aside)
    } catch {
      throw lockedError(dir, readPid(path))
    }
    const movedPid = readPid(aside)
    if (movedPid !== pid) {
      // Another process took the stale lock between our read and rename: put its lock back.
      fs.renameSync(aside, path)
      throw lockedError(dir, movedPid)
    }
    fs.rmSync(aside, { force: true })
    if (!tryCreate(path)) throw lockedError(dir, readPid(path))
  }
  let held = true
  return {
    path,
    release(): void {
      if (!held) return
      held = false
      if (readPid(path) === process.pid) fs.rmSync(path, { force: true })
    },
  }
}
