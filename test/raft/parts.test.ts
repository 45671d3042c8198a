/**
 * The core's small parts: quorum arithmetic, the in-flight window, the log's
 * conflict search and the unstable/stable split.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { committedIndex, voteResult, VoteResult } from '../../src/raft/quorum.ts'
import { Inflights } from '../../src/raft/progress.ts'
import { RaftLog } from '../../src/raft/log.ts'
import type { Entry } from '../../src/raft/index.ts'
import { EntryType, MemoryStorage } from '../../src/raft/index.ts'

const entry = (index: number, term: number): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array(4) })

test('committedIndex is the value a majority has reached', () => {
  const voters = new Set([1, 2, 3, 4, 5])
  const match = new Map([[1, 10], [2, 7], [3, 9], [4, 2], [5, 0]])
  assert.equal(committedIndex(voters, (id) => match.get(id)!), 7)
  assert.equal(committedIndex(new Set([1]), () => 4), 4)
  assert.equal(committedIndex(new Set([1, 2]), (id) => (id === 1 ? 5 : 3)), 3)
})

test('voteResult: won at a majority, lost once a majority is out of reach', () => {
  const voters = new Set([1, 2, 3, 4])
  assert.equal(voteResult(voters, new Map([[1, true], [2, true]])), VoteResult.Pending)
  assert.equal(voteResult(voters, new Map([[1, true], [2, true], [3, true]])), VoteResult.Won)
  assert.equal(voteResult(voters, new Map([[1, true], [2, false], [3, false]])), VoteResult.Lost)
})

test('Inflights bounds count and bytes and frees in order', () => {
  const f = new Inflights(3, 100)
  f.add(5, 10)
  f.add(8, 10)
  assert.equal(f.full(), false)
  f.add(9, 10)
  assert.equal(f.full(), true)
  f.freeLE(8)
  assert.equal(f.count, 1)
  assert.equal(f.bytes, 10)
  f.add(12, 95)
  assert.equal(f.full(), true, 'byte bound')
  f.freeFirstOne()
  assert.equal(f.count, 1)
  f.freeLE(100)
  assert.equal(f.count, 0)
  assert.equal(f.bytes, 0)
})

test('findConflictByTerm skips whole terms above the hint', () => {
  const s = MemoryStorage.bootstrap({ voters: [1], learners: [] })
  // index: 2..4 term 2, 5..7 term 4, 8..9 term 5
  s.append([entry(2, 2), entry(3, 2), entry(4, 2), entry(5, 4), entry(6, 4), entry(7, 4), entry(8, 5), entry(9, 5)])
  const log = new RaftLog(s, () => 'test')
  assert.deepEqual(log.findConflictByTerm(9, 3), [4, 2])
  assert.deepEqual(log.findConflictByTerm(9, 4), [7, 4])
  assert.deepEqual(log.findConflictByTerm(6, 5), [6, 4])
  assert.deepEqual(log.findConflictByTerm(20, 1), [1, 1])
})

test('unstable entries become stable only if not overwritten meanwhile', () => {
  const s = MemoryStorage.bootstrap({ voters: [1], learners: [] })
  const log = new RaftLog(s, () => 'test')
  log.append([entry(2, 1), entry(3, 1)])
  log.unstable.acceptInProgress()
  log.append([entry(3, 2)]) // overwrite index 3 while its write is under way
  assert.equal(log.unstable.nextEntries().length, 1, 'the new entry 3 must be written again')
  log.unstable.stableTo(3, 1) // the old write of (3, term 1) completes
  assert.equal(log.term(3), 2, 'a stale acknowledgement does not drop the newer entry')
  assert.equal(log.unstable.offset, 2)
  log.unstable.stableTo(2, 1)
  assert.equal(log.unstable.offset, 3)
})

test('maybeAppend refuses to truncate a committed entry', () => {
  const s = MemoryStorage.bootstrap({ voters: [1], learners: [] })
  s.append([entry(2, 1), entry(3, 1)])
  const log = new RaftLog(s, () => 'test')
  log.commitTo(3)
  assert.throws(() => log.maybeAppend(1, 1, 3, [entry(2, 1), entry(3, 2)]), /conflicts with committed entry/)
  assert.equal(log.maybeAppend(1, 1, 3, [entry(2, 1)]), 2)
  assert.equal(log.maybeAppend(3, 7, 3, []), -1, 'mismatching previous term')
})
