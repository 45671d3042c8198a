/**
 * The backstop behind "a broker dies with its parent" (src/cli/broker.ts).
 * The broker's main thread stops gracefully when its IPC channel to the
 * parent closes; but a main thread that spins (the CI hang this exists for:
 * a broker at 100% CPU) or sits in a blocked write never sees that. This
 * watchdog runs on its own thread: it polls the parent pid, and once the
 * parent is gone it gives the main thread `graceMs` to finish its own stop,
 * then SIGKILLs the process.
 *
 *   main thread:  IPC 'disconnect' ──▶ graceful stop (≤ --shutdown-timeout) ──▶ exit
 *   watchdog:     ppid changed ──▶ wait graceMs ──▶ SIGKILL self   (only if the main thread did not exit)
 *
 * Node has no PR_SET_PDEATHSIG; an orphan is re-parented (to init or a
 * subreaper), so `process.ppid` changing is the parent's death.
 */
import { Worker } from 'node:worker_threads'

/** Between two looks at the parent pid, ms. */
export const orphanPollMs = 500

/**
 * The watchdog's code: plain CommonJS, so the thread loads no TypeScript
 * hooks. It arms no timer (the process's timers belong to src/base/runtime.ts,
 * and this thread needs no event loop): it sleeps in Atomics.wait between
 * looks. A thread blocked there does not hold the process at exit.
 */
const watchdogSource = `
const { workerData } = require('node:worker_threads')
const { parentPid, graceMs, pollMs } = workerData
const sleeper = new Int32Array(new SharedArrayBuffer(4))
while (process.ppid === parentPid) Atomics.wait(sleeper, 0, 0, pollMs)
Atomics.wait(sleeper, 0, 0, graceMs)
process.kill(process.pid, 'SIGKILL')
`

/**
 * Starts the watchdog for `parentPid` (normally `process.ppid` at start).
 * It never keeps the process alive; it ends with the process.
 */
export function startOrphanWatchdog(options: { parentPid: number; graceMs: number }): Worker {
  const worker = new Worker(watchdogSource, {
    eval: true,
    execArgv: [],
    workerData: { parentPid: options.parentPid, graceMs: options.graceMs, pollMs: orphanPollMs },
    // A watchdog needs little: keep its heap small.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  })
  worker.unref()
  return worker
}
