/**
 * Leader election scenarios, after the 6.824 (2021) lab 2A tests
 * (TestInitialElection2A, TestReElection2A, TestManyElections2A), on the
 * seeded simulator: every test replays the same way on every run.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Role } from '../../src/raft/index.ts'
import { after, electionTimeoutMsMax, newCluster, raftElectionTimeoutMs, raftOf, testRandom } from './helpers.ts'

test('initial election (TestInitialElection2A)', () => {
  const c = newCluster({ seed: 2101, nodes: 3 })
  const bootTerm = raftOf(c, 1).term
  const leader = c.checkOneLeader()

  // Everyone agrees on a term past the one they booted in.
  c.run(50)
  const term1 = c.checkTerms()
  assert.ok(term1 > bootTerm, `term ${term1} did not move past the boot term ${bootTerm}`)

  // Without faults the term stays put and so does the leader.
  c.run(2 * raftElectionTimeoutMs)
  const term2 = c.checkTerms()
  assert.equal(term2, term1, 'term changed without any failure')
  assert.equal(c.checkOneLeader(), leader)
  for (const id of [1, 2, 3]) {
    const r = raftOf(c, id)
    assert.equal(r.lead, leader, `node ${id} follows ${r.lead}`)
    if (id !== leader) assert.equal(r.role, Role.Follower)
  }
})

test('re-election (TestReElection2A)', () => {
  const n = 3
  const c = newCluster({ seed: 2102, nodes: n })
  const leader1 = c.checkOneLeader()

  // The leader goes away: a new one must be elected.
  c.disconnect(leader1)
  const leader2 = c.checkOneLeader()
  assert.notEqual(leader2, leader1)

  // The old leader rejoins: that must not disturb the new leader.
  c.connect(leader1)
  const leader3 = c.checkOneLeader()
  assert.equal(leader3, leader2, 'the rejoining old leader deposed the new one')
  assert.equal(raftOf(c, leader1).role, Role.Follower)

  // No quorum: no leader.
  c.disconnect(leader3)
  c.disconnect(after(leader3, 1, n))
  c.run(2 * raftElectionTimeoutMs)
  c.checkNoLeader()

  // A quorum again: a leader.
  c.connect(after(leader3, 1, n))
  c.checkOneLeader()

  // The last node rejoins: still one leader.
  c.connect(leader3)
  c.checkOneLeader()
  c.checkTerms()
})

test('many elections (TestManyElections2A)', () => {
  const n = 7
  const c = newCluster({ seed: 2103, nodes: n })
  const rnd = testRandom(2103)
  c.checkOneLeader()

  const iters = 10
  for (let i = 0; i < iters; i++) {
    // Cut off three random nodes (maybe fewer if they repeat): four or more remain, a majority.
    const i1 = 1 + rnd.int(n)
    const i2 = 1 + rnd.int(n)
    const i3 = 1 + rnd.int(n)
    c.disconnect(i1)
    c.disconnect(i2)
    c.disconnect(i3)
    // Either the current leader is still alive, or the remaining four elect one.
    const leader = c.checkOneLeader()
    assert.ok(![i1, i2, i3].includes(leader))
    c.connect(i1)
    c.connect(i2)
    c.connect(i3)
  }
  c.checkOneLeader()
  c.run(electionTimeoutMsMax)
  c.checkTerms()
})
