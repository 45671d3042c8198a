/**
 * The partition replicas this broker hosts, as the controller assigned them
 * (the group manager, in Redpanda's terms). After every metadata change it
 * reconciles: replicas no longer assigned here are closed and their logs
 * removed, new ones are opened (a few at a time), and the peer list follows
 * the brokers in the metadata.
 *
 *   metadata applied ─▶ scheduleReconcile ─▶ reconcile (one at a time; again if more changed meanwhile)
 *   tick ─▶ every replica that is not quiet      peer message ─▶ step(gid, m)
 *
 * A replica whose state machine throws stops alone; the broker and its
 * other groups go on.
 *
 * A replica that cannot open is not dropped (issue 10, hole 4: with its
 * descriptors exhausted a broker never opened a new topic's replicas, and
 * nothing said so). Replicas open only while the descriptors left stay
 * above a reserve (descriptors.ts); one that does not fit or whose open
 * fails is kept as offline — in `status()`, in `offline()` for the metadata
 * answer (Kafka's offline replicas), counted by the metrics — and retried
 * with a doubling backoff until it opens or is no longer assigned here.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ErrorCode, RillError, type Runtime, type SeededRandom } from '../base/index.ts'
import type { ControllerState, HostedReplica } from '../controller/index.ts'
import type { LogIo, LogStore, PartitionLog } from '../log/index.ts'
import type { Message, NodeId } from '../raft/index.ts'
import { Role } from '../raft/index.ts'
import { FileSnapshotStore, MemorySnapshotStore, Partition } from '../partition/index.ts'
import type { ReplicaOptions, SnapshotStore } from '../partition/index.ts'
import type { PeerNetwork } from '../transport/index.ts'
import { OffsetsReplica } from '../groups/index.ts'
import { readBatchHeader, stampBaseOffset } from '../wire/index.ts'
import type { BrokerConfig } from './config.ts'
import type { BrokerRef } from './controller-client.ts'
import { groupIdOf, isInternalTopic, offsetsTopic } from './names.ts'
import { metadataPeers } from './peer-router.ts'
import { replicasThatFit, type DescriptorProbe } from './descriptors.ts'

/** Replicas opened at once while reconciling. */
const replicaOpensConcurrent = 32
/** A failed reconcile (a replica that could not open) is tried again after this, doubling up to the max. */
const reconcileRetryMsMin = 1000
const reconcileRetryMsMax = 30_000

const codec = { readHeader: readBatchHeader, stampBaseOffset }

export interface HostedPartition {
  readonly topic: string
  readonly topicId: number
  readonly partition: number
  /** The data partition, or the offsets partition's replica (`offsets` set). */
  readonly replica: Partition | OffsetsReplica
  /** Set for a replica of `__consumer_offsets`. */
  readonly offsets: OffsetsReplica | null
  readonly logName: string
  /** The replica's log: closed with it when the replica is removed (the replica's close leaves its log open). */
  readonly log: PartitionLog
}

/** A partition replica's status, for `rill status` and tests. */
export interface ReplicaStatus {
  topic: string
  partition: number
  role: Role
  leader: number
  term: number
  highWatermark: number
  quiet: boolean
  /** Why the replica stopped (a storage failure) or could not open (`offline`), or null while it runs. */
  failure: string | null
  /** Assigned here but not open (no descriptors left, or its open failed): retried with backoff. */
  offline?: true
}

/** Why an assigned replica is not open: no descriptors to spare, or its open failed. */
export type ReplicaOpenFailure = 'descriptors' | 'error'

/** An assigned replica that is not open yet. */
interface OfflineReplica {
  readonly topic: string
  readonly partition: number
  readonly reason: ReplicaOpenFailure
  readonly message: string
  /** Failed opens in a row (a replica refused for descriptors counts too). */
  readonly attempts: number
}

/** What hosting needs of the controller client: the metadata and the answers built from it. */
export interface HostingMetadata {
  readonly state: ControllerState
  unknownTopic(name: string): RillError
  brokerRef(id: NodeId): BrokerRef
}

export interface HostedGroupsOptions {
  readonly config: BrokerConfig
  readonly logger: Logger
  readonly store: LogStore
  readonly io: LogIo
  readonly random: SeededRandom
  readonly runtime: Runtime
  readonly network: Pick<PeerNetwork, 'setPeers' | 'connected'>
  readonly send: (gid: number, msgs: readonly Message[]) => void
  readonly metadata: HostingMetadata
  readonly isStopped: () => boolean
  /** A replica here became leader. */
  readonly onLeadershipWon: () => void
  /** A replica of the offsets topic here became leader (after `onLeadershipWon`). */
  readonly onOffsetsLeadership: (replica: OffsetsReplica) => void
  /** Descriptors open and allowed now (descriptors.ts); null answers: unknown, nothing refused for it. */
  readonly descriptors: DescriptorProbe
  /** An assigned replica did not open this pass (for the metrics). */
  readonly onReplicaOpenFailed?: (reason: ReplicaOpenFailure) => void
}

export class HostedGroups {
  readonly #brokerId: number
  readonly #config: BrokerConfig
  readonly #logger: Logger
  readonly #options: HostedGroupsOptions
  readonly #metadata: HostingMetadata
  readonly #partitions = new Map<number, HostedPartition>()
  /** Assigned here, not open: at most one entry per assigned replica, removed when it opens or is unassigned. */
  readonly #offline = new Map<number, OfflineReplica>()
  #reconciling = false
  #reconcileAgain = false
  /** Backoff of the next reconcile after one failed (0: the last one succeeded). */
  #reconcileRetryMs = 0

  constructor(options: HostedGroupsOptions) {
    this.#brokerId = options.config.id
    this.#config = options.config
    this.#logger = options.logger
    this.#metadata = options.metadata
    this.#options = options
  }

  get size(): number {
    return this.#partitions.size
  }

  get(gid: number): HostedPartition | undefined {
    return this.#partitions.get(gid)
  }

  values(): IterableIterator<HostedPartition> {
    return this.#partitions.values()
  }

  entries(): IterableIterator<[number, HostedPartition]> {
    return this.#partitions.entries()
  }

  *offsetsReplicas(): Iterable<OffsetsReplica> {
    for (const h of this.#partitions.values()) if (h.offsets !== null) yield h.offsets
  }

  // ───────────────────────────── reconcile ─────────────────────────────

  /** Reconciles soon; a change while a pass runs makes one more pass after it. */
  scheduleReconcile(): void {
    if (this.#reconciling) {
      this.#reconcileAgain = true
      return
    }
    this.#reconciling = true
    this.#options.runtime.defer(() => {
      this.#reconcile()
        .then(
          (offline) => {
            if (offline === 0) this.#reconcileRetryMs = 0
            else this.#retryLater({ offline })
          },
          (error: unknown) => this.#retryLater({ err: error }),
        )
        .finally(() => {
          this.#reconciling = false
          if (this.#reconcileAgain) {
            this.#reconcileAgain = false
            this.scheduleReconcile()
          }
        })
    })
  }

  /**
   * A replica that failed to open (a disk error, no descriptors) is retried later, not left
   * unopened until the metadata changes again (sim:cluster with bad sectors: replicas missing for good).
   */
  #retryLater(why: { offline: number } | { err: unknown }): void {
    this.#reconcileRetryMs = Math.min(reconcileRetryMsMax, Math.max(reconcileRetryMsMin, this.#reconcileRetryMs * 2))
    if ('err' in why) this.#logger.error({ event: 'reconcile_failed', err: why.err, retryMs: this.#reconcileRetryMs }, 'reconcile failed; retrying')
    else this.#logger.warn({ event: 'replicas_offline', offline: why.offline, retryMs: this.#reconcileRetryMs }, `${why.offline} assigned replicas could not open; retrying`)
    this.#options.runtime.setTimer(() => {
      if (!this.#options.isStopped()) this.scheduleReconcile()
    }, this.#reconcileRetryMs)
  }

  /** Makes the hosted replicas and the peer list match the metadata; answers how many assigned replicas are left offline. */
  async #reconcile(): Promise<number> {
    if (this.#options.isStopped()) return 0
    const state = this.#metadata.state
    this.#options.network.setPeers(metadataPeers(this.#config, state.brokers()))
    const wanted = new Map<number, HostedReplica>()
    for (const h of state.hostedBy(this.#brokerId)) wanted.set(groupIdOf(h.topicId, h.partition), h)
    for (const [gid, hosted] of this.#partitions) {
      if (wanted.has(gid)) continue
      this.#partitions.delete(gid)
      await hosted.replica.close()
      // Closed first: the store refuses to remove an open log, and an open log holds its segments' descriptors
      // (a deleted topic's replicas kept every descriptor and every file until the broker restarted).
      await hosted.log.close().catch(() => undefined)
      await this.#options.store.removeLog(hosted.logName).catch((error: unknown) =>
        this.#logger.warn({ event: 'replica_log_not_removed', topic: hosted.topic, partition: hosted.partition, err: error }, 'log of a removed replica not removed'))
      this.#logger.info({ event: 'replica_removed', topic: hosted.topic, partition: hosted.partition }, 'replica removed')
    }
    for (const gid of this.#offline.keys()) if (!wanted.has(gid)) this.#offline.delete(gid)
    // Opening a replica costs a few fsyncs (log, snapshot): open several at once so a topic of
    // a thousand partitions does not wait for them one by one. Each slice only as far as the
    // descriptors left allow; what does not fit is offline until a later pass.
    const toOpen = [...wanted].filter(([gid]) => !this.#partitions.has(gid))
    let i = 0
    while (i < toOpen.length && !this.#options.isStopped()) {
      const fit = Math.min(replicaOpensConcurrent, replicasThatFit(this.#options.descriptors()))
      if (fit === 0) break
      const slice = toOpen.slice(i, i + fit)
      await Promise.all(slice.map(([gid, h]) => this.#openOrMarkOffline(gid, h)))
      i += slice.length
    }
    if (i < toOpen.length && !this.#options.isStopped()) this.#outOfDescriptors(toOpen.slice(i))
    return this.#offline.size
  }

  /** Opens one replica; a failure marks it offline (retried by the next pass) instead of failing the others. */
  async #openOrMarkOffline(gid: number, h: HostedReplica): Promise<void> {
    try {
      await this.#openReplica(gid, h)
      this.#offline.delete(gid)
    } catch (error) {
      const message = error instanceof RillError ? `${error.code}: ${error.message}` : String(error)
      this.#markOffline(gid, h, 'error', message)
      this.#logger.error({ event: 'replica_open_failed', topic: h.topic, partition: h.partition, err: error }, 'replica could not open; retrying')
    }
  }

  /** Replicas refused for want of descriptors: offline, said once per pass. */
  #outOfDescriptors(refused: readonly (readonly [number, HostedReplica])[]): void {
    const use = this.#options.descriptors()
    const message = `${ErrorCode.OVERLOADED}: too few file descriptors to open it (${use === null ? '?' : `${use.open} open of ${use.limit}`}, a reserve kept for connections): raise the limit (ulimit -n) or lower --http-connections-max`
    for (const [gid, h] of refused) this.#markOffline(gid, h, 'descriptors', message)
    this.#logger.error({ event: 'replicas_not_opened', reason: 'descriptors', count: refused.length, descriptors: use }, `${refused.length} replicas not opened: ${message}`)
  }

  #markOffline(gid: number, h: HostedReplica, reason: ReplicaOpenFailure, message: string): void {
    const attempts = (this.#offline.get(gid)?.attempts ?? 0) + 1
    this.#offline.set(gid, { topic: h.topic, partition: h.partition, reason, message, attempts })
    this.#options.onReplicaOpenFailed?.(reason)
  }

  /** Groups assigned here whose replica is not open (for the metadata answer and the metrics). */
  offline(): ReadonlySet<number> {
    return new Set(this.#offline.keys())
  }

  /** Assigned replicas not open, by reason. */
  offlineCount(): number {
    return this.#offline.size
  }

  async #openReplica(gid: number, h: HostedReplica): Promise<void> {
    const logName = `t${h.topicId}-${h.partition}`
    if (h.topic === offsetsTopic) return this.#openOffsetsReplica(gid, h, logName)
    const { config, store, io } = this.#options
    const persistence = h.config.persistence ?? config.defaultPersistence
    let log: PartitionLog
    let snapshots: SnapshotStore
    if (persistence === 'memory') {
      // Entries in memory only; term and vote durable (a replica never votes twice in a term).
      log = await store.openLog({ name: logName, mode: 'memory' })
      snapshots = new MemorySnapshotStore()
    } else {
      log = await store.openLog({
        name: logName,
        mode: persistence,
        ...(h.config.retentionMs === undefined || h.config.retentionMs < 0 ? {} : { retentionMs: h.config.retentionMs }),
        ...(h.config.retentionBytes === undefined || h.config.retentionBytes < 0 ? {} : { retentionBytes: h.config.retentionBytes }),
      })
      snapshots = new FileSnapshotStore(join(config.dir, 'snapshots', logName), { io })
    }
    const replica = await Partition.open({
      ...this.#replicaOptions(gid, h, log, snapshots),
      codec,
      onRoleChange: (role) => {
        if (role === Role.Leader) this.#options.onLeadershipWon()
      },
    }).catch(async (error: unknown) => {
      // Left open, the log would refuse the retry (already open) and hold its descriptors.
      await log.close().catch(() => undefined)
      throw error
    })
    this.#partitions.set(gid, { topic: h.topic, topicId: h.topicId, partition: h.partition, replica, offsets: null, logName, log })
    // The preferred replica campaigns at once, so leadership starts out spread as placement intended.
    if (h.replicas[0] === this.#brokerId && replica.raft.term <= 1) replica.campaign()
    this.#logger.info({ event: 'replica_opened', topic: h.topic, partition: h.partition, persistence }, 'replica opened')
  }

  /** What every hosted replica is opened with, whatever its state machine. */
  #replicaOptions(gid: number, h: HostedReplica, log: PartitionLog, snapshots: SnapshotStore): ReplicaOptions {
    const { config, random, runtime } = this.#options
    return {
      group: `${h.topic}/${h.partition}`,
      replicaId: this.#brokerId,
      log,
      snapshots,
      bootstrap: { voters: [...h.replicas], learners: [] },
      random: random.fork(),
      runtime,
      send: (msgs) => this.#options.send(gid, msgs),
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      // Idle groups go quiet: a broker with a thousand of them does not heartbeat each one.
      quiesce: true,
      // Said loudly: the replica takes no part until the broker restarts (its peers carry on without it).
      onStopped: (error) => this.#logger.error({ event: 'replica_stopped', topic: h.topic, partition: h.partition, err: error }, 'replica stopped on an error; it rejoins when the broker restarts'),
    }
  }

  /** A replica of `__consumer_offsets`: always `sync`, whatever the broker's default. */
  async #openOffsetsReplica(gid: number, h: HostedReplica, logName: string): Promise<void> {
    const { config, store, io } = this.#options
    const log = await store.openLog({ name: logName, mode: 'sync' })
    const closeLog = async (error: unknown): Promise<never> => {
      await log.close().catch(() => undefined)
      throw error
    }
    const replica: OffsetsReplica = await OffsetsReplica.open({
      ...this.#replicaOptions(gid, h, log, new FileSnapshotStore(join(config.dir, 'snapshots', logName), { io })),
      onRoleChange: (role) => {
        if (role === Role.Leader) {
          this.#options.onLeadershipWon()
          this.#options.onOffsetsLeadership(replica)
        }
      },
    }).catch(closeLog)
    this.#partitions.set(gid, { topic: h.topic, topicId: h.topicId, partition: h.partition, replica, offsets: replica, logName, log })
    if (h.replicas[0] === this.#brokerId && replica.raft.term <= 1) replica.campaign()
    this.#logger.info({ event: 'replica_opened', topic: h.topic, partition: h.partition, persistence: 'sync' }, 'offsets replica opened')
  }

  // ───────────────────────────── driving ─────────────────────────────

  /** A peer message for group `gid` (dropped if the replica is not hosted here). */
  step(gid: number, m: Message): void {
    const h = this.#partitions.get(gid)
    if (h === undefined) return
    try {
      h.replica.step(m)
    } catch (error) {
      // A broken invariant in one partition stops that replica, not the broker and its other groups (onStopped says so).
      h.replica.fail(error)
    }
  }

  /** One tick of every replica that is not quiet. */
  tick(): void {
    for (const p of this.#partitions.values()) {
      const raft = p.replica.raft
      // The failure detector quiet groups rely on: the leader's broker is not connected.
      if (raft.quiesced && raft.role !== Role.Leader && raft.lead !== 0 && !this.#options.network.connected(raft.lead)) raft.unquiesce()
      // A quiet group has nothing to do on a tick: skip it (a thousand of them cost real CPU otherwise).
      if (!raft.quiesced) p.replica.tick()
    }
  }

  // ───────────────────────────── lookups ─────────────────────────────

  /** A data partition hosted here, for produce and fetch. */
  data(topic: string, partition: number): Partition {
    if (isInternalTopic(topic)) throw new RillError(ErrorCode.FORBIDDEN, `${topic} is the broker's own topic: no produce or fetch`)
    const h = this.#hosted(topic, partition)
    return h.replica as Partition
  }

  #hosted(topic: string, partition: number): HostedPartition {
    const t = this.#metadata.state.topic(topic)
    if (t === undefined) throw this.#metadata.unknownTopic(topic)
    const p = t.partitions[partition]
    if (p === undefined) throw new RillError(ErrorCode.UNKNOWN_PARTITION, `topic ${topic} has no partition ${partition}`, { details: { topic, partition } })
    const h = this.#partitions.get(groupIdOf(t.id, partition))
    if (h === undefined) {
      // Not a replica here: point at the preferred replica, which usually leads.
      throw new RillError(ErrorCode.NOT_LEADER, `broker ${this.#brokerId} has no replica of ${topic}/${partition}`, {
        details: { leader: this.#metadata.brokerRef(p.replicas[0] ?? 0) },
      })
    }
    return h
  }

  /** The partitions this broker leads (served to other brokers for their metadata answers). */
  localLeaderships(): { group: number; highWatermark: number }[] {
    const out: { group: number; highWatermark: number }[] = []
    for (const [gid, h] of this.#partitions) {
      if (h.replica.raft.role === Role.Leader && h.replica.failure === null) out.push({ group: gid, highWatermark: h.replica.highWatermark })
    }
    return out
  }

  /** Per-replica status for `rill status` and tests. */
  status(): ReplicaStatus[] {
    const offline = [...this.#offline.values()].map((o): ReplicaStatus => ({
      topic: o.topic,
      partition: o.partition,
      role: Role.Follower,
      leader: 0,
      term: 0,
      highWatermark: 0,
      quiet: false,
      failure: `not open after ${o.attempts} attempts: ${o.message}`,
      offline: true,
    }))
    return offline.concat([...this.#partitions.values()].map((h) => ({
      topic: h.topic,
      partition: h.partition,
      role: h.replica.raft.role,
      leader: h.replica.raft.lead,
      term: h.replica.raft.term,
      highWatermark: h.replica.highWatermark,
      quiet: h.replica.raft.quiesced,
      failure: h.replica.failure === null ? null : `${h.replica.failure.code}: ${h.replica.failure.message}`,
    })))
  }

  // ───────────────────────────── stop ─────────────────────────────

  /** Graceful stop: each replica led here hands leadership to its most caught-up peer. */
  transferLeaderships(): void {
    for (const p of this.#partitions.values()) {
      const raft = p.replica.raft
      if (raft.role !== Role.Leader) continue
      const target = [...raft.progress].filter(([id]) => id !== raft.id).sort((a, b) => b[1].match - a[1].match)[0]
      if (target !== undefined) p.replica.transferLeader(target[0])
    }
  }

  /** True while any replica here still leads. */
  leadsAny(): boolean {
    return [...this.#partitions.values()].some((p) => p.replica.raft.role === Role.Leader)
  }
}
