/**
 * One broker: hosts the controller group (voter on seed brokers) and the
 * partition replicas the controller assigns to it, connects them to peers,
 * and serves the BrokerService the HTTP layer calls.
 *
 *            ┌──────────── ticker (tickMs) ────────────┐
 *            ▼                                          ▼
 *   controller RaftGroup (group 0)          partition Partitions (group topicId·2^16+p)
 *     └─ ControllerState ──applied──▶ reconcile: open / close replicas, peers
 *            │ send                                     │ send
 *            └────────────▶ Transport (one frame per peer per flush) ◀──┘
 *
 * Controller commands are proposed on the controller leader; a broker that
 * is not the leader forwards topic and registration requests to it over
 * HTTP (its URL is in the replicated metadata). A broker registers itself on
 * start and again whenever the metadata does not show it, unfenced.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { ErrorCode, RillError, SeededRandom, noTimer, systemRuntime } from '../base/index.ts'
import type { Runtime, TimerHandle } from '../base/index.ts'
import type { HostedReplica } from '../controller/index.ts'
import type { LogStore, PartitionLog } from '../log/index.ts'
import { MemoryLog, nodeIo, openLogStore } from '../log/index.ts'
import type { LogIo } from '../log/index.ts'
import type { Message } from '../raft/index.ts'
import { Role } from '../raft/index.ts'
import { FileSnapshotStore, MemorySnapshotStore, Partition } from '../partition/index.ts'
import type { SnapshotStore } from '../partition/index.ts'
import { Transport } from '../transport/index.ts'
import type { PeerNetwork } from '../transport/index.ts'
import { GroupCoordinator, OffsetsReplica } from '../groups/index.ts'
import type { CreateTopicRequest, MetadataResponse, TopicDescription } from '../wire/index.ts'
import { murmur2, readBatchHeader, stampBaseOffset, toPositive } from '../wire/index.ts'
import type { BrokerConfig } from './config.ts'
import { ControllerClient, registrationCheckTicks } from './controller-client.ts'
import { makeDataDirectory } from './data-dir.ts'
import { BrokerMetrics } from './metrics.ts'
import { groupIdOf, isInternalTopic, offsetsTopic } from './names.ts'
import { metadataPeers, PeerRouter, seedPeers } from './peer-router.ts'
import { ProducerIds } from './producer-ids.ts'
import { httpPeerCalls, type BrokerRegistration, type PeerCalls } from './peer-calls.ts'
import { Liveness } from './liveness.ts'
import { Topics } from './topics.ts'
import type { FetchCall, FetchOutcome, ProduceCall, ProduceOutcome } from './calls.ts'

/** Ticks between passes that hand leadership back to preferred replicas. */
const leaderBalanceTicks = 40
/** Ticks between polls of the other brokers for the partitions they lead (5 s at the default tick). */
const leaderPollTicks = 100
/** A peer that does not answer the leadership poll within this is skipped for the round. */
const leaderPollTimeoutMs = 1000
/** Leaderships read from one peer's answer (more partitions than a cluster holds is garbage). */
const leaderPollEntriesMax = 200_000
/** Replicas opened at once while reconciling. */
const replicaOpensConcurrent = 32
/** Ticks between retention passes over hosted partitions. */
const retentionTicks = 200
/** How long a graceful stop waits for leadership to move away. */
const shutdownTransferMsMax = 3000

const codec = { readHeader: readBatchHeader, stampBaseOffset }
/** Partitions of the offsets topic: groups are spread over them by murmur2 of their name. */
export const offsetsTopicPartitions = 16
/** Ticks between two checks for expired group members. */
const sessionCheckTicks = 5
/** How long a group request waits for the offsets topic to be created and led. */
const coordinatorWaitMs = 5000

interface HostedPartition {
  readonly topic: string
  readonly topicId: number
  readonly partition: number
  /** The data partition, or the offsets partition's replica (`offsets` set). */
  readonly replica: Partition | OffsetsReplica
  /** Set for a replica of `__consumer_offsets`. */
  readonly offsets: OffsetsReplica | null
  readonly logName: string
}

/**
 * What a broker takes from the world: clock and timers, the links to other
 * brokers, calls to their APIs, randomness. `Broker.start` fills in the real
 * ones (systemRuntime, TCP Transport, HTTP); the simulator passes its own,
 * so it runs this same code on a virtual clock and a faulty network.
 */
export interface BrokerEnv {
  readonly runtime?: Runtime
  /** Links to the other brokers; default: a TCP Transport on `config.peer`. */
  readonly network?: PeerNetwork
  /** Forwards to the controller leader and leadership polls; default: HTTP with the cluster MAC. */
  readonly peerCalls?: PeerCalls
  /** Seeds elections and jitter; default: seeded from the broker id and the wall clock. */
  readonly random?: SeededRandom
  /** Metrics registry; default: a new one. */
  readonly registry?: Registry
  /** The data directory's file system; default: node:fs. */
  readonly io?: LogIo
}

export class Broker {
  readonly brokerId: number
  readonly registry: Registry
  readonly config: BrokerConfig
  readonly #logger: Logger
  readonly #store: LogStore
  readonly #transport: PeerNetwork
  readonly #peerCalls: PeerCalls
  readonly #runtime: Runtime
  readonly #random: SeededRandom
  readonly #io: LogIo
  readonly #producerIds: ProducerIds
  readonly #controller: ControllerClient
  readonly #liveness: Liveness
  readonly #topics: Topics
  readonly #partitions = new Map<number, HostedPartition>()
  #ticker: TimerHandle = noTimer
  #ticks = 0
  #reconciling = false
  #reconcileAgain = false
  #stopped = false
  /** Leaders of partitions not hosted here, as their leaders reported at the last poll. */
  #remoteLeaders = new Map<number, { leader: number; highWatermark: number }>()
  #pollingLeaders = false
  /** Registered once the transport is up (start), before any replica opens. */
  #metrics!: BrokerMetrics
  readonly #router: PeerRouter
  /** Consumer groups this broker coordinates (BrokerService.groups). */
  readonly groups: GroupCoordinator
  #creatingOffsetsTopic: Promise<void> | null = null

  private constructor(
    config: BrokerConfig,
    logger: Logger,
    parts: { store: LogStore; transport: PeerNetwork; peerCalls: PeerCalls; runtime: Runtime; random: SeededRandom; io: LogIo; registry: Registry; httpUrl: string },
  ) {
    this.brokerId = config.id
    this.config = config
    this.#logger = logger
    this.#store = parts.store
    this.#transport = parts.transport
    this.#peerCalls = parts.peerCalls
    this.#runtime = parts.runtime
    this.registry = parts.registry
    this.#random = parts.random
    this.#io = parts.io
    this.#router = new PeerRouter({ brokerId: config.id, network: parts.transport, runtime: parts.runtime })
    this.#producerIds = new ProducerIds({ brokerId: config.id, path: join(config.dir, 'producer-ids'), io: parts.io })
    const isStopped = (): boolean => this.#stopped
    this.#controller = new ControllerClient({
      config,
      logger,
      store: parts.store,
      io: parts.io,
      random: parts.random,
      runtime: parts.runtime,
      peerCalls: parts.peerCalls,
      httpUrl: parts.httpUrl,
      send: (gid, msgs) => this.#router.send(gid, msgs),
      isStopped,
      onApplied: () => this.#scheduleReconcile(),
      onLeaderChange: () => this.#liveness.reset(),
    })
    this.#liveness = new Liveness({ brokerId: config.id, logger, runtime: parts.runtime, network: parts.transport, controller: this.#controller })
    this.#topics = new Topics({ defaultPersistence: config.defaultPersistence, runtime: parts.runtime, controller: this.#controller, metadata: () => this.metadata(), isStopped })
    this.groups = new GroupCoordinator(
      { brokerId: config.id, offsetsReplicaFor: (group) => this.#offsetsReplicaFor(group), partitionCount: (t) => this.#controller.state.topic(t)?.partitions.length ?? 0 },
      { logger, now: () => parts.runtime.nowMs() },
    )
  }

  /** Opens the data directory, connects to peers and joins the controller group. */
  static async start(config: BrokerConfig, logger: Logger, options: { httpUrl: string; env?: BrokerEnv }): Promise<Broker> {
    const env = options.env ?? {}
    const runtime = env.runtime ?? systemRuntime
    const registry = env.registry ?? new Registry()
    const io = env.io ?? nodeIo
    makeDataDirectory(io, config.dir)
    const store = await openLogStore({ dir: join(config.dir, 'logs'), registry, logger, io, runtime })
    const peers = seedPeers(config)
    const transport =
      env.network ??
      new Transport({
        brokerId: config.id,
        clusterId: config.clusterId,
        secret: config.secret,
        listen: config.peer,
        peers,
        localHost: config.peer.host,
        logger,
        registry,
        runtime,
      })
    transport.setPeers(peers)
    const broker = new Broker(config, logger, {
      store,
      transport,
      peerCalls: env.peerCalls ?? httpPeerCalls(config.secret, runtime),
      runtime,
      random: env.random ?? new SeededRandom(config.id * 7919 + runtime.wallMs()),
      io,
      registry,
      httpUrl: options.httpUrl,
    })
    transport.onBatch((fromId, batch) => broker.#router.route(fromId, batch))
    await transport.start()
    broker.#metrics = new BrokerMetrics({ registry, hosted: broker.#partitions })
    await broker.#controller.open()
    broker.#router.open({ controller: (m) => broker.#controller.step(m), partition: (gid, m) => broker.#stepPartition(gid, m) })
    broker.#ticker = runtime.setRepeating(() => broker.#tick(), config.tickMs)
    logger.info({ event: 'broker_started', peer: config.peer, seeds: config.seeds.map((s) => s.id), persistence: config.defaultPersistence }, 'broker started')
    return broker
  }

  // ───────────────────────────── groups ─────────────────────────────

  /** Reconciles soon; a change while a pass runs makes one more pass after it. */
  #scheduleReconcile(): void {
    if (this.#reconciling) {
      this.#reconcileAgain = true
      return
    }
    this.#reconciling = true
    this.#runtime.defer(() => {
      this.#reconcile()
        .catch((error: unknown) => this.#logger.error({ event: 'reconcile_failed', err: error }, 'reconcile failed'))
        .finally(() => {
          this.#reconciling = false
          if (this.#reconcileAgain) {
            this.#reconcileAgain = false
            this.#scheduleReconcile()
          }
        })
    })
  }

  /** Makes the hosted replicas and the peer list match the metadata. */
  async #reconcile(): Promise<void> {
    if (this.#stopped) return
    this.#transport.setPeers(metadataPeers(this.config, this.#controller.state.brokers()))
    const wanted = new Map<number, HostedReplica>()
    for (const h of this.#controller.state.hostedBy(this.brokerId)) wanted.set(groupIdOf(h.topicId, h.partition), h)
    for (const [gid, hosted] of this.#partitions) {
      if (wanted.has(gid)) continue
      this.#partitions.delete(gid)
      await hosted.replica.close()
      await this.#store.removeLog(hosted.logName).catch(() => undefined)
      this.#logger.info({ event: 'replica_removed', topic: hosted.topic, partition: hosted.partition }, 'replica removed')
    }
    // Opening a replica costs a few fsyncs (log, snapshot): open several at once so a topic of
    // a thousand partitions does not wait for them one by one.
    const toOpen = [...wanted].filter(([gid]) => !this.#partitions.has(gid))
    for (let i = 0; i < toOpen.length && !this.#stopped; i += replicaOpensConcurrent) {
      await Promise.all(toOpen.slice(i, i + replicaOpensConcurrent).map(([gid, h]) => this.#openReplica(gid, h)))
    }
  }

  async #openReplica(gid: number, h: HostedReplica): Promise<void> {
    const logName = `t${h.topicId}-${h.partition}`
    if (h.topic === offsetsTopic) return this.#openOffsetsReplica(gid, h, logName)
    const persistence = h.config.persistence ?? this.config.defaultPersistence
    let log: PartitionLog
    let snapshots: SnapshotStore
    if (persistence === 'memory') {
      log = new MemoryLog({ name: logName })
      snapshots = new MemorySnapshotStore()
    } else {
      log = await this.#store.openLog({
        name: logName,
        mode: persistence,
        ...(h.config.retentionMs === undefined || h.config.retentionMs < 0 ? {} : { retentionMs: h.config.retentionMs }),
        ...(h.config.retentionBytes === undefined || h.config.retentionBytes < 0 ? {} : { retentionBytes: h.config.retentionBytes }),
      })
      snapshots = new FileSnapshotStore(join(this.config.dir, 'snapshots', logName), { io: this.#io })
    }
    const replica = await Partition.open({
      group: `${h.topic}/${h.partition}`,
      replicaId: this.brokerId,
      log,
      snapshots,
      bootstrap: { voters: [...h.replicas], learners: [] },
      codec,
      random: this.#random.fork(),
      runtime: this.#runtime,
      send: (msgs) => this.#router.send(gid, msgs),
      electionTicks: this.config.electionTicks,
      heartbeatTicks: this.config.heartbeatTicks,
      // Idle partitions go quiet: a broker with a thousand of them does not heartbeat each one.
      quiesce: true,
      onRoleChange: (role) => {
        if (role === Role.Leader) this.#metrics.leadershipWon()
      },
    })
    this.#partitions.set(gid, { topic: h.topic, topicId: h.topicId, partition: h.partition, replica, offsets: null, logName })
    // The preferred replica campaigns at once, so leadership starts out spread as placement intended.
    if (h.replicas[0] === this.brokerId && replica.raft.term <= 1) replica.campaign()
    this.#logger.info({ event: 'replica_opened', topic: h.topic, partition: h.partition, persistence }, 'replica opened')
  }

  /** A replica of `__consumer_offsets`: always `sync`, whatever the broker's default. */
  async #openOffsetsReplica(gid: number, h: HostedReplica, logName: string): Promise<void> {
    const log = await this.#store.openLog({ name: logName, mode: 'sync' })
    const replica: OffsetsReplica = await OffsetsReplica.open({
      group: `${h.topic}/${h.partition}`,
      replicaId: this.brokerId,
      log,
      snapshots: new FileSnapshotStore(join(this.config.dir, 'snapshots', logName), { io: this.#io }),
      bootstrap: { voters: [...h.replicas], learners: [] },
      random: this.#random.fork(),
      runtime: this.#runtime,
      send: (msgs) => this.#router.send(gid, msgs),
      electionTicks: this.config.electionTicks,
      heartbeatTicks: this.config.heartbeatTicks,
      quiesce: true,
      onRoleChange: (role) => {
        if (role === Role.Leader) {
          this.#metrics.leadershipWon()
          this.groups.leadershipGained(replica)
        }
      },
    })
    this.#partitions.set(gid, { topic: h.topic, topicId: h.topicId, partition: h.partition, replica, offsets: replica, logName })
    if (h.replicas[0] === this.brokerId && replica.raft.term <= 1) replica.campaign()
    this.#logger.info({ event: 'replica_opened', topic: h.topic, partition: h.partition, persistence: 'sync' }, 'offsets replica opened')
  }

  // ───────────────────────────── network ─────────────────────────────

  /** A peer message for a partition group (dropped if the replica is not hosted here). */
  #stepPartition(gid: number, m: Message): void {
    const h = this.#partitions.get(gid)
    if (h === undefined) return
    try {
      h.replica.step(m)
    } catch (error) {
      // A broken invariant in one partition stops that replica, not the broker and its other groups.
      this.#logger.error({ event: 'replica_failed', topic: h.topic, partition: h.partition, err: error }, 'replica stopped on an error')
      h.replica.fail(error)
    }
  }

  #tick(): void {
    if (this.#stopped) return
    this.#ticks++
    this.#controller.tick()
    for (const p of this.#partitions.values()) {
      const raft = p.replica.raft
      // The failure detector quiet groups rely on: the leader's broker is not connected.
      if (raft.quiesced && raft.role !== Role.Leader && raft.lead !== 0 && !this.#transport.connected(raft.lead)) raft.unquiesce()
      // A quiet group has nothing to do on a tick: skip it (a thousand of them cost real CPU otherwise).
      if (!raft.quiesced) p.replica.tick()
    }
    this.#transport.flush()
    if (this.#ticks % registrationCheckTicks === 0) {
      void this.#controller.ensureRegistered()
      this.#liveness.check()
      this.#controller.addLearners()
    }
    if (this.#ticks % leaderBalanceTicks === 0) this.#balanceLeaders()
    if (this.#ticks % leaderPollTicks === 0) void this.#pollLeaders()
    if (this.#ticks % retentionTicks === 0) void this.#applyRetention()
    if (this.#ticks % sessionCheckTicks === 0) this.groups.expireSessions(this.#offsetsReplicas())
  }

  *#offsetsReplicas(): Iterable<OffsetsReplica> {
    for (const h of this.#partitions.values()) if (h.offsets !== null) yield h.offsets
  }

  #retentionRunning = false

  /** Retention by time and size, one partition at a time (segment deletes are file I/O). */
  async #applyRetention(): Promise<void> {
    if (this.#retentionRunning) return
    this.#retentionRunning = true
    try {
      for (const h of [...this.#partitions.values()]) {
        if (this.#stopped) return
        const deleted = await h.replica.applyRetention(this.#runtime.wallMs()).catch((error: unknown) => {
          this.#logger.warn({ event: 'retention_failed', topic: h.topic, partition: h.partition, err: error }, 'retention failed')
          return 0
        })
        if (deleted > 0) this.#logger.info({ event: 'retention', topic: h.topic, partition: h.partition, segments: deleted }, 'retention deleted segments')
      }
    } finally {
      this.#retentionRunning = false
    }
  }

  /**
   * Placement spreads preferred replicas (replicas[0]) evenly, so leaders
   * follow them: a leader that is not the preferred replica hands over once
   * the preferred one is registered, unfenced and fully caught up (a broker
   * that comes back gets its leaderships back this way).
   */
  #balanceLeaders(): void {
    for (const h of this.#partitions.values()) {
      const raft = h.replica.raft
      if (raft.role !== Role.Leader || raft.leadTransferee !== 0) continue
      const preferred = this.#controller.state.topic(h.topic)?.partitions[h.partition]?.replicas[0]
      if (preferred === undefined || preferred === this.brokerId || this.#controller.state.broker(preferred)?.fenced !== false) continue
      const pr = raft.progress.get(preferred)
      if (pr !== undefined && pr.match === raft.log.lastIndex() && pr.recentActive) h.replica.transferLeader(preferred)
    }
  }

  /** RegisterBroker + UnfenceBroker on the controller leader (forwarded there if needed). */
  registerBroker(request: BrokerRegistration): Promise<void> {
    return this.#controller.registerBroker(request)
  }

  // ─────────────────────────── BrokerService ───────────────────────────

  metadata(): MetadataResponse {
    const leader = this.#controller.leader()
    const view = this.#controller.state.metadataView({
      controllerLeader: leader === 0 ? null : leader,
      partitionState: (t, p) => {
        const gid = groupIdOf(t.id, p)
        const h = this.#partitions.get(gid)
        if (h !== undefined && h.replica.raft.lead !== 0) return { leader: h.replica.raft.lead, highWatermark: h.replica.highWatermark }
        // Not hosted here (or no leader known locally): what the leaders said at the last poll.
        const remote = this.#remoteLeaders.get(gid)
        if (remote !== undefined) return { leader: remote.leader, highWatermark: remote.highWatermark }
        return h === undefined ? undefined : { leader: null, highWatermark: h.replica.highWatermark }
      },
    })
    return {
      brokers: view.brokers.map((b) => ({ id: b.id, url: b.url, ...(b.rack === null ? {} : { rack: b.rack }), fenced: b.fenced })),
      controller: { leader: view.controller.leader },
      topics: view.topics.map((t) => ({
        name: t.name,
        ...(isInternalTopic(t.name) ? { internal: true } : {}),
        partitions: t.partitions.map((p) => ({ partition: p.partition, leader: p.leader, replicas: [...p.replicas], highWatermark: p.highWatermark ?? 0 })),
      })),
    }
  }

  createTopic(request: CreateTopicRequest): Promise<{ name: string; partitions: number }> {
    return this.#topics.create(request)
  }

  listTopics(): string[] {
    return this.#topics.list()
  }

  describeTopic(name: string): TopicDescription {
    return this.#topics.describe(name)
  }

  deleteTopic(name: string): Promise<void> {
    return this.#topics.delete(name)
  }

  partitionCount(topic: string): number {
    return this.#topics.partitionCount(topic)
  }

  /** Ids are brokerId · 2^32 + n, never repeated (producer-ids.ts). */
  async newProducerId(): Promise<{ producerId: number; producerEpoch: number }> {
    return { producerId: await this.#producerIds.next(), producerEpoch: 0 }
  }

  /** A data partition hosted here, for produce and fetch. */
  #hostedData(topic: string, partition: number): Partition {
    if (isInternalTopic(topic)) throw new RillError(ErrorCode.FORBIDDEN, `${topic} is the broker's own topic: no produce or fetch`)
    const h = this.#hosted(topic, partition)
    return h.replica as Partition
  }

  #hosted(topic: string, partition: number): HostedPartition {
    const t = this.#controller.state.topic(topic)
    if (t === undefined) throw this.#controller.unknownTopic(topic)
    const p = t.partitions[partition]
    if (p === undefined) throw new RillError(ErrorCode.UNKNOWN_PARTITION, `topic ${topic} has no partition ${partition}`, { details: { topic, partition } })
    const h = this.#partitions.get(groupIdOf(t.id, partition))
    if (h === undefined) {
      // Not a replica here: point at the preferred replica, which usually leads.
      throw new RillError(ErrorCode.NOT_LEADER, `broker ${this.brokerId} has no replica of ${topic}/${partition}`, {
        details: { leader: this.#controller.brokerRef(p.replicas[0] ?? 0) },
      })
    }
    return h
  }

  async produce(call: ProduceCall): Promise<ProduceOutcome> {
    const replica = this.#hostedData(call.topic, call.partition)
    const startMs = this.#runtime.nowMs()
    try {
      const r = await replica.produce(call.batch, call.acks)
      this.#metrics.commitObserved(call.acks, (this.#runtime.nowMs() - startMs) / 1000)
      return { partition: call.partition, baseOffset: r.baseOffset, lastOffset: r.lastOffset }
    } catch (error) {
      throw this.#controller.withLeaderRef(error)
    }
  }

  async fetch(call: FetchCall): Promise<FetchOutcome> {
    const r = await this.#hostedData(call.topic, call.partition).fetch({
      offset: call.offset,
      bytesMax: call.maxBytes,
      waitMs: call.maxWaitMs,
      ...(call.minCommitted === undefined ? {} : { minCommitted: call.minCommitted }),
    })
    return { partition: call.partition, batches: r.batches, nextOffset: r.nextOffset, highWatermark: r.highWatermark, logStartOffset: r.logStartOffset }
  }

  // ─────────────────────────── consumer groups ───────────────────────────

  /**
   * The coordinator's replica for `group`: the leader of its offsets
   * partition, here. Creates the offsets topic on first use and waits
   * (bounded) for the partition to elect a leader; a group led elsewhere is
   * NOT_LEADER with that broker's address.
   */
  async #offsetsReplicaFor(group: string): Promise<OffsetsReplica> {
    const deadline = this.#runtime.nowMs() + coordinatorWaitMs
    for (;;) {
      await this.#ensureOffsetsTopic()
      const t = this.#controller.state.topic(offsetsTopic)
      if (t === undefined) throw new RillError(ErrorCode.NO_QUORUM, `${offsetsTopic} is being created; retry`)
      const partition = toPositive(murmur2(new TextEncoder().encode(group))) % t.partitions.length
      const gid = groupIdOf(t.id, partition)
      const h = this.#partitions.get(gid)
      if (h?.offsets?.isReadyLeader() === true) return h.offsets
      const local = h === undefined ? 0 : h.replica.raft.lead
      const leader = local !== 0 ? local : (this.#remoteLeaders.get(gid)?.leader ?? 0)
      if (leader !== 0 && leader !== this.brokerId && (h === undefined || local !== 0)) {
        throw new RillError(ErrorCode.NOT_LEADER, `group ${group} is coordinated by broker ${leader} (${offsetsTopic}/${partition})`, { details: { leader: this.#controller.brokerRef(leader) } })
      }
      if (this.#runtime.nowMs() >= deadline || this.#stopped) {
        const hint = leader === 0 ? (t.partitions[partition]?.replicas[0] ?? 0) : leader
        if (hint !== 0 && hint !== this.brokerId) throw new RillError(ErrorCode.NOT_LEADER, `group ${group}: coordinator not known here; try broker ${hint}`, { details: { leader: this.#controller.brokerRef(hint) } })
        throw new RillError(ErrorCode.NO_QUORUM, `group ${group}: ${offsetsTopic}/${partition} has no leader yet; retry`)
      }
      await this.#runtime.sleep(20)
    }
  }

  /** Creates `__consumer_offsets` on first use (through the controller leader), once. */
  async #ensureOffsetsTopic(): Promise<void> {
    if (this.#controller.state.topic(offsetsTopic) !== undefined) return
    this.#creatingOffsetsTopic ??= this.createOffsetsTopic()
      .catch((error: unknown) => {
        if (!(error instanceof RillError && error.code === ErrorCode.TOPIC_EXISTS)) throw error
      })
      .finally(() => {
        this.#creatingOffsetsTopic = null
      })
    await this.#creatingOffsetsTopic
  }

  /** Creates the offsets topic: replication min(3, brokers), `sync`. Also the internal route's handler. */
  async createOffsetsTopic(): Promise<void> {
    if (this.#controller.state.topic(offsetsTopic) !== undefined) return
    const brokers = this.#controller.state.brokers().filter((b) => !b.fenced).length
    await this.#topics.createAny({ name: offsetsTopic, partitions: offsetsTopicPartitions, replicationFactor: Math.max(1, Math.min(3, brokers)), config: { persistence: 'sync' } })
  }

  // ───────────────────────────── status ─────────────────────────────

  /** The partitions this broker leads (served to other brokers for their metadata answers). */
  localLeaderships(): { group: number; highWatermark: number }[] {
    const out: { group: number; highWatermark: number }[] = []
    for (const [gid, h] of this.#partitions) {
      if (h.replica.raft.role === Role.Leader && h.replica.failure === null) out.push({ group: gid, highWatermark: h.replica.highWatermark })
    }
    return out
  }

  /**
   * Every broker answers /v1/metadata from its own copy, but a broker knows
   * leaders only of the partitions it hosts: it asks the others (in
   * parallel, bounded) which partitions they lead, about once a second.
   */
  async #pollLeaders(): Promise<void> {
    if (this.#pollingLeaders || this.#stopped) return
    const peers = this.#controller.state.brokers().filter((b) => b.id !== this.brokerId && !b.fenced)
    if (peers.length === 0) return
    this.#pollingLeaders = true
    try {
      const next = new Map<number, { leader: number; highWatermark: number }>()
      const answered = new Set<number>()
      await Promise.all(
        peers.map(async (b) => {
          try {
            const leaderships = await this.#peerCalls.leaderships(b.httpUrl, leaderPollTimeoutMs, leaderPollEntriesMax)
            answered.add(b.id)
            for (const l of leaderships) next.set(l.group, { leader: b.id, highWatermark: l.highWatermark })
          } catch {
            // Unreachable: its leaderships are simply unknown until the next poll.
          }
        }),
      )
      this.#remoteLeaders = next
      // A quiet follower whose leader's broker answered but no longer leads the partition
      // (its replica stopped, say after a disk error) wakes up to elect a new leader.
      for (const [gid, h] of this.#partitions) {
        const raft = h.replica.raft
        if (!raft.quiesced || raft.role === Role.Leader || !answered.has(raft.lead)) continue
        if (next.get(gid)?.leader !== raft.lead) raft.unquiesce()
      }
    } finally {
      this.#pollingLeaders = false
    }
  }

  /** Per-replica status for `rill status` and tests. */
  replicas(): { topic: string; partition: number; role: Role; leader: number; term: number; highWatermark: number; quiet: boolean }[] {
    return [...this.#partitions.values()].map((h) => ({
      topic: h.topic,
      partition: h.partition,
      role: h.replica.raft.role,
      leader: h.replica.raft.lead,
      term: h.replica.raft.term,
      highWatermark: h.replica.highWatermark,
      quiet: h.replica.raft.quiesced,
    }))
  }

  controllerLeader(): number {
    return this.#controller.leader()
  }

  /** Graceful stop: hand leadership away, finish writes, close everything. */
  async stop(): Promise<void> {
    if (this.#stopped) return
    const deadline = this.#runtime.nowMs() + shutdownTransferMsMax
    for (const p of this.#partitions.values()) {
      const raft = p.replica.raft
      if (raft.role !== Role.Leader) continue
      const target = [...raft.progress].filter(([id]) => id !== raft.id).sort((a, b) => b[1].match - a[1].match)[0]
      if (target !== undefined) p.replica.transferLeader(target[0])
    }
    this.#controller.transferAway()
    this.#transport.flush()
    while (this.#runtime.nowMs() < deadline && [...this.#partitions.values()].some((p) => p.replica.raft.role === Role.Leader)) {
      await this.#runtime.sleep(20)
    }
    this.#stopped = true
    this.#ticker.cancel()
    for (const p of this.#partitions.values()) await p.replica.close()
    await this.#controller.close()
    await this.#transport.close()
    await this.#store.close()
    this.#logger.info({ event: 'broker_stopped' }, 'broker stopped')
  }
}
