/**
 * Directed tests of the Raft core's contracts: what is sent before and after
 * persistence, the Figure 8 commit rule, membership rules, snapshots in
 * chunks, ReadIndex, leadership transfer and invariant assertions.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AssertionError, ErrorCode } from '../../src/base/index.ts'
import type { Entry } from '../../src/raft/index.ts'
import { ConfChangeType, EntryType, MemoryStorage, MessageType, Raft, Role, message } from '../../src/raft/index.ts'
import { SeededRandom } from '../../src/base/index.ts'
import { TestNet, data } from './harness.ts'

const entry = (index: number, term: number, s = `e${index}`): Entry => ({ index, term, type: EntryType.Normal, data: data(s) })

test('a candidate counts its own vote only once it is durable', () => {
  const net = new TestNet([1, 2, 3, 4, 5], { preVote: false })
  net.raft(1).campaign()
  net.take(1) // hard state (term 1, vote 1) handed out, not yet persisted
  net.deliver()
  for (const id of [2, 3, 4, 5]) {
    net.take(id)
    net.persist(id)
  }
  net.deliver() // four grants arrive: a majority without node 1's own vote
  assert.equal(net.raft(1).role, Role.Candidate, 'must not lead before its own vote is on disk')
  net.persist(1)
  assert.equal(net.raft(1).role, Role.Leader)
})

test('vote grants and append acknowledgements wait for persistence', () => {
  const net = new TestNet([1, 2, 3], { preVote: false })
  net.raft(1).campaign()
  net.take(1)
  net.persist(1)
  net.deliver()
  const [rd] = net.take(2)
  assert.ok(rd !== undefined)
  assert.equal(rd.messages.length, 0)
  assert.deepEqual(
    rd.messagesAfterPersist.map((m) => m.type),
    [MessageType.VoteResp],
  )
  assert.equal(rd.hardState?.vote, 1)
  net.stabilize()
  assert.equal(net.raft(1).role, Role.Leader)
  assert.ok(net.raft(1).propose([data('x')]).ok)
  net.take(1)
  net.deliver()
  const [rd2] = net.take(2)
  assert.ok(rd2 !== undefined && rd2.entries.length === 1)
  assert.ok(rd2.messagesAfterPersist.some((m) => m.type === MessageType.AppResp && !m.reject))
  assert.ok(!rd2.messages.some((m) => m.type === MessageType.AppResp))
})

test('the leader replicates before its own write and counts itself once durable', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  const leader = net.raft(1)
  const commit0 = leader.log.committed
  const r = leader.propose([data('a')])
  assert.ok(r.ok)
  const [rd] = net.take(1)
  assert.ok(rd !== undefined)
  assert.ok(rd.messages.some((m) => m.type === MessageType.App && m.entries.length === 1), 'appends go out before the leader persists')
  // Follower 2 persists and acknowledges; the leader has not persisted yet.
  net.deliver((m) => m.to === 2)
  net.take(2)
  net.persist(2)
  net.deliver((m) => m.to === 1)
  assert.equal(leader.log.committed, commit0, 'one follower alone is not a majority of three')
  net.persist(1)
  assert.equal(leader.log.committed, r.index, 'leader + one follower is')
})

test('Figure 8: a leader never commits an entry of an earlier term by counting replicas', () => {
  // Node 1 holds an uncommitted entry of term 2 at index 2 (from an earlier reign).
  const conf = { voters: [1, 2, 3], learners: [] }
  const s1 = MemoryStorage.bootstrap(conf)
  s1.append([entry(2, 2)])
  s1.setHardState({ term: 2, vote: 1, commit: 1 })
  const net = new TestNet([], { preVote: false })
  net.add(1, s1, { preVote: false })
  net.add(2, MemoryStorage.bootstrap(conf), { preVote: false })
  net.add(3, MemoryStorage.bootstrap(conf), { preVote: false })
  const leader = net.raft(1)
  leader.campaign()
  net.stabilize((m) => m.type !== MessageType.App) // win the election, hold back appends
  assert.equal(leader.role, Role.Leader)
  assert.equal(leader.term, 3)
  assert.equal(leader.log.lastIndex(), 3) // no-op of term 3 at index 3
  // Node 2 acknowledges index 2 (the old-term entry) only.
  leader.step(message({ type: MessageType.AppResp, from: 2, to: 1, term: 3, index: 2 }))
  assert.equal(leader.log.committed, 1, 'index 2 is on a majority but from term 2: not committed by counting')
  leader.step(message({ type: MessageType.AppResp, from: 2, to: 1, term: 3, index: 3 }))
  assert.equal(leader.log.committed, 3, 'committing the term-3 no-op commits index 2 with it')
})

test('fast backtracking finds a divergent follower in one round trip per term', () => {
  const conf = { voters: [1, 2, 3], learners: [] }
  const s1 = MemoryStorage.bootstrap(conf)
  const s2 = MemoryStorage.bootstrap(conf)
  // Leader-to-be: 100 entries of term 3. Follower: 100 different entries of term 2.
  const mine: Entry[] = []
  const theirs: Entry[] = []
  for (let i = 2; i < 102; i++) {
    mine.push(entry(i, 3, `m${i}`))
    theirs.push(entry(i, 2, `t${i}`))
  }
  s1.append(mine)
  s1.setHardState({ term: 3, vote: 0, commit: 1 })
  s2.append(theirs)
  s2.setHardState({ term: 2, vote: 0, commit: 1 })
  const net = new TestNet([])
  net.add(1, s1)
  net.add(2, s2)
  net.add(3, MemoryStorage.bootstrap(conf))
  let rejections = 0
  net.raft(1).campaign()
  net.stabilize((m) => {
    if (m.type === MessageType.AppResp && m.reject) rejections++
    return true
  })
  assert.equal(net.raft(1).role, Role.Leader)
  assert.equal(net.raft(2).log.lastIndex(), net.raft(1).log.lastIndex())
  assert.ok(rejections <= 2, `${rejections} rejections; one-by-one backtracking would take about 100`)
  assert.equal(net.raft(2).log.term(50), 3)
})

test('one membership change at a time, never removing the last voter', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  const leader = net.raft(1)
  const first = leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: 4 })
  assert.ok(first.ok)
  const second = leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: 5 })
  assert.equal(second.ok, false)
  assert.equal(!second.ok && second.code, ErrorCode.CONF_CHANGE_REFUSED)
  net.stabilize()
  assert.deepEqual(leader.confState(), { voters: [1, 2, 3], learners: [4] })
  const demoteSelf = leader.proposeConfChange({ type: ConfChangeType.AddLearner, node: 1 })
  assert.equal(demoteSelf.ok, false)
  const unknown = leader.proposeConfChange({ type: ConfChangeType.Remove, node: 9 })
  assert.equal(unknown.ok, false)
  const follower = net.raft(2).proposeConfChange({ type: ConfChangeType.Remove, node: 3 })
  assert.equal(!follower.ok && follower.code, ErrorCode.NOT_LEADER)

  const solo = new TestNet([1])
  solo.elect(1)
  const last = solo.raft(1).proposeConfChange({ type: ConfChangeType.Remove, node: 1 })
  assert.equal(!last.ok && last.code, ErrorCode.CONF_CHANGE_REFUSED)
})

test('a removed leader hands over with TimeoutNow and steps down', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  assert.ok(net.raft(1).proposeConfChange({ type: ConfChangeType.Remove, node: 1 }).ok)
  net.stabilize()
  assert.notEqual(net.raft(1).role, Role.Leader)
  const leaders = [2, 3].filter((id) => net.raft(id).role === Role.Leader)
  assert.equal(leaders.length, 1, 'the most caught-up voter took over at once')
  assert.deepEqual(net.raft(leaders[0]!).confState().voters, [2, 3])
})

test('snapshots travel in bounded chunks and a lost chunk is resent', () => {
  const conf = { voters: [1, 2, 3], learners: [] }
  const net = new TestNet([1, 2, 3], { snapshotChunkBytes: 1000, snapshotChunksInflightMax: 2 })
  net.elect(1)
  for (let i = 0; i < 20; i++) net.raft(1).propose([data(`v${i}`)])
  net.stabilize((m) => m.to !== 3 || m.type === MessageType.Heartbeat)
  // Node 1 compacts its log behind a 10 kB snapshot; node 3 is far behind.
  const s1 = net.node(1).storage
  const applied = net.raft(1).log.applied
  s1.createSnapshot(applied, conf, new Uint8Array(10_000).fill(7))
  s1.compact(applied)
  let chunks = 0
  let dropped = false
  const keep = (m: { type: number; index: number; data: Uint8Array | null }): boolean => {
    if (m.type !== MessageType.Snap) return true
    chunks++
    assert.ok(m.data !== null && m.data.byteLength <= 1000)
    if (!dropped && m.index === 3000) {
      dropped = true
      return false
    }
    return true
  }
  // After the lost chunk the stream stalls until the follower asks again or the leader times out.
  for (let round = 0; round < 60 && net.raft(3).log.committed < applied; round++) {
    net.raft(1).tick()
    net.stabilize(keep)
  }
  assert.ok(dropped)
  assert.ok(chunks >= 10, `${chunks} chunks`)
  assert.ok(net.raft(3).log.committed >= applied, 'follower caught up through the snapshot')
  assert.equal(net.node(3).storage.snapshot().meta.index, applied)
  assert.equal(net.node(3).storage.snapshot().data.byteLength, 10_000)
})

test('ReadIndex answers only after a quorum confirms the leader', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  const leader = net.raft(1)
  assert.ok(leader.readIndex(42).ok)
  const asked = net.take(1)
  assert.equal(asked.flatMap((r) => r.readStates).length, 0, 'no answer before heartbeats come back')
  assert.ok(asked.some((r) => r.messages.some((m) => m.type === MessageType.Heartbeat && m.context > 0)))
  net.persist(1)
  net.deliver()
  for (const id of [2, 3]) {
    net.take(id)
    net.persist(id)
  }
  net.deliver()
  const answered = net.take(1).flatMap((r) => r.readStates)
  assert.deepEqual(answered, [{ index: leader.log.committed, context: 42 }])
})

test('ReadIndex on a follower goes through the leader', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  assert.ok(net.raft(2).readIndex(7).ok)
  let answered = false
  for (let round = 0; round < 5 && !answered; round++) {
    for (const id of [1, 2, 3]) {
      for (const rd of net.take(id)) if (id === 2 && rd.readStates.some((s) => s.context === 7)) answered = true
      net.persist(id)
    }
    net.deliver()
  }
  assert.ok(answered)
  const lonely = new TestNet([1, 2, 3])
  const r = lonely.raft(2).readIndex(1)
  assert.equal(!r.ok && r.code, ErrorCode.NOT_LEADER)
})

test('leadership transfer: proposals are refused while it runs, the target takes over', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  assert.ok(net.raft(1).transferLeader(2).ok)
  const refused = net.raft(1).propose([data('x')])
  assert.equal(!refused.ok && refused.code, ErrorCode.PROPOSAL_DROPPED)
  net.stabilize()
  assert.equal(net.raft(2).role, Role.Leader)
  assert.equal(net.raft(1).role, Role.Follower)
  assert.equal(net.raft(1).lead, 2)
})

test('PreVote: a node that lost touch cannot raise everyone’s term', () => {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  const term = net.raft(1).term
  // Node 3 hears nothing for a long time and campaigns again and again.
  for (let i = 0; i < 100; i++) {
    net.raft(3).tick()
    net.take(3)
    net.persist(3)
    net.outbox = net.outbox.filter((m) => m.from !== 3 && m.to !== 3)
  }
  assert.equal(net.raft(3).term, term, 'pre-votes never raise the term')
  net.raft(3).tick()
  net.take(3)
  net.persist(3)
  net.deliver()
  net.stabilize()
  assert.equal(net.raft(1).role, Role.Leader)
  assert.equal(net.raft(1).term, term)
})

test('CheckQuorum: a leader without a quorum steps down after an election timeout', () => {
  const net = new TestNet([1, 2, 3], { electionTicks: 10 })
  net.elect(1)
  for (let i = 0; i < 25; i++) {
    net.raft(1).tick()
    net.take(1)
    net.persist(1)
    net.outbox = []
  }
  assert.equal(net.raft(1).role, Role.Follower)
})

test('a broken invariant throws with group, node and term in the message', () => {
  const storage = MemoryStorage.bootstrap({ voters: [1], learners: [] })
  const raft = new Raft({ id: 1, storage, random: new SeededRandom(1), group: 'orders-0' })
  assert.throws(
    () => raft.log.commitTo(99),
    (e: unknown) => e instanceof AssertionError && /group orders-0 node 1 term \d+/.test(e.message) && /commit 99 beyond last index/.test(e.message),
  )
})

test('a restarted node adopts a log term above its hard state, with no vote', () => {
  const conf = { voters: [1, 2, 3], learners: [] }
  const storage = MemoryStorage.bootstrap(conf)
  storage.append([entry(2, 5)])
  storage.setHardState({ term: 4, vote: 2, commit: 1 })
  const raft = new Raft({ id: 1, storage, random: new SeededRandom(1) })
  assert.equal(raft.term, 5)
  assert.equal(raft.vote, 0)
})

test('messages from peers with a bogus snapshot size are ignored', () => {
  const net = new TestNet([1, 2, 3], { snapshotBytesMax: 1000 })
  net.elect(1)
  const follower = net.raft(2)
  const before = follower.log.committed
  follower.step(
    message({
      type: MessageType.Snap,
      from: 1,
      to: 2,
      term: follower.term,
      index: 0,
      rejectHint: 1 << 30,
      snapshot: { index: 500, term: follower.term, conf: { voters: [1, 2, 3], learners: [] } },
      data: new Uint8Array(10),
    }),
  )
  assert.equal(follower.log.committed, before)
  assert.equal(net.take(2).flatMap((r) => r.messages.concat(r.messagesAfterPersist)).length, 0)
})

test('quiescence: an idle group goes silent, a proposal wakes it, a woken follower can take over', () => {
  const net = new TestNet([1, 2, 3], { quiesce: true })
  net.elect(1)
  const tickAll = (n: number): number => {
    let sent = 0
    for (let i = 0; i < n; i++) {
      for (const id of [1, 2, 3]) net.raft(id).tick()
      for (const id of [1, 2, 3]) {
        for (const rd of net.take(id)) sent += rd.messages.length + rd.messagesAfterPersist.length
        net.persist(id)
      }
      net.deliver()
    }
    return sent
  }
  tickAll(5)
  assert.ok([1, 2, 3].every((id) => net.raft(id).quiesced), 'all three went quiet')
  assert.equal(tickAll(200), 0, 'a quiet group sends nothing, however long')
  assert.equal(net.raft(1).role, Role.Leader, 'CheckQuorum does not fire while quiet')
  const r = net.raft(1).propose([data('wake')])
  assert.ok(r.ok)
  net.stabilize()
  assert.ok([1, 2, 3].every((id) => net.raft(id).log.committed === r.index && !net.raft(id).quiesced))
  tickAll(5)
  assert.ok(net.raft(2).quiesced)
  // The leader's broker vanishes; the failure detector wakes the followers.
  net.nodes.delete(1)
  net.raft(2).unquiesce()
  net.raft(3).unquiesce()
  for (let i = 0; i < 100 && ![2, 3].some((id) => net.raft(id).role === Role.Leader); i++) {
    for (const id of [2, 3]) net.raft(id).tick()
    for (const id of [2, 3]) {
      net.take(id)
      net.persist(id)
    }
    net.deliver()
  }
  assert.ok([2, 3].some((id) => net.raft(id).role === Role.Leader), 'a follower took over')
})

test('quiescence: a follower that acknowledged after the commit is still told the commit before the group goes quiet', () => {
  const net = new TestNet([1, 2, 3], { quiesce: true, preVote: false })
  net.raft(1).campaign()
  net.take(1)
  net.persist(1)
  net.deliver()
  for (const id of [2, 3]) {
    net.take(id)
    net.persist(id)
  }
  net.deliver()
  assert.equal(net.raft(1).role, Role.Leader)
  // The no-op reaches node 2 first: its answer commits it while node 3 is still being probed.
  net.take(1)
  net.persist(1)
  const toNode3 = net.outbox.filter((m) => m.to === 3)
  net.outbox = net.outbox.filter((m) => m.to !== 3)
  net.deliver()
  net.take(2)
  net.persist(2)
  net.deliver()
  const noop = net.raft(1).log.lastIndex()
  assert.equal(net.raft(1).log.committed, noop)
  net.outbox.push(...toNode3)
  net.stabilize()
  for (let i = 0; i < 10; i++) {
    for (const id of [1, 2, 3]) net.raft(id).tick()
    net.stabilize()
  }
  assert.ok([1, 2, 3].every((id) => net.raft(id).quiesced), 'the whole group went quiet')
  assert.equal(net.raft(3).log.committed, noop)
})
