/**
 * The group coordinator of one broker: serves the groups whose offsets
 * partition this broker leads (docs/groups.md).
 *
 *   join / heartbeat / leave / expiry ──▶ per-group queue ──▶ assignStep ──▶ `members` command
 *   commit ──▶ `commit` command (fenced at apply)          ──▶ Raft ──▶ OffsetsState on every replica
 *
 * What must survive a crash (members, assignments, generation, offsets) is
 * in the replicated state; only session deadlines live here, and a new
 * coordinator gives every member a full session timeout before expiring it.
 * Changes to one group are computed one at a time from its applied state;
 * the `members` command carries the generation it was computed from, so a
 * change computed from a stale view is refused at apply rather than applied.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { ErrorCode, RillError, systemRuntime } from '../base/index.ts'
import type {
  CommitOffsetsRequest,
  GroupDescription,
  GroupOffsetsResponse,
  HeartbeatRequest,
  JoinGroupRequest,
  MemberAssignmentResponse,
  TopicPartitionOffset,
  TopicPartitions,
} from '../wire/index.ts'
import { assignStep, parseTpKey, type TpKey, tpKey } from './assignor.ts'
import type { OffsetsReplica } from './replica.ts'
import { groupLimits, type GroupState, type MemberState } from './state.ts'

export const sessionTimeoutMsDefault = 10_000
export const sessionTimeoutMsMin = 1000
export const sessionTimeoutMsMax = 60_000
/** Heartbeat interval: a third of the session, at most this. */
const heartbeatIntervalMsMax = 3000
/** Operations queued on one group (joins, heartbeats, commits) before more are refused. */
const groupQueueMax = 2000
/** Times a change is recomputed when it raced another (generation moved). */
const changeAttempts = 3
/** A gap between two session checks longer than this (and than 4 usual gaps) means this coordinator was paused. */
const expiryPauseMsMin = 1000

/** What the coordinator needs of its broker. */
export interface CoordinatorHost {
  /**
   * The offsets replica of `group`, led here and ready. Throws NOT_LEADER
   * (with the coordinator's `{id, url}`) when another broker coordinates it,
   * NO_QUORUM while the offsets topic is being created or elects a leader.
   */
  offsetsReplicaFor(group: string): Promise<OffsetsReplica>
  /** Partitions of a topic now; 0 when it does not exist. */
  partitionCount(topic: string): number
  readonly brokerId: number
}

export class GroupCoordinator {
  readonly #host: CoordinatorHost
  readonly #logger: Logger
  readonly #now: () => number
  /** Session deadlines: group → member → last heard of (ms, monotonic). */
  readonly #seen = new Map<string, Map<string, number>>()
  /** When expireSessions last ran (0: never), and the usual gap between two runs. */
  #lastExpiryCheckMs = 0
  #expiryIntervalMs = 0
  readonly #newMemberId: () => string
  readonly #queues = new Map<string, { tail: Promise<unknown>; length: number }>()

  constructor(host: CoordinatorHost, options: { logger: Logger; now?: () => number; newMemberId?: () => string }) {
    this.#host = host
    this.#logger = options.logger
    this.#now = options.now ?? (() => systemRuntime.nowMs())
    this.#newMemberId = options.newMemberId ?? randomUUID
  }

  async join(group: string, request: JoinGroupRequest): Promise<MemberAssignmentResponse> {
    const topics = normalizeTopics(request.topics)
    const sessionTimeoutMs = request.sessionTimeoutMs ?? sessionTimeoutMsDefault
    if (!Number.isSafeInteger(sessionTimeoutMs) || sessionTimeoutMs < sessionTimeoutMsMin || sessionTimeoutMs > sessionTimeoutMsMax) {
      throw new RillError(ErrorCode.INVALID_REQUEST, `sessionTimeoutMs must be ${sessionTimeoutMsMin}..${sessionTimeoutMsMax}`)
    }
    const memberId = this.#newMemberId()
    const member: MemberState = {
      memberId,
      clientId: request.clientId ?? '',
      rack: request.rack ?? null,
      topics,
      sessionTimeoutMs,
      memberEpoch: 0,
      assigned: [],
      revoking: [],
    }
    const g = await this.#change(group, (current) => {
      if (current.members.size >= groupLimits.membersPerGroup) throw new RillError(ErrorCode.TOO_LARGE, `group ${group} has ${groupLimits.membersPerGroup} members already`)
      return [...current.members.values(), member]
    })
    this.#touch(group, memberId)
    this.#logger.info({ event: 'group_join', group, member: memberId, generation: g.generation }, `member joined group ${group}`)
    return this.#answer(group, g, memberId)
  }

  async heartbeat(group: string, memberId: string, request: HeartbeatRequest): Promise<MemberAssignmentResponse> {
    const owned = new Set<TpKey>()
    for (const tp of request.owned) for (const p of tp.partitions) owned.add(tpKey(tp.topic, p))
    const topics = request.topics === undefined ? null : normalizeTopics(request.topics)
    const g = await this.#change(group, (current) => {
      const m = current.members.get(memberId)
      if (m === undefined) throw unknownMember(group, memberId)
      // Revoked partitions it no longer holds are now free for their next owner, but only
      // if it says so having seen the revocation (a stale heartbeat's `owned` is out of date).
      const seen = request.memberEpoch === m.memberEpoch
      const revoking = seen ? m.revoking.filter((k) => owned.has(k)) : m.revoking
      const next: MemberState = { ...m, revoking, topics: topics ?? m.topics }
      return [...current.members.values()].map((x) => (x.memberId === memberId ? next : x))
    })
    this.#touch(group, memberId)
    return this.#answer(group, g, memberId)
  }

  async leave(group: string, memberId: string): Promise<void> {
    await this.#change(group, (current) => {
      if (!current.members.has(memberId)) throw unknownMember(group, memberId)
      return [...current.members.values()].filter((m) => m.memberId !== memberId)
    })
    this.#seen.get(group)?.delete(memberId)
    this.#logger.info({ event: 'group_leave', group, member: memberId }, `member left group ${group}`)
  }

  async commit(group: string, request: CommitOffsetsRequest): Promise<GroupOffsetsResponse> {
    if (request.offsets.length > groupLimits.offsetsPerCommit) throw new RillError(ErrorCode.TOO_LARGE, `at most ${groupLimits.offsetsPerCommit} offsets per commit`)
    for (const o of request.offsets) {
      const n = this.#host.partitionCount(o.topic)
      if (n === 0) throw new RillError(ErrorCode.UNKNOWN_TOPIC, `unknown topic ${o.topic}`, { details: { topic: o.topic } })
      if (o.partition >= n) throw new RillError(ErrorCode.UNKNOWN_PARTITION, `topic ${o.topic} has no partition ${o.partition}`, { details: { topic: o.topic, partition: o.partition } })
    }
    const replica = await this.#host.offsetsReplicaFor(group)
    const r = await replica.propose({
      type: 'commit',
      group,
      memberId: request.memberId ?? null,
      offsets: request.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: o.offset })),
      allowBackwards: request.allowBackwards === true,
    })
    if (!r.ok) throw r.error
    if (request.memberId !== undefined) this.#touch(group, request.memberId)
    const stored = replica.state.group(group).offsets
    return {
      offsets: request.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: stored.get(tpKey(o.topic, o.partition)) ?? o.offset })),
    }
  }

  async offsets(group: string): Promise<GroupOffsetsResponse> {
    const replica = await this.#host.offsetsReplicaFor(group)
    // A consumer starts a partition here: it must see the last commit, not a deposed leader's view.
    await replica.confirmLeadership()
    return { offsets: offsetsOf(replica.state.group(group)) }
  }

  async describe(group: string): Promise<GroupDescription> {
    const replica = await this.#host.offsetsReplicaFor(group)
    await replica.confirmLeadership()
    const g = replica.state.group(group)
    return {
      group,
      generation: g.generation,
      coordinator: this.#host.brokerId,
      members: [...g.members.values()].map((m) => ({
        memberId: m.memberId,
        clientId: m.clientId,
        rack: m.rack,
        topics: [...m.topics],
        assignment: byTopic(m.assigned),
        revoking: byTopic(m.revoking),
        sessionTimeoutMs: m.sessionTimeoutMs,
      })),
      offsets: offsetsOf(g),
    }
  }

  /**
   * A replica became leader: every member of its groups gets a full session
   * from now (the old coordinator's deadlines died with it).
   */
  leadershipGained(replica: OffsetsReplica): void {
    const now = this.#now()
    for (const name of replica.state.groupNames()) {
      const seen = new Map<string, number>()
      for (const id of replica.state.group(name).members.keys()) seen.set(id, now)
      this.#seen.set(name, seen)
    }
  }

  /**
   * Expires members whose session ran out, in the groups of the replicas led
   * here. A coordinator that has not run this check for a while (its process
   * was paused) cannot tell silent members from ones it could not hear: like
   * a new coordinator, it gives every member a full session first.
   */
  expireSessions(replicas: Iterable<OffsetsReplica>): void {
    const now = this.#now()
    const gapMs = this.#lastExpiryCheckMs === 0 ? 0 : now - this.#lastExpiryCheckMs
    // A pause is a gap far longer than the usual one between checks (a few ticks).
    const paused = this.#expiryIntervalMs > 0 && gapMs > Math.max(expiryPauseMsMin, 4 * this.#expiryIntervalMs)
    if (!paused && gapMs > 0) this.#expiryIntervalMs = gapMs
    this.#lastExpiryCheckMs = now
    if (paused) this.#logger.warn({ event: 'group_sessions_renewed', gapMs: Math.round(gapMs) }, 'coordinator did not run for a while: every member gets a full session')
    for (const replica of replicas) {
      if (paused) {
        if (replica.isReadyLeader()) this.leadershipGained(replica)
        continue
      }
      if (!replica.isReadyLeader()) continue
      for (const name of replica.state.groupNames()) {
        const g = replica.state.group(name)
        if (g.members.size === 0) continue
        let seen = this.#seen.get(name)
        if (seen === undefined) this.#seen.set(name, (seen = new Map()))
        const expired: string[] = []
        for (const m of g.members.values()) {
          const last = seen.get(m.memberId)
          if (last === undefined) seen.set(m.memberId, now)
          else if (now - last > m.sessionTimeoutMs) expired.push(m.memberId)
        }
        if (expired.length === 0) continue
        // Checked again when the change runs: a heartbeat answered meanwhile renewed its member's session
        // (sim:cluster seed 187 expired a member 2 ms after answering its heartbeat with its partitions).
        const stillSilent = (m: MemberState): boolean => {
          const last = seen.get(m.memberId)
          return last !== undefined && this.#now() - last > m.sessionTimeoutMs
        }
        this.#change(name, (current) => [...current.members.values()].filter((m) => !(expired.includes(m.memberId) && stillSilent(m))))
          .then((after) => {
            const gone = expired.filter((id) => !after.members.has(id))
            for (const id of gone) seen.delete(id)
            if (gone.length > 0) this.#logger.info({ event: 'group_expire', group: name, members: gone, generation: after.generation }, `members of group ${name} expired`)
          })
          .catch((error: unknown) => this.#logger.debug({ event: 'group_expire_retry', group: name, err: error }, 'expiry will be retried'))
      }
    }
  }

  #touch(group: string, memberId: string): void {
    let seen = this.#seen.get(group)
    if (seen === undefined) this.#seen.set(group, (seen = new Map()))
    seen.set(memberId, this.#now())
  }

  /**
   * Applies `edit` to the group's members, rebalances, and proposes the
   * result if anything changed; one change per group at a time.
   */
  #change(group: string, edit: (current: GroupState) => MemberState[]): Promise<GroupState> {
    return this.#serialize(group, async () => {
      for (let attempt = 1; ; attempt++) {
        const replica = await this.#host.offsetsReplicaFor(group)
        const current = replica.state.group(group)
        const edited = edit(current)
        const balanced = this.#rebalance(edited).map((m) => {
          const before = current.members.get(m.memberId)
          const changed = before === undefined || !sameList(m.assigned, before.assigned) || !sameList(m.revoking, before.revoking)
          return changed ? { ...m, memberEpoch: current.generation + 1 } : m
        })
        if (sameMembers(balanced, current)) {
          // Nothing to write: answer from memory, once a quorum says this is still the coordinator.
          await replica.confirmLeadership()
          return replica.state.group(group)
        }
        const r = await replica.propose({ type: 'members', group, expectGeneration: current.generation, members: balanced })
        if (r.ok) return replica.state.group(group)
        if (r.error.code !== ErrorCode.PROPOSAL_DROPPED || attempt >= changeAttempts) throw r.error
      }
    })
  }

  #rebalance(members: readonly MemberState[]): MemberState[] {
    const byId = new Map(members.map((m) => [m.memberId, m]))
    const step = assignStep(members, (t) => this.#host.partitionCount(t))
    return step.map((s) => ({ ...byId.get(s.memberId)!, assigned: s.assigned, revoking: s.revoking }))
  }

  async #serialize<T>(group: string, fn: () => Promise<T>): Promise<T> {
    let q = this.#queues.get(group)
    if (q === undefined) this.#queues.set(group, (q = { tail: Promise.resolve(), length: 0 }))
    if (q.length >= groupQueueMax) throw new RillError(ErrorCode.NO_QUORUM, `group ${group}: ${groupQueueMax} operations already queued`)
    q.length++
    const queue = q
    const run = queue.tail.then(fn, fn)
    queue.tail = run.catch(() => undefined)
    try {
      return await run
    } finally {
      queue.length--
      if (queue.length === 0 && this.#queues.get(group) === queue) this.#queues.delete(group)
    }
  }

  #answer(group: string, g: GroupState, memberId: string): MemberAssignmentResponse {
    const m = g.members.get(memberId)
    if (m === undefined) throw unknownMember(group, memberId)
    return {
      memberId,
      generation: g.generation,
      memberEpoch: m.memberEpoch,
      assignment: byTopic(m.assigned),
      heartbeatIntervalMs: Math.min(heartbeatIntervalMsMax, Math.floor(m.sessionTimeoutMs / 3)),
      sessionTimeoutMs: m.sessionTimeoutMs,
    }
  }
}

function unknownMember(group: string, memberId: string): RillError {
  return new RillError(ErrorCode.UNKNOWN_MEMBER, `group ${group} has no member ${memberId} (expired or left): rejoin`)
}

function normalizeTopics(topics: readonly string[]): string[] {
  if (topics.length === 0 || topics.length > groupLimits.topicsPerMember) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `a member subscribes to 1..${groupLimits.topicsPerMember} topics`)
  }
  return [...new Set(topics)].sort()
}

function sameMembers(next: readonly MemberState[], current: GroupState): boolean {
  if (next.length !== current.members.size) return false
  for (const m of next) {
    const c = current.members.get(m.memberId)
    if (c === undefined) return false
    if (!sameList(m.assigned, c.assigned) || !sameList(m.revoking, c.revoking) || !sameList(m.topics, c.topics)) return false
  }
  return true
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function byTopic(keys: readonly TpKey[]): TopicPartitions[] {
  const out = new Map<string, number[]>()
  for (const k of keys) {
    const { topic, partition } = parseTpKey(k)
    let ps = out.get(topic)
    if (ps === undefined) out.set(topic, (ps = []))
    ps.push(partition)
  }
  return [...out].map(([topic, partitions]) => ({ topic, partitions: partitions.sort((a, b) => a - b) }))
}

function offsetsOf(g: GroupState): TopicPartitionOffset[] {
  return [...g.offsets].map(([k, offset]) => ({ ...parseTpKey(k), offset }))
}
