/**
 * Producer ids never repeat: not between callers that ask at once (two
 * reservations running together used to read the same counter and write the
 * same block, handing one id to two producers), and not across a restart
 * (the block is reserved in a file, replaced atomically and durably).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { nodeIo, type LogIo } from '../../src/log/index.ts'
import { ProducerIds, producerIdBlock } from '../../src/broker/producer-ids.ts'

function tempDir(): string {
  return fs.mkdtempSync(join(os.tmpdir(), 'rill-producer-ids-'))
}

test('callers asking at once across several block boundaries all get different ids', async () => {
  const dir = tempDir()
  try {
    const ids = new ProducerIds({ brokerId: 3, path: join(dir, 'producer-ids'), io: nodeIo })
    const got = await Promise.all(Array.from({ length: producerIdBlock * 3 + 7 }, () => ids.next()))
    assert.equal(new Set(got).size, got.length, 'no id twice')
    for (const id of got) assert.equal(Math.floor(id / 2 ** 32), 3, 'the broker id is in the high bits')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('a restarted broker starts after every id the last process could have handed out', async () => {
  const dir = tempDir()
  try {
    const path = join(dir, 'producer-ids')
    const first = new ProducerIds({ brokerId: 1, path, io: nodeIo })
    const before = await Promise.all(Array.from({ length: 10 }, () => first.next()))
    const second = new ProducerIds({ brokerId: 1, path, io: nodeIo })
    const after = await second.next()
    assert.ok(after > Math.max(...before), `${after} after ${Math.max(...before)}`)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('one reservation at a time: concurrent callers share it (the file is written once per block)', async () => {
  const dir = tempDir()
  try {
    let writes = 0
    const io: LogIo = { ...nodeIo, renameSync: (from, to) => (writes++, nodeIo.renameSync(from, to)) }
    const ids = new ProducerIds({ brokerId: 2, path: join(dir, 'producer-ids'), io })
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
    const ids = new ProducerIds({ brokerId: 1, path, io: nodeIo })
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
    const ids = new ProducerIds({ brokerId: 2, path, io: failing })
    await assert.rejects(ids.next(), { code: 'STORAGE_UNUSABLE' })
    fail = 'ENOSPC'
    await assert.rejects(ids.next(), { code: 'STORAGE_FULL' })
    fail = null
    assert.equal(await ids.next(), 2 * 2 ** 32 + 5000, 'nothing was handed out while the disk failed')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
