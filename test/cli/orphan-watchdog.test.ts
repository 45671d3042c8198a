/**
 * The orphan watchdog (src/cli/orphan-watchdog.ts) ends a process whose
 * main thread spins once its parent is SIGKILLed: the case the IPC channel
 * cannot handle, since a spinning main thread never sees it close.
 *
 *   test ──spawns──▶ parent (node -e) ──spawns──▶ spinner (watchdog, then for(;;))
 *   SIGKILL parent ──▶ spinner gone within graceMs + poll + slack
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { orphanPollMs } from '../../src/cli/orphan-watchdog.ts'
import { processAlive, stopProcess, waitFor } from '../broker/helpers.ts'

const spinner = fileURLToPath(new URL('./fixtures/spinner.ts', import.meta.url))
const graceMs = 500

test('a spinning process whose parent is SIGKILLed is killed by its watchdog', async () => {
  // The parent starts the spinner, passes its pid on, and waits to be killed.
  const parentCode = `
    const { spawn } = require('node:child_process')
    const child = spawn(process.execPath, ['--import', 'tsx', ${JSON.stringify(spinner)}, '${graceMs}'], { stdio: ['ignore', 'pipe', 'inherit'] })
    child.stdout.once('data', (d) => process.stdout.write(d))
  `
  const parent = spawn(process.execPath, ['-e', parentCode], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  parent.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  let pid = 0
  try {
    await waitFor(() => /^\d+\n/.test(out), 30_000, 'the spinner pid')
    pid = Number(out.trim())
    // Spinning, and staying so while its parent lives.
    await new Promise((resolve) => setTimeout(resolve, graceMs + 2 * orphanPollMs))
    assert.equal(processAlive(pid), true, 'the spinner died while its parent lived')
    await stopProcess(parent, { signal: 'SIGKILL', what: 'the parent' })
    const killed = Date.now()
    await waitFor(() => !processAlive(pid), graceMs + orphanPollMs + 5_000, 'the orphaned spinner to be killed')
    assert.ok(Date.now() - killed >= graceMs - 50, 'killed before its grace')
  } finally {
    await stopProcess(parent, { signal: 'SIGKILL', what: 'the parent' }).catch(() => undefined)
    if (pid !== 0 && processAlive(pid)) process.kill(pid, 'SIGKILL')
  }
})
