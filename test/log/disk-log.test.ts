// Behaviour of a partition log in each mode: append, read by index and by
// offset, term, truncation, compaction, retention, hard state, reopen.
// The same script runs against sync, async and memory logs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { ErrorCode, isRillError } from '../../src/base/index.ts'
import { MemoryLog, crc32c, nodeIo, type LogIo, type PartitionLog, type PersistenceMode } from '../../src/log/index.ts'
import { entries, entry, plain, store, tempDir } from './helpers.ts'

for (const mode of ['sync', 'async', 'memory'] as const satisfies readonly PersistenceMode[]) {
  test(`${mode}: append, read, term, truncate, compact, reopen`, async () => {
    const { dir, cleanup } = tempDir(mode)
    try {
      let s = await store(dir)
      const opts = { name: 'p-0', mode, segmentBytesMax: 4096, indexIntervalBytes: 256 }
      let log: PartitionLog = await s.openLog(opts)
      assert.equal(log.firstIndex(), 1)
      assert.equal(log.lastIndex(), 0)
      assert.equal(log.term(0), 0)
      await log.append(entries(1, 50, 1, 100))
      await log.append([entry(51, 2, { type: 1, records: 0 }), ...entries(52, 100, 2, 100)])
      assert.equal(log.lastIndex(), 100)
      assert.equal(log.term(50), 1)
      assert.equal(log.term(51), 2)
      const all = await log.read({ indexStart: 1, bytesMax: 1e9 })
      assert.equal(all.length, 100)
      assert.deepEqual(all.map(plain), [...entries(1, 50, 1, 100), entry(51, 2, { type: 1, records: 0 }), ...entries(52, 100, 2, 100)].map(plain))
      // bytesMax bounds the read, but at least one entry comes back.
      assert.equal((await log.read({ indexStart: 10, bytesMax: 1 })).length, 1)
      assert.equal((await log.read({ indexStart: 10, bytesMax: 3 * 156 })).length, 3)
      assert.deepEqual(await log.read({ indexStart: 101, bytesMax: 1e6 }), [])
      // Offsets: entry i holds offset 10*i; entry 51 is not data.
      const byOffset = await log.readByOffset({ offsetStart: 500, bytesMax: 2 * 156 })
      assert.deepEqual(byOffset.map((e) => e.index), [50, 52])
      assert.deepEqual((await log.readByOffset({ offsetStart: 10_000, bytesMax: 1e6 })).length, 0)
      // Conflict: append at 80 with a new term drops 80..100 first.
      await log.append(entries(80, 85, 3, 100))
      assert.equal(log.lastIndex(), 85)
      assert.equal(log.term(85), 3)
      assert.equal(log.term(79), 2)
      await log.truncateAfter(82)
      assert.equal(log.lastIndex(), 82)
      await log.setHardState({ term: 3, vote: 2, commit: 70 })
      await log.compact({ index: 30, term: 1 })
      assert.ok(log.firstIndex() <= 31)
      assert.equal(log.term(30), 1)
      await assert.rejects(log.read({ indexStart: 1, bytesMax: 10 }), (e) => isRillError(e, ErrorCode.OFFSET_OUT_OF_RANGE) || log.firstIndex() === 1)
      if (mode === 'memory') {
        // Entries are gone after a restart; term and vote are not (memory-hard-state.test.ts has the rest).
        await s.close()
        s = await store(dir)
        log = await s.openLog(opts)
        assert.equal(log.lastIndex(), 0)
        assert.deepEqual(log.hardState(), { term: 3, vote: 2, commit: 70 })
        await s.close()
        return
      }
      await s.close()
      s = await store(dir)
      log = await s.openLog(opts)
      assert.equal(log.lastIndex(), 82)
      assert.equal(log.term(82), 3)
      assert.deepEqual(log.hardState(), { term: 3, vote: 2, commit: 70 })
      const again = await log.read({ indexStart: 31, bytesMax: 1e9 })
      assert.deepEqual(again.map((e) => e.index), Array.from({ length: 52 }, (_, i) => 31 + i))
      assert.deepEqual(Buffer.from(again.at(-1)!.data), Buffer.from(entry(82, 3, { bytes: 100 }).data))
      // Compaction past the end empties the log; it continues after the snapshot.
      await log.compact({ index: 200, term: 5 })
      assert.equal(log.firstIndex(), 201)
      assert.equal(log.lastIndex(), 200)
      assert.equal(log.term(200), 5)
      await log.append(entries(201, 210, 5))
      await s.close()
      s = await store(dir)
      log = await s.openLog(opts)
      assert.equal(log.firstIndex(), 201)
      assert.equal(log.lastIndex(), 210)
      assert.equal(log.term(200), 5)
      await s.close()
    } finally {
      cleanup()
    }
  })
}

test('segments roll, index files are reused, stale ones rebuilt', async () => {
  const { dir, cleanup } = tempDir('roll')
  try {
    let s = await store(dir)
    const opts = { name: 'p', mode: 'async' as const, segmentBytesMax: 8192, indexIntervalBytes: 512 }
    let log = await s.openLog(opts)
    for (let i = 0; i < 20; i++) await log.append(entries(i * 10 + 1, i * 10 + 10, 1, 200))
    await s.close()
    const logDir = join(dir, 'logs', 'p')
    const segs = fs.readdirSync(logDir).filter((n) => n.endsWith('.seg'))
    assert.ok(segs.length >= 5, `segments: ${segs.length}`)
    // Damage one index file (stale length): it is rebuilt by a scan.
    const idx = fs.readdirSync(logDir).filter((n) => n.endsWith('.idx'))
    fs.writeFileSync(join(logDir, idx[1]!), 'garbage')
    s = await store(dir)
    log = await s.openLog(opts)
    assert.equal(log.lastIndex(), 200)
    const got = await log.read({ indexStart: 57, bytesMax: 1e9 })
    assert.deepEqual(got.map((e) => e.index), Array.from({ length: 144 }, (_, i) => 57 + i))
    for (const e of got) assert.deepEqual(Buffer.from(e.data), Buffer.from(entry(e.index, 1, { bytes: 200 }).data))
    const off = await log.readByOffset({ offsetStart: 1234, bytesMax: 1 })
    assert.equal(off[0]!.index, 124)
    await s.close()
  } finally {
    cleanup()
  }
})

test('retention deletes whole old segments below the allowed index only', async () => {
  const { dir, cleanup } = tempDir('retention')
  try {
    const s = await store(dir)
    const log = await s.openLog({ name: 'p', mode: 'sync', segmentBytesMax: 4096, retentionBytes: 8192 })
    for (let i = 0; i < 10; i++) await log.append(entries(i * 20 + 1, i * 20 + 20, 1, 200))
    const before = log.firstIndex()
    const none = await log.applyRetention({ indexAllowed: 0, nowMs: Date.now() })
    assert.equal(none.segmentsDeleted, 0)
    assert.equal(log.firstIndex(), before)
    const some = await log.applyRetention({ indexAllowed: 100, nowMs: Date.now() })
    assert.ok(some.segmentsDeleted > 0)
    assert.ok(log.firstIndex() <= 101, `first ${log.firstIndex()}`)
    assert.ok(log.firstIndex() > 1)
    const all = await log.applyRetention({ indexAllowed: 1000, nowMs: Date.now() })
    assert.ok(all.firstIndex > 101)
    assert.equal(log.lastIndex(), 200)
    const got = await log.read({ indexStart: log.firstIndex(), bytesMax: 1e9 })
    assert.equal(got.at(-1)!.index, 200)
    // By time: everything is older than a day from "now + 2 days".
    const log2 = await s.openLog({ name: 'q', mode: 'async', segmentBytesMax: 4096, retentionMs: 86_400_000 })
    for (let i = 0; i < 5; i++) await log2.append(entries(i * 20 + 1, i * 20 + 20, 1, 200))
    const r = await log2.applyRetention({ indexAllowed: 1000, nowMs: 1_700_000_000_000 + 2 * 86_400_000 })
    assert.ok(r.segmentsDeleted > 0)
    assert.equal(log2.lastIndex(), 100)
    await s.close()
  } finally {
    cleanup()
  }
})

test('memory log without a store; metrics on the caller registry', async () => {
  const log = new MemoryLog({ name: 'm' })
  await log.append(entries(1, 3, 1))
  assert.equal(log.lastIndex(), 3)
  const { dir, cleanup } = tempDir('metrics')
  try {
    const registry = new Registry()
    const s = await store(dir, { registry })
    const l = await s.openLog({ name: 'p', mode: 'sync' })
    await Promise.all([l.append(entries(1, 1, 1)), l.append(entries(2, 2, 1)), l.append(entries(3, 3, 1))])
    const text = await registry.metrics()
    assert.match(text, /rill_log_append_bytes_total\{mode="sync"\} 264/)
    assert.match(text, /rill_log_fsync_total\{kind="wal"\}/)
    assert.match(text, /rill_log_open_logs\{mode="sync"\} 1/)
    await s.close()
  } finally {
    cleanup()
  }
})

test('bad input: unknown format version, log opened twice, bad name', async () => {
  const { dir, cleanup } = tempDir('bad')
  try {
    let s = await store(dir)
    const log = await s.openLog({ name: 'p', mode: 'async' })
    await log.append(entries(1, 5, 1))
    await assert.rejects(s.openLog({ name: 'p', mode: 'async' }), (e) => isRillError(e, ErrorCode.STORAGE_LOCKED))
    await assert.rejects(s.openLog({ name: '../x', mode: 'async' }), (e) => isRillError(e, ErrorCode.INVALID_REQUEST))
    await s.close()
    const seg = join(dir, 'logs', 'p', fs.readdirSync(join(dir, 'logs', 'p')).find((n) => n.endsWith('.seg'))!)
    const bytes = fs.readFileSync(seg)
    bytes.writeUInt16LE(9, 8) // a file from a future build: version 9, header checksum valid
    bytes.writeUInt32LE(crc32c(0, bytes.subarray(0, 28)), 28)
    fs.writeFileSync(seg, bytes)
    s = await store(dir)
    await assert.rejects(s.openLog({ name: 'p', mode: 'async' }), (e) => isRillError(e, ErrorCode.STORAGE_UNUSABLE) && /unknown format version 9/.test(e.message))
    await s.close()
  } finally {
    cleanup()
  }
})

test('sync: entries are readable, truncatable and roll segments while their segment write is pending', async () => {
  const { dir, cleanup } = tempDir('pending')
  try {
    // Hold the WAL's fsyncs: appends made meanwhile are noted but wait, unwritten, for the next cycle;
    // reads, truncations and segment rolls must see them all the same.
    let release = (): void => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    const hold = { on: false }
    const io: LogIo = { ...nodeIo, fdatasync: async (fd) => (hold.on && (await held), nodeIo.fdatasync(fd)) }
    let s = await store(dir, { io })
    let log = await s.openLog({ name: 'p', mode: 'sync', segmentBytesMax: 4096, indexIntervalBytes: 256 })
    hold.on = true
    const a = [log.append(entries(1, 3, 1, 500)), log.append(entries(4, 5, 1, 500))]
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), entries(1, 5, 1, 500).map(plain))
    a.push(log.append(entries(6, 8, 1, 500)), log.truncateAfter(6), log.append([entry(7, 2, { bytes: 500 })]))
    for (let i = 8; i <= 30; i++) a.push(log.append([entry(i, 2, { bytes: 700 })]))
    // The truncation lowers the durable mark (a marks file write) first; wait for the appends behind it to be noted.
    for (let turns = 0; log.lastIndex() < 30 && turns < 100_000; turns++) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(log.lastIndex(), 30)
    assert.equal(log.term(7), 2)
    release()
    await Promise.all(a)
    const want = [...entries(1, 6, 1, 500), entry(7, 2, { bytes: 500 }), ...Array.from({ length: 23 }, (_, k) => entry(8 + k, 2, { bytes: 700 }))].map(plain)
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), want)
    assert.deepEqual((await log.readByOffset({ offsetStart: 0, bytesMax: 1e9 })).map(plain), want)
    assert.equal(log.term(7), 2)
    await s.close()
    s = await store(dir)
    log = await s.openLog({ name: 'p', mode: 'sync', segmentBytesMax: 4096, indexIntervalBytes: 256 })
    assert.deepEqual((await log.read({ indexStart: 1, bytesMax: 1e9 })).map(plain), want)
    await s.close()
  } finally {
    cleanup()
  }
})
