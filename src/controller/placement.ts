/**
 * Placement: where replicas go, which replica is the preferred leader, and
 * how to move the fewest replicas when brokers join, leave or drain.
 *
 * Everything here runs on the controller leader before it proposes; the
 * results travel in commands (CreateTopic.assignment, ReassignPartition), so
 * apply never runs placement and stays deterministic. Placement itself is
 * deterministic too (ties go to the lower broker id), which makes it testable.
 *
 * New partitions (assignReplicas):
 *   1. water-filling: each replica goes to the broker with the fewest
 *      replicas of this topic, then of the cluster, after the fewest
 *      replicas of this partition on its rack (so no two replicas share a
 *      rack while racks suffice). The first pick also prefers the broker
 *      with the fewest preferred leaderships of this topic. Each topic is
 *      spread evenly (its traffic reaches every broker); the cluster's
 *      totals break ties.
 *   2. leader balancing: while some broker leads two more of the topic's
 *      partitions than another it can reach through a chain of them
 *      (a leads x which has a replica on b, b leads y ..., ends at c), the
 *      chain's leaderships shift one step: a loses one, c gains one, the
 *      middle stays. No such chain = leader counts as even as the replica
 *      sets allow (the semi-matching optimality condition).
 *
 * Rebalance (planRebalance), like the 6.824 shard controller:
 *   1. every replica on a broker outside the target set moves to the
 *      least-loaded target broker that can take it (forced moves);
 *   2. while the most-loaded broker has two more replicas than the
 *      least-loaded, move one replica between them (from the topic the donor
 *      holds most more of than the receiver, a follower when possible, so
 *      preferred leaders stay put);
 *   3. leader balancing as above, over all partitions (reorders only).
 * Each step-2 move lowers the excess above the even share or the deficit
 * below it and never raises either, so with no forced moves (brokers join)
 * the plan moves exactly the lower bound. A forced move cannot go to a
 * broker that already holds that partition, which sometimes costs one
 * correction later (the tests measure how often).
 */
import { assert, ErrorCode, RillError } from '../base/index.ts'
import type { ControllerState } from './state.ts'
import { validate } from './state.ts'
import { checkPartitionCount, checkReplicationFactor, parseTopicConfig, topicName } from './codec.ts'
import type { BrokerId, CreatePartitions, CreateTopic, ReassignPartition, TopicConfig, TopicId, TopicInfo } from './types.ts'
import { CommandType } from './types.ts'

/** A broker as placement sees it. */
export interface PlacementBroker {
  readonly id: BrokerId
  /** Null: the broker is its own failure domain. */
  readonly rack: string | null
}

/** Default cap on leadership transfers asked for in one round (they cost an election each). */
export const leaderTransfersMax = 1000

/**
 * Replica lists for `partitions` new partitions of `replicationFactor`
 * replicas over `brokers`. Evenness within the topic comes first (a topic's
 * traffic should reach every broker), evenness over the cluster breaks ties:
 * `existing` is every current replica list in the cluster, `topicExisting`
 * the topic's own (when partitions are added to it).
 */
export function assignReplicas(options: {
  readonly brokers: readonly PlacementBroker[]
  readonly partitions: number
  readonly replicationFactor: number
  readonly existing?: readonly (readonly BrokerId[])[]
  readonly topicExisting?: readonly (readonly BrokerId[])[]
}): BrokerId[][] {
  const { partitions, replicationFactor } = options
  const brokers = [...options.brokers].sort((a, b) => a.id - b.id)
  assert(Number.isInteger(partitions) && partitions >= 1, 'assignReplicas: partitions >= 1')
  assert(Number.isInteger(replicationFactor) && replicationFactor >= 1, 'assignReplicas: replicationFactor >= 1')
  if (replicationFactor > brokers.length) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `replication factor ${replicationFactor} is larger than the ${brokers.length} live brokers`, {
      details: { field: 'replicationFactor', reason: 'replication-factor', liveBrokers: brokers.length },
    })
  }
  const racks = rackMap(brokers)
  const replicas = zeroCounts(brokers)
  const leaders = zeroCounts(brokers)
  const topicReplicas = zeroCounts(brokers)
  const topicLeaders = zeroCounts(brokers)
  for (const list of options.existing ?? []) countReplicas(list, replicas, leaders)
  for (const list of options.topicExisting ?? []) countReplicas(list, topicReplicas, topicLeaders)

  const out: BrokerId[][] = []
  for (let p = 0; p < partitions; p++) {
    const chosen: BrokerId[] = []
    for (let r = 0; r < replicationFactor; r++) {
      let best: BrokerId | null = null
      let bestKey: number[] = []
      for (const { id } of brokers) {
        if (chosen.includes(id)) continue
        const key =
          r === 0
            ? [rackUses(racks, chosen, racks.get(id)!), topicReplicas.get(id)!, topicLeaders.get(id)!, replicas.get(id)!, leaders.get(id)!, id]
            : [rackUses(racks, chosen, racks.get(id)!), topicReplicas.get(id)!, replicas.get(id)!, id]
        if (best === null || lessThan(key, bestKey)) {
          best = id
          bestKey = key
        }
      }
      assert(best !== null, 'assignReplicas: a broker is left for every replica')
      chosen.push(best)
      increment(replicas, best)
      increment(topicReplicas, best)
    }
    increment(leaders, chosen[0]!)
    increment(topicLeaders, chosen[0]!)
    out.push(chosen)
  }
  balanceLeaders(out, topicLeaders, new Set(brokers.map((b) => b.id)))
  return out
}

/** A CreateTopic for `request`, placed over the active brokers and validated against `state`. */
export function planCreateTopic(
  state: ControllerState,
  request: { readonly name: string; readonly partitions: number; readonly replicationFactor: number; readonly config: TopicConfig },
): CreateTopic {
  // The request's own problems first (name, sizes, existence), so the caller is not told about placement instead.
  const name = topicName(request.name)
  const partitions = checkPartitionCount(request.partitions)
  const replicationFactor = checkReplicationFactor(request.replicationFactor)
  const config = parseTopicConfig(request.config)
  if (state.topic(name) !== undefined) throw new RillError(ErrorCode.TOPIC_EXISTS, `topic ${name} already exists`, { details: { topic: name } })
  const assignment = assignReplicas({ brokers: state.activeBrokers(), partitions, replicationFactor, existing: allReplicaLists(state) })
  const cmd: CreateTopic = { type: CommandType.CreateTopic, name, partitions, replicationFactor, config, assignment }
  validate(cmd, state)
  return cmd
}

/** A CreatePartitions growing topic `name` to `partitions`, placed over the active brokers and validated. */
export function planCreatePartitions(state: ControllerState, request: { readonly name: string; readonly partitions: number }): CreatePartitions {
  const t = state.topic(request.name)
  if (t === undefined) throw new RillError(ErrorCode.UNKNOWN_TOPIC, `unknown topic ${request.name}`, { details: { topic: request.name } })
  const added = request.partitions - t.partitions.length
  const assignment =
    added <= 0
      ? []
      : assignReplicas({
          brokers: state.activeBrokers(),
          partitions: added,
          replicationFactor: t.replicationFactor,
          existing: allReplicaLists(state),
          topicExisting: t.partitions.map((p) => p.replicas),
        })
  const cmd: CreatePartitions = { type: CommandType.CreatePartitions, name: request.name, partitions: request.partitions, assignment }
  validate(cmd, state)
  return cmd
}

/** What planRebalance proposes. */
export interface RebalancePlan {
  /** One command per changed partition, guarded by topic id and partition epoch; each may be proposed alone. */
  readonly commands: readonly ReassignPartition[]
  /** Replicas that change broker (each is a copy of the partition's data). */
  readonly moves: number
  /** Commands that only reorder replicas (a new preferred leader, no data moved). */
  readonly reorders: number
}

/**
 * Moves replicas so that they sit only on `brokers` (default: the active
 * brokers) and evenly, with the fewest moves; then evens out preferred
 * leaders. Brokers outside the set (decommissioning, or down for longer than
 * the leader's patience) are drained. Fenced brokers in the set keep their
 * replicas but receive none: pass a briefly fenced broker in `brokers` so a
 * restart does not move its data away.
 */
export function planRebalance(state: ControllerState, options: { readonly brokers?: readonly BrokerId[] } = {}): RebalancePlan {
  const targets = options.brokers === undefined ? state.activeBrokers() : options.brokers.map((id) => knownBroker(state, id))
  const eligible = new Set(targets.map((b) => b.id))
  const receivers = new Set(targets.filter((b) => !b.fenced).map((b) => b.id))
  const racks = rackMap(state.brokers())
  const parts = collectParts(state)
  const counts = zeroCounts(targets)
  const byBroker = new Map<BrokerId, Set<number>>()
  for (const b of targets) byBroker.set(b.id, new Set())
  parts.forEach((part, i) => {
    for (const b of part.replicas) {
      if (!eligible.has(b)) continue
      counts.set(b, counts.get(b)! + 1)
      byBroker.get(b)!.add(i)
    }
  })
  const topicCounts = new Map<string, Map<BrokerId, number>>()
  for (const part of parts) {
    let m = topicCounts.get(part.topic)
    if (m === undefined) topicCounts.set(part.topic, (m = new Map()))
    for (const b of part.replicas) m.set(b, (m.get(b) ?? 0) + 1)
  }
  const ctx: RebalanceContext = { parts, counts, byBroker, racks, receivers, topicCounts }
  evictOutsiders(ctx, eligible)
  evenOut(ctx)
  const leaderCounts = zeroCounts(targets)
  for (const part of parts) preferEligibleLeader(part.replicas, eligible, leaderCounts)
  balanceLeaders(
    parts.map((p) => p.replicas),
    leaderCounts,
    eligible,
  )
  return planOf(parts)
}

/** A leadership transfer the controller asks a partition leader for. */
export interface LeaderTransfer {
  readonly topic: string
  readonly topicId: TopicId
  readonly partition: number
  readonly from: BrokerId
  readonly to: BrokerId
}

/**
 * Partitions whose current leader is not their preferred replica
 * (replicas[0]) while the preferred one is active: ask the leader to hand
 * over (Kafka's preferred leader election). `leaderOf` tells what the caller
 * knows; partitions without a known leader are skipped (an election is on).
 */
export function planLeaderBalance(
  state: ControllerState,
  leaderOf: (topic: TopicInfo, partition: number) => BrokerId | null | undefined,
  options: { readonly transfersMax?: number } = {},
): LeaderTransfer[] {
  const transfersMax = options.transfersMax ?? leaderTransfersMax
  const active = new Set(state.activeBrokers().map((b) => b.id))
  const out: LeaderTransfer[] = []
  for (const t of state.topics()) {
    for (const p of t.partitions) {
      if (out.length >= transfersMax) return out
      const leader = leaderOf(t, p.partition)
      const preferred = p.replicas[0]!
      if (leader === null || leader === undefined || leader === preferred || !active.has(preferred)) continue
      out.push({ topic: t.name, topicId: t.id, partition: p.partition, from: leader, to: preferred })
    }
  }
  return out
}

// ---------------------------------------------------------------- rebalance steps

interface Part {
  readonly topic: string
  readonly topicId: TopicId
  readonly partition: number
  readonly epoch: number
  readonly original: readonly BrokerId[]
  readonly replicas: BrokerId[]
}

interface RebalanceContext {
  readonly parts: Part[]
  /** Replicas per eligible broker. */
  readonly counts: Map<BrokerId, number>
  /** Part indexes per eligible broker. */
  readonly byBroker: Map<BrokerId, Set<number>>
  readonly racks: Map<BrokerId, string>
  /** Eligible brokers that may receive replicas (not fenced). */
  readonly receivers: ReadonlySet<BrokerId>
  /** Replicas per topic per broker: moves prefer topics the donor holds more of, keeping topics spread. */
  readonly topicCounts: Map<string, Map<BrokerId, number>>
}

function collectParts(state: ControllerState): Part[] {
  const parts: Part[] = []
  for (const t of state.topics()) {
    for (const p of t.partitions) {
      parts.push({ topic: t.name, topicId: t.id, partition: p.partition, epoch: p.epoch, original: p.replicas, replicas: [...p.replicas] })
    }
  }
  return parts
}

/** Step 1: replace every replica on a broker outside the target set (in place, so it keeps its position). */
function evictOutsiders(ctx: RebalanceContext, eligible: ReadonlySet<BrokerId>): void {
  ctx.parts.forEach((part, i) => {
    for (let pos = 0; pos < part.replicas.length; pos++) {
      if (eligible.has(part.replicas[pos]!)) continue
      const to = bestReceiver(ctx, part, pos)
      if (to === null) continue // nowhere to go: fewer eligible brokers than replicas; stays under-placed
      moveReplica(ctx, i, pos, to)
    }
  })
}

/** Step 2: move one replica at a time from a most-loaded to a least-loaded broker until counts differ by at most one. */
function evenOut(ctx: RebalanceContext): void {
  const movesMax = ctx.parts.length * ctx.parts.reduce((n, p) => Math.max(n, p.replicas.length), 0) + 1
  for (let round = 0; round < movesMax; round++) {
    if (!evenOutOnce(ctx)) return
  }
  assert(false, 'planRebalance: evenOut did not converge')
}

function evenOutOnce(ctx: RebalanceContext): boolean {
  const byLoad = [...ctx.counts.keys()].sort((a, b) => ctx.counts.get(a)! - ctx.counts.get(b)! || a - b)
  const receivers = byLoad.filter((id) => ctx.receivers.has(id))
  for (let d = byLoad.length - 1; d >= 0; d--) {
    const donor = byLoad[d]!
    for (const receiver of receivers) {
      if (ctx.counts.get(donor)! - ctx.counts.get(receiver)! < 2) break
      const found = movableReplica(ctx, donor, receiver)
      if (found === null) continue
      moveReplica(ctx, found.part, found.pos, receiver)
      return true
    }
  }
  return false
}

/**
 * A replica on `donor` that can go to `receiver` without sharing a rack more.
 * Preference: the topic the donor holds most more of than the receiver (keeps
 * each topic spread), then a follower (the preferred leader stays), then log order.
 */
function movableReplica(ctx: RebalanceContext, donor: BrokerId, receiver: BrokerId): { part: number; pos: number } | null {
  let best: { part: number; pos: number } | null = null
  let bestKey: number[] = []
  for (const i of ctx.byBroker.get(donor)!) {
    const part = ctx.parts[i]!
    if (part.replicas.includes(receiver)) continue
    const pos = part.replicas.indexOf(donor)
    const others = part.replicas.filter((_, k) => k !== pos)
    if (rackUses(ctx.racks, others, ctx.racks.get(receiver)!) > rackUses(ctx.racks, others, ctx.racks.get(donor)!)) continue
    const tc = ctx.topicCounts.get(part.topic)!
    const key = [-((tc.get(donor) ?? 0) - (tc.get(receiver) ?? 0)), pos === 0 ? 1 : 0, i]
    if (best === null || lessThan(key, bestKey)) {
      best = { part: i, pos }
      bestKey = key
    }
  }
  return best
}

/** The receiver for the replica at `pos` of `part`: fewest rack clashes, then fewest replicas, then lowest id. */
function bestReceiver(ctx: RebalanceContext, part: Part, pos: number): BrokerId | null {
  const others = part.replicas.filter((_, k) => k !== pos)
  let best: BrokerId | null = null
  let bestKey: number[] = []
  for (const id of ctx.receivers) {
    if (part.replicas.includes(id)) continue
    const key = [rackUses(ctx.racks, others, ctx.racks.get(id)!), ctx.counts.get(id)!, id]
    if (best === null || lessThan(key, bestKey)) {
      best = id
      bestKey = key
    }
  }
  return best
}

function moveReplica(ctx: RebalanceContext, i: number, pos: number, to: BrokerId): void {
  const part = ctx.parts[i]!
  const from = part.replicas[pos]!
  assert(!part.replicas.includes(to), 'moveReplica: target already a replica')
  part.replicas[pos] = to
  if (ctx.counts.has(from)) {
    ctx.counts.set(from, ctx.counts.get(from)! - 1)
    ctx.byBroker.get(from)!.delete(i)
  }
  ctx.counts.set(to, ctx.counts.get(to)! + 1)
  ctx.byBroker.get(to)!.add(i)
  const tc = ctx.topicCounts.get(part.topic)!
  tc.set(from, tc.get(from)! - 1)
  tc.set(to, (tc.get(to) ?? 0) + 1)
}

/** If replicas[0] cannot lead (outside the set), swap in the eligible replica with the fewest leaderships; count the leader. */
function preferEligibleLeader(replicas: BrokerId[], eligible: ReadonlySet<BrokerId>, leaderCounts: Map<BrokerId, number>): void {
  if (!eligible.has(replicas[0]!)) {
    let best = -1
    for (let k = 1; k < replicas.length; k++) {
      if (!eligible.has(replicas[k]!)) continue
      if (best < 0 || leaderCounts.get(replicas[k]!)! < leaderCounts.get(replicas[best]!)!) best = k
    }
    if (best < 0) return
    swap(replicas, 0, best)
  }
  leaderCounts.set(replicas[0]!, leaderCounts.get(replicas[0]!)! + 1)
}

function planOf(parts: readonly Part[]): RebalancePlan {
  const commands: ReassignPartition[] = []
  let moves = 0
  let reorders = 0
  for (const part of parts) {
    if (part.replicas.every((b, k) => b === part.original[k])) continue
    const added = part.replicas.filter((b) => !part.original.includes(b)).length
    moves += added
    if (added === 0) reorders++
    commands.push({
      type: CommandType.ReassignPartition,
      topic: part.topic,
      partition: part.partition,
      replicas: [...part.replicas],
      topicId: part.topicId,
      epoch: part.epoch,
    })
  }
  return { commands, moves, reorders }
}

// ---------------------------------------------------------------- leader balancing

/**
 * Reorders `lists` (replicas[0] = preferred leader) so leader counts over
 * `eligible` are as even as the replica sets allow, by shifting leadership
 * along chains (see the header). `leaderCounts` holds every leadership
 * already counted, these lists' included, and is updated.
 */
function balanceLeaders(lists: BrokerId[][], leaderCounts: Map<BrokerId, number>, eligible: ReadonlySet<BrokerId>): void {
  const ledBy = new Map<BrokerId, Set<number>>()
  for (const id of eligible) ledBy.set(id, new Set())
  lists.forEach((replicas, i) => ledBy.get(replicas[0]!)?.add(i))
  // Each shift lowers the sum of squared leader counts by at least 2, so this bound is never reached.
  let squares = 0
  for (const id of eligible) squares += leaderCounts.get(id)! ** 2
  for (let round = 0; round <= squares; round++) {
    if (!shiftOnce(lists, leaderCounts, ledBy, eligible)) return
  }
  assert(false, 'balanceLeaders did not converge')
}

function shiftOnce(
  lists: BrokerId[][],
  leaderCounts: Map<BrokerId, number>,
  ledBy: Map<BrokerId, Set<number>>,
  eligible: ReadonlySet<BrokerId>,
): boolean {
  const sources = [...eligible].sort((a, b) => leaderCounts.get(b)! - leaderCounts.get(a)! || a - b)
  for (const source of sources) {
    const path = shiftPath(lists, leaderCounts, ledBy, eligible, source)
    if (path === null) continue
    // Walk back from the sink: each list on the path gets a new leader (the next broker on the chain).
    for (const { list, to } of path) {
      const replicas = lists[list]!
      const from = replicas[0]!
      swap(replicas, 0, replicas.indexOf(to))
      ledBy.get(from)!.delete(list)
      ledBy.get(to)!.add(list)
    }
    const sink = path[0]!.to
    leaderCounts.set(source, leaderCounts.get(source)! - 1)
    leaderCounts.set(sink, leaderCounts.get(sink)! + 1)
    return true
  }
  return false
}

/** Breadth-first search from `source` for a broker leading at least two fewer; the hops from sink back to source. */
function shiftPath(
  lists: BrokerId[][],
  leaderCounts: Map<BrokerId, number>,
  ledBy: Map<BrokerId, Set<number>>,
  eligible: ReadonlySet<BrokerId>,
  source: BrokerId,
): { list: number; to: BrokerId }[] | null {
  const limit = leaderCounts.get(source)! - 2
  const via = new Map<BrokerId, { list: number; from: BrokerId }>()
  const queue: BrokerId[] = [source]
  const seen = new Set<BrokerId>([source])
  for (let head = 0; head < queue.length; head++) {
    const at = queue[head]!
    for (const list of ledBy.get(at)!) {
      for (const next of lists[list]!) {
        if (seen.has(next) || !eligible.has(next)) continue
        seen.add(next)
        via.set(next, { list, from: at })
        if (leaderCounts.get(next)! <= limit) return unwind(via, next, source)
        queue.push(next)
      }
    }
  }
  return null
}

function unwind(via: Map<BrokerId, { list: number; from: BrokerId }>, sink: BrokerId, source: BrokerId): { list: number; to: BrokerId }[] {
  const path: { list: number; to: BrokerId }[] = []
  let at = sink
  while (at !== source) {
    const hop = via.get(at)!
    path.push({ list: hop.list, to: at })
    at = hop.from
  }
  return path
}

// ---------------------------------------------------------------- small helpers

function rackMap(brokers: readonly PlacementBroker[]): Map<BrokerId, string> {
  // A broker without a rack is its own failure domain; the prefix cannot clash with a real rack (printable ASCII).
  return new Map(brokers.map((b) => [b.id, b.rack ?? `\u0000${b.id}`]))
}

function rackUses(racks: ReadonlyMap<BrokerId, string>, replicas: readonly BrokerId[], rack: string): number {
  let n = 0
  for (const id of replicas) if (racks.get(id) === rack) n++
  return n
}

function increment(counts: Map<BrokerId, number>, id: BrokerId): void {
  counts.set(id, counts.get(id)! + 1)
}

function zeroCounts(brokers: readonly PlacementBroker[]): Map<BrokerId, number> {
  return new Map(brokers.map((b) => [b.id, 0]))
}

function countReplicas(replicas: readonly BrokerId[], replicaCounts: Map<BrokerId, number>, leaderCounts: Map<BrokerId, number>): void {
  for (const id of replicas) if (replicaCounts.has(id)) replicaCounts.set(id, replicaCounts.get(id)! + 1)
  const leader = replicas[0]!
  if (leaderCounts.has(leader)) leaderCounts.set(leader, leaderCounts.get(leader)! + 1)
}

function allReplicaLists(state: ControllerState): BrokerId[][] {
  const out: BrokerId[][] = []
  for (const t of state.topics()) for (const p of t.partitions) out.push([...p.replicas])
  return out
}

function knownBroker(state: ControllerState, id: BrokerId): { id: BrokerId; rack: string | null; fenced: boolean } {
  const b = state.broker(id)
  if (b === undefined) throw new RillError(ErrorCode.INVALID_REQUEST, `broker ${id} is not registered`, { details: { field: 'brokers', broker: id } })
  return b
}

/** Lexicographic a < b. */
function lessThan(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!
  return false
}

function swap(list: BrokerId[], i: number, j: number): void {
  const t = list[i]!
  list[i] = list[j]!
  list[j] = t
}
