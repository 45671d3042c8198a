// SimDisk (src/sim/disk.ts), the simulator's crashing disk behind the log's
// LogIo seam: what survives a power loss and a process crash, that directory
// entries need a directory fsync, that faults surface with node's codes, that
// async operations complete on the virtual clock (and never after a crash),
// and that one seed gives one outcome.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Registry } from 'prom-client'
import { ErrorCode, SeededRandom, isRillError } from '../../src/base/index.ts'
import { fsyncDir, openLogStore, readFileSync, storageError, writeAllSync, writeFileAtomic, type LogIo } from '../../src/log/index.ts'
import { SimDisk, type SimDiskFaults } from '../../src/sim/disk.ts'
import { VirtualRuntime } from '../../src/sim/runtime.ts'

/** Seeds tried where an outcome is random (a power loss keeps a random prefix). */
const seedsTried = 60
/** Virtual time the driver runs at most to settle one operation. */
const settleMsMax = 10_000

function newDisk(seed: number, faults: Partial<SimDiskFaults> = {}): { disk: SimDisk; runtime: VirtualRuntime } {
  const runtime = new VirtualRuntime()
  return { disk: new SimDisk({ random: new SeededRandom(seed), runtime, faults }), runtime }
}

/** Runs the virtual runtime until `p` settles (bounded); returns its outcome. */
async function drive<T>(runtime: VirtualRuntime, p: Promise<T>): Promise<T> {
  let settled = false
  p.then(
    () => (settled = true),
    () => (settled = true),
  )
  const deadline = runtime.nowMs() + settleMsMax
  while (!settled && runtime.nowMs() < deadline) await runtime.runUntil(runtime.nowMs() + 1)
  assert.ok(settled, 'operation did not settle in virtual time')
  return p
}

/** Whether `p` has settled after the runtime ran up to `ms` more virtual ms. */
async function settledWithin(runtime: VirtualRuntime, p: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false
  p.then(
    () => (settled = true),
    () => (settled = true),
  )
  await runtime.runUntil(runtime.nowMs() + ms)
  return settled
}

function text(io: LogIo, path: string): string | undefined {
  return io.existsSync(path) ? readFileSync(io, path).toString('utf8') : undefined
}

function write(io: LogIo, path: string, content: string, flags: 'w' | 'r+' = 'w', position = 0): number {
  const fd = io.openSync(path, flags)
  writeAllSync(io, fd, [Buffer.from(content)], position)
  return fd
}

test('fsynced data and directory entries survive a power loss', async () => {
  for (let seed = 1; seed <= seedsTried; seed++) {
    const { disk, runtime } = newDisk(seed)
    disk.mkdirSync('/data/a')
    await drive(runtime, fsyncDir(disk, '/'))
    await drive(runtime, fsyncDir(disk, '/data'))
    const fd = write(disk, '/data/a/f', 'hello world')
    await drive(runtime, disk.fdatasync(fd))
    await drive(runtime, fsyncDir(disk, '/data/a'))
    disk.closeSync(fd)
    disk.crash('power-loss')
    assert.equal(text(disk, '/data/a/f'), 'hello world', `seed ${seed}`)
  }
})

test('a power loss keeps a random prefix of unsynced writes, the last maybe torn; a process crash keeps them all', async () => {
  const outcomes = new Set<string>()
  const pieces = ['aaaa', 'bbbb', 'cccc']
  for (let seed = 1; seed <= seedsTried; seed++) {
    for (const kind of ['power-loss', 'process-crash'] as const) {
      const { disk, runtime } = newDisk(seed)
      const fd = write(disk, '/f', 'base')
      await drive(runtime, disk.fsync(fd))
      await drive(runtime, fsyncDir(disk, '/'))
      let at = 4
      for (const p of pieces) {
        writeAllSync(disk, fd, [Buffer.from(p)], at)
        at += p.length
      }
      disk.crash(kind)
      const got = text(disk, '/f')!
      if (kind === 'process-crash') {
        assert.equal(got, 'baseaaaabbbbcccc', `seed ${seed}`)
        // Still unsynced: the page cache survived, the disk did not get it.
        assert.equal(disk.fileState('/f')!.unsyncedOps, 3)
        continue
      }
      // Durable bytes, whole pieces, then maybe a prefix of one (its rest zeros if the size got there).
      assert.match(got, /^base(aaaa(bbbb(cccc|c{0,3}\0*)?|b{0,3}\0*)?|a{0,3}\0*)?$/, `seed ${seed}: ${JSON.stringify(got)}`)
      assert.equal(disk.fileState('/f')!.unsyncedOps, 0)
      outcomes.add(got.replace(/\0/g, '0'))
    }
  }
  assert.ok(outcomes.has('base'), 'some power loss lost every unsynced write')
  assert.ok(outcomes.has('baseaaaabbbbcccc'), 'some power loss kept every unsynced write')
  assert.ok([...outcomes].some((o) => /^base(aaaa)*[a-c]{1,3}$/.test(o) || /0$/.test(o)), `some write was torn: ${[...outcomes].join(' ')}`)
})

test('creates, renames and unlinks are durable only after the directory is fsynced', async () => {
  let createLost = 0
  let renameLost = 0
  let unlinkLost = 0
  for (let seed = 1; seed <= seedsTried; seed++) {
    const { disk, runtime } = newDisk(seed)
    disk.mkdirSync('/d')
    await drive(runtime, fsyncDir(disk, '/'))
    // A durable file, to unlink later.
    const g = write(disk, '/d/gone', 'x')
    await drive(runtime, disk.fsync(g))
    disk.closeSync(g)
    // An fsynced file whose creation the atomic write's directory fsync below makes durable.
    const fd = write(disk, '/d/new', 'data')
    await drive(runtime, disk.fsync(fd))
    disk.closeSync(fd)
    await drive(runtime, writeFileAtomic(disk, '/d/state', Buffer.from('old')))
    // Now, without a directory fsync: a rename over the old content, and the unlink.
    const tmp = write(disk, '/d/state.tmp', 'new')
    await drive(runtime, disk.fsync(tmp))
    disk.closeSync(tmp)
    disk.renameSync('/d/state.tmp', '/d/state')
    disk.rmSync('/d/gone')
    assert.equal(disk.existsSync('/d/gone'), false)
    disk.crash('power-loss')
    const n = text(disk, '/d/new')
    assert.ok(n === undefined || n === 'data', `seed ${seed}: new ${n}`)
    const s = text(disk, '/d/state')
    assert.ok(s === 'old' || s === 'new', `seed ${seed}: state ${s}`)
    // The directory fsync after the atomic write made 'new' durable: it is never lost.
    assert.equal(n, 'data', `seed ${seed}: an entry before a directory fsync was lost`)
    if (s === 'old') renameLost++
    if (disk.existsSync('/d/gone')) unlinkLost++
    // And one never fsynced into its directory at all.
    const { disk: d2, runtime: r2 } = newDisk(seed)
    const fd2 = write(d2, '/lonely', 'data')
    await drive(r2, d2.fsync(fd2))
    d2.crash('power-loss')
    if (!d2.existsSync('/lonely')) createLost++
  }
  assert.ok(createLost > 0 && createLost < seedsTried, `create lost in ${createLost} of ${seedsTried}`)
  assert.ok(renameLost > 0 && renameLost < seedsTried, `rename lost in ${renameLost} of ${seedsTried}`)
  assert.ok(unlinkLost > 0 && unlinkLost < seedsTried, `unlink lost in ${unlinkLost} of ${seedsTried}`)
})

test('ENOSPC past the byte budget: a short write, then the error, mapped to STORAGE_FULL; overwrites still fit', async () => {
  const { disk } = newDisk(1, { capacityBytes: 100 })
  const fd = disk.openSync('/f', 'w+')
  assert.equal(disk.writevSync(fd, [Buffer.alloc(60, 1)], 0), 60)
  // 60 more asked, 40 fit: a short write, as a real file system does; the next one fails.
  assert.equal(disk.writevSync(fd, [Buffer.alloc(30, 2), Buffer.alloc(30, 3)], 60), 40)
  assert.throws(
    () => disk.writevSync(fd, [Buffer.alloc(10)], 100),
    (e: NodeJS.ErrnoException) => e.code === 'ENOSPC' && e.syscall === 'write' && isRillError(storageError(e, 'x'), ErrorCode.STORAGE_FULL),
  )
  assert.throws(() => writeAllSync(disk, fd, [Buffer.alloc(10)], 100), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC')
  assert.equal(disk.writevSync(fd, [Buffer.alloc(50, 9)], 0), 50)
  disk.ftruncateSync(fd, 10)
  assert.equal(disk.usedBytes(), 10)
  assert.equal(disk.writevSync(fd, [Buffer.alloc(90)], 10), 90)
  // Deleting frees the space once no descriptor holds the file.
  disk.rmSync('/f')
  assert.equal(disk.usedBytes(), 100)
  disk.closeSync(fd)
  assert.equal(disk.usedBytes(), 0)
  assert.ok(disk.counters().faults >= 2)
})

test('EIO on reads and fsyncs at the configured rates; a failed fsync leaves its writes unsynced', async () => {
  const { disk, runtime } = newDisk(7, { readErrorRate: 1, fsyncErrorRate: 1 })
  const fd = write(disk, '/f', 'abc', 'w')
  await assert.rejects(drive(runtime, disk.fsync(fd)), (e: NodeJS.ErrnoException) => e.code === 'EIO' && isRillError(storageError(e, 'x'), ErrorCode.STORAGE_UNUSABLE))
  assert.equal(disk.fileState('/f')!.unsyncedOps, 1)
  disk.closeSync(fd)
  const r = disk.openSync('/f', 'r')
  assert.throws(() => disk.readSync(r, Buffer.alloc(3), 0, 3, 0), (e: NodeJS.ErrnoException) => e.code === 'EIO')
  await assert.rejects(drive(runtime, disk.read(r, Buffer.alloc(3), 0, 3, 0)), (e: NodeJS.ErrnoException) => e.code === 'EIO')
  disk.setFaults({ readErrorRate: 0, fsyncErrorRate: 0.5 })
  const buf = Buffer.alloc(3)
  assert.equal(await drive(runtime, disk.read(r, buf, 0, 3, 0)), 3)
  assert.equal(buf.toString(), 'abc')
  let failed = 0
  for (let i = 0; i < 40; i++) await drive(runtime, disk.fsync(r)).catch(() => failed++)
  assert.ok(failed > 5 && failed < 35, `${failed} of 40 fsyncs failed at rate 0.5`)
})

test('async operations complete on the virtual clock, after their latency, not before a stall ends, never after a crash', async () => {
  const { disk, runtime } = newDisk(3, { fsyncLatencyMs: [5, 10] })
  const fd = write(disk, '/f', 'x')
  const t0 = runtime.nowMs()
  await drive(runtime, disk.fdatasync(fd))
  const took = runtime.nowMs() - t0
  assert.ok(took >= 5 && took <= 11, `fdatasync took ${took} virtual ms`)
  // Slow mode scales latencies.
  disk.setFaults({ latencyFactor: 10 })
  const t1 = runtime.nowMs()
  await drive(runtime, disk.fdatasync(fd))
  assert.ok(runtime.nowMs() - t1 >= 50, 'slow mode')
  disk.setFaults({ latencyFactor: 1, fsyncLatencyMs: [0, 0] })
  // A stall holds operations started before and during it.
  disk.stall(100)
  const held = disk.fsync(fd)
  assert.equal(await settledWithin(runtime, held, 50), false)
  assert.equal(await settledWithin(runtime, held, 60), true)
  // A crash drops what is in flight: the promise never settles, the write stays unsynced (then torn or lost).
  writeAllSync(disk, fd, [Buffer.from('yyyy')], 1)
  const lost = disk.fsync(fd)
  assert.equal(disk.counters().inflight, 1)
  disk.crash('process-crash')
  assert.equal(await settledWithin(runtime, lost, 1000), false)
  assert.equal(disk.counters().inflight, 0)
  assert.equal(disk.fileState('/f')!.unsyncedOps, 1)
  assert.throws(() => disk.closeSync(fd), (e: NodeJS.ErrnoException) => e.code === 'EBADF')
})

test('a crashed process keeps no handle on the disk; its pid is dead and its directory lock stale', async () => {
  const { disk, runtime } = newDisk(5)
  const io = disk.process()
  const store = await drive(runtime, openLogStore({ dir: '/data', registry: new Registry(), io }))
  // The same process cannot open it twice; a new incarnation after a crash takes the stale lock over.
  await assert.rejects(drive(runtime, openLogStore({ dir: '/data', registry: new Registry(), io: disk.process() })), (e) => isRillError(e, ErrorCode.STORAGE_LOCKED))
  const deadPid = io.pid()
  disk.crash('power-loss')
  assert.equal(disk.processAlive(deadPid), false)
  assert.throws(() => io.openSync('/data/x', 'w'), (e: NodeJS.ErrnoException) => e.code === 'EIO')
  assert.equal(await settledWithin(runtime, io.fsync(3), 100), false)
  const again = await drive(runtime, openLogStore({ dir: '/data', registry: new Registry(), io: disk.process() }))
  assert.equal(text(disk, '/data/LOCK'), `${disk.pid()}\n`)
  await drive(runtime, again.close())
  assert.equal(disk.existsSync('/data/LOCK'), false)
  void store
})

/** A digest of everything on the disk, for comparing two runs. */
function digest(disk: SimDisk, dir = '/'): string {
  const out: string[] = []
  const stack = [dir]
  while (stack.length > 0) {
    const d = stack.pop()!
    for (const name of disk.readdirSync(d)) {
      const path = d === '/' ? `/${name}` : `${d}/${name}`
      const fd = disk.openSync(path, 'r')
      const size = disk.fstatSync(fd).size
      disk.closeSync(fd)
      if (disk.fileState(path) === undefined) stack.push(path)
      else out.push(`${path}:${size}:${readFileSync(disk, path).toString('hex')}`)
    }
  }
  return out.sort().join('\n')
}

test('deterministic: the same seed gives the same disk, byte for byte, and the same counters', async () => {
  const run = async (seed: number): Promise<string> => {
    const { disk, runtime } = newDisk(seed, { fsyncLatencyMs: [0, 3], readLatencyMs: [0, 1] })
    const rng = new SeededRandom(seed)
    disk.mkdirSync('/x/y')
    const work: Promise<unknown>[] = []
    for (let i = 0; i < 200; i++) {
      const path = `/x/${i % 2 === 0 ? 'y/' : ''}f${rng.int(5)}`
      const op = rng.int(5)
      if (op === 0) work.push(writeFileAtomic(disk, path, Buffer.from(`v${i}`)).catch(() => {}))
      else if (op === 1) disk.rmSync(path)
      else if (op === 2) work.push(fsyncDir(disk, rng.chance(0.5) ? '/x' : '/x/y'))
      else {
        const fd = disk.openSync(path, disk.existsSync(path) ? 'r+' : 'w+')
        writeAllSync(disk, fd, [Buffer.alloc(1 + rng.int(50), i)], rng.int(100))
        if (op === 4) work.push(disk.fdatasync(fd).finally(() => disk.closeSync(fd)))
        else disk.closeSync(fd)
      }
      if (rng.chance(0.2)) await runtime.runUntil(runtime.nowMs() + rng.int(3))
    }
    disk.crash('power-loss')
    return `${digest(disk)}\n${JSON.stringify(disk.counters())}`
  }
  const outcomes = new Set<string>()
  for (const seed of [11, 12, 13]) {
    const a = await run(seed)
    assert.equal(await run(seed), a, `seed ${seed} replayed differently`)
    outcomes.add(a)
  }
  assert.equal(outcomes.size, 3, 'different seeds give different outcomes')
})
