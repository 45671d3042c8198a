/**
 * Log agreement scenarios, after the 6.824 (2021) lab 2B tests
 * (TestBasicAgree2B, TestRPCBytes2B, TestFailAgree2B, TestFailNoAgree2B,
 * TestConcurrentStarts2B, TestRejoin2B, TestBackup2B, TestCount2B).
 *
 * Differences from 6.824: a leader appends a no-op when elected and the
 * founding members start from a snapshot at index 1, so indexes are
 * computed from the leader's log rather than starting at 1; "concurrent"
 * proposals are proposals made in the same virtual instant.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { after, electionTimeoutMsMax, newCluster, raftElectionTimeoutMs, raftOf, Tally, testRandom, tickMs } from './helpers.ts'

test('basic agreement (TestBasicAgree2B)', () => {
  const n = 3
  const c = newCluster({ seed: 2201, nodes: n })
  const leader = c.checkOneLeader()
  let expected = raftOf(c, leader).log.lastIndex() + 1
  for (let iter = 1; iter <= 3; iter++) {
    assert.equal(c.nCommitted(expected).count, 0, 'some node committed before the proposal')
    const index = c.one(iter * 100, n, false)
    assert.equal(index, expected, 'proposal did not get the next index')
    assert.deepEqual(c.nCommitted(index), { count: n, cmd: iter * 100 })
    expected++
  }
})

test('bounded message bytes per agreement (TestRPCBytes2B)', () => {
  const n = 3
  const commandBytes = 5000
  const c = newCluster({ seed: 2202, nodes: n, commandPadBytes: commandBytes })
  c.one(99, n, false)
  const bytes0 = c.bytesSent
  let sent = 0
  for (let index = 2; index < 10; index++) {
    c.one(1000 + index, n, false)
    sent += commandBytes
  }
  const got = c.bytesSent - bytes0
  // Each command reaches each follower once (plus headers and heartbeats):
  // a leader that resent entries or shipped its whole log would exceed this.
  const expected = n * sent
  assert.ok(got <= expected + 50_000, `too many bytes: ${got} for ${sent} bytes of commands (bound ${expected + 50_000})`)
  // ...and the commands really travelled to both followers.
  assert.ok(got >= (n - 1) * sent, `too few bytes: ${got} for ${sent} bytes of commands`)
})

test('agreement despite a follower failure (TestFailAgree2B)', () => {
  const n = 3
  const c = newCluster({ seed: 2203, nodes: n })
  c.one(101, n, false)

  // A follower goes away; the other two still agree.
  const leader = c.checkOneLeader()
  const gone = after(leader, 1, n)
  c.disconnect(gone)
  c.one(102, n - 1, false)
  c.one(103, n - 1, false)
  c.run(raftElectionTimeoutMs)
  c.one(104, n - 1, false)
  const i105 = c.one(105, n - 1, false)
  assert.equal(c.nCommitted(i105).count, n - 1, 'the disconnected follower applied an entry')

  // It comes back and catches up.
  c.connect(gone)
  c.one(106, n, true)
  c.run(raftElectionTimeoutMs)
  c.one(107, n, true)
  assert.equal(c.node(gone).app.cmdAt.get(i105), 105)
})

test('no agreement without a majority (TestFailNoAgree2B)', () => {
  const n = 5
  const c = newCluster({ seed: 2204, nodes: n })
  const i10 = c.one(10, n, false)

  // Three of five followers go away.
  const leader = c.checkOneLeader()
  c.disconnect(after(leader, 1, n))
  c.disconnect(after(leader, 2, n))
  c.disconnect(after(leader, 3, n))
  const r = c.start(leader, 20)
  assert.ok(r.isLeader && r.index > 0, 'leader rejected Start()')
  assert.equal(r.index, i10 + 1, 'unexpected index')
  c.run(2 * raftElectionTimeoutMs)
  assert.equal(c.nCommitted(r.index).count, 0, 'committed without a majority')

  // Repair: the new leader's log continues right after 10 (20 may or may
  // not survive; a new leader appends its no-op).
  c.connect(after(leader, 1, n))
  c.connect(after(leader, 2, n))
  c.connect(after(leader, 3, n))
  const leader2 = c.checkOneLeader()
  const r2 = c.start(leader2, 30)
  assert.ok(r2.isLeader && r2.index > 0, 'leader2 rejected Start()')
  assert.ok(r2.index >= i10 + 2 && r2.index <= i10 + 3, `unexpected index ${r2.index} (10 is at ${i10})`)
  c.one(1000, n, true)
})

test('concurrent proposals (TestConcurrentStarts2B)', () => {
  const n = 3
  const c = newCluster({ seed: 2205, nodes: n })
  let success = false
  for (let attempt = 0; attempt < 5 && !success; attempt++) {
    if (attempt > 0) c.run(3000)
    const leader = c.checkOneLeader()
    const r0 = c.start(leader, 1)
    if (r0.index === 0) continue
    const term = r0.term
    // Five proposals in the same instant, offered to every node: only the
    // leader takes them, at consecutive indexes, in one term.
    const indexes: number[] = []
    for (let i = 0; i < 5; i++) {
      for (let id = 1; id <= n; id++) {
        const r = c.start(id, 100 + i)
        if (id !== leader) assert.equal(r.index, 0, `follower ${id} accepted a proposal`)
        else if (r.index > 0 && r.term === term) indexes.push(r.index)
      }
    }
    if (indexes.length !== 5) continue
    assert.deepEqual(
      indexes,
      indexes.map((_, k) => r0.index + 1 + k),
    )
    const cmds: number[] = []
    let termChanged = false
    for (const index of indexes) {
      const cmd = c.wait(index, n, term)
      if (cmd === -1) {
        termChanged = true
        break
      }
      cmds.push(cmd)
    }
    if (termChanged) continue
    for (let i = 0; i < 5; i++) assert.ok(cmds.includes(100 + i), `command ${100 + i} missing in ${cmds.join(',')}`)
    success = true
  }
  assert.ok(success, 'term changed too often')
})

test('rejoin of a partitioned leader (TestRejoin2B)', () => {
  const n = 3
  const c = newCluster({ seed: 2206, nodes: n })
  c.one(101, n, true)

  // The leader is cut off and takes proposals it cannot commit.
  const leader1 = c.checkOneLeader()
  c.disconnect(leader1)
  const stale = [102, 103, 104].map((cmd) => c.start(leader1, cmd))
  assert.ok(stale.every((r) => r.index > 0))

  // The other two elect a leader and commit 103.
  const leader2 = c.checkOneLeader()
  assert.notEqual(leader2, leader1)
  c.one(103, 2, true)

  // The new leader goes away; the old one comes back and must give up its entries.
  c.disconnect(leader2)
  c.connect(leader1)
  c.one(104, 2, true)

  // Everyone back.
  c.connect(leader2)
  const last = c.one(105, n, true)
  for (const r of stale) {
    const { count, cmd } = c.nCommitted(r.index)
    assert.equal(count, n)
    // The old leader's uncommitted 102 was overwritten: index r.index holds what the majority decided.
    assert.notEqual(cmd, 102, `the cut-off leader's entry 102 at ${r.index} survived`)
  }
  assert.equal(c.nCommitted(last).count, n)
})

test('fast backup over long divergent logs (TestBackup2B)', () => {
  const n = 5
  const tally = new Tally()
  const c = newCluster({ seed: 2207, nodes: n }, tally)
  const rnd = testRandom(2207)
  const cmd = (): number => 1 + rnd.int(1_000_000_000)
  c.one(cmd(), n, true)

  // Put the leader and one follower in a partition; they take 50 proposals that cannot commit.
  const leader1 = c.checkOneLeader()
  c.disconnect(after(leader1, 2, n))
  c.disconnect(after(leader1, 3, n))
  c.disconnect(after(leader1, 4, n))
  for (let i = 0; i < 50; i++) c.start(leader1, cmd())
  c.run(raftElectionTimeoutMs / 2)
  c.disconnect(after(leader1, 0, n))
  c.disconnect(after(leader1, 1, n))

  // The other three elect a leader and commit 50 entries.
  c.connect(after(leader1, 2, n))
  c.connect(after(leader1, 3, n))
  c.connect(after(leader1, 4, n))
  for (let i = 0; i < 50; i++) c.one(cmd(), 3, true)

  // Now a leader and one follower of those take 50 more that cannot commit.
  const leader2 = c.checkOneLeader()
  let other = after(leader1, 2, n)
  if (leader2 === other) other = after(leader2, 1, n)
  c.disconnect(other)
  for (let i = 0; i < 50; i++) c.start(leader2, cmd())
  c.run(raftElectionTimeoutMs / 2)

  // Bring the original leader and its follower back with `other`: `other`
  // must lead and overwrite 50 divergent entries on both.
  for (let id = 1; id <= n; id++) c.disconnect(id)
  c.connect(after(leader1, 0, n))
  c.connect(after(leader1, 1, n))
  c.connect(other)
  const rejects0 = tally.rejects
  for (let i = 0; i < 50; i++) c.one(cmd(), 3, true)
  const repairRejects = tally.rejects - rejects0

  // Everyone.
  for (let id = 1; id <= n; id++) c.connect(id)
  const last = c.one(cmd(), n, true)
  assert.equal(c.nCommitted(last).count, n)
  // Backtracking by conflicting term skips a whole term per round trip;
  // one entry per round trip would need about 50 rejections per follower.
  // (Rejections also come from vote requests; those are few.)
  assert.ok(repairRejects <= 20, `${repairRejects} rejections to repair two followers 50 entries behind`)
})

test('message count bounds (TestCount2B)', () => {
  const n = 3
  const followers = n - 1
  const tally = new Tally()
  const c = newCluster({ seed: 2208, nodes: n }, tally)
  const leader0 = c.checkOneLeader()
  assert.ok(leader0 > 0)
  const electionMsgs = tally.count('PreVote', 'PreVoteResp', 'Vote', 'VoteResp')
  assert.ok(electionMsgs >= 1 && electionMsgs <= 30, `too many or too few messages to elect the initial leader: ${electionMsgs}`)

  /** Messages an idle leader may send in `ms`: a heartbeat per interval per follower, and its answer. */
  const heartbeatAllowance = (ms: number): number => (Math.ceil(ms / tickMs) + 1) * followers * 2

  let success = false
  let total2 = 0
  for (let attempt = 0; attempt < 5 && !success; attempt++) {
    if (attempt > 0) c.run(3000)
    const leader = c.checkOneLeader()
    const total1 = c.messagesSent
    const app1 = tally.count('App', 'AppResp')
    const t1 = c.nowMs
    const iters = 10
    const r0 = c.start(leader, 1)
    if (r0.index === 0) continue
    const term = r0.term
    const indexes = [r0.index]
    for (let i = 1; i < iters + 2; i++) {
      const r = c.start(leader, 100 + i)
      if (r.index === 0 || r.term !== term) break
      indexes.push(r.index)
    }
    if (indexes.length !== iters + 2) continue
    let lost = false
    for (const [k, index] of indexes.entries()) {
      const cmd = c.wait(index, n, term)
      if (cmd === -1) {
        lost = true
        break
      }
      assert.equal(cmd, k === 0 ? 1 : 100 + k, 'wrong value committed')
    }
    if (lost) continue
    if (raftOf(c, leader).term !== term) continue
    total2 = c.messagesSent
    const appMsgs = tally.count('App', 'AppResp') - app1
    // 6.824 allows (iters + 1 + 3) * 3 RPCs; a message and its answer are two here.
    const appBound = (iters + 1 + 3) * 3 * 2
    assert.ok(appMsgs <= appBound, `too many append messages (${appMsgs}) for ${iters} entries (bound ${appBound})`)
    const all = total2 - total1
    const allBound = appBound + heartbeatAllowance(c.nowMs - t1)
    assert.ok(all <= allBound, `too many messages (${all}) for ${iters} entries (bound ${allBound})`)
    success = true
  }
  assert.ok(success, 'term changed too often')

  // An idle second: heartbeats and their answers only.
  const app2 = tally.count('App', 'AppResp')
  c.run(raftElectionTimeoutMs)
  const idle = c.messagesSent - total2
  assert.equal(tally.count('App', 'AppResp') - app2, 0, 'an idle leader sent appends')
  assert.ok(idle <= heartbeatAllowance(raftElectionTimeoutMs), `too many messages (${idle}) for 1 second of idleness`)
  assert.ok(idle >= followers, 'no heartbeats while idle')
  c.run(electionTimeoutMsMax)
})
