// The shared WAL's direct flushes (wal.ts): a large sync append is made
// durable in its segment, not copied into the WAL, and recovery treats its
// `flushed` record by whether its cycle completed: completed, the bytes
// under it are trusted (a bad byte there is damage, reported); in the last
// cycle (its segment fsync may not have finished), it counts only if the
// segment holds what it says, else it is ignored like any torn write.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { openLogStore } from '../../src/log/index.ts'
import { entries, plain, tempDir } from './helpers.ts'

const bigBytes = 8 * 1024
const options = { walDirectBytesMin: 4 * 1024 }
const logOptions = { name: 'p', mode: 'sync' as const }

function segmentOf(dir: string): string {
  const logDir = join(dir, 'logs', 'p')
  return join(logDir, fs.readdirSync(logDir).find((n) => n.endsWith('.seg'))!)
}

function walBytes(dir: string): number {
  return fs.readdirSync(join(dir, 'wal')).reduce((n, f) => n + fs.statSync(join(dir, 'wal', f)).size, 0)
}

/** Appends entries 1..4 (large: direct) then 5 (small: through the WAL, in a later cycle); crashes. */
async function build(dir: string): Promise<{ registry: Registry }> {
  const registry = new Registry()
  const s = await openLogStore({ dir, registry, ...options })
  const log = await s.openLog(logOptions)
  await log.append(entries(1, 4, 1, bigBytes))
  await log.append(entries(5, 5, 1, 100))
  await s.abandon()
  return { registry }
}

test('a large sync append goes to its segment only; a crash keeps it', async () => {
  const { dir, cleanup } = tempDir('direct')
  try {
    const { registry } = await build(dir)
    const direct = (await registry.getSingleMetric('rill_log_wal_direct_bytes_total')!.get()).values[0]!.value
    assert.ok(direct >= 4 * bigBytes, `direct bytes ${direct}`)
    assert.ok(walBytes(dir) < bigBytes, `WAL holds ${walBytes(dir)} bytes: the large entries were copied into it`)
    const s = await openLogStore({ dir, registry: new Registry(), ...options })
    const log = await s.openLog(logOptions)
    assert.equal(log.damage, undefined)
    assert.equal(log.lastIndex(), 5)
    const want = [...entries(1, 4, 1, bigBytes), ...entries(5, 5, 1, 100)]
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), want.map(plain))
    await s.close()
  } finally {
    cleanup()
  }
})

test('a flushed record of a completed cycle: a bad byte under it is damage, not a torn tail', async () => {
  const { dir, cleanup } = tempDir('direct-damage')
  try {
    await build(dir)
    const segment = segmentOf(dir)
    const fd = fs.openSync(segment, 'r+')
    fs.writeSync(fd, Buffer.from([0xff]), 0, 1, 32 + 56 + bigBytes + 56 + 10) // inside entry 2's body
    fs.closeSync(fd)
    const s = await openLogStore({ dir, registry: new Registry(), ...options })
    const log = await s.openLog(logOptions)
    assert.ok(log.damage !== undefined, 'damage under a flushed record must be reported')
    assert.equal(log.damage.file, segment)
    assert.equal(log.damage.indexFirst, 2)
    assert.equal(log.lastIndex(), 1)
    await s.close()
    // Still reported after a clean close: the damage is not forgotten.
    const again = await openLogStore({ dir, registry: new Registry(), ...options })
    assert.ok((await again.openLog(logOptions)).damage !== undefined)
    await again.close()
  } finally {
    cleanup()
  }
})

test('a flushed record of the last cycle over bytes the segment lacks: it counts for nothing, no damage', async () => {
  const { dir, cleanup } = tempDir('direct-torn')
  try {
    const s0 = await openLogStore({ dir, registry: new Registry(), ...options })
    const log0 = await s0.openLog(logOptions)
    await log0.append(entries(1, 2, 1, 100)) // small: WAL
    await log0.append(entries(3, 6, 1, bigBytes)) // large: direct, the WAL's last cycle
    await s0.abandon()
    // As if the power went before the segment's fsync returned: its last entries never reached the disk.
    const segment = segmentOf(dir)
    fs.truncateSync(segment, fs.statSync(segment).size - bigBytes)
    const s = await openLogStore({ dir, registry: new Registry(), ...options })
    const log = await s.openLog(logOptions)
    // Entries 3..6 were in that unfinished cycle (not acknowledged then): the record counts for nothing,
    // and replaying the WAL's record of 1..2 leaves the log at 2.
    assert.equal(log.damage, undefined)
    assert.equal(log.lastIndex(), 2)
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), entries(1, 2, 1, 100).map(plain))
    await log.append(entries(3, 3, 2, 100))
    await s.close()
  } finally {
    cleanup()
  }
})
