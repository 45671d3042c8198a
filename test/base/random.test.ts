import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SeededRandom } from '../../src/base/index.ts'

test('SeededRandom replays the same stream for the same seed', () => {
  const a = new SeededRandom(42)
  const b = new SeededRandom(42)
  const c = new SeededRandom(43)
  const xs = Array.from({ length: 100 }, () => a.next())
  const ys = Array.from({ length: 100 }, () => b.next())
  const zs = Array.from({ length: 100 }, () => c.next())
  assert.deepEqual(xs, ys)
  assert.notDeepEqual(xs, zs)
})

test('SeededRandom.int stays in range and covers it', () => {
  const r = new SeededRandom(7)
  const seen = new Set<number>()
  for (let i = 0; i < 10_000; i++) {
    const v = r.int(10)
    assert.ok(v >= 0 && v < 10 && Number.isInteger(v))
    seen.add(v)
  }
  assert.equal(seen.size, 10)
})
