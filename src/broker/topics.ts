/**
 * Topic administration as a client sees it: create, list, describe, delete,
 * count partitions. Changes go to the controller leader — proposed here
 * when this broker leads the controller, forwarded otherwise; after a
 * forwarded change the answer waits (bounded) until this broker's own copy
 * of the metadata shows it, so a client that reads back through the same
 * broker sees what it just did.
 */
import { ErrorCode, RillError, type Runtime } from '../base/index.ts'
import type { Command, ControllerState } from '../controller/index.ts'
import { planCreateTopic } from '../controller/index.ts'
import { CommandType } from '../controller/types.ts'
import type { PersistenceMode } from '../log/index.ts'
import type { CreateTopicRequest, MetadataResponse, TopicDescription } from '../wire/index.ts'
import { controllerWaitMsMax } from './controller-client.ts'
import { isInternalTopic } from './names.ts'
import type { ControllerCall } from './peer-calls.ts'

/** What topic administration needs of the controller client. */
export interface TopicsController {
  readonly state: ControllerState
  isLeader(): boolean
  propose(cmd: Command): Promise<void>
  forward(call: ControllerCall): Promise<void>
  unknownTopic(name: string): RillError
}

export interface TopicsOptions {
  /** Persistence of a topic created without one. */
  readonly defaultPersistence: PersistenceMode
  readonly runtime: Runtime
  readonly controller: TopicsController
  /** The broker's metadata answer (describe adds replication and config to its entry). */
  readonly metadata: () => MetadataResponse
  readonly isStopped: () => boolean
  /**
   * Partitions one client topic may have, and all topics together (issue
   * 10, hole 4: a 1,200-partition topic answered 201 while 276 of its
   * partitions never got a leader). Checked where the create arrives and
   * again on the controller leader, whose bounds decide.
   */
  readonly partitionsPerTopicMax: number
  readonly clusterPartitionsMax: number
}

export class Topics {
  readonly #runtime: Runtime
  readonly #controller: TopicsController
  readonly #options: TopicsOptions

  constructor(options: TopicsOptions) {
    this.#runtime = options.runtime
    this.#controller = options.controller
    this.#options = options
  }

  /** A client's topic: names starting with `__` are refused. */
  async create(request: CreateTopicRequest): Promise<{ name: string; partitions: number }> {
    if (isInternalTopic(request.name)) throw new RillError(ErrorCode.INVALID_REQUEST, `topic names starting with __ are the broker's own (${request.name})`)
    this.#checkPartitionLimits(request)
    return this.createAny(request)
  }

  /** Refuses a create beyond the partitions allowed per topic (400) or in the cluster (409), before anything is proposed. */
  #checkPartitionLimits(request: CreateTopicRequest): void {
    const { partitionsPerTopicMax, clusterPartitionsMax } = this.#options
    if (request.partitions > partitionsPerTopicMax) {
      throw new RillError(ErrorCode.INVALID_REQUEST, `partitions: ${request.partitions} is more than a topic may have on this cluster (${partitionsPerTopicMax}, --topic-partitions-max)`, {
        details: { field: 'partitions' },
      })
    }
    // A topic that exists is TOPIC_EXISTS, whatever its size: let the controller say so.
    if (this.#controller.state.topic(request.name) !== undefined) return
    let existing = 0
    for (const t of this.#controller.state.topics()) existing += t.partitions.length
    if (existing + request.partitions > clusterPartitionsMax) {
      throw new RillError(
        ErrorCode.RESOURCE_LIMIT_REACHED,
        `the cluster has ${existing} partitions; ${request.partitions} more would pass its bound of ${clusterPartitionsMax} (--cluster-partitions-max): delete topics or raise the bound`,
        { details: { field: 'partitions', partitions: existing, limit: clusterPartitionsMax } },
      )
    }
  }

  /** Any topic, the broker's own included; resolves once this broker's metadata shows it. */
  async createAny(request: CreateTopicRequest): Promise<{ name: string; partitions: number }> {
    const controller = this.#controller
    if (!controller.isLeader()) {
      await controller.forward(isInternalTopic(request.name) ? { kind: 'createOffsetsTopic' } : { kind: 'createTopic', request })
      await this.#waitForTopic(request.name, true)
      return { name: request.name, partitions: controller.state.topic(request.name)?.partitions.length ?? request.partitions }
    }
    const cmd = planCreateTopic(controller.state, {
      name: request.name,
      partitions: request.partitions,
      replicationFactor: request.replicationFactor,
      config: { persistence: this.#options.defaultPersistence, ...(request.config ?? {}) },
    })
    await controller.propose(cmd)
    return { name: cmd.name, partitions: cmd.partitions }
  }

  /** After a forwarded change, waits (bounded) until our copy of the metadata shows it. */
  async #waitForTopic(name: string, exists: boolean): Promise<void> {
    const end = this.#runtime.nowMs() + controllerWaitMsMax
    while ((this.#controller.state.topic(name) !== undefined) !== exists && this.#runtime.nowMs() < end && !this.#options.isStopped()) await this.#runtime.sleep(10)
  }

  list(): string[] {
    return this.#controller.state.topics().map((t) => t.name)
  }

  describe(name: string): TopicDescription {
    const t = this.#controller.state.topic(name)
    if (t === undefined) throw this.#controller.unknownTopic(name)
    const meta = this.#options.metadata().topics.find((x) => x.name === name)!
    return { ...meta, replicationFactor: t.replicationFactor, config: { ...t.config } as TopicDescription['config'] }
  }

  async delete(name: string): Promise<void> {
    if (isInternalTopic(name)) throw new RillError(ErrorCode.FORBIDDEN, `${name} is the broker's own topic`)
    if (!this.#controller.isLeader()) {
      await this.#controller.forward({ kind: 'deleteTopic', name })
      await this.#waitForTopic(name, false)
      return
    }
    if (this.#controller.state.topic(name) === undefined) throw this.#controller.unknownTopic(name)
    await this.#controller.propose({ type: CommandType.DeleteTopic, name })
  }

  partitionCount(topic: string): number {
    const t = this.#controller.state.topic(topic)
    if (t === undefined) throw this.#controller.unknownTopic(topic)
    return t.partitions.length
  }
}
