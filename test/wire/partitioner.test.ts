// Kafka-compatible partitioning: murmur2 against Kafka's UtilsTest vectors
// (and vectors other Kafka clients pin), and the keyless helpers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SeededRandom } from '../../src/base/index.ts'
import { RoundRobinPartitioner, StickyPartitioner, murmur2, partitionForKey, toPositive } from '../../src/wire/index.ts'
import { expectRillError, utf8 } from './helpers.ts'

test('murmur2 matches Kafka Utils.murmur2 byte for byte', () => {
  const vectors: [string, number][] = [
    // org.apache.kafka.common.utils.UtilsTest.testMurmur2
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
    // Pinned by other Kafka clients: the empty key and each remainder length.
    ['', 275646681],
    ['string-f-24-chars-length', 124730809],
    ['string-fo-25-chars-length', 1269511650],
    ['string-foo-26-chars-length', 119165628],
    ['string-last-27-chars-length', 1089971754],
  ]
  for (const [input, expected] of vectors) assert.equal(murmur2(utf8(input)), expected, input)
})

test('partitionForKey is toPositive(murmur2(key)) % partitions, as Kafka', () => {
  assert.equal(toPositive(-790332482), 1357151166)
  assert.equal(toPositive(-(2 ** 31)), 0)
  assert.equal(partitionForKey(utf8('foobar'), 50), 1357151166 % 50)
  assert.equal(partitionForKey(utf8('abc'), 7), 479470107 % 7)
  for (let i = 0; i < 1000; i++) {
    const p = partitionForKey(utf8(`key-${i}`), 12)
    assert.ok(p >= 0 && p < 12)
  }
  expectRillError(() => partitionForKey(utf8('a'), 0))
  expectRillError(() => partitionForKey(utf8('a'), 1.5))
})

test('RoundRobinPartitioner cycles through every partition from a random start', () => {
  const rr = new RoundRobinPartitioner({ random: new SeededRandom(1) })
  const seen = Array.from({ length: 8 }, () => rr.next(4))
  assert.deepEqual(seen.slice(4), seen.slice(0, 4))
  assert.deepEqual([...seen.slice(0, 4)].sort(), [0, 1, 2, 3])
  expectRillError(() => rr.next(0))
})

test('StickyPartitioner stays on one partition for stickyBytes, then moves on', () => {
  const sticky = new StickyPartitioner({ stickyBytes: 1000, random: new SeededRandom(2) })
  const first = sticky.next(3, 400)
  assert.equal(sticky.next(3, 400), first)
  assert.equal(sticky.next(3, 400), first, 'the record that crosses the bound still goes to the batch')
  const second = sticky.next(3, 400)
  assert.equal(second, (first + 1) % 3)
  expectRillError(() => new StickyPartitioner({ stickyBytes: 0 }))
})
