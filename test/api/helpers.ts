/**
 * A small BrokerService for API and CLI tests, made of REAL partition
 * replicas (src/partition over MemoryLog, the real batch format): one
 * replica per partition, leader of itself. Everything a broker adds
 * (controller, transport, forwarding) is absent; the HTTP layer cannot tell.
 */
import { Registry } from 'prom-client'
import { ErrorCode, RillError, SeededRandom } from '../../src/base/index.ts'
import type { BrokerService, FetchCall, FetchOutcome, ProduceCall, ProduceOutcome } from '../../src/api/index.ts'
import { MemoryLog } from '../../src/log/index.ts'
import { MemorySnapshotStore, Partition } from '../../src/partition/index.ts'
import { readBatchHeader, stampBaseOffset } from '../../src/wire/index.ts'
import type { CreateTopicRequest, InitProducerResponse, MetadataResponse, TopicConfig, TopicDescription } from '../../src/wire/index.ts'
import { anonymousPrincipal, checkProducerToken, producerToken } from '../../src/broker/index.ts'
import { GroupCoordinator, OffsetsReplica } from '../../src/groups/index.ts'
import pino from 'pino'
import { ControllerState, type Command } from '../../src/controller/index.ts'
import { Security } from '../../src/broker/security.ts'
import { systemRuntime } from '../../src/base/index.ts'

/**
 * Tokens and ACLs as a broker has them (src/broker/security.ts), over a
 * ControllerState this process leads: a command is applied at once.
 * `state` is given to tests that look into the metadata.
 */
export function testSecurity(options: { superUsers?: string[]; secret?: Uint8Array; state?: ControllerState } = {}): Security {
  const state = options.state ?? new ControllerState()
  const controller = {
    state,
    isLeader: () => true,
    async propose(cmd: Command) {
      const r = state.apply(cmd)
      if (!r.ok) throw r.error
    },
    async forward() {
      throw new Error('the test controller leads: it never forwards')
    },
  }
  return new Security({ secret: options.secret ?? Uint8Array.from(Buffer.alloc(32, 5)), superUsers: options.superUsers ?? [], runtime: systemRuntime, controller, isStopped: () => false })
}

const codec = { readHeader: readBatchHeader, stampBaseOffset }
/** The cluster secret of the test service (producer tokens). */
export const testSecret = new Uint8Array(32).fill(3)
/** Milliseconds between ticks of every replica. */
const tickMs = 2

interface Topic {
  readonly name: string
  readonly partitions: Partition[]
  readonly replicationFactor: number
  readonly config: TopicConfig
}

export class TestService implements BrokerService {
  readonly brokerId: number
  readonly registry = new Registry()
  /** URL of this broker in metadata (set once the test server listens). */
  url = 'http://127.0.0.1:0'
  readonly #topics = new Map<string, Topic>()
  /** Consumer groups: the real coordinator over one real offsets replica (leader of itself). */
  readonly groups: GroupCoordinator
  /** Tokens and ACLs (a real Security over an in-memory controller state). */
  readonly security: Security
  #offsets: OffsetsReplica | null = null
  readonly #random = new SeededRandom(11)
  readonly #ticker: NodeJS.Timeout
  #nextProducerId = 1000
  /** Calls of produce that reached the service (tests check refused requests never get here). */
  produceCalls = 0
  /** Calls of fetch (tests wait for a long-poll to be under way instead of sleeping). */
  fetchCalls = 0

  constructor(options: { brokerId?: number; superUsers?: string[] } = {}) {
    this.brokerId = options.brokerId ?? 1
    this.security = testSecurity({ superUsers: options.superUsers ?? [] })
    this.#ticker = setInterval(() => {
      for (const t of this.#topics.values()) for (const p of t.partitions) p.tick()
      this.#offsets?.tick()
    }, tickMs)
    this.groups = new GroupCoordinator(
      { brokerId: this.brokerId, offsetsReplicaFor: () => this.#offsetsReplica(), partitionCount: (t) => this.#topics.get(t)?.partitions.length ?? 0 },
      { logger: pino({ level: 'silent' }) },
    )
  }

  async #offsetsReplica(): Promise<OffsetsReplica> {
    if (this.#offsets === null) {
      this.#offsets = await OffsetsReplica.open({
        group: '__consumer_offsets/0',
        replicaId: this.brokerId,
        log: new MemoryLog({ name: 'offsets' }),
        snapshots: new MemorySnapshotStore(),
        bootstrap: { voters: [this.brokerId], learners: [] },
        random: this.#random.fork(),
        send: () => {},
      })
      this.#offsets.campaign()
    }
    await until(() => this.#offsets!.isReadyLeader())
    return this.#offsets
  }

  metadata(): MetadataResponse {
    return {
      brokers: [{ id: this.brokerId, url: this.url }],
      controller: { leader: this.brokerId },
      topics: [...this.#topics.values()].map((t) => ({ name: t.name, partitions: this.#partitionsOf(t) })),
    }
  }

  #partitionsOf(t: Topic): TopicDescription['partitions'] {
    return t.partitions.map((p, i) => ({
      partition: i,
      leader: p.isReadyLeader() ? this.brokerId : null,
      replicas: [this.brokerId],
      highWatermark: p.state.highWatermark,
    }))
  }

  async createTopic(request: CreateTopicRequest): Promise<{ name: string; partitions: number }> {
    if (this.#topics.has(request.name)) throw new RillError(ErrorCode.TOPIC_EXISTS, `topic ${request.name} exists`)
    if (request.replicationFactor > 1) {
      throw new RillError(ErrorCode.INVALID_REQUEST, `replicationFactor ${request.replicationFactor} is above the 1 broker of this cluster`)
    }
    const partitions: Partition[] = []
    for (let i = 0; i < request.partitions; i++) {
      const p = await Partition.open({
        group: `${request.name}/${i}`,
        replicaId: this.brokerId,
        log: new MemoryLog({ name: `${request.name}-${i}` }),
        snapshots: new MemorySnapshotStore(),
        bootstrap: { voters: [this.brokerId], learners: [] },
        codec,
        random: this.#random.fork(),
        send: () => {},
      })
      p.campaign()
      partitions.push(p)
    }
    const topic: Topic = { name: request.name, partitions, replicationFactor: request.replicationFactor, config: request.config ?? {} }
    this.#topics.set(request.name, topic)
    await until(() => partitions.every((p) => p.isReadyLeader()))
    return { name: request.name, partitions: request.partitions }
  }

  /** Topics `waitTopicReady` was asked about, in order (a create with `"wait": false` asks nothing). */
  readonly readyWaits: string[] = []

  /** One broker: the topic is ready once it exists and each partition's replica leads (createTopic waited for that). */
  async waitTopicReady(name: string): Promise<boolean> {
    this.readyWaits.push(name)
    const t = this.#topics.get(name)
    return t !== undefined && t.partitions.every((p) => p.isReadyLeader())
  }

  listTopics(): string[] {
    return [...this.#topics.keys()].sort()
  }

  describeTopic(name: string): TopicDescription {
    const t = this.#topic(name)
    return { name, partitions: this.#partitionsOf(t), replicationFactor: t.replicationFactor, config: t.config }
  }

  async deleteTopic(name: string): Promise<void> {
    const t = this.#topic(name)
    this.#topics.delete(name)
    for (const p of t.partitions) await p.close()
  }

  partitionCount(topic: string): number {
    return this.#topic(topic).partitions.length
  }

  /** Ids in sequence (guessability is the broker's concern, producer-ids.ts); tokens as a broker makes them. */
  async newProducerId(principal: string | null = null): Promise<InitProducerResponse> {
    const producerId = this.#nextProducerId++
    return { producerId, producerEpoch: 0, producerToken: producerToken(testSecret, { producerId, producerEpoch: 0, principal: principal ?? anonymousPrincipal }) }
  }

  async produce(call: ProduceCall): Promise<ProduceOutcome> {
    this.produceCalls++
    // The check a Broker makes before anything else (broker.ts), with the same helper.
    const header = readBatchHeader(call.batch)
    if (header.producerId >= 0) {
      checkProducerToken(testSecret, { producerId: header.producerId, producerEpoch: header.producerEpoch, principal: call.principal ?? anonymousPrincipal }, call.producerToken)
    }
    const r = await this.partition(call.topic, call.partition).produce(call.batch, call.acks)
    return { partition: call.partition, ...r }
  }

  async fetch(call: FetchCall): Promise<FetchOutcome> {
    this.fetchCalls++
    const r = await this.partition(call.topic, call.partition).fetch({
      offset: call.offset,
      bytesMax: call.maxBytes,
      waitMs: call.maxWaitMs,
      ...(call.minCommitted === undefined ? {} : { minCommitted: call.minCommitted }),
    })
    return { partition: call.partition, ...r }
  }



  /** The replica of a partition (tests read its high watermark). */
  partition(topic: string, partition: number): Partition {
    const p = this.#topic(topic).partitions[partition]
    if (p === undefined) throw new RillError(ErrorCode.UNKNOWN_PARTITION, `topic ${topic} has no partition ${partition}`)
    return p
  }

  #topic(name: string): Topic {
    const t = this.#topics.get(name)
    if (t === undefined) throw new RillError(ErrorCode.UNKNOWN_TOPIC, `no topic ${name}`)
    return t
  }

  async close(): Promise<void> {
    clearInterval(this.#ticker)
    for (const t of this.#topics.values()) for (const p of t.partitions) await p.close()
    this.#topics.clear()
    await this.#offsets?.close()
  }
}

/** Waits until `cond` holds (polling every ms), failing after `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 1))
  }
}

/** A service whose every data call throws NOT_LEADER (a follower), pointing at broker 2. */
export class FollowerService extends TestService {
  /** Where broker 2, the leader this follower points at, answers. */
  leaderUrl = 'http://127.0.0.2:9091'

  override metadata(): MetadataResponse {
    const m = super.metadata()
    return { ...m, brokers: [...m.brokers, { id: 2, url: this.leaderUrl }] }
  }

  override async produce(): Promise<ProduceOutcome> {
    this.produceCalls++
    throw new RillError(ErrorCode.NOT_LEADER, 'not the leader of this partition', { details: { leader: 2 } })
  }
}
