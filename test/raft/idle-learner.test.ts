/**
 * A learner added to an idle group. Its progress starts in Probe at
 * next = last + 1, so the first append it is sent carries no entries: a
 * probe. The leader sent that probe only with new entries (sendIfEmpty false
 * on a heartbeat answer), so in a group where nothing was proposed after the
 * membership change the learner got heartbeats and nothing else, forever.
 * Seen in test/broker/join.test.ts under load: a fourth broker outside the
 * seeds registered, became a controller learner, and never learned the
 * metadata ("timed out waiting for metadata on broker 4") while the cluster
 * had nothing else to write; broker 4 re-registered every 3 s (an unchanged
 * registration proposes nothing). The probe the leader sends when the
 * learner is added was lost (the leader's broker had no connection to broker 4
 * yet); a heartbeat answer then cleared probeSent but sent nothing. etcd's raft
 * sends the probe (sendAppend with sendIfEmpty true on MsgHeartbeatResp).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfChangeType, MemoryStorage, ProgressState } from '../../src/raft/index.ts'
import { TestNet, data } from './harness.ts'

/** Heartbeat rounds the learner gets to catch up (one probe, its rejection, the snapshot or entries). */
const roundsMax = 20

function tickAll(net: TestNet): void {
  for (const id of net.nodes.keys()) net.raft(id).tick()
}

for (const compacted of [false, true]) {
  test(`a learner added while nothing else is proposed catches up on heartbeats alone (${compacted ? 'leader log compacted: a snapshot' : 'entries'})`, () => {
    const conf = { voters: [1, 2, 3], learners: [] }
    const net = new TestNet([1, 2, 3], { heartbeatTicks: 1, electionTicks: 10 })
    net.elect(1)
    for (let i = 0; i < 5; i++) assert.ok(net.raft(1).propose([data(`v${i}`)]).ok)
    net.stabilize()
    if (compacted) {
      const s1 = net.node(1).storage
      const applied = net.raft(1).log.applied
      s1.createSnapshot(applied, conf, data('state'))
      s1.compact(applied)
    }
    // The learner starts with nothing, as a broker outside the seeds does.
    net.add(4, new MemoryStorage(), { heartbeatTicks: 1, electionTicks: 10 })
    assert.ok(net.raft(1).proposeConfChange({ type: ConfChangeType.AddLearner, node: 4 }).ok)
    // Whatever is sent to the learner before the leader can reach it is lost (the broker had no
    // peer connection to broker 4 yet when broker 4 became a learner).
    net.stabilize((m) => m.to !== 4)
    assert.deepEqual(net.raft(1).confState().learners, [4])
    // Nothing more is proposed: only ticks (heartbeats) from here on.
    let rounds = 0
    const leaderLast = (): number => net.raft(1).log.lastIndex()
    while (net.raft(4).log.committed < leaderLast() && rounds < roundsMax) {
      tickAll(net)
      net.stabilize()
      rounds++
    }
    assert.equal(net.raft(4).log.committed, leaderLast(), `learner at ${net.raft(4).log.committed} of ${leaderLast()} after ${rounds} heartbeat rounds`)
    assert.equal(net.raft(1).progress.get(4)!.state, ProgressState.Replicate)
  })
}
