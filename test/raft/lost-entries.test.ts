/**
 * A follower that loses entries it had acknowledged: an `async` replica after
 * a power loss (its log is a shorter prefix), a `memory` replica after a
 * restart (only the bootstrap snapshot, with its term and vote kept). Its
 * rejections then hint below the leader's `match` for it. The leader must
 * forget that match and probe from the hint; it used to take the rejection
 * for a stale one and resend the same append for every rejection, forever
 * (found by the whole-broker simulator, seed 1 of `npm run sim:cluster`:
 * 28k messages per virtual second).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SeededRandom } from '../../src/base/index.ts'
import type { LogIndex, NodeId } from '../../src/raft/index.ts'
import { MemoryStorage, ProgressState, Role } from '../../src/raft/index.ts'
import { TestNet, data } from './harness.ts'

const conf = { voters: [1, 2, 3], learners: [] }
/** Entries the three nodes hold before node 3 loses some. */
const entriesBefore = 20
/**
 * Messages (all nodes) from the next write until node 3 is repaired: the
 * append it rejects, the probe from its hint carrying the missing entries,
 * the answers, the commit update (8 today).
 */
const repairMessagesMax = 20
/** Where the exchange gives up: the old code spends this many without ever repairing. */
const exchangeMessagesMax = 2_000
const exchangeRoundsMax = 500

/** A three-node group led by 1 in which all three hold and acknowledged `entriesBefore` entries. */
function replicated(): TestNet {
  const net = new TestNet([1, 2, 3])
  net.elect(1)
  for (let i = 0; i < entriesBefore; i++) assert.ok(net.raft(1).propose([data(`v${i}`)]).ok)
  net.stabilize()
  const last = net.raft(1).log.lastIndex()
  const pr = net.raft(1).progress.get(3)!
  assert.equal(pr.match, last, 'node 3 acknowledged everything')
  assert.equal(pr.state, ProgressState.Replicate)
  assert.equal(net.raft(3).log.committed, last)
  return net
}

/**
 * Node 3 restarts on `storage` (what survived of its log) with the hard
 * state it had: term and vote are durable in every persistence mode.
 * Messages to and from the old process are gone with it.
 */
function restartWith(net: TestNet, id: NodeId, storage: MemoryStorage): void {
  storage.setHardState(net.node(id).storage.hardState())
  net.outbox = net.outbox.filter((m) => m.to !== id && m.from !== id)
  net.add(id, storage, { random: new SeededRandom(100 + id) })
}

/** Storage holding the founding snapshot and the old log's entries up to `keepLast`. */
function prefixOf(old: MemoryStorage, keepLast: LogIndex): MemoryStorage {
  const s = MemoryStorage.bootstrap(conf)
  if (keepLast >= s.firstIndex()) s.append(old.entries(s.firstIndex(), keepLast + 1, Number.MAX_SAFE_INTEGER)!)
  return s
}

/** Node `id` holds the leader's whole log, entry for entry, and knows it is committed. */
function caughtUp(net: TestNet, id: NodeId): boolean {
  const leader = net.raft(1).log
  const follower = net.raft(id).log
  const last = leader.lastIndex()
  if (follower.lastIndex() !== last || follower.committed !== leader.committed) return false
  const mine = leader.entriesFrom(2, Number.MAX_SAFE_INTEGER)
  const theirs = follower.entriesFrom(2, Number.MAX_SAFE_INTEGER)
  if (mine === null || mine === 'compacted' || theirs === null || theirs === 'compacted') return false
  return mine.length === theirs.length && mine.every((e, i) => e.term === theirs[i]!.term && Buffer.from(e.data).equals(theirs[i]!.data))
}

/** Takes, persists and delivers until `done()`; returns the messages delivered, or stops past `exchangeMessagesMax`. */
function exchangeUntil(net: TestNet, done: () => boolean): number {
  let messages = 0
  for (let round = 0; round < exchangeRoundsMax && !done() && messages < exchangeMessagesMax; round++) {
    for (const id of net.nodes.keys()) {
      net.take(id)
      net.persist(id)
    }
    if (net.outbox.length === 0) break
    messages += net.deliver()
  }
  return messages
}

/** Node 3 came back short; the next write reaches it and the leader must repair it. */
function repairAfterNextWrite(net: TestNet): void {
  const leader = net.raft(1)
  const committedBefore = leader.log.committed
  assert.ok(leader.propose([data('after')]).ok)
  const repaired = (): boolean => caughtUp(net, 3) && leader.progress.get(3)!.match === leader.log.lastIndex()
  const messages = exchangeUntil(net, repaired)
  assert.ok(caughtUp(net, 3), `node 3 did not get the full log back: last ${net.raft(3).log.lastIndex()} of ${leader.log.lastIndex()} after ${messages} messages`)
  assert.ok(messages < repairMessagesMax, `${messages} messages to repair one follower`)
  assert.equal(leader.role, Role.Leader)
  assert.ok(leader.log.committed > committedBefore, 'the commit index only moves forward')
  assert.ok(repaired(), 'the leader knows node 3 has everything')
}

test('a memory replica back from a restart with only its term and vote gets the whole log again', () => {
  const net = replicated()
  restartWith(net, 3, MemoryStorage.bootstrap(conf))
  assert.equal(net.raft(3).log.lastIndex(), 1)
  assert.equal(net.raft(3).term, net.raft(1).term, 'the term survived the restart')
  repairAfterNextWrite(net)
})

test('an async replica that lost the tail it had acknowledged gets it again', () => {
  const net = replicated()
  const keepLast = 8
  restartWith(net, 3, prefixOf(net.node(3).storage, keepLast))
  assert.equal(net.raft(3).log.lastIndex(), keepLast)
  repairAfterNextWrite(net)
})

test('a follower that loses entries twice is repaired twice', () => {
  const net = replicated()
  restartWith(net, 3, prefixOf(net.node(3).storage, 12))
  repairAfterNextWrite(net)
  restartWith(net, 3, MemoryStorage.bootstrap(conf))
  repairAfterNextWrite(net)
  assert.ok(caughtUp(net, 2), 'node 2 was never disturbed')
})
