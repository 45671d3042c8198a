/**
 * The frame reader: frames cut at every byte boundary, many frames in one
 * chunk, empty payloads, and the length bound.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, isRillError } from '../../src/base/index.ts'
import { FrameReader, encodeFrame } from '../../src/transport/frame.ts'
import { createPackr } from '../../src/transport/raft-codec.ts'

test('frames split at every byte and packed together come out whole and in order', () => {
  const packr = createPackr()
  const values = [[1, 'a'], [2, new Uint8Array(3000).fill(7)], [3], [4, 'x'.repeat(70_000)]]
  const stream = Buffer.concat(values.map((v) => encodeFrame(packr, v)))
  for (const step of [1, 2, 3, 5, 4096, stream.byteLength]) {
    const reader = new FrameReader(1 << 20)
    const got: unknown[] = []
    for (let at = 0; at < stream.byteLength; at += step) {
      const error = reader.push(stream.subarray(at, at + step), (p) => { got.push(packr.unpack(p)); return true })
      assert.equal(error, null)
    }
    assert.deepEqual(got.map((v) => JSON.stringify(v)), values.map((v) => JSON.stringify(packr.unpack(packr.pack(v)))), `step ${step}`)
    assert.equal(reader.buffered, 0)
  }
})

test('an empty payload is a frame; a length above the bound is TOO_LARGE', () => {
  const reader = new FrameReader(16)
  const got: Buffer[] = []
  assert.equal(reader.push(Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 9]), (p) => { got.push(p); return true }), null)
  assert.deepEqual(got.map((p) => [...p]), [[], [9]])
  const error = reader.push(Buffer.from([0, 0, 0, 17]), () => true)
  assert.ok(isRillError(error, ErrorCode.TOO_LARGE), 'oversize reported')
})
