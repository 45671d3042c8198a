// A full disk (ENOSPC, injected through the LogIo seam): the append fails
// with STORAGE_FULL, nothing half-written stays, everything acknowledged
// before is intact, and the log works again once there is room (async mode)
// or after a reopen (sync mode: the WAL refuses writes until then).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, isRillError } from '../../src/base/index.ts'
import { nodeIo, type LogIo } from '../../src/log/index.ts'
import { entries, plain, store, tempDir } from './helpers.ts'

function fullDisk(): { io: LogIo; full: { on: boolean; partial: boolean } } {
  const full = { on: false, partial: false }
  const io: LogIo = {
    ...nodeIo,
    writevSync(fd, buffers, position) {
      if (!full.on) return nodeIo.writevSync(fd, buffers, position)
      if (full.partial) {
        full.partial = false
        return nodeIo.writevSync(fd, [buffers[0]!.subarray(0, Math.ceil(buffers[0]!.length / 2))], position) // a short write, then ENOSPC
      }
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 })
    },
  }
  return { io, full }
}

for (const mode of ['async', 'sync'] as const) {
  test(`${mode}: ENOSPC fails the append with STORAGE_FULL and damages nothing`, async () => {
    const { dir, cleanup } = tempDir(`full-${mode}`)
    try {
      const { io, full } = fullDisk()
      let s = await store(dir, { io })
      let log = await s.openLog({ name: 'p', mode })
      await log.append(entries(1, 10, 1, 200))
      full.on = true
      full.partial = true
      await assert.rejects(log.append(entries(11, 12, 1, 200)), (e) => isRillError(e, ErrorCode.STORAGE_FULL))
      assert.equal(log.lastIndex(), 10)
      full.on = false
      if (mode === 'async') {
        await log.append(entries(11, 12, 1, 200))
        assert.equal(log.lastIndex(), 12)
      }
      await s.close()
      s = await store(dir)
      log = await s.openLog({ name: 'p', mode })
      assert.equal(log.damage, undefined)
      const want = mode === 'async' ? 12 : 10
      assert.equal(log.lastIndex(), want)
      assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), entries(1, want, 1, 200).map(plain))
      await s.close()
    } finally {
      cleanup()
    }
  })
}

test('sync: ENOSPC on the WAL fails pending appends; a reopen recovers', async () => {
  const { dir, cleanup } = tempDir('full-wal')
  try {
    const { io, full } = fullDisk()
    let s = await store(dir, { io })
    let log = await s.openLog({ name: 'p', mode: 'sync' })
    await log.append(entries(1, 5, 1, 100))
    // Let the segment write pass and fail the WAL write.
    let writes = 0
    io.writevSync = (fd, b, p) => {
      if (++writes === 2) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })
      return nodeIo.writevSync(fd, b, p)
    }
    void full
    await assert.rejects(log.append(entries(6, 6, 1, 100)), (e) => isRillError(e, ErrorCode.STORAGE_FULL) && /WAL/.test(e.message))
    // The WAL refuses every later sync append until the store is reopened.
    await assert.rejects(log.append(entries(7, 7, 1, 100)), (e) => isRillError(e, ErrorCode.STORAGE_FULL))
    await s.abandon()
    s = await store(dir)
    log = await s.openLog({ name: 'p', mode: 'sync' })
    assert.equal(log.damage, undefined)
    assert.ok(log.lastIndex() >= 5)
    const got = await log.read({ indexStart: 1, bytesMax: 1e9 })
    assert.deepEqual(got.slice(0, 5).map(plain), entries(1, 5, 1, 100).map(plain))
    await s.close()
  } finally {
    cleanup()
  }
})

test('sync: a failed pending segment write fails all its appends, rolls the log back, and the log goes on', async () => {
  const { dir, cleanup } = tempDir('full-pending')
  try {
    const { io, full } = fullDisk()
    let s = await store(dir, { io })
    let log = await s.openLog({ name: 'p', mode: 'sync' })
    await log.append(entries(1, 5, 1, 100))
    // Hold the WAL's fsync so that the next appends wait, noted but unwritten, for the next cycle.
    let release = (): void => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    io.fdatasync = async (fd) => {
      await held
      return nodeIo.fdatasync(fd)
    }
    const a = log.append(entries(6, 6, 1, 100)) // taken by a cycle at once: its segment bytes are written
    await new Promise((resolve) => setImmediate(resolve))
    full.on = true
    full.partial = true
    // These two share one pending write, done when the next cycle takes them: it fails half-way.
    const b = log.append(entries(7, 8, 1, 100))
    const c = log.append(entries(9, 9, 1, 100))
    await new Promise((resolve) => setImmediate(resolve))
    release()
    await a
    for (const p of [b, c]) await assert.rejects(p, (e) => isRillError(e, ErrorCode.STORAGE_FULL))
    assert.equal(log.lastIndex(), 6)
    // Past the rolled-back end: the same error, not an assertion.
    await assert.rejects(log.append(entries(10, 10, 1, 100)), (e) => isRillError(e, ErrorCode.STORAGE_FULL))
    full.on = false
    await log.append(entries(7, 8, 2, 100))
    const want = [...entries(1, 6, 1, 100), ...entries(7, 8, 2, 100)].map(plain)
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), want)
    await s.close()
    s = await store(dir)
    log = await s.openLog({ name: 'p', mode: 'sync' })
    assert.equal(log.damage, undefined)
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), want)
    await s.close()
  } finally {
    cleanup()
  }
})
