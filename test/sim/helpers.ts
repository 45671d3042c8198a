/**
 * Helpers for the scenario tests (test/sim/scenarios-*.test.ts): what the
 * 6.824 harness did with goroutines and polling, done here with the
 * simulator's virtual clock. Nothing in here decides an outcome by itself;
 * the tests assert.
 *
 * Set SIM_TRACE=1 to print every simulator event of every cluster built with
 * `newCluster` (then run a single test file, the output is long).
 */
import assert from 'node:assert/strict'
import { SeededRandom } from '../../src/base/index.ts'
import type { ConfChange, LogIndex, NodeId, Raft, Term } from '../../src/raft/index.ts'
import { ConfChangeType, Role } from '../../src/raft/index.ts'
import { SimCluster } from '../../src/sim/cluster.ts'
import type { SimOptions } from '../../src/sim/cluster.ts'

/** The simulator's defaults (tickMs 10, electionTicks 10): randomized timeout in [100, 200) ms. */
export const tickMs = 10
export const electionTimeoutMs = 100
export const electionTimeoutMsMax = 200
/** 6.824's RaftElectionTimeout: "an election surely finished by now" (several timeouts). */
export const raftElectionTimeoutMs = 1000

export type PendingRead = NonNullable<ReturnType<SimCluster['read']>>

/**
 * Counts delivered messages by type (and snapshot installs) from the trace.
 * The simulator traces a message when it is delivered, so on a reliable
 * network with nobody cut off this is also what was sent.
 */
export class Tally {
  readonly byType = new Map<string, number>()
  rejects = 0
  snapshotInstalls = 0

  observe(line: string): void {
    const m = / (\d+)->(\d+) (\w+) /.exec(line)
    if (m !== null) {
      const type = m[3]!
      this.byType.set(type, (this.byType.get(type) ?? 0) + 1)
      if (line.endsWith(' reject')) this.rejects++
      return
    }
    if (line.includes(' installs snapshot @')) this.snapshotInstalls++
  }

  count(...types: readonly string[]): number {
    let n = 0
    for (const t of types) n += this.byType.get(t) ?? 0
    return n
  }
}

/** A cluster whose trace feeds `tally` (if given) and stdout when SIM_TRACE is set. */
export function newCluster(options: SimOptions, tally?: Tally): SimCluster {
  const print = process.env['SIM_TRACE'] !== undefined && process.env['SIM_TRACE'] !== ''
  if (tally === undefined && !print) return new SimCluster(options)
  const trace = (line: string): void => {
    tally?.observe(line)
    if (print) console.log(line)
  }
  return new SimCluster({ ...options, trace })
}

/** A random source for the test's own choices, apart from the cluster's stream. */
export function testRandom(seed: number): SeededRandom {
  return new SeededRandom(seed ^ 0x2545f491)
}

/** Node `k` steps after `id` in 1..n (6.824's `(leader + k) % servers`). */
export function after(id: NodeId, k: number, n: number): NodeId {
  return ((id - 1 + k) % n) + 1
}

export function ids(c: SimCluster): NodeId[] {
  return [...c.nodes.keys()]
}

export function raftOf(c: SimCluster, id: NodeId): Raft {
  const r = c.raft(id)
  assert.ok(r !== null, `node ${id} is not running`)
  return r
}

/** The live node that leads in the highest term (connected or not), or 0. */
export function leaderNow(c: SimCluster, among?: readonly NodeId[]): NodeId {
  let best = 0
  let bestTerm = -1
  for (const id of among ?? ids(c)) {
    const r = c.raft(id)
    if (r !== null && r.role === Role.Leader && r.term > bestTerm) {
      best = id
      bestTerm = r.term
    }
  }
  return best
}

/** Runs until some node of `among` leads; returns it (0 if none within maxMs). */
export function awaitLeader(c: SimCluster, among: readonly NodeId[], maxMs: number): NodeId {
  c.runUntil(() => leaderNow(c, among) !== 0, maxMs)
  return leaderNow(c, among)
}

/** Entries kept in a node's stable log (the 2D "log size" of 6.824). */
export function logLength(c: SimCluster, id: NodeId): number {
  const s = c.node(id).storage
  return s.lastIndex() - s.firstIndex() + 1
}

/**
 * Proposes `cmd` at `id`, which must lead, and runs until `expected` nodes
 * applied it there. Unlike `one`, never tries another node (a stale leader
 * on the other side of a partition would swallow `one`'s attempts).
 */
export function commitAt(c: SimCluster, id: NodeId, cmd: number, expected: number, maxMs = 3000): LogIndex {
  const r = c.start(id, cmd)
  assert.ok(r.isLeader && r.index > 0, `node ${id} refused ${cmd}`)
  const ok = c.runUntil(() => {
    const { count, cmd: got } = c.nCommitted(r.index)
    return count >= expected && got === cmd
  }, maxMs)
  assert.ok(ok, `${cmd} proposed at node ${id} index ${r.index} not applied by ${expected} nodes within ${maxMs} ms`)
  return r.index
}

/**
 * 6.824's `one` for several commands at once: proposes all of them in the
 * same instant at the current leader (so they travel together) and
 * re-proposes those whose index was taken by something else, until each is
 * applied by `expected` nodes. Returns cmd -> index.
 */
export function agreeAll(c: SimCluster, cmds: readonly number[], expected: number, maxMs = 10_000): Map<number, LogIndex> {
  const done = new Map<number, LogIndex>()
  const deadline = c.nowMs + maxMs
  while (c.nowMs < deadline) {
    const todo = cmds.filter((x) => !done.has(x))
    if (todo.length === 0) return done
    const leader = leaderNow(
      c,
      ids(c).filter((id) => c.isConnected(id)),
    )
    const at = new Map<number, LogIndex>()
    if (leader !== 0) {
      for (const cmd of todo) {
        const r = c.start(leader, cmd)
        if (r.index > 0) at.set(cmd, r.index)
      }
    }
    if (at.size === 0) {
      c.run(50)
      continue
    }
    const until = Math.min(deadline, c.nowMs + 2000)
    while (c.nowMs < until && at.size > 0) {
      c.run(20)
      for (const [cmd, index] of at) {
        const { count, cmd: got } = c.nCommitted(index)
        if (count === 0) continue
        if (got !== cmd) at.delete(cmd)
        else if (count >= expected) {
          done.set(cmd, index)
          at.delete(cmd)
        }
      }
    }
  }
  const missing = cmds.filter((x) => !done.has(x))
  assert.equal(missing.length, 0, `no agreement on ${missing.length} commands (first ${missing[0]}) within ${maxMs} ms`)
  return done
}

/**
 * Every proposal the harness acknowledged (applied at its proposer, at the
 * index it was proposed at) is applied at that index with that command by
 * each node in `holders`.
 */
export function assertAckedEverywhere(c: SimCluster, holders: readonly NodeId[]): void {
  assert.ok(c.acked.size > 0, 'nothing was acknowledged')
  for (const [cmd, index] of c.acked) {
    for (const id of holders) {
      const got = c.node(id).app.cmdAt.get(index)
      assert.equal(got, cmd, `node ${id} has ${String(got)} at index ${index}, where ${cmd} was acknowledged`)
    }
  }
}

function confApplied(r: Raft, cc: ConfChange): boolean {
  switch (cc.type) {
    case ConfChangeType.AddVoter:
      return r.voters.has(cc.node)
    case ConfChangeType.AddLearner:
      return r.learners.has(cc.node)
    case ConfChangeType.Remove:
      return !r.voters.has(cc.node) && !r.learners.has(cc.node)
  }
}

/**
 * Proposes `cc` at whoever leads until the leader has applied it (retrying
 * through lost messages, refusals and leader changes). Returns the virtual
 * ms it took.
 */
export function changeConf(c: SimCluster, cc: ConfChange, maxMs = 10_000): number {
  const start = c.nowMs
  const deadline = start + maxMs
  const applied = (): boolean => {
    const l = leaderNow(c)
    return l !== 0 && c.raft(l)!.promotable() && confApplied(c.raft(l)!, cc)
  }
  while (c.nowMs < deadline) {
    if (applied()) return c.nowMs - start
    const l = leaderNow(c)
    if (l !== 0) c.proposeConfChange(l, cc)
    if (c.runUntil(applied, Math.min(300, deadline - c.nowMs))) return c.nowMs - start
  }
  assert.fail(`conf change ${JSON.stringify(cc)} not applied by a leader within ${maxMs} ms`)
}

/** Sorted voters/learners as `id` sees them. */
export function confOf(c: SimCluster, id: NodeId): { voters: NodeId[]; learners: NodeId[] } {
  const cs = raftOf(c, id).confState()
  return { voters: [...cs.voters], learners: [...cs.learners] }
}

/** Runs until every live member applied everything the leader committed and sees the leader's configuration. */
export function awaitConfConverged(c: SimCluster, maxMs: number): boolean {
  return c.runUntil(() => {
    const l = leaderNow(c)
    if (l === 0) return false
    const lr = c.raft(l)!
    const want = JSON.stringify(lr.confState())
    for (const id of [...lr.voters, ...lr.learners]) {
      const r = c.raft(id)
      if (r === null) continue
      if (r.log.applied < lr.log.committed || JSON.stringify(r.confState()) !== want) return false
    }
    return true
  }, maxMs)
}

/** Terms of all live nodes, for "nobody's term moved" checks. */
export function terms(c: SimCluster): Map<NodeId, Term> {
  const out = new Map<NodeId, Term>()
  for (const id of ids(c)) {
    const r = c.raft(id)
    if (r !== null) out.set(id, r.term)
  }
  return out
}

/**
 * 6.824's churn clients: each client proposes a fresh random command at every
 * live node (whichever leads takes it), then watches the index for up to
 * 380 ms; a command seen committed at its index is a value the final log
 * must contain. `step` is called once per simulated slice.
 */
export class ChurnClients {
  readonly values: number[] = []
  readonly #rnd: SeededRandom
  readonly #state: { cmd: number; index: LogIndex; sinceMs: number; idleUntilMs: number }[] = []

  constructor(seed: number, clients: number) {
    this.#rnd = testRandom(seed)
    for (let i = 0; i < clients; i++) this.#state.push({ cmd: 0, index: 0, sinceMs: 0, idleUntilMs: 0 })
  }

  step(c: SimCluster): void {
    for (let me = 0; me < this.#state.length; me++) {
      const s = this.#state[me]!
      if (s.index > 0) {
        const { count, cmd } = c.nCommitted(s.index)
        if (count > 0) {
          if (cmd === s.cmd) this.values.push(cmd)
          s.index = 0
        } else if (c.nowMs - s.sinceMs > 380) {
          s.index = 0
        }
        continue
      }
      if (c.nowMs < s.idleUntilMs) continue
      s.cmd = 1 + this.#rnd.int(1_000_000_000)
      for (const id of ids(c)) {
        const r = c.start(id, s.cmd)
        if (r.index > 0) s.index = r.index
      }
      if (s.index > 0) s.sinceMs = c.nowMs
      else s.idleUntilMs = c.nowMs + 79 + me * 17
    }
  }
}
