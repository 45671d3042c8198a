/**
 * Random fault schedules: one seed decides the cluster shape, the fault
 * rates and every action (proposals, crashes, restarts, partitions, one-way
 * links, message loss/duplication/reordering, leadership transfers, reads,
 * membership changes). Safety is checked after every step by the cluster's
 * SafetyChecker; at the end the faults heal and the schedule demands
 * liveness: a leader within a bound of virtual time, a new proposal applied
 * by every member, and every acknowledged proposal present everywhere.
 */
import { SeededRandom } from '../base/index.ts'
import type { NodeId } from '../raft/index.ts'
import { ConfChangeType, Role } from '../raft/index.ts'
import { SimCluster } from './cluster.ts'

export interface ScheduleOptions {
  readonly seed: number
  readonly trace?: (line: string) => void
}

export interface ScheduleResult {
  readonly seed: number
  readonly ok: boolean
  readonly error: string
  readonly virtualMs: number
  readonly acked: number
  readonly messages: number
  readonly checks: number
}

/** Virtual time for the cluster to recover once faults heal. */
const recoveryMsMax = 15_000
/** Bound on scheduler steps in the fault phase. */
const faultStepsMax = 400

export function runSchedule(options: ScheduleOptions): ScheduleResult {
  const rnd = new SeededRandom(options.seed ^ 0x5bd1e995)
  const voters = rnd.chance(0.6) ? 3 : 5
  const spares = voters === 3 ? rnd.int(3) : rnd.int(2)
  const snapshotEvery = [0, 0, 8, 25, 60][rnd.int(5)]!
  const basics = rnd.chance(0.1)
  const c = new SimCluster({
    seed: options.seed,
    nodes: voters,
    spares,
    snapshotEvery,
    snapshotChunkBytes: 64 + rnd.int(1024),
    commandPadBytes: rnd.int(3) === 0 ? rnd.int(2000) : 0,
    msgBytesMax: 1024 + rnd.int(64 << 10),
    preVote: !basics,
    checkQuorum: !basics,
    reliable: rnd.chance(0.5),
    storageUnavailableRate: rnd.chance(0.3) ? rnd.next() * 0.5 : 0,
    quiesce: rnd.chance(0.5),
    ...(options.trace === undefined ? {} : { trace: options.trace }),
  })
  c.dropRate = rnd.next() * 0.3
  c.duplicateRate = rnd.next() * 0.1
  // Slow disks widen the window between "sent" and "durable", where persistence bugs live.
  c.diskLatencyMsMax = [0, 2, 5, 20, 60][rnd.int(5)]!
  const crashy = rnd.chance(0.35)
  let cmd = 1
  try {
    const faultMs = 3_000 + rnd.int(9_000)
    const end = c.nowMs + faultMs
    for (let step = 0; step < faultStepsMax && c.nowMs < end; step++) {
      act(c, rnd, () => cmd++)
      if (crashy && rnd.chance(0.4)) bounce(c, rnd)
      c.run(rnd.chance(0.5) ? rnd.int(30) : 10 + rnd.int(300))
    }
    recover(c, cmd++)
    return result(options.seed, c, '')
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    return result(options.seed, c, message)
  }
}

function result(seed: number, c: SimCluster, error: string): ScheduleResult {
  return {
    seed,
    ok: error === '',
    error,
    virtualMs: c.nowMs,
    acked: c.acked.size,
    messages: c.messagesSent,
    checks: c.totalChecks(),
  }
}

function pick<T>(rnd: SeededRandom, xs: readonly T[]): T | undefined {
  return xs.length === 0 ? undefined : xs[rnd.int(xs.length)]
}

function leaderIds(c: SimCluster): NodeId[] {
  return [...c.nodes.values()].filter((n) => n.raft !== null && n.raft.role === Role.Leader).map((n) => n.id)
}

function act(c: SimCluster, rnd: SeededRandom, nextCmd: () => number): void {
  const ids = [...c.nodes.keys()]
  const live = ids.filter((id) => c.node(id).alive)
  const dead = ids.filter((id) => !c.node(id).alive)
  const roll = rnd.int(100)
  if (roll < 40) {
    const leader = pick(rnd, leaderIds(c)) ?? pick(rnd, live)
    if (leader === undefined) return
    const n = 1 + rnd.int(5)
    for (let i = 0; i < n; i++) c.start(leader, nextCmd())
  } else if (roll < 48) {
    // Figure 8: a leader appends, reaches a few followers at most, and dies.
    const leader = pick(rnd, leaderIds(c))
    if (leader === undefined) return
    for (let i = 0, n = 1 + rnd.int(3); i < n; i++) c.start(leader, nextCmd())
    c.run(rnd.int(14))
    c.crash(leader)
  } else if (roll < 53) {
    const id = pick(rnd, live)
    if (id !== undefined) c.crash(id)
  } else if (roll < 64) {
    const id = pick(rnd, dead)
    if (id !== undefined) c.restart(id)
  } else if (roll < 68) {
    const shuffled = ids.slice().sort(() => rnd.next() - 0.5)
    const cut = 1 + rnd.int(Math.max(1, ids.length - 1))
    c.partition([shuffled.slice(0, cut), shuffled.slice(cut)])
  } else if (roll < 71) {
    const a = pick(rnd, ids)!
    const b = pick(rnd, ids)!
    if (a !== b) c.block(a, b)
  } else if (roll < 77) {
    c.heal()
  } else if (roll < 80) {
    c.reliable = !c.reliable
    c.longReordering = !c.reliable && rnd.chance(0.3)
  } else if (roll < 84) {
    const leader = pick(rnd, leaderIds(c))
    const raft = leader === undefined ? null : c.raft(leader)
    const to = raft === null ? undefined : pick(rnd, [...raft.voters].filter((v) => v !== leader))
    if (leader !== undefined && to !== undefined) c.transferLeader(leader, to)
  } else if (roll < 90) {
    const id = pick(rnd, live)
    if (id !== undefined) c.read(id)
  } else {
    changeMembers(c, rnd)
  }
}

/** Crash a random node and bring it back a moment later (what it had not synced is lost). */
function bounce(c: SimCluster, rnd: SeededRandom): void {
  const live = [...c.nodes.keys()].filter((id) => c.node(id).alive)
  const id = pick(rnd, live)
  if (id === undefined) return
  c.run(rnd.int(20))
  c.crash(id)
  c.run(rnd.int(60))
  c.restart(id)
}

function changeMembers(c: SimCluster, rnd: SeededRandom): void {
  const leader = pick(rnd, leaderIds(c))
  if (leader === undefined) return
  const raft = c.raft(leader)!
  const ids = [...c.nodes.keys()]
  const outsiders = ids.filter((id) => !raft.voters.has(id) && !raft.learners.has(id))
  const learners = [...raft.learners]
  const roll = rnd.int(3)
  if (roll === 0 && outsiders.length > 0) {
    c.proposeConfChange(leader, { type: ConfChangeType.AddLearner, node: pick(rnd, outsiders)! })
  } else if (roll === 1 && learners.length > 0) {
    c.proposeConfChange(leader, { type: ConfChangeType.AddVoter, node: pick(rnd, learners)! })
  } else if (raft.voters.size > 3 || (raft.voters.size === 3 && learners.length === 0 && rnd.chance(0.2))) {
    // Never below three voters, so that one crash never blocks the final liveness check.
    if (raft.voters.size > 3) c.proposeConfChange(leader, { type: ConfChangeType.Remove, node: pick(rnd, [...raft.voters])! })
  } else if (learners.length > 0) {
    c.proposeConfChange(leader, { type: ConfChangeType.Remove, node: pick(rnd, learners)! })
  }
}

/** Heals every fault and demands liveness and durability of acknowledged proposals. */
function recover(c: SimCluster, finalCmd: number): void {
  c.heal()
  c.reliable = true
  c.longReordering = false
  c.longDelays = false
  c.trace('── recovery ──')
  for (const id of c.nodes.keys()) if (!c.node(id).alive) c.restart(id)
  const deadline = c.nowMs + recoveryMsMax
  for (let attempt = 0; ; attempt++) {
    if (c.nowMs >= deadline) {
      throw new Error(`liveness: no proposal applied by every member (${c.members().join(',')}) within ${recoveryMsMax} ms after healing`)
    }
    const leader = leaderIds(c)[0]
    const cmd = finalCmd + attempt / 1000
    const r = leader === undefined ? null : c.start(leader, cmd)
    if (r === null || !r.isLeader) {
      c.run(10)
      continue
    }
    // A leader that has not yet learned it was deposed may take the proposal and lose it: try again.
    const applied = c.runUntil(
      () => c.members().every((id) => c.node(id).app.cmdAt.get(r.index) === cmd),
      Math.min(3_000, deadline - c.nowMs),
    )
    if (applied) break
  }
  // Durability: every acknowledged proposal is applied, at its index, by every member.
  for (const id of c.members()) {
    const app = c.node(id).app
    for (const [cmd, at] of c.acked) {
      if (app.cmdAt.get(at) !== cmd) throw new Error(`durability: node ${id} lacks acknowledged command ${cmd} at ${at}`)
    }
  }
}
