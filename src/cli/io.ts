/**
 * The CLI's terminal side: stdout that may close under it, stderr, and how
 * a command is asked to stop.
 *
 *   stdout EPIPE (`rill consume T | head -2`) ──▶ output off, stop('pipe'):
 *       the command ends quietly, exit 0 (as `head`'s writer does)
 *   SIGINT / SIGTERM ──▶ stop('SIGINT' | 'SIGTERM'):
 *       a command that stops gracefully (consume: commit, leave the group;
 *       produce: wait for what was sent) has `stopGraceMs`, then exits 130 / 143;
 *       any other command exits at once
 *   a second SIGINT / SIGTERM ──▶ exit at once
 *
 * Node ignores SIGPIPE, so a closed pipe shows up as an EPIPE 'error' on
 * process.stdout: unhandled, it is a stack trace, and a write waiting for
 * 'drain' waits forever. Both are handled here.
 */
import { systemRuntime } from '../base/index.ts'
import { exitCodes } from './args.ts'

/** Why a command was asked to stop. */
export type StopReason = 'pipe' | 'SIGINT' | 'SIGTERM'

/** After the first SIGINT/SIGTERM, the longest a graceful stop (commit, leave the group, flush) may take, ms. */
export const stopGraceMs = 5_000

export interface CliIo {
  /** Writes a line to stdout; nothing once the reader went away. */
  readonly out: (line: string) => void
  /** Writes bytes to stdout; resolves when stdout can take more, or at once when it closed or the command is stopping. */
  readonly write: (bytes: Uint8Array) => Promise<void>
  /** Writes a line to stderr. */
  readonly err: (line: string) => void
  /** Aborted on a closed stdout, SIGINT or SIGTERM. */
  readonly signal: AbortSignal
  /** Why `signal` aborted (null: it did not). */
  readonly stopReason: () => StopReason | null
  /** Progress lines and summaries go to stderr only when it is a terminal. */
  readonly stderrIsTty: boolean
  readonly stdoutIsTty: boolean
}

/** The exit code of a command stopped for `reason` that otherwise succeeded. */
export function stopExitCode(reason: StopReason | null): number {
  if (reason === 'SIGINT') return exitCodes.interrupted
  if (reason === 'SIGTERM') return exitCodes.terminated
  return exitCodes.ok
}

/**
 * The process's stdout/stderr and signals. `graceful`: the command watches
 * `signal` and cleans up (bounded by `stopGraceMs`); otherwise a signal
 * exits at once. `signals: false` leaves SIGINT and SIGTERM alone (`rill
 * broker` and `rill dev` stop their brokers their own way).
 */
export function processIo(options: { graceful: boolean; signals: boolean }): CliIo {
  const controller = new AbortController()
  let reason: StopReason | null = null
  let stdoutClosed = false
  const stop = (why: StopReason): void => {
    if (reason !== null) return
    reason = why
    controller.abort(why)
  }
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    stdoutClosed = true
    // EPIPE is the reader going away; anything else (EIO, ENOSPC) ends the command as well, said once on stderr.
    if (e.code !== 'EPIPE' && reason === null) process.stderr.write(`rill: stdout: ${e.message}\n`)
    stop('pipe')
  })
  const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    const code = signal === 'SIGINT' ? exitCodes.interrupted : exitCodes.terminated
    if (reason === 'SIGINT' || reason === 'SIGTERM' || !options.graceful) process.exit(code)
    stop(signal)
    systemRuntime.setTimer(
      () => {
        process.stderr.write(`rill: did not stop within ${stopGraceMs} ms of ${signal}: exiting\n`)
        process.exit(code)
      },
      stopGraceMs,
      { background: true },
    )
  }
  if (options.signals) {
    process.on('SIGINT', () => onSignal('SIGINT'))
    process.on('SIGTERM', () => onSignal('SIGTERM'))
  }
  const write = (bytes: Uint8Array): Promise<void> => {
    if (stdoutClosed) return Promise.resolve()
    return new Promise((resolve) => {
      if (process.stdout.write(bytes)) {
        resolve()
        return
      }
      const done = (): void => {
        process.stdout.off('drain', done)
        controller.signal.removeEventListener('abort', done)
        resolve()
      }
      process.stdout.on('drain', done)
      controller.signal.addEventListener('abort', done, { once: true })
    })
  }
  return {
    out: (line) => {
      if (!stdoutClosed) process.stdout.write(`${line}\n`)
    },
    write,
    err: (line) => {
      process.stderr.write(`${line}\n`)
    },
    signal: controller.signal,
    stopReason: () => reason,
    stderrIsTty: process.stderr.isTTY === true,
    stdoutIsTty: process.stdout.isTTY === true,
  }
}

/** Progress on a terminal: a line rewritten in place at most every `intervalMs`, then cleared. */
export class ProgressLine {
  #lastMs = -Infinity
  #shown = false

  constructor(
    private readonly enabled: boolean,
    private readonly intervalMs = 250,
  ) {}

  /** Shows `text` if the last update is at least `intervalMs` old. */
  update(text: () => string): void {
    if (!this.enabled) return
    const now = systemRuntime.nowMs()
    if (now - this.#lastMs < this.intervalMs) return
    this.#lastMs = now
    this.#shown = true
    process.stderr.write(`\r\x1b[K${text()}`)
  }

  /** Clears the line (before a summary or an error). */
  clear(): void {
    if (this.#shown) process.stderr.write('\r\x1b[K')
    this.#shown = false
  }
}

/** `12,345 records, 1.2 MB in 3.4 s (3,631 records/s)`: the summary of a produce or consume. */
export function summary(records: number, bytes: number, elapsedMs: number): string {
  const seconds = Math.max(elapsedMs, 1) / 1000
  return `${records.toLocaleString('en-US')} records, ${formatBytes(bytes)} in ${seconds.toFixed(1)} s (${Math.round(records / seconds).toLocaleString('en-US')} records/s)`
}

/** Bytes as B, kB, MB or GB (powers of 1000, one decimal). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`
}
