/**
 * Scenarios beyond 6.824 lab 2: membership changes (learners, promotion,
 * removal, removal of the leader itself) with and without faults,
 * leadership transfer, PreVote/CheckQuorum against disruption, and
 * ReadIndex never serving a stale read.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode } from '../../src/base/index.ts'
import { ConfChangeType, Role } from '../../src/raft/index.ts'
import { encodeCommand } from '../../src/sim/cluster.ts'
import {
  after,
  agreeAll,
  assertAckedEverywhere,
  awaitConfConverged,
  awaitLeader,
  changeConf,
  commitAt,
  confOf,
  electionTimeoutMs,
  electionTimeoutMsMax,
  ids,
  leaderNow,
  newCluster,
  raftElectionTimeoutMs,
  raftOf,
  terms,
  testRandom,
  tickMs,
} from './helpers.ts'

// ───────────────────────────── membership ─────────────────────────────

test('membership: add a learner, promote it, remove a voter, remove the leader', () => {
  const c = newCluster({ seed: 2501, nodes: 3, spares: 2 })
  c.one(1, 3, false)

  // A spare joins as a learner: it receives the log (and the membership) but does not vote.
  changeConf(c, { type: ConfChangeType.AddLearner, node: 4 })
  c.one(2, 4, true)
  assert.ok(awaitConfConverged(c, 2000), 'members disagree on the configuration')
  assert.deepEqual(confOf(c, 4), { voters: [1, 2, 3], learners: [4] })
  assert.equal(raftOf(c, 4).promotable(), false)

  // Promoted to voter.
  changeConf(c, { type: ConfChangeType.AddVoter, node: 4 })
  c.one(3, 4, true)
  assert.ok(awaitConfConverged(c, 2000))
  assert.deepEqual(confOf(c, 4), { voters: [1, 2, 3, 4], learners: [] })

  // A follower voter leaves; three voters keep committing.
  const leader = c.checkOneLeader()
  const victim = [1, 2, 3].find((id) => id !== leader)!
  changeConf(c, { type: ConfChangeType.Remove, node: victim })
  const i4 = c.one(4, 3, true)
  assert.equal(c.node(victim).app.cmdAt.get(i4), undefined, 'the removed node still receives the log')

  // The leader removes itself: it steps down, another voter leads.
  const leader2 = c.checkOneLeader()
  changeConf(c, { type: ConfChangeType.Remove, node: leader2 })
  const leader3 = c.checkOneLeader()
  assert.notEqual(leader3, leader2)
  assert.notEqual(raftOf(c, leader2).role, Role.Leader)
  assert.equal(raftOf(c, leader2).promotable(), false)
  c.one(5, 2, true)
  const members = c.members()
  assert.equal(members.length, 2)
  assert.ok(!members.includes(victim) && !members.includes(leader2))

  // Removed nodes stay quiet: no term changes over many election timeouts.
  const termsBefore = terms(c)
  c.run(raftElectionTimeoutMs)
  assert.deepEqual(terms(c), termsBefore, 'a removed node disturbed the group')

  // Back to three voters with the second spare.
  changeConf(c, { type: ConfChangeType.AddLearner, node: 5 })
  changeConf(c, { type: ConfChangeType.AddVoter, node: 5 })
  c.one(6, 3, true)
  assert.ok(awaitConfConverged(c, 2000))
  assertAckedEverywhere(c, c.members())
})

test('membership under faults: unreliable network, crashes, snapshots', () => {
  const c = newCluster({ seed: 2502, nodes: 3, spares: 2, snapshotEvery: 10, reliable: false })
  const rnd = testRandom(2502)
  let next = 1
  const burst = (expected: number): void => {
    const cmds = Array.from({ length: 5 }, () => next++)
    agreeAll(c, cmds, expected)
  }
  const crashSomeone = (): number => {
    const l = leaderNow(c)
    const live = c.members().filter((id) => c.node(id).alive && id !== l)
    const id = live[rnd.int(live.length)]!
    c.crash(id)
    return id
  }
  burst(3)
  changeConf(c, { type: ConfChangeType.AddLearner, node: 4 })
  burst(3)

  // A follower crashes while the learner is promoted.
  const down1 = crashSomeone()
  changeConf(c, { type: ConfChangeType.AddVoter, node: 4 })
  burst(3)
  c.restart(down1)
  burst(3)

  // Remove a follower voter while another member is down.
  const down2 = crashSomeone()
  const leader = leaderNow(c)
  const victim = c.members().find((id) => id !== leader && id !== down2 && raftOf(c, leader).voters.has(id))!
  changeConf(c, { type: ConfChangeType.Remove, node: victim })
  c.restart(down2)
  burst(3)

  // The leader removes itself over the lossy network.
  const leader2 = leaderNow(c)
  changeConf(c, { type: ConfChangeType.Remove, node: leader2 })
  burst(2)

  // The second spare joins and is promoted (two voters: no crash may happen meanwhile).
  changeConf(c, { type: ConfChangeType.AddLearner, node: 5 })
  burst(2)
  changeConf(c, { type: ConfChangeType.AddVoter, node: 5 })
  // Three voters again: the leader may crash and the other two go on.
  const leader3 = leaderNow(c)
  c.crash(leader3)
  burst(2)
  c.restart(leader3)
  burst(3)

  // Heal and check: three voters agree, every acknowledged write everywhere.
  c.reliable = true
  const members = c.members()
  assert.equal(members.length, 3, `members ${members.join(',')}`)
  assert.ok(!members.includes(victim) && !members.includes(leader2))
  c.one(next++, members.length, true)
  assert.ok(awaitConfConverged(c, 5000), 'members disagree on the configuration')
  assertAckedEverywhere(c, members)
})

// ───────────────────────── leadership transfer ─────────────────────────

test('leadership transfer to a caught-up follower', () => {
  const n = 3
  const c = newCluster({ seed: 2503, nodes: n })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const term0 = raftOf(c, leader).term
  const target = after(leader, 1, n)
  const t0 = c.nowMs
  assert.ok(c.transferLeader(leader, target))
  // No waiting for an election timeout: TimeoutNow starts the election at once.
  assert.ok(c.runUntil(() => raftOf(c, target).role === Role.Leader, electionTimeoutMs), 'target did not take over')
  assert.ok(c.nowMs - t0 < electionTimeoutMs)
  assert.equal(raftOf(c, target).term, term0 + 1)
  assert.equal(raftOf(c, leader).role, Role.Follower)
  assert.equal(c.checkOneLeader(), target)
  const index = c.one(2, n, false)
  assert.deepEqual(c.nCommitted(index), { count: n, cmd: 2 })
})

test('leadership transfer to a lagging follower; proposals refused while transferring', () => {
  const n = 5
  const c = newCluster({ seed: 2504, nodes: n })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const target = after(leader, 2, n)
  c.disconnect(target)
  let last = 0
  for (let cmd = 2; cmd < 30; cmd++) last = c.one(cmd, n - 1, false)
  c.connect(target)
  assert.ok(raftOf(c, target).log.lastIndex() < last, 'the target is not behind')
  const term0 = raftOf(c, leader).term

  assert.ok(c.transferLeader(leader, target))
  assert.equal(raftOf(c, leader).leadTransferee, target)
  const refused = (): void => {
    const r = c.start(leader, 999)
    assert.equal(r.index, 0, 'a proposal was accepted during a leadership transfer')
    const direct = raftOf(c, leader).propose([encodeCommand(998, 0)])
    assert.ok(!direct.ok && direct.code === ErrorCode.PROPOSAL_DROPPED)
    const cc = raftOf(c, leader).proposeConfChange({ type: ConfChangeType.Remove, node: target })
    assert.ok(!cc.ok)
  }
  refused()
  const tookOver = c.runUntil(() => {
    const lr = raftOf(c, leader)
    if (lr.role === Role.Leader && lr.leadTransferee === target) {
      refused()
    }
    return raftOf(c, target).role === Role.Leader
  }, electionTimeoutMs)
  assert.ok(tookOver, 'the lagging target did not take over within an election timeout')
  assert.equal(raftOf(c, target).term, term0 + 1)
  assert.ok(raftOf(c, target).log.lastIndex() > last, 'the new leader lacks the entries it lagged on')
  c.one(1000, n, true)
  assert.equal(c.nCommitted(last).cmd, 29)
  assertAckedEverywhere(c, ids(c))
})

test('leadership transfer to an unreachable node is abandoned after an election timeout', () => {
  const n = 5
  const c = newCluster({ seed: 2505, nodes: n })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const term0 = raftOf(c, leader).term
  const target = after(leader, 1, n)
  c.disconnect(target)
  c.one(2, n - 1, false)
  assert.ok(c.transferLeader(leader, target))
  assert.equal(c.start(leader, 3).index, 0, 'proposal accepted during the transfer')
  // The transfer gives up within an election timeout; the leader keeps leading and takes proposals again.
  c.run(electionTimeoutMs + 2 * tickMs)
  assert.equal(raftOf(c, leader).role, Role.Leader)
  assert.equal(raftOf(c, leader).leadTransferee, 0)
  assert.equal(raftOf(c, leader).term, term0)
  c.one(4, n - 1, false)
  // Transfers to a non-member are refused outright.
  assert.equal(c.transferLeader(leader, 99), false)
})

// ─────────────────────── PreVote and CheckQuorum ───────────────────────

test('prevote: a node partitioned away and back does not depose a healthy leader', () => {
  const n = 5
  const c = newCluster({ seed: 2506, nodes: n })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const term0 = c.checkTerms()
  const loner = after(leader, 1, n)
  c.disconnect(loner)
  c.run(2 * raftElectionTimeoutMs)
  // PreVote: the loner keeps failing its pre-vote and never raises its term.
  assert.equal(raftOf(c, loner).term, term0, 'the isolated node raised its term')
  assert.notEqual(raftOf(c, loner).role, Role.Candidate)
  c.one(2, n - 1, false)
  c.connect(loner)
  c.run(2 * raftElectionTimeoutMs)
  assert.equal(c.checkOneLeader(), leader, 'the rejoining node deposed the leader')
  assert.equal(c.checkTerms(), term0, 'the term changed after the node rejoined')
  c.one(3, n, false)
})

test('prevote control: without PreVote a rejoining node does depose the leader', () => {
  // The same schedule with PreVote off: the isolated node's term runs ahead
  // and its return forces an election. This is what the test above rules out.
  const n = 5
  const c = newCluster({ seed: 2506, nodes: n, preVote: false })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const term0 = c.checkTerms()
  const loner = after(leader, 1, n)
  c.disconnect(loner)
  c.run(2 * raftElectionTimeoutMs)
  assert.ok(raftOf(c, loner).term > term0)
  c.connect(loner)
  c.run(2 * raftElectionTimeoutMs)
  c.checkOneLeader()
  assert.ok(c.checkTerms() > term0)
})

test('prevote: a node cut off from the leader only does not depose it', () => {
  const n = 5
  const c = newCluster({ seed: 2507, nodes: n })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const term0 = c.checkTerms()
  const cut = after(leader, 2, n)
  // A partial partition: `cut` still talks to the other followers.
  c.block(leader, cut)
  c.block(cut, leader)
  c.run(2 * raftElectionTimeoutMs)
  for (const [id, t] of terms(c)) assert.equal(t, term0, `node ${id} moved to term ${t}`)
  assert.equal(raftOf(c, leader).role, Role.Leader)
  c.heal()
  c.run(raftElectionTimeoutMs)
  assert.equal(c.checkOneLeader(), leader)
  assert.equal(c.checkTerms(), term0)
  c.one(2, n, false)
})

test('checkquorum: a leader that loses its quorum steps down within two election timeouts', () => {
  const n = 5
  const c = newCluster({ seed: 2508, nodes: n })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  const minority = [leader, after(leader, 1, n)]
  const majority = ids(c).filter((id) => !minority.includes(id))
  c.partition([minority, majority])
  const t0 = c.nowMs
  const bound = 2 * electionTimeoutMs + tickMs
  assert.ok(
    c.runUntil(() => raftOf(c, leader).role !== Role.Leader, bound),
    `the cut-off leader still leads after ${c.nowMs - t0} ms`,
  )
  assert.ok(c.nowMs - t0 <= bound)
  // The majority elects a leader of its own and commits.
  const leader2 = awaitLeader(c, majority, 10 * electionTimeoutMsMax)
  assert.ok(leader2 !== 0, 'the majority elected no leader')
  commitAt(c, leader2, 2, 3)
  c.heal()
  c.one(3, n, true)
})

test('checkquorum control: without CheckQuorum the cut-off leader keeps leading', () => {
  const n = 5
  const c = newCluster({ seed: 2508, nodes: n, checkQuorum: false })
  c.one(1, n, false)
  const leader = c.checkOneLeader()
  c.partition([[leader, after(leader, 1, n)], ids(c).filter((id) => id !== leader && id !== after(leader, 1, n))])
  c.run(raftElectionTimeoutMs)
  assert.equal(raftOf(c, leader).role, Role.Leader)
})

// ─────────────────────────────── ReadIndex ──────────────────────────────

test('readindex: an old leader cut off with a minority never serves a stale read', () => {
  const n = 5
  // Without CheckQuorum the old leader keeps believing it leads: the hardest case for reads.
  const c = newCluster({ seed: 2509, nodes: n, checkQuorum: false })
  c.one(1, n, false)
  const old = c.checkOneLeader()
  const term0 = raftOf(c, old).term
  const buddy = after(old, 1, n)
  const majority = ids(c).filter((id) => id !== old && id !== buddy)
  c.partition([[old, buddy], majority])

  // The majority elects a new leader and commits writes.
  const fresh = awaitLeader(c, majority, 10 * electionTimeoutMsMax)
  assert.ok(fresh !== 0)
  assert.ok(raftOf(c, fresh).term > term0)
  let lastWrite = 0
  for (let cmd = 10; cmd < 15; cmd++) lastWrite = commitAt(c, fresh, cmd, 3)
  assert.ok(c.maxAckedIndex >= lastWrite)
  assert.equal(raftOf(c, old).role, Role.Leader, 'the old leader stepped down (nothing to test)')
  assert.ok(c.node(old).app.applied < lastWrite)

  // Reads at the old leader and at its follower: they must not complete.
  const atOld = c.read(old)
  const atBuddy = c.read(buddy)
  assert.ok(atOld !== null && atBuddy !== null, 'the old side refused the read outright')
  for (const r of [atOld, atBuddy]) {
    assert.equal(r.mustSeeIndex, c.maxAckedIndex)
    assert.equal(r.issuedAtMs, c.nowMs)
    assert.equal(r.done, false)
  }
  c.run(raftElectionTimeoutMs)
  for (const r of [atOld, atBuddy]) {
    assert.equal(r.done, false, `a read on the old side completed with state at ${r.result} (must see ${r.mustSeeIndex})`)
    assert.equal(r.readIndex, 0, 'the old leader got a read index without a quorum')
  }

  // Reads at the new leader and at a follower of it complete and see the writes.
  const atFresh = c.read(fresh)
  const atFollower = c.read(majority.find((id) => id !== fresh)!)
  assert.ok(atFresh !== null && atFollower !== null)
  assert.ok(c.runUntil(() => atFresh.done && atFollower.done, 2000), 'reads on the majority side did not complete')
  for (const r of [atFresh, atFollower]) {
    assert.ok(r.readIndex >= lastWrite, `read index ${r.readIndex} misses the write at ${lastWrite}`)
    assert.ok(r.result >= r.readIndex && r.result >= r.mustSeeIndex)
  }

  // Heal: the old leader learns the new term; its pending reads never complete stale.
  c.heal()
  c.run(raftElectionTimeoutMs)
  assert.notEqual(raftOf(c, old).role, Role.Leader)
  for (const r of [atOld, atBuddy]) assert.ok(!r.done || r.result >= r.mustSeeIndex)
  c.one(100, n, true)
})

test('readindex: a read issued at a leader just before it is cut off never returns stale data', () => {
  const n = 3
  const c = newCluster({ seed: 2510, nodes: n })
  c.one(1, n, false)
  const old = c.checkOneLeader()
  const rest = ids(c).filter((id) => id !== old)
  // Cut off before the read's heartbeat round can be answered.
  c.disconnect(old)
  const r = c.read(old)
  assert.ok(r !== null)
  const fresh = awaitLeader(c, rest, 10 * electionTimeoutMsMax)
  assert.ok(fresh !== 0)
  const w = commitAt(c, fresh, 2, 2)
  c.run(raftElectionTimeoutMs)
  assert.equal(r.done, false, 'a read completed without a quorum')
  c.connect(old)
  c.run(raftElectionTimeoutMs)
  assert.ok(!r.done || r.result >= r.mustSeeIndex)
  // A read at the old leader, now a follower, goes through the new leader and sees the write.
  const r2 = c.read(old)
  assert.ok(r2 !== null)
  assert.ok(c.runUntil(() => r2.done, 2000))
  assert.ok(r2.result >= w && r2.readIndex >= w)
})
