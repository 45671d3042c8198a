/**
 * Producer ids never repeat: not between callers that ask at once (two
 * reservations running together used to read the same counter and write the
 * same block, handing one id to two producers), not across a restart (the
 * block is reserved in a file, replaced atomically and durably), not
 * between brokers. And they cannot be guessed (issue 10, hole 3): they were
 * brokerId · 2^32 + n in the clear; now they are a permutation of that
 * keyed with the cluster secret.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { nodeIo, type LogIo } from '../../src/log/index.ts'
import { ProducerIds, permuteProducerId, producerIdBlock, producerIdKey } from '../../src/broker/producer-ids.ts'

const key = producerIdKey(new Uint8Array(32).fill(9))

function tempDir(): string {
  return fs.mkdtempSync(join(os.tmpdir(), 'rill-producer-ids-'))
}

test('callers asking at once across several block boundaries all get different ids', async () => {
  const dir = tempDir()
  try {
    const ids = new ProducerIds({ brokerId: 3, path: join(dir, 'producer-ids'), io: nodeIo, key })
    const got = await Promise.all(Array.from({ length: producerIdBlock * 3 + 7 }, () => ids.next()))
    assert.equal(new Set(got).size, got.length, 'no id twice')
    for (const id of got) assert.ok(Number.isSafeInteger(id) && id >= 0, `${id} is in [0, 2^53)`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a restarted broker starts after every id the last process could have handed out', async () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'producer-ids')
    const first = new ProducerIds({ brokerId: 1, path, io: nodeIo, key })
    const before = await Promise.all(Array.from({ length: 10 }, () => first.next()))
    const second = new ProducerIds({ brokerId: 1, path, io: nodeIo, key })
    const after = await second.next()
    assert.ok(!before.includes(after), 'not an id the last process handed out')
    // It is the first of the next block: the counter went on past everything reserved.
    assert.equal(after, permuteProducerId(key, 1 * 2 ** 32 + producerIdBlock))
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('one reservation at a time: concurrent callers share it (the file is written once per block)', async () => {
  const dir = tempDir()
  try {
    let writes = 0
    const io: LogIo = { ...nodeIo, renameSync: (from, to) => (writes++, nodeIo.renameSync(from, to)) }
    const ids = new ProducerIds({ brokerId: 2, path: join(dir, 'producer-ids'), io, key })
    await Promise.all(Array.from({ length: producerIdBlock }, () => ids.next()))
    assert.equal(writes, 1, 'a thousand callers at once, one block reserved')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a counter file that is not a number is refused with STORAGE_CORRUPT, and nothing is handed out', async () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'producer-ids')
    fs.writeFileSync(path, 'garbage\n')
    const ids = new ProducerIds({ brokerId: 1, path, io: nodeIo, key })
    await assert.rejects(ids.next(), (e: { code?: string }) => e.code === 'STORAGE_CORRUPT')
    assert.equal(fs.readFileSync(path, 'utf8'), 'garbage\n', 'the file is left as it was')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a disk that fails or is full is a coded storage error, not a raw errno, and the next call retries', async () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'producer-ids')
    let fail: string | null = 'EIO'
    const failing: LogIo = {
      ...nodeIo,
      read: async (fd, buffer, offset, length, position) => {
        if (fail === 'EIO') throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })
        return nodeIo.read(fd, buffer, offset, length, position)
      },
      fsync: async (fd) => {
        if (fail === 'ENOSPC') throw Object.assign(new Error('ENOSPC: no space left on device, fsync'), { code: 'ENOSPC' })
        return nodeIo.fsync(fd)
      },
    }
    fs.writeFileSync(path, '5000\n')
    const ids = new ProducerIds({ brokerId: 2, path, io: failing, key })
    await assert.rejects(ids.next(), { code: 'STORAGE_UNUSABLE' })
    fail = 'ENOSPC'
    await assert.rejects(ids.next(), { code: 'STORAGE_FULL' })
    fail = null
    assert.equal(await ids.next(), permuteProducerId(key, 2 * 2 ** 32 + 5000), 'nothing was handed out while the disk failed')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('ids of different brokers never meet, and none is brokerId · 2^32 + n or next to the one before (issue 10, hole 3)', async () => {
  const dir = tempDir()
  try {
    const all = new Set<number>()
    for (const brokerId of [1, 2, 3, 0x1f_ffff]) {
      const ids = new ProducerIds({ brokerId, path: join(dir, `producer-ids-${brokerId}`), io: nodeIo, key })
      const got: number[] = []
      for (let i = 0; i < producerIdBlock + 10; i++) got.push(await ids.next())
      for (const [i, id] of got.entries()) {
        assert.ok(Number.isSafeInteger(id) && id >= 0, `${id} is in [0, 2^53)`)
        assert.notEqual(id, brokerId * 2 ** 32 + i, 'not the counter in the clear')
        if (i > 0) assert.ok(Math.abs(id - got[i - 1]!) > 1_000_000, `ids ${got[i - 1]} then ${id}: the next one cannot be guessed from the last`)
        all.add(id)
      }
    }
    assert.equal(all.size, 4 * (producerIdBlock + 10), 'no id handed out by two brokers')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('the permutation depends on the secret, and is one to one on the values brokers use', () => {
  const other = producerIdKey(new Uint8Array(32).fill(10))
  const inputs = [0, 1, 2, 2 ** 32, 2 ** 32 + 1, 7 * 2 ** 32 + 12_345, 0x1f_ffff * 2 ** 32 + 2 ** 32 - 1]
  const out = inputs.map((u) => permuteProducerId(key, u))
  assert.equal(new Set(out).size, inputs.length)
  for (const id of out) assert.ok(Number.isSafeInteger(id) && id >= 0)
  assert.notDeepEqual(inputs.map((u) => permuteProducerId(other, u)), out, 'another secret, other ids')
  assert.deepEqual(inputs.map((u) => permuteProducerId(key, u)), out, 'the same secret, the same ids (every broker agrees)')
})
