/**
 * One broker: the composition of small parts, each owning one job and its
 * state (Redpanda's split). This file only wires them and drives them from
 * one ticker; its own state is the ticker, the tick count and whether it is
 * stopping.
 *
 *                              ticker (tickMs)
 *        ┌────────────────┬──────────┴──────┬─────────────┬─────────────────┐
 *        ▼                ▼                 ▼             ▼                 ▼
 *  ControllerClient ──▶ HostedGroups      Liveness    LeaderBalance   LeaderPoll, Retention,
 *  group 0: metadata,  partition replicas  fencing     preferred       group sessions
 *  propose, forward,   reconcile on each   (on the     replicas lead
 *  register            metadata change     leader)
 *        │ send               │ send
 *        └──────▶ PeerRouter ◀┘ ── one frame per peer per flush ──▶ PeerNetwork
 *                     ▲                                                  │
 *                     └──────────── route: each message to its group ◀───┘
 *
 * What clients call: Topics (create, describe, delete — through the
 * controller leader), OffsetsTopic (where a consumer group's coordinator
 * is), produce and fetch on a hosted replica, and the metadata answer,
 * which joins the controller's metadata with the leaders known here and
 * those the other brokers reported. Producer ids: producer-ids.ts, and the
 * token a produce with one must carry: producer-tokens.ts; metrics:
 * metrics.ts. src/broker knows no HTTP: src/cli puts a broker behind one.
 *
 * TLS (config.tls): the material src/cli loaded goes to the transport and to
 * the peer HTTP client (peer-http.ts); `setTls` hands both a reloaded one.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { Histogram, Registry } from 'prom-client'
import { ErrorCode, RillError, SeededRandom, noTimer, systemRuntime } from '../base/index.ts'
import type { Runtime, TimerHandle } from '../base/index.ts'
import { stageTrace } from '../base/stage-trace.ts'
import type { LogStore } from '../log/index.ts'
import { nodeIo, openLogStore } from '../log/index.ts'
import type { LogIo } from '../log/index.ts'
import type { Message } from '../raft/index.ts'
import { Transport } from '../transport/index.ts'
import type { PeerNetwork } from '../transport/index.ts'
import { GroupCoordinator } from '../groups/index.ts'
import { readBatchHeader } from '../wire/index.ts'
import type { CreateTopicRequest, InitProducerResponse, MetadataResponse, TopicDescription } from '../wire/index.ts'
import type { FetchCall, FetchOutcome, ProduceCall, ProduceOutcome } from '../wire/index.ts'
import type { BrokerConfig } from './config.ts'
import { ControllerClient, registrationCheckTicks } from './controller-client.ts'
import { makeDataDirectory } from './data-dir.ts'
import { HostedGroups, type ReplicaStatus } from './hosted-groups.ts'
import { LeaderBalance, leaderBalanceTicks } from './leader-balance.ts'
import { LeaderPoll, leaderPollTicks } from './leader-poll.ts'
import { Liveness } from './liveness.ts'
import { BrokerMetrics } from './metrics.ts'
import { groupIdOf, isInternalTopic } from './names.ts'
import { OffsetsTopic, sessionCheckTicks } from './offsets-topic.ts'
import { httpPeerCalls, type BrokerRegistration, type ControllerCall, type PeerCalls, type TopicStatus } from './peer-calls.ts'
import { proveIdentity, type IdentityAnswer } from './internal-auth.ts'
import { PeerHttp, type PeerFetch } from './peer-http.ts'
import { PeerRouter, seedPeers } from './peer-router.ts'
import { procDescriptors, type DescriptorProbe } from './descriptors.ts'
import { ProducerIds, producerIdKey } from './producer-ids.ts'
import { anonymousPrincipal, checkProducerToken, producerToken } from './producer-tokens.ts'
import { Retention, retentionTicks } from './retention.ts'
import { Security } from './security.ts'
import { Topics } from './topics.ts'
import { waitTopicReady, type TopicReadinessOptions } from './topic-readiness.ts'
import type { TlsMaterial } from './tls.ts'

/** 16 random bytes as hex: incarnation ids and challenge nonces. */
function randomHex16(): string {
  return randomBytes(16).toString('hex')
}

/** How long a graceful stop waits for leadership to move away. */
const shutdownTransferMsMax = 3000

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
  /** Ids of new consumer-group members; default: random UUIDs (unguessable). The simulator's come from its seed. */
  readonly newMemberId?: () => string
  /**
   * This process's incarnation id and the controller's challenge nonces:
   * 16 bytes as hex; default: random (unguessable). The simulator's come
   * from its seed.
   */
  readonly newNonce?: () => string
  /**
   * Descriptors open and allowed (descriptors.ts): replicas open only while
   * a reserve is left. Default: /proc on Linux; the simulator's brokers
   * share one process and pass noDescriptorProbe.
   */
  readonly descriptors?: DescriptorProbe
}

/** What the constructor is handed once `start` has opened the store and chosen the environment. */
interface BrokerParts {
  readonly store: LogStore
  readonly network: PeerNetwork
  readonly peerCalls: PeerCalls
  readonly runtime: Runtime
  readonly random: SeededRandom
  readonly io: LogIo
  readonly registry: Registry
  readonly httpUrl: string
  readonly newMemberId: (() => string) | undefined
  readonly newNonce: () => string
  readonly descriptors: DescriptorProbe
  /** The TCP transport when this broker made one (not the simulator's network): TLS reloads go to it. */
  readonly transport: Transport | null
  readonly peerHttp: PeerHttp
}

export class Broker {
  readonly brokerId: number
  /** Metrics of this broker (the edge adds its own and serves /metrics). */
  readonly registry: Registry
  readonly config: BrokerConfig
  /** This process's incarnation: random per start, so a registration tells a restarted broker from the one before (KRaft's incarnation id). */
  readonly incarnation: string
  /** Consumer groups this broker coordinates (BrokerService.groups). */
  readonly groups: GroupCoordinator
  /** How this broker's edge sends HTTP to other brokers (forwarded produces): https with the cluster CA under TLS. */
  readonly peerFetch: PeerFetch
  /** Tokens, ACLs, super-users: who a request is and what it may do (BrokerService.security). */
  readonly security: Security
  readonly #logger: Logger
  readonly #store: LogStore
  readonly #network: PeerNetwork
  readonly #transport: Transport | null
  readonly #peerHttp: PeerHttp
  readonly #runtime: Runtime
  readonly #producerIds: ProducerIds
  readonly #router: PeerRouter
  readonly #controller: ControllerClient
  readonly #hosted: HostedGroups
  readonly #liveness: Liveness
  readonly #leaderBalance: LeaderBalance
  readonly #leaderPoll: LeaderPoll
  readonly #retention: Retention
  readonly #offsets: OffsetsTopic
  readonly #topics: Topics
  readonly #readiness: TopicReadinessOptions
  /** Registered once the transport is up (start), before any replica opens. */
  #metrics!: BrokerMetrics
  #ticker: TimerHandle = noTimer
  #ticks = 0
  #stopped = false
  readonly #httpUrl: string

  private constructor(config: BrokerConfig, logger: Logger, parts: BrokerParts) {
    const { store, network, peerCalls, runtime, random, io } = parts
    const isStopped = (): boolean => this.#stopped
    this.brokerId = config.id
    this.config = config
    this.registry = parts.registry
    this.incarnation = parts.newNonce()
    this.#httpUrl = parts.httpUrl
    this.#logger = logger
    this.#store = store
    this.#network = network
    this.#transport = parts.transport
    this.#peerHttp = parts.peerHttp
    this.peerFetch = parts.peerHttp.fetch
    this.#runtime = runtime
    this.#producerIds = new ProducerIds({ brokerId: config.id, path: join(config.dir, 'producer-ids'), io, key: producerIdKey(config.secret) })
    this.#router = new PeerRouter({ brokerId: config.id, network, runtime })
    const send = (gid: number, msgs: readonly Message[]): void => this.#router.send(gid, msgs)
    this.#controller = new ControllerClient({
      config, logger, store, io, random, runtime, peerCalls, httpUrl: parts.httpUrl, send, isStopped,
      incarnation: this.incarnation, newNonce: parts.newNonce,
      onApplied: () => this.#hosted.scheduleReconcile(),
      onLeaderChange: () => this.#liveness.reset(),
    })
    const metadata = this.#controller
    this.#hosted = new HostedGroups({
      config, logger, store, io, random, runtime, network, send, metadata, isStopped,
      onLeadershipWon: () => this.#metrics.leadershipWon(),
      onOffsetsLeadership: (replica) => this.groups.leadershipGained(replica),
      descriptors: parts.descriptors,
      onReplicaOpenFailed: (reason) => this.#metrics.replicaOpenFailed(reason),
    })
    const hosted = this.#hosted
    this.#liveness = new Liveness({ brokerId: config.id, logger, runtime, network, controller: this.#controller })
    this.#leaderBalance = new LeaderBalance({ brokerId: config.id, metadata, hosted })
    this.#leaderPoll = new LeaderPoll({ brokerId: config.id, peerCalls, metadata, hosted, isStopped })
    this.#retention = new Retention({ logger, runtime, hosted, isStopped })
    this.#topics = new Topics({
      defaultPersistence: config.defaultPersistence, runtime, controller: this.#controller, metadata: () => this.metadata(), isStopped,
      partitionsPerTopicMax: config.topicPartitionsMax, clusterPartitionsMax: config.clusterPartitionsMax,
    })
    this.#readiness = {
      brokerId: config.id, state: () => this.#controller.state, localStatus: (name) => this.topicStatus(name), peerCalls, runtime, isStopped,
    }
    this.security = new Security({ secret: config.secret, superUsers: config.superUsers, runtime, controller: this.#controller, isStopped })
    this.#offsets = new OffsetsTopic({ brokerId: config.id, runtime, metadata, hosted, remoteLeaders: this.#leaderPoll, createTopic: (r) => this.#topics.createAny(r), isStopped })
    this.groups = new GroupCoordinator(
      { brokerId: config.id, offsetsReplicaFor: (group) => this.#offsets.replicaFor(group), partitionCount: (t) => this.#controller.state.topic(t)?.partitions.length ?? 0 },
      { logger, now: () => runtime.nowMs(), ...(parts.newMemberId === undefined ? {} : { newMemberId: parts.newMemberId }) },
    )
  }

  /** Opens the data directory, connects to peers and joins the controller group. */
  /**
   * `options.tls`: the material of `config.tls`, loaded and checked by the
   * caller (null or absent: plaintext). `httpUrl` is what this broker
   * registers; https:// under TLS.
   */
  static async start(config: BrokerConfig, logger: Logger, options: { httpUrl: string; tls?: TlsMaterial | null; env?: BrokerEnv }): Promise<Broker> {
    const env = options.env ?? {}
    const runtime = env.runtime ?? systemRuntime
    const registry = env.registry ?? new Registry()
    const io = env.io ?? nodeIo
    makeDataDirectory(io, config.dir)
    const store = await openLogStore({ dir: join(config.dir, 'logs'), registry, logger, io, runtime })
    const peers = seedPeers(config)
    const tls = options.tls ?? null
    const transport =
      env.network !== undefined
        ? null
        : new Transport({
            brokerId: config.id,
            clusterId: config.clusterId,
            secret: config.secret,
            listen: config.peer,
            peers,
            localHost: config.peer.host,
            logger,
            registry,
            runtime,
            ...(tls === null ? {} : { tls }),
          })
    const network = env.network ?? transport!
    network.setPeers(peers)
    const peerHttp = new PeerHttp(tls)
    const broker = new Broker(config, logger, {
      store,
      network,
      transport,
      peerHttp,
      peerCalls: env.peerCalls ?? httpPeerCalls(config.secret, runtime, peerHttp.fetch),
      runtime,
      random: env.random ?? new SeededRandom(config.id * 7919 + runtime.wallMs()),
      io,
      registry,
      httpUrl: options.httpUrl,
      newMemberId: env.newMemberId,
      newNonce: env.newNonce ?? randomHex16,
      descriptors: env.descriptors ?? procDescriptors,
    })
    network.onBatch((fromId, batch) => broker.#router.route(fromId, batch))
    await network.start()
    broker.#metrics = new BrokerMetrics({ registry, hosted: broker.#hosted })
    if (process.env.RILL_TRACE_STAGES === '1') enableStageTrace(runtime, registry)
    await broker.#controller.open()
    broker.#router.open({ controller: (m) => broker.#controller.step(m), partition: (gid, m) => broker.#hosted.step(gid, m) })
    broker.#ticker = runtime.setRepeating(() => broker.#tick(), config.tickMs)
    logger.info({ event: 'broker_started', peer: config.peer, seeds: config.seeds.map((s) => s.id), persistence: config.defaultPersistence }, 'broker started')
    return broker
  }

  /** Every group ticks; the periodic jobs run every so many ticks, each at its own pace. */
  #tick(): void {
    if (this.#stopped) return
    this.#ticks++
    this.#controller.tick()
    this.#hosted.tick()
    this.#network.flush()
    if (this.#ticks % registrationCheckTicks === 0) {
      void this.#controller.ensureRegistered()
      this.#liveness.check()
      this.#controller.addLearners()
    }
    if (this.#ticks % leaderBalanceTicks === 0) this.#leaderBalance.run()
    if (this.#ticks % leaderPollTicks === 0) void this.#leaderPoll.poll()
    if (this.#ticks % retentionTicks === 0) void this.#retention.run()
    if (this.#ticks % sessionCheckTicks === 0) this.groups.expireSessions(this.#hosted.offsetsReplicas())
  }

  // ─────────────────────────── BrokerService ───────────────────────────

  /** The cluster as clients see it: this broker's copy of the metadata, with the leaders known here or reported by their brokers. */
  metadata(): MetadataResponse {
    const leader = this.#controller.leader()
    const view = this.#controller.state.metadataView({
      controllerLeader: leader === 0 ? null : leader,
      partitionState: (t, p) => this.#partitionState(groupIdOf(t.id, p)),
    })
    const offline = this.#hosted.offline()
    return {
      brokers: view.brokers.map((b) => ({ id: b.id, url: b.url, ...(b.rack === null ? {} : { rack: b.rack }), fenced: b.fenced })),
      controller: { leader: view.controller.leader },
      topics: view.topics.map((t) => ({
        name: t.name,
        ...(isInternalTopic(t.name) ? { internal: true } : {}),
        partitions: t.partitions.map((p) => ({
          partition: p.partition,
          leader: p.leader,
          replicas: [...p.replicas],
          highWatermark: p.highWatermark ?? 0,
          // This broker's replica is assigned but not open (Kafka's offline replicas): not in sync, whatever the leader says.
          ...(offline.has(groupIdOf(t.id, p.partition)) ? { offlineReplicas: [this.brokerId] } : {}),
        })),
      })),
    }
  }

  /** One partition's leader and high watermark, as far as this broker knows them. */
  #partitionState(gid: number): { leader: number | null; highWatermark: number } | undefined {
    const h = this.#hosted.get(gid)
    if (h !== undefined && h.replica.raft.lead !== 0) return { leader: h.replica.raft.lead, highWatermark: h.replica.highWatermark }
    // Not hosted here (or no leader known locally): what the leaders said at the last poll.
    const remote = this.#leaderPoll.leaderOf(gid)
    if (remote !== undefined) return { leader: remote.leader, highWatermark: remote.highWatermark }
    return h === undefined ? undefined : { leader: null, highWatermark: h.replica.highWatermark }
  }

  /** Creates a topic through the controller leader (names starting with `__` are refused). */
  createTopic(request: CreateTopicRequest): Promise<{ name: string; partitions: number }> {
    return this.#topics.create(request)
  }

  /**
   * Resolves true once topic `name` can be used on every live broker (each
   * knows it, every partition has a ready leader all its live replicas
   * follow: topic-readiness.ts), false if not within the bound.
   */
  async waitTopicReady(name: string): Promise<boolean> {
    const ready = await waitTopicReady(this.#readiness, name)
    // Leaders of partitions not hosted here are known from the leadership poll: poll now, so this broker's metadata shows them.
    if (ready && this.metadata().topics.find((t) => t.name === name)?.partitions.some((p) => p.leader === null) === true) await this.#leaderPoll.poll()
    return ready
  }

  /** This broker's view of topic `name` (the topic-status internal route; topic-readiness.ts). */
  topicStatus(name: string): TopicStatus {
    const t = this.#controller.state.topic(name)
    if (t === undefined) return { known: false, partitions: [] }
    const partitions: { partition: number; leader: number }[] = []
    t.partitions.forEach((p, partition) => {
      if (!p.replicas.includes(this.brokerId)) return
      const replica = this.#hosted.get(groupIdOf(t.id, partition))?.replica
      let leader = replica === undefined || replica.failure !== null ? 0 : replica.raft.lead
      // A leader counts once it takes produces (its first entry applied).
      if (leader === this.brokerId && !replica!.isReadyLeader()) leader = 0
      partitions.push({ partition, leader })
    })
    return { known: true, partitions }
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

  /**
   * Ids are a keyed permutation of brokerId · 2^32 + n, never repeated and
   * not guessable (producer-ids.ts); the token binds id and epoch to the
   * client (producer-tokens.ts) and to its principal (null: anonymous,
   * authentication off), so another principal cannot write with it.
   */
  async newProducerId(principal: string | null = null): Promise<InitProducerResponse> {
    const producerId = await this.#producerIds.next()
    const producerEpoch = 0
    return { producerId, producerEpoch, producerToken: producerToken(this.config.secret, { producerId, producerEpoch, principal: principal ?? anonymousPrincipal }) }
  }

  /**
   * Every produce comes through here (the partition route, the topic route,
   * produces forwarded by other brokers, the simulator), so this is where a
   * batch with a producer id must show its token: before anything else, so
   * a refused batch touches no producer state and is not forwarded.
   */
  async produce(call: ProduceCall): Promise<ProduceOutcome> {
    const header = readBatchHeader(call.batch)
    if (header.producerId >= 0) {
      const subject = { producerId: header.producerId, producerEpoch: header.producerEpoch, principal: call.principal ?? anonymousPrincipal }
      checkProducerToken(this.config.secret, subject, call.producerToken)
    }
    const replica = this.#hosted.data(call.topic, call.partition)
    const startMs = this.#runtime.nowMs()
    if (stageTrace.enabled) stageTrace.mark(`${call.topic}/${call.partition}@request`, startMs)
    try {
      const r = await replica.produce(call.batch, call.acks)
      this.#metrics.commitObserved(call.acks, (this.#runtime.nowMs() - startMs) / 1000)
      if (stageTrace.enabled) {
        stageTrace.since('leader.commit_to_answer', `${call.topic}/${call.partition}@commit`)
        stageTrace.sinceMs('leader.request_to_answer', startMs)
      }
      return { partition: call.partition, baseOffset: r.baseOffset, lastOffset: r.lastOffset }
    } catch (error) {
      throw this.#controller.withLeaderRef(error)
    }
  }

  async fetch(call: FetchCall): Promise<FetchOutcome> {
    const r = await this.#hosted.data(call.topic, call.partition).fetch({
      offset: call.offset,
      bytesMax: call.maxBytes,
      waitMs: call.maxWaitMs,
      ...(call.minCommitted === undefined ? {} : { minCommitted: call.minCommitted }),
    })
    return { partition: call.partition, batches: r.batches, nextOffset: r.nextOffset, highWatermark: r.highWatermark, logStartOffset: r.logStartOffset }
  }

  // ─────────────────────── internal routes, status ───────────────────────

  /** RegisterBroker + UnfenceBroker on the controller leader (forwarded there if needed). */
  registerBroker(request: BrokerRegistration): Promise<void> {
    return this.#controller.registerBroker(request)
  }

  /** This process's answer to an identity challenge (internal-auth.ts): the controller leader asks it before moving a registration. */
  identity(nonce: string): IdentityAnswer {
    const peerUrl = `${this.config.peer.host}:${this.config.peer.port}`
    return proveIdentity(this.config.secret, nonce, { id: this.brokerId, incarnation: this.incarnation, httpUrl: this.#httpUrl, peerUrl })
  }

  /** A controller call another broker forwarded here (internal route): a topic change or a token/ACL change. */
  async runControllerCall(call: ControllerCall): Promise<void> {
    switch (call.kind) {
      case 'createTopic':
        await this.#topics.create(call.request)
        return
      case 'deleteTopic':
        return this.#topics.delete(call.name)
      case 'security':
        return this.security.runForwarded(call.command)
      case 'registerBroker':
        return this.registerBroker(call.request)
      case 'createOffsetsTopic':
        return this.createOffsetsTopic()
    }
  }

  /** Bootstrap (internal route, cluster secret): a token for `principal`. */
  createToken(principal: string): Promise<{ id: string; principal: string; createdMs: number; token: string }> {
    return this.security.createToken(principal)
  }

  /** Creates the offsets topic: replication min(3, brokers), `sync`. Also the internal route's handler. */
  createOffsetsTopic(): Promise<void> {
    return this.#offsets.create()
  }

  /** The partitions this broker leads (served to other brokers for their metadata answers). */
  localLeaderships(): { group: number; highWatermark: number }[] {
    return this.#hosted.localLeaderships()
  }

  /** Per-replica status for `rill status` and tests. */
  replicas(): ReplicaStatus[] {
    return this.#hosted.status()
  }

  controllerLeader(): number {
    return this.#controller.leader()
  }

  /** Graceful stop: hand leadership away, finish writes, close everything. */
  /**
   * Reloaded TLS material (SIGHUP) for the peer transport and peer HTTP:
   * connections made from now on use it, open ones keep theirs. Throws
   * INVALID_REQUEST (nothing changed) on a broker started without TLS or
   * material node:tls cannot use.
   */
  setTls(material: TlsMaterial): void {
    if (this.#transport === null || !this.#transport.tlsEnabled || !this.#peerHttp.secure) {
      throw new RillError(ErrorCode.INVALID_REQUEST, 'this broker was started without TLS')
    }
    this.#transport.setTls(material)
    this.#peerHttp.setTls(material)
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    const deadline = this.#runtime.nowMs() + shutdownTransferMsMax
    this.#hosted.transferLeaderships()
    this.#controller.transferAway()
    this.#network.flush()
    while (this.#runtime.nowMs() < deadline && this.#hosted.leadsAny()) {
      await this.#runtime.sleep(20)
    }
    this.#stopped = true
    this.#ticker.cancel()
    // One replica at a time, then the controller. Inline on purpose: another async layer around the
    // loop moves when the controller's close starts, and the simulator's seeds replay that order.
    for (const p of this.#hosted.values()) await p.replica.close()
    await this.#controller.close()
    await this.#network.close()
    await this.#peerHttp.close()
    await this.#store.close()
    this.#logger.info({ event: 'broker_stopped' }, 'broker stopped')
  }
}

/** Stage histogram buckets (seconds): 25 µs to 50 ms, about 1.5x apart, fine enough to read a p50 of a fraction of a millisecond. */
const stageBucketsSeconds = [25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 400e-6, 500e-6, 750e-6, 1e-3, 1.5e-3, 2e-3, 3e-3, 4e-3, 6e-3, 8e-3, 12e-3, 20e-3, 50e-3]

/**
 * RILL_TRACE_STAGES=1 (bench/trace.ts): the time between the stages of each
 * record (src/base/stage-trace.ts) in `rill_trace_stage_seconds{stage}`.
 * Off by default; a process runs one traced broker.
 */
function enableStageTrace(runtime: Runtime, registry: Registry): void {
  const h = new Histogram({ name: 'rill_trace_stage_seconds', help: 'Time between the stages of one record (RILL_TRACE_STAGES=1, bench/trace.ts)', labelNames: ['stage'], buckets: stageBucketsSeconds, registers: [registry] })
  stageTrace.enable(runtime, (stage, seconds) => h.observe({ stage }, seconds))
}
