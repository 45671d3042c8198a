// Exhaustive torn-write test. The last entry of a log is cut at every byte
// position (a crash during its write), and bits are flipped at sampled
// positions all over the file. Reopening must give back exactly the entries
// before the damage (or all of them), report damage before the tail, and
// never return a corrupted byte.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, SeededRandom, isRillError } from '../../src/base/index.ts'
import type { PartitionLog } from '../../src/log/index.ts'
import { entries, plain, store, tempDir } from './helpers.ts'

const entryCount = 12
const bodyBytes = 100
const opts = { name: 'p', mode: 'async' as const, segmentBytesMax: 1 << 20 }

/** Builds a log whose first entryCount - 1 entries are durable (clean close) and whose last one is not (crash). */
async function build(dir: string): Promise<{ segment: string; lastStart: number; size: number }> {
  let s = await store(dir)
  let log = await s.openLog(opts)
  await log.append(entries(1, entryCount - 1, 1, bodyBytes))
  await s.close()
  s = await store(dir)
  log = await s.openLog(opts)
  await log.append(entries(entryCount, entryCount, 1, bodyBytes))
  await s.abandon()
  const logDir = join(dir, 'logs', 'p')
  const segment = join(logDir, fs.readdirSync(logDir).find((n) => n.endsWith('.seg'))!)
  const size = fs.statSync(segment).size
  return { segment, lastStart: size - 56 - bodyBytes, size }
}

/** Every entry the log serves must be one of the originals, unchanged. */
async function readAllChecked(log: PartitionLog): Promise<number> {
  const want = entries(1, entryCount, 1, bodyBytes).map(plain)
  if (log.lastIndex() < log.firstIndex()) return 0
  const got = await log.read({ indexStart: 1, bytesMax: 1e9 })
  got.forEach((e, i) => assert.deepEqual(plain(e), want[i]))
  return got.length
}

test('a torn last entry is cut back, at every byte position', async () => {
  const { dir, cleanup } = tempDir('torn')
  const work = `${dir}-work`
  try {
    const { segment, lastStart, size } = await build(dir)
    for (let cut = lastStart; cut <= size; cut++) {
      fs.rmSync(work, { recursive: true, force: true })
      fs.cpSync(dir, work, { recursive: true })
      fs.truncateSync(segment.replace(dir, work), cut)
      const s = await store(work)
      const log = await s.openLog(opts)
      assert.equal(log.damage, undefined, `cut at ${cut}`)
      const expected = cut === size ? entryCount : entryCount - 1
      assert.equal(log.lastIndex(), expected, `cut at ${cut}`)
      assert.equal(await readAllChecked(log), expected)
      // The log is writable again right after the cut.
      await log.append(entries(expected + 1, expected + 1, 2, bodyBytes))
      await s.close()
    }
  } finally {
    cleanup()
    fs.rmSync(work, { recursive: true, force: true })
  }
})

test('flipped bits: cut at the tail, damage before it, never corrupted data', async () => {
  const { dir, cleanup } = tempDir('flip')
  const work = `${dir}-work`
  const rng = new SeededRandom(3)
  try {
    const { segment, lastStart, size } = await build(dir)
    const positions = new Set<number>([32, 33, 36, 40, 60, 88, 100, lastStart, lastStart + 4, lastStart + 8, size - 1])
    while (positions.size < 120) positions.add(32 + rng.int(size - 32))
    for (const position of positions) {
      fs.rmSync(work, { recursive: true, force: true })
      fs.cpSync(dir, work, { recursive: true })
      const path = segment.replace(dir, work)
      const bytes = fs.readFileSync(path)
      bytes[position]! ^= 1 << rng.int(8)
      fs.writeFileSync(path, bytes)
      const s = await store(work)
      const log = await s.openLog(opts)
      const where = `flip at ${position}`
      if (position >= lastStart) {
        // Not yet fsynced: a torn write; the entry is dropped.
        assert.equal(log.damage, undefined, where)
        assert.equal(log.lastIndex(), entryCount - 1, where)
      } else {
        // Fsynced bytes changed: damage, reported with the range to refetch; reads stop before it.
        assert.ok(log.damage !== undefined, where)
        assert.equal(log.damage.file, path, where)
        assert.ok(log.damage.indexFirst <= entryCount - 1 && log.damage.indexLast >= log.damage.indexFirst, where)
        assert.equal(log.lastIndex(), log.damage.indexFirst - 1, where)
        await assert.rejects(log.append(entries(log.lastIndex() + 1, log.lastIndex() + 1, 2)), (e) => isRillError(e, ErrorCode.STORAGE_READ_ONLY))
      }
      await readAllChecked(log)
      if (log.damage !== undefined) {
        // Repair: truncating below the damage makes the log writable; the rest is refetched.
        await log.truncateAfter(log.damage.indexFirst - 1)
        assert.equal(log.damage, undefined)
        await log.append(entries(log.lastIndex() + 1, entryCount, 1, bodyBytes))
        assert.equal(await readAllChecked(log), entryCount)
      }
      await s.close()
    }
  } finally {
    cleanup()
    fs.rmSync(work, { recursive: true, force: true })
  }
})

test('a flipped bit in a sealed, trusted segment is caught by the read', async () => {
  const { dir, cleanup } = tempDir('flip-read')
  try {
    let s = await store(dir)
    const o = { name: 'p', mode: 'sync' as const, segmentBytesMax: 2048 }
    let log = await s.openLog(o)
    await log.append(entries(1, 40, 1, bodyBytes))
    await s.close()
    const logDir = join(dir, 'logs', 'p')
    const first = join(logDir, fs.readdirSync(logDir).filter((n) => n.endsWith('.seg')).sort()[0]!)
    const bytes = fs.readFileSync(first)
    bytes[32 + 56 + 10]! ^= 0x10 // a body byte of entry 1
    fs.writeFileSync(first, bytes)
    s = await store(dir)
    log = await s.openLog(o)
    await assert.rejects(log.read({ indexStart: 1, bytesMax: 1e6 }), (e) => isRillError(e, ErrorCode.STORAGE_CORRUPT) && e.details.file === first && e.details.position === 32)
    const later = await log.read({ indexStart: 2, bytesMax: 1e6 })
    assert.equal(later[0]!.index, 2)
    await s.close()
  } finally {
    cleanup()
  }
})

test('sync: a torn WAL tail loses only the unacknowledged record', async () => {
  const { dir, cleanup } = tempDir('wal-torn')
  const work = `${dir}-work`
  try {
    const s = await store(dir)
    const log = await s.openLog({ name: 'p', mode: 'sync' })
    await log.append(entries(1, 5, 1, bodyBytes))
    await log.append(entries(6, 6, 1, bodyBytes))
    const image = await s.abandon()
    const recordBytes = 24 + 1 + 56 + bodyBytes
    const walSize = fs.statSync(image.wal.path).size
    assert.equal(image.wal.syncedBytes, walSize)
    const segDir = join(dir, 'logs', 'p')
    const seg = join(segDir, fs.readdirSync(segDir).find((n) => n.endsWith('.seg'))!)
    const segSize = fs.statSync(seg).size
    for (let cut = walSize - recordBytes; cut <= walSize; cut++) {
      fs.rmSync(work, { recursive: true, force: true })
      fs.cpSync(dir, work, { recursive: true })
      // The segment lost the last entry too (never fsynced): only the WAL can bring it back.
      fs.truncateSync(seg.replace(dir, work), segSize - 56 - bodyBytes)
      fs.truncateSync(image.wal.path.replace(dir, work), cut)
      const s2 = await store(work)
      const l2 = await s2.openLog({ name: 'p', mode: 'sync' })
      assert.equal(l2.lastIndex(), cut === walSize ? 6 : 5, `WAL cut at ${cut}`)
      const got = await l2.read({ indexStart: 1, bytesMax: 1e9 })
      assert.deepEqual(got.map(plain), entries(1, l2.lastIndex(), 1, bodyBytes).map(plain))
      await s2.close()
    }
  } finally {
    cleanup()
    fs.rmSync(work, { recursive: true, force: true })
  }
})

test('sync: a WAL file torn while it was being created holds nothing; a bad header anywhere else is damage', async () => {
  const { dir, cleanup } = tempDir('wal-torn-create')
  const work = `${dir}-work`
  try {
    const s = await store(dir)
    const log = await s.openLog({ name: 'p', mode: 'sync' })
    await log.append(entries(1, 5, 1, bodyBytes))
    const image = await s.abandon()
    const walDir = join(dir, 'wal')
    const next = join(walDir, `${String(Number(image.wal.path.slice(-24, -4)) + 1).padStart(20, '0')}.wal`)
    const header = fs.readFileSync(image.wal.path).subarray(0, 32)
    // The power went during a rotation, before the new file's header was fsynced: empty, a
    // prefix of the header, or the header's length in zeros (its size got there, its data did not).
    for (const torn of [Buffer.alloc(0), header.subarray(0, 13), Buffer.alloc(32)]) {
      fs.rmSync(work, { recursive: true, force: true })
      fs.cpSync(dir, work, { recursive: true })
      fs.writeFileSync(next.replace(dir, work), torn)
      const s2 = await store(work)
      const l2 = await s2.openLog({ name: 'p', mode: 'sync' })
      assert.equal(l2.lastIndex(), 5, `torn header of ${torn.length} bytes`)
      assert.deepEqual((await l2.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), entries(1, 5, 1, bodyBytes).map(plain))
      await s2.close()
    }
    // A bad header on a file with records after it, or on an older file, is damage, not a torn creation.
    for (const [path, bytes] of [
      [next, Buffer.concat([Buffer.alloc(32), Buffer.alloc(10, 1)])],
      [image.wal.path, Buffer.concat([Buffer.alloc(32), fs.readFileSync(image.wal.path).subarray(32)])],
    ] as const) {
      fs.rmSync(work, { recursive: true, force: true })
      fs.cpSync(dir, work, { recursive: true })
      if (path === image.wal.path) fs.writeFileSync(next.replace(dir, work), header) // so that the damaged one is not the newest
      fs.writeFileSync(path.replace(dir, work), bytes)
      await assert.rejects(store(work), (e) => isRillError(e, ErrorCode.STORAGE_CORRUPT))
    }
  } finally {
    cleanup()
    fs.rmSync(work, { recursive: true, force: true })
  }
})
