/**
 * The glue between the group coordinator (src/groups) and this broker: the
 * coordinator of a consumer group is the leader of the `__consumer_offsets`
 * partition its name hashes to (murmur2), so finding it means creating the
 * topic on first use, waiting (bounded) for that partition to elect a
 * leader, and pointing the client at another broker when the leader is
 * elsewhere.
 *
 *   group ─murmur2─▶ offsets partition ─▶ led here: its OffsetsReplica
 *                                       ├▶ led elsewhere: NOT_LEADER { id, url }
 *                                       └▶ no leader yet: wait, then NO_QUORUM
 */
import { ErrorCode, RillError, type Runtime } from '../base/index.ts'
import type { ControllerState } from '../controller/index.ts'
import type { OffsetsReplica } from '../groups/index.ts'
import type { NodeId } from '../raft/index.ts'
import type { CreateTopicRequest } from '../wire/index.ts'
import { murmur2, toPositive } from '../wire/index.ts'
import type { BrokerRef } from './controller-client.ts'
import type { HostedPartition } from './hosted-groups.ts'
import type { RemoteLeader } from './leader-poll.ts'
import { groupIdOf, offsetsTopic } from './names.ts'

/** Partitions of the offsets topic: groups are spread over them by murmur2 of their name. */
export const offsetsTopicPartitions = 16
/** Ticks between two checks for expired group members. */
export const sessionCheckTicks = 5
/** How long a group request waits for the offsets topic to be created and led. */
const coordinatorWaitMs = 5000

export interface OffsetsTopicOptions {
  readonly brokerId: number
  readonly runtime: Runtime
  readonly metadata: { readonly state: ControllerState; brokerRef(id: NodeId): BrokerRef }
  readonly hosted: { get(gid: number): HostedPartition | undefined }
  readonly remoteLeaders: { leaderOf(gid: number): RemoteLeader | undefined }
  /** Creates a topic through the controller leader, internal names allowed. */
  readonly createTopic: (request: CreateTopicRequest) => Promise<unknown>
  readonly isStopped: () => boolean
}

export class OffsetsTopic {
  readonly #brokerId: number
  readonly #runtime: Runtime
  readonly #options: OffsetsTopicOptions
  #creating: Promise<void> | null = null

  constructor(options: OffsetsTopicOptions) {
    this.#brokerId = options.brokerId
    this.#runtime = options.runtime
    this.#options = options
  }

  /**
   * The coordinator's replica for `group`: the leader of its offsets
   * partition, here. Creates the offsets topic on first use and waits
   * (bounded) for the partition to elect a leader; a group led elsewhere is
   * NOT_LEADER with that broker's address.
   */
  async replicaFor(group: string): Promise<OffsetsReplica> {
    const { metadata, hosted, remoteLeaders } = this.#options
    const deadline = this.#runtime.nowMs() + coordinatorWaitMs
    for (;;) {
      await this.#ensure()
      const t = metadata.state.topic(offsetsTopic)
      if (t === undefined) throw new RillError(ErrorCode.NO_QUORUM, `${offsetsTopic} is being created; retry`)
      const partition = toPositive(murmur2(new TextEncoder().encode(group))) % t.partitions.length
      const gid = groupIdOf(t.id, partition)
      const h = hosted.get(gid)
      if (h?.offsets?.isReadyLeader() === true) return h.offsets
      const local = h === undefined ? 0 : h.replica.raft.lead
      const leader = local !== 0 ? local : (remoteLeaders.leaderOf(gid)?.leader ?? 0)
      if (leader !== 0 && leader !== this.#brokerId && (h === undefined || local !== 0)) {
        throw new RillError(ErrorCode.NOT_LEADER, `group ${group} is coordinated by broker ${leader} (${offsetsTopic}/${partition})`, { details: { leader: metadata.brokerRef(leader) } })
      }
      if (this.#runtime.nowMs() >= deadline || this.#options.isStopped()) {
        const hint = leader === 0 ? (t.partitions[partition]?.replicas[0] ?? 0) : leader
        if (hint !== 0 && hint !== this.#brokerId) throw new RillError(ErrorCode.NOT_LEADER, `group ${group}: coordinator not known here; try broker ${hint}`, { details: { leader: metadata.brokerRef(hint) } })
        throw new RillError(ErrorCode.NO_QUORUM, `group ${group}: ${offsetsTopic}/${partition} has no leader yet; retry`)
      }
      await this.#runtime.sleep(20)
    }
  }

  /** Creates `__consumer_offsets` on first use (through the controller leader), once. */
  async #ensure(): Promise<void> {
    if (this.#options.metadata.state.topic(offsetsTopic) !== undefined) return
    this.#creating ??= this.create()
      .catch((error: unknown) => {
        if (!(error instanceof RillError && error.code === ErrorCode.TOPIC_EXISTS)) throw error
      })
      .finally(() => {
        this.#creating = null
      })
    await this.#creating
  }

  /** Creates the offsets topic: replication min(3, brokers), `sync`. Also the internal route's handler. */
  async create(): Promise<void> {
    const state = this.#options.metadata.state
    if (state.topic(offsetsTopic) !== undefined) return
    const brokers = state.brokers().filter((b) => !b.fenced).length
    await this.#options.createTopic({ name: offsetsTopic, partitions: offsetsTopicPartitions, replicationFactor: Math.max(1, Math.min(3, brokers)), config: { persistence: 'sync' } })
  }
}
