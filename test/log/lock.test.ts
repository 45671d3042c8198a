// Two processes opening one data directory: the second fails with
// STORAGE_LOCKED naming the holder; a lock left by a dead process is taken
// over. A real child process, because the lock is per process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { ErrorCode, isRillError } from '../../src/base/index.ts'
import { stopProcess, waitExit } from '../broker/helpers.ts'
import { store, tempDir } from './helpers.ts'

const child = new URL('./fixtures/open-store.ts', import.meta.url).pathname
/** Longest wait for the child's first line, its exit, or a spawnSync, ms. */
const childWaitMs = 30_000

test('a second process cannot open a held directory; a second open in-process neither', async () => {
  const { dir, cleanup } = tempDir('lock')
  try {
    const holder = spawn(process.execPath, ['--import', 'tsx', child, dir], { stdio: ['pipe', 'pipe', 'inherit'] })
    const lines = createInterface({ input: holder.stdout! })
    let timer: NodeJS.Timeout | undefined
    const line = await Promise.race([
      lines[Symbol.asyncIterator]().next(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no line from the holder within ${childWaitMs} ms`)), childWaitMs))),
    ])
      .catch(async (error: unknown) => {
        await stopProcess(holder, { signal: 'SIGKILL' })
        throw error
      })
      .finally(() => clearTimeout(timer))
    const first = JSON.parse(line.value as string) as { ok: boolean; pid: number }
    assert.equal(first.ok, true)
    await assert.rejects(store(dir), (e) => isRillError(e, ErrorCode.STORAGE_LOCKED) && e.message.includes(`process ${first.pid}`))
    holder.stdin!.end()
    await waitExit(holder, childWaitMs, 'the holder after stdin closed').catch(async (error: unknown) => {
      await stopProcess(holder, { signal: 'SIGKILL' })
      throw error
    })
    // Released: this process takes it; now a child is refused.
    const s = await store(dir)
    await assert.rejects(store(dir), (e) => isRillError(e, ErrorCode.STORAGE_LOCKED))
    const second = spawnSync(process.execPath, ['--import', 'tsx', child, dir], { input: '', encoding: 'utf8', timeout: childWaitMs, killSignal: 'SIGKILL' })
    assert.equal(second.status, 3)
    const outcome = JSON.parse(second.stdout.trim()) as { ok: boolean; code: string; message: string }
    assert.equal(outcome.code, ErrorCode.STORAGE_LOCKED)
    assert.match(outcome.message, new RegExp(`locked by process ${process.pid}`))
    await s.close()
  } finally {
    cleanup()
  }
})

test('a stale lock of a dead process is taken over', async () => {
  const { dir, cleanup } = tempDir('stale')
  try {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8', timeout: childWaitMs, killSignal: 'SIGKILL' })
    const deadPid = Number(dead.stdout)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(join(dir, 'LOCK'), `${deadPid}\n`)
    const s = await store(dir)
    assert.equal(fs.readFileSync(join(dir, 'LOCK'), 'utf8').trim(), String(process.pid))
    await s.close()
    assert.equal(fs.existsSync(join(dir, 'LOCK')), false)
  } finally {
    cleanup()
  }
})
