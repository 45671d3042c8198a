/**
 * The cluster metadata state machine: what the controller's Raft log says
 * about brokers, topics and replica sets, at one applied position.
 *
 *   leader:   validate(cmd, state) ──> encodeCommand ──> raft.propose
 *   everyone: committed entry ──> applyEntry(bytes) ──> decode, check, mutate, version++
 *             snapshot() / restore(bytes) when the log is compacted
 *
 * Apply is a pure function of (state, command): no clock, no randomness, no
 * I/O. Every replica applies the same commands in the same order and reaches
 * the same state, byte for byte in its snapshot.
 *
 * Two levels of checks:
 * - `check(cmd, { liveness: false })` (apply): the invariants the state must
 *   keep — topics unique, replicas on registered brokers, sizes in bounds.
 *   A command that fails them is refused and changes nothing.
 * - `validate(cmd, state)` (leader, before proposing) adds liveness: the
 *   replication factor fits the live brokers, new replicas go to unfenced
 *   brokers. Apply does not re-check liveness, because a broker may be fenced
 *   between proposal and commit; refusing the command then would fail a
 *   request spuriously, and the fenced replica is handled like any other.
 *
 * The state hands out immutable objects (copy on write), so a view taken
 * before a change stays as it was.
 */
import { assert, ErrorCode, RillError, unreachable } from '../base/index.ts'
import { Packr } from 'msgpackr'
import {
  boundedString,
  brokerId,
  checkReplicationFactor,
  httpUrl,
  integer,
  invalid,
  onlyKeys,
  parseCommand,
  parseTopicConfig,
  peerUrl,
  plainObject,
  rack,
  replicaList,
  topicName,
  decodeCommand,
  parseAcl,
  principal,
  tokenId,
} from './codec.ts'
import { aclsMax, compareAcls, tokenHashPattern, tokensMax, type AclEntry, type TokenInfo } from './acl.ts'
import type {
  ApplyResult,
  BrokerId,
  BrokerInfo,
  Command,
  CreatePartitions,
  CreateTopic,
  HostedReplica,
  PartitionInfo,
  ReassignPartition,
  RegisterBroker,
  TopicConfig,
  TopicId,
  TopicInfo,
} from './types.ts'
import { brokersMax, clusterPartitionsMax, CommandType, partitionsPerTopicMax } from './types.ts'

/** Snapshot layout version; restore takes this one and the one before it (no ACLs, no tokens), refuses any other. */
const snapshotFormat = 2

/** What `/v1/metadata` answers (API.md), built from this state plus what the broker knows of leaders. */
export interface MetadataView {
  /** The metadata version this view reflects. */
  readonly version: number
  readonly brokers: readonly {
    readonly id: BrokerId
    readonly url: string
    readonly rack: string | null
    readonly fenced: boolean
    readonly decommissioning: boolean
  }[]
  readonly controller: { readonly leader: BrokerId | null }
  readonly topics: readonly {
    readonly name: string
    readonly id: TopicId
    readonly replicationFactor: number
    readonly config: TopicConfig
    readonly partitions: readonly {
      readonly partition: number
      readonly leader: BrokerId | null
      readonly replicas: readonly BrokerId[]
      readonly highWatermark: number | null
    }[]
  }[]
}

/** What the local broker knows of one partition's Raft group (leader, high watermark), if anything. */
export type PartitionStateLookup = (
  topic: { readonly name: string; readonly id: TopicId },
  partition: number,
) => { readonly leader: BrokerId | null; readonly highWatermark: number | null } | undefined

export class ControllerState {
  #brokers = new Map<BrokerId, BrokerInfo>()
  #topics = new Map<string, TopicInfo>()
  /** Bumped by every command that changes something. */
  #version = 0
  #nextTopicId: TopicId = 1
  /** Sum of partitions over all topics (bounded by clusterPartitionsMax). */
  #partitionCount = 0
  /** Allow rules by aclKey, at most aclsMax. */
  #acls = new Map<string, AclEntry>()
  /** `#acls` sorted (compareAcls), made on first use after a change. */
  #aclList: readonly AclEntry[] | null = null
  /** Bearer tokens' keyed hashes by id, at most tokensMax. */
  #tokens = new Map<string, TokenInfo>()

  /** Monotonic metadata version: the number of state changes applied so far. */
  get version(): number {
    return this.#version
  }

  /** Allow rules, sorted by principal, resource type, name, pattern, operation. */
  acls(): readonly AclEntry[] {
    this.#aclList ??= Object.freeze([...this.#acls.values()].sort(compareAcls))
    return this.#aclList
  }

  /** Tokens (their hashes, never the tokens) by id. */
  tokens(): TokenInfo[] {
    return [...this.#tokens.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  token(id: string): TokenInfo | undefined {
    return this.#tokens.get(id)
  }

  /** Partitions in the cluster. */
  get partitionCount(): number {
    return this.#partitionCount
  }

  broker(id: BrokerId): BrokerInfo | undefined {
    return this.#brokers.get(id)
  }

  /** Registered brokers by id. */
  brokers(): BrokerInfo[] {
    return [...this.#brokers.values()].sort((a, b) => a.id - b.id)
  }

  /** Brokers that may receive new replicas and lead: registered, unfenced, not decommissioning. */
  activeBrokers(): BrokerInfo[] {
    return this.brokers().filter((b) => !b.fenced && !b.decommissioning)
  }

  topic(name: string): TopicInfo | undefined {
    return this.#topics.get(name)
  }

  /** Topics by name. */
  topics(): TopicInfo[] {
    return [...this.#topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** The partition replicas `broker` must run, by topic name then partition. */
  hostedBy(broker: BrokerId): HostedReplica[] {
    const out: HostedReplica[] = []
    for (const t of this.topics()) {
      for (const p of t.partitions) {
        if (!p.replicas.includes(broker)) continue
        out.push({ topic: t.name, topicId: t.id, partition: p.partition, replicas: p.replicas, epoch: p.epoch, config: t.config })
      }
    }
    return out
  }

  /** Number of replicas on each registered broker. */
  replicaCounts(): Map<BrokerId, number> {
    const counts = new Map<BrokerId, number>()
    for (const id of [...this.#brokers.keys()].sort((a, b) => a - b)) counts.set(id, 0)
    for (const t of this.#topics.values()) {
      for (const p of t.partitions) for (const b of p.replicas) counts.set(b, (counts.get(b) ?? 0) + 1)
    }
    return counts
  }

  /** `/v1/metadata`: brokers, controller leader, topics with partition leaders from `partitionState`. */
  metadataView(options: { controllerLeader: BrokerId | null; partitionState?: PartitionStateLookup }): MetadataView {
    const lookup = options.partitionState
    return {
      version: this.#version,
      brokers: this.brokers().map((b) => ({ id: b.id, url: b.httpUrl, rack: b.rack, fenced: b.fenced, decommissioning: b.decommissioning })),
      controller: { leader: options.controllerLeader },
      topics: this.topics().map((t) => ({
        name: t.name,
        id: t.id,
        replicationFactor: t.replicationFactor,
        config: t.config,
        partitions: t.partitions.map((p) => {
          const known = lookup?.(t, p.partition)
          return { partition: p.partition, leader: known?.leader ?? null, replicas: p.replicas, highWatermark: known?.highWatermark ?? null }
        }),
      })),
    }
  }

  // ---------------------------------------------------------------- checks

  /**
   * Null if `cmd` would apply, else the error it would be refused with.
   * `liveness` adds the leader-only checks (see the header comment).
   */
  check(cmd: Command, options: { liveness: boolean }): RillError | null {
    try {
      this.#check(parseCommand(cmd), options.liveness)
      return null
    } catch (error) {
      if (error instanceof RillError) return error
      throw error
    }
  }

  #check(cmd: Command, liveness: boolean): void {
    switch (cmd.type) {
      case CommandType.RegisterBroker:
        if (!this.#brokers.has(cmd.id) && this.#brokers.size >= brokersMax) {
          throw invalid(`the cluster already has ${brokersMax} brokers`, 'id')
        }
        return
      case CommandType.FenceBroker:
      case CommandType.UnfenceBroker:
      case CommandType.DecommissionBroker:
      case CommandType.RecommissionBroker:
        this.#knownBroker(cmd.id)
        return
      case CommandType.UnregisterBroker: {
        this.#knownBroker(cmd.id)
        const hosted = this.replicaCounts().get(cmd.id) ?? 0
        if (hosted > 0) throw invalid(`broker ${cmd.id} still hosts ${hosted} replicas; decommission it first`, 'id', { reason: 'broker-hosts-replicas' })
        return
      }
      case CommandType.CreateTopic:
        this.#checkCreateTopic(cmd, liveness)
        return
      case CommandType.DeleteTopic:
        this.#knownTopic(cmd.name)
        return
      case CommandType.CreatePartitions:
        this.#checkCreatePartitions(cmd, liveness)
        return
      case CommandType.UpdateTopicConfig: {
        const t = this.#knownTopic(cmd.name)
        if (cmd.config.persistence !== t.config.persistence) {
          throw invalid(`persistence of topic ${cmd.name} is ${t.config.persistence} and cannot change`, 'config.persistence')
        }
        return
      }
      case CommandType.ReassignPartition:
        this.#checkReassign(cmd, liveness)
        return
      case CommandType.CreateToken:
        if (this.#tokens.has(cmd.id)) throw invalid(`token id ${cmd.id} is taken`, 'id', { reason: 'token-exists' })
        if (this.#tokens.size >= tokensMax) throw invalid(`the cluster already has ${tokensMax} tokens: revoke some first`, 'id', { reason: 'too-many-tokens' })
        return
      case CommandType.RevokeToken:
        if (!this.#tokens.has(cmd.id)) throw invalid(`no token ${cmd.id}`, 'id', { reason: 'unknown-token' })
        return
      case CommandType.AddAcl:
        if (!this.#acls.has(aclKey(cmd.acl)) && this.#acls.size >= aclsMax) {
          throw invalid(`the cluster already has ${aclsMax} ACLs: remove some first`, 'acl', { reason: 'too-many-acls' })
        }
        return
      case CommandType.RemoveAcl:
        return
      default:
        unreachable(cmd, 'command')
    }
  }

  #checkCreateTopic(cmd: CreateTopic, liveness: boolean): void {
    if (this.#topics.has(cmd.name)) throw new RillError(ErrorCode.TOPIC_EXISTS, `topic ${cmd.name} already exists`, { details: { topic: cmd.name } })
    if (liveness) this.#checkLiveReplicationFactor(cmd.replicationFactor)
    this.#checkClusterPartitions(cmd.partitions)
    for (const replicas of cmd.assignment) this.#checkNewReplicas(replicas, [], liveness)
  }

  #checkCreatePartitions(cmd: CreatePartitions, liveness: boolean): void {
    const t = this.#knownTopic(cmd.name)
    const current = t.partitions.length
    if (cmd.partitions <= current) {
      throw invalid(`topic ${cmd.name} has ${current} partitions; the new count must be larger, got ${cmd.partitions}`, 'partitions')
    }
    if (cmd.partitions - current !== cmd.assignment.length) {
      throw invalid(`assignment has ${cmd.assignment.length} replica lists for ${cmd.partitions - current} new partitions`, 'assignment')
    }
    this.#checkClusterPartitions(cmd.partitions - current)
    for (const replicas of cmd.assignment) {
      if (replicas.length !== t.replicationFactor) {
        throw invalid(`assignment has a replica list of ${replicas.length} for replication factor ${t.replicationFactor}`, 'assignment')
      }
      this.#checkNewReplicas(replicas, [], liveness)
    }
  }

  #checkReassign(cmd: ReassignPartition, liveness: boolean): void {
    const t = this.#knownTopic(cmd.topic)
    if (cmd.topicId !== undefined && cmd.topicId !== t.id) {
      throw new RillError(ErrorCode.UNKNOWN_TOPIC, `topic ${cmd.topic} with id ${cmd.topicId} no longer exists`, {
        details: { topic: cmd.topic, reason: 'stale' },
      })
    }
    const p = t.partitions[cmd.partition]
    if (p === undefined) {
      throw new RillError(ErrorCode.UNKNOWN_PARTITION, `topic ${cmd.topic} has no partition ${cmd.partition}`, {
        details: { topic: cmd.topic, partition: cmd.partition },
      })
    }
    if (cmd.epoch !== undefined && cmd.epoch !== p.epoch) {
      throw invalid(`partition ${cmd.topic}/${cmd.partition} is at epoch ${p.epoch}, not ${cmd.epoch}`, 'epoch', { reason: 'stale' })
    }
    if (cmd.replicas.length !== t.replicationFactor) {
      throw invalid(`${cmd.replicas.length} replicas for replication factor ${t.replicationFactor}`, 'replicas')
    }
    this.#checkNewReplicas(cmd.replicas, p.replicas, liveness)
  }

  /** Replicas must be on registered brokers; brokers not already in `current` must not be draining (nor fenced, under liveness). */
  #checkNewReplicas(replicas: readonly BrokerId[], current: readonly BrokerId[], liveness: boolean): void {
    for (const id of replicas) {
      const b = this.#brokers.get(id)
      if (b === undefined) throw invalid(`broker ${id} is not registered`, 'replicas', { broker: id, reason: 'unknown-broker' })
      if (current.includes(id)) continue
      if (b.decommissioning) throw invalid(`broker ${id} is being decommissioned`, 'replicas', { broker: id, reason: 'decommissioning' })
      if (liveness && b.fenced) throw invalid(`broker ${id} is fenced`, 'replicas', { broker: id, reason: 'fenced' })
    }
  }

  #checkLiveReplicationFactor(replicationFactor: number): void {
    const live = this.activeBrokers().length
    if (replicationFactor > live) {
      throw invalid(`replication factor ${replicationFactor} is larger than the ${live} live brokers`, 'replicationFactor', {
        reason: 'replication-factor',
        liveBrokers: live,
      })
    }
  }

  #checkClusterPartitions(added: number): void {
    if (this.#partitionCount + added > clusterPartitionsMax) {
      throw invalid(`the cluster would have more than ${clusterPartitionsMax} partitions`, 'partitions')
    }
  }

  #knownBroker(id: BrokerId): BrokerInfo {
    const b = this.#brokers.get(id)
    if (b === undefined) throw invalid(`broker ${id} is not registered`, 'id', { broker: id, reason: 'unknown-broker' })
    return b
  }

  #knownTopic(name: string): TopicInfo {
    const t = this.#topics.get(name)
    if (t === undefined) throw new RillError(ErrorCode.UNKNOWN_TOPIC, `unknown topic ${name}`, { details: { topic: name } })
    return t
  }

  // ---------------------------------------------------------------- apply

  /** Decodes and applies one committed entry's data; empty data (the leader's no-op) changes nothing. */
  applyEntry(data: Uint8Array): ApplyResult {
    if (data.byteLength === 0) return { ok: true, version: this.#version }
    let cmd: Command
    try {
      cmd = decodeCommand(data)
    } catch (error) {
      if (error instanceof RillError) return { ok: false, error }
      throw error
    }
    return this.apply(cmd)
  }

  /** Applies one command in log order; a refused command changes nothing. */
  apply(cmd: Command): ApplyResult {
    let clean: Command
    try {
      clean = parseCommand(cmd)
      this.#check(clean, false)
    } catch (error) {
      if (error instanceof RillError) return { ok: false, error }
      throw error
    }
    if (this.#mutate(clean)) this.#version++
    return { ok: true, version: this.#version }
  }

  /** Applies a checked command; false if it changed nothing (a repeat). */
  #mutate(cmd: Command): boolean {
    switch (cmd.type) {
      case CommandType.RegisterBroker:
        return this.#register(cmd)
      case CommandType.FenceBroker:
        return this.#setBroker(cmd.id, { fenced: true })
      case CommandType.UnfenceBroker:
        return this.#setBroker(cmd.id, { fenced: false })
      case CommandType.DecommissionBroker:
        return this.#setBroker(cmd.id, { decommissioning: true })
      case CommandType.RecommissionBroker:
        return this.#setBroker(cmd.id, { decommissioning: false })
      case CommandType.UnregisterBroker:
        this.#brokers.delete(cmd.id)
        return true
      case CommandType.CreateTopic:
        this.#createTopic(cmd)
        return true
      case CommandType.DeleteTopic: {
        const t = this.#topics.get(cmd.name)
        assert(t !== undefined, 'delete of a checked topic')
        this.#partitionCount -= t.partitions.length
        this.#topics.delete(cmd.name)
        return true
      }
      case CommandType.CreatePartitions:
        this.#createPartitions(cmd)
        return true
      case CommandType.UpdateTopicConfig:
        return this.#updateConfig(cmd.name, cmd.config)
      case CommandType.ReassignPartition:
        return this.#reassign(cmd)
      case CommandType.CreateToken:
        this.#tokens.set(cmd.id, Object.freeze({ id: cmd.id, principal: cmd.principal, hash: cmd.hash, createdMs: cmd.createdMs }))
        return true
      case CommandType.RevokeToken:
        return this.#tokens.delete(cmd.id)
      case CommandType.AddAcl: {
        const key = aclKey(cmd.acl)
        if (this.#acls.has(key)) return false
        this.#acls.set(key, Object.freeze({ ...cmd.acl }))
        this.#aclList = null
        return true
      }
      case CommandType.RemoveAcl:
        if (!this.#acls.delete(aclKey(cmd.acl))) return false
        this.#aclList = null
        return true
      default:
        return unreachable(cmd, 'command')
    }
  }

  /**
   * A (re-)registration fences the broker: a new incarnation leads nothing
   * until the leader sees it caught up and unfences it (as Kafka's KRaft).
   */
  #register(cmd: RegisterBroker): boolean {
    const old = this.#brokers.get(cmd.id)
    const next: BrokerInfo = {
      id: cmd.id,
      httpUrl: cmd.httpUrl,
      peerUrl: cmd.peerUrl,
      rack: cmd.rack ?? null,
      fenced: true,
      decommissioning: old?.decommissioning ?? false,
    }
    if (old !== undefined && sameBroker(old, next)) return false
    this.#brokers.set(cmd.id, Object.freeze(next))
    return true
  }

  #setBroker(id: BrokerId, change: { fenced?: boolean; decommissioning?: boolean }): boolean {
    const old = this.#brokers.get(id)
    assert(old !== undefined, 'change of a checked broker')
    const next: BrokerInfo = { ...old, ...change }
    if (sameBroker(old, next)) return false
    this.#brokers.set(id, Object.freeze(next))
    return true
  }

  #createTopic(cmd: CreateTopic): void {
    const partitions = cmd.assignment.map((replicas, partition) => freezePartition({ partition, replicas, epoch: 0 }))
    const topic: TopicInfo = {
      name: cmd.name,
      id: this.#nextTopicId,
      replicationFactor: cmd.replicationFactor,
      config: Object.freeze({ ...cmd.config }),
      partitions: Object.freeze(partitions),
      epoch: 0,
    }
    this.#nextTopicId++
    this.#partitionCount += partitions.length
    this.#topics.set(cmd.name, Object.freeze(topic))
  }

  #createPartitions(cmd: CreatePartitions): void {
    const t = this.#topics.get(cmd.name)
    assert(t !== undefined, 'create partitions of a checked topic')
    const added = cmd.assignment.map((replicas, i) => freezePartition({ partition: t.partitions.length + i, replicas, epoch: 0 }))
    this.#partitionCount += added.length
    this.#topics.set(cmd.name, Object.freeze({ ...t, partitions: Object.freeze([...t.partitions, ...added]), epoch: t.epoch + 1 }))
  }

  #updateConfig(name: string, config: TopicConfig): boolean {
    const t = this.#topics.get(name)
    assert(t !== undefined, 'config change of a checked topic')
    if (sameConfig(t.config, config)) return false
    this.#topics.set(name, Object.freeze({ ...t, config: Object.freeze({ ...config }), epoch: t.epoch + 1 }))
    return true
  }

  #reassign(cmd: ReassignPartition): boolean {
    const t = this.#topics.get(cmd.topic)
    assert(t !== undefined, 'reassignment of a checked topic')
    const p = t.partitions[cmd.partition]
    assert(p !== undefined, 'reassignment of a checked partition')
    if (sameList(p.replicas, cmd.replicas)) return false
    const partitions = [...t.partitions]
    partitions[cmd.partition] = freezePartition({ partition: p.partition, replicas: cmd.replicas, epoch: p.epoch + 1 })
    this.#topics.set(cmd.topic, Object.freeze({ ...t, partitions: Object.freeze(partitions) }))
    return true
  }

  // ---------------------------------------------------------------- snapshots

  /** The whole state as bytes; equal states give equal bytes (sorted, fixed field order). */
  snapshot(): Uint8Array {
    const body = {
      format: snapshotFormat,
      version: this.#version,
      nextTopicId: this.#nextTopicId,
      brokers: this.brokers().map((b) => [b.id, b.httpUrl, b.peerUrl, b.rack, b.fenced, b.decommissioning]),
      topics: this.topics().map((t) => ({
        name: t.name,
        id: t.id,
        replicationFactor: t.replicationFactor,
        config: configRecord(t.config),
        epoch: t.epoch,
        partitions: t.partitions.map((p) => [p.epoch, p.replicas]),
      })),
      acls: this.acls().map((a) => [a.principal, a.resourceType, a.resourceName, a.patternType, a.operation]),
      tokens: this.tokens().map((t) => [t.id, t.principal, t.hash, t.createdMs]),
    }
    const bytes = snapshotPackr.pack(body)
    return new Uint8Array(bytes)
  }

  /**
   * Replaces this state with the one in `bytes` (from `snapshot()`). Bad
   * bytes are INVALID_REQUEST and leave this state as it was.
   */
  restore(bytes: Uint8Array): void {
    const next = parseSnapshot(bytes)
    this.#brokers = next.brokers
    this.#topics = next.topics
    this.#version = next.version
    this.#nextTopicId = next.nextTopicId
    this.#partitionCount = next.partitionCount
    this.#acls = next.acls
    this.#aclList = null
    this.#tokens = next.tokens
  }

  /** A new state from snapshot bytes. */
  static fromSnapshot(bytes: Uint8Array): ControllerState {
    const state = new ControllerState()
    state.restore(bytes)
    return state
  }
}

/** Leader side: throws the RillError `cmd` would be refused with (including liveness checks), else returns. */
export function validate(cmd: Command, state: ControllerState): void {
  const error = state.check(cmd, { liveness: true })
  if (error !== null) throw error
}

const snapshotPackr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' })

function configRecord(c: TopicConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { persistence: c.persistence }
  if (c.retentionMs !== undefined) out['retentionMs'] = c.retentionMs
  if (c.retentionBytes !== undefined) out['retentionBytes'] = c.retentionBytes
  return out
}

function freezePartition(p: PartitionInfo): PartitionInfo {
  return Object.freeze({ partition: p.partition, replicas: Object.freeze([...p.replicas]), epoch: p.epoch })
}

function sameBroker(a: BrokerInfo, b: BrokerInfo): boolean {
  return (
    a.httpUrl === b.httpUrl && a.peerUrl === b.peerUrl && a.rack === b.rack && a.fenced === b.fenced && a.decommissioning === b.decommissioning
  )
}

function sameConfig(a: TopicConfig, b: TopicConfig): boolean {
  return a.persistence === b.persistence && a.retentionMs === b.retentionMs && a.retentionBytes === b.retentionBytes
}

function sameList(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

// ---------------------------------------------------------------- snapshot parsing

interface ParsedSnapshot {
  brokers: Map<BrokerId, BrokerInfo>
  topics: Map<string, TopicInfo>
  version: number
  nextTopicId: TopicId
  partitionCount: number
  acls: Map<string, AclEntry>
  tokens: Map<string, TokenInfo>
}

/** One key per distinct ACL (its five fields; none holds a NUL). */
function aclKey(a: AclEntry): string {
  return `${a.principal}\0${a.resourceType}\0${a.resourceName}\0${a.patternType}\0${a.operation}`
}

function parseSnapshot(bytes: Uint8Array): ParsedSnapshot {
  let value: unknown
  try {
    // A copy: msgpackr caches a DataView as a property of the buffer it reads, and the caller's bytes stay untouched.
    value = snapshotPackr.unpack(new Uint8Array(bytes))
  } catch (cause) {
    throw new RillError(ErrorCode.INVALID_REQUEST, 'controller snapshot is not valid msgpack', { cause, details: { field: 'snapshot' } })
  }
  const o = plainObject(value, 'snapshot')
  onlyKeys(o, ['format', 'version', 'nextTopicId', 'brokers', 'topics', 'acls', 'tokens'], 'snapshot')
  // Format 1 (before ACLs and tokens) is format 2 with none of either.
  if (o['format'] !== snapshotFormat && o['format'] !== 1) throw invalid(`controller snapshot format ${String(o['format'])} is not ${snapshotFormat}`, 'snapshot.format')
  if (o['format'] === 1 && (o['acls'] !== undefined || o['tokens'] !== undefined)) throw invalid('controller snapshot format 1 has no ACLs or tokens', 'snapshot.format')
  const version = integer(o['version'], 'snapshot.version', 0, Number.MAX_SAFE_INTEGER)
  const nextTopicId = integer(o['nextTopicId'], 'snapshot.nextTopicId', 1, Number.MAX_SAFE_INTEGER)
  const brokers = parseSnapshotBrokers(o['brokers'])
  const topics = new Map<string, TopicInfo>()
  const topicIds = new Set<TopicId>()
  let partitionCount = 0
  for (const t of snapshotArray(o['topics'], 'snapshot.topics')) {
    const topic = parseSnapshotTopic(t, brokers)
    if (topics.has(topic.name) || topicIds.has(topic.id) || topic.id >= nextTopicId) {
      throw invalid(`controller snapshot repeats topic ${topic.name} or its id ${topic.id}`, 'snapshot.topics')
    }
    topics.set(topic.name, topic)
    topicIds.add(topic.id)
    partitionCount += topic.partitions.length
  }
  if (partitionCount > clusterPartitionsMax) throw invalid('controller snapshot has too many partitions', 'snapshot.topics')
  const acls = parseSnapshotAcls(o['acls'] ?? [])
  const tokens = parseSnapshotTokens(o['tokens'] ?? [])
  return { brokers, topics, version, nextTopicId, partitionCount, acls, tokens }
}

function parseSnapshotAcls(value: unknown): Map<string, AclEntry> {
  const list = snapshotArray(value, 'snapshot.acls')
  if (list.length > aclsMax) throw invalid('controller snapshot has too many ACLs', 'snapshot.acls')
  const acls = list.map((item) => {
    const a = snapshotArray(item, 'snapshot.acls')
    if (a.length !== 5) throw invalid('bad ACL in controller snapshot', 'snapshot.acls')
    return Object.freeze(parseAcl({ principal: a[0], resourceType: a[1], resourceName: a[2], patternType: a[3], operation: a[4] }, 'snapshot.acls'))
  })
  const out = new Map<string, AclEntry>()
  for (const a of acls) {
    if (out.has(aclKey(a))) throw invalid('controller snapshot repeats an ACL', 'snapshot.acls')
    out.set(aclKey(a), a)
  }
  return out
}

function parseSnapshotTokens(value: unknown): Map<string, TokenInfo> {
  const list = snapshotArray(value, 'snapshot.tokens')
  if (list.length > tokensMax) throw invalid('controller snapshot has too many tokens', 'snapshot.tokens')
  const tokens = new Map<string, TokenInfo>()
  for (const item of list) {
    const t = snapshotArray(item, 'snapshot.tokens')
    if (t.length !== 4 || typeof t[2] !== 'string' || !tokenHashPattern.test(t[2])) throw invalid('bad token in controller snapshot', 'snapshot.tokens')
    const id = tokenId(t[0], 'snapshot.tokens')
    if (tokens.has(id)) throw invalid(`controller snapshot repeats token ${id}`, 'snapshot.tokens')
    tokens.set(id, Object.freeze({ id, principal: principal(t[1], 'snapshot.tokens'), hash: t[2], createdMs: integer(t[3], 'snapshot.tokens', 0, Number.MAX_SAFE_INTEGER) }))
  }
  return tokens
}

function parseSnapshotBrokers(value: unknown): Map<BrokerId, BrokerInfo> {
  const brokers = new Map<BrokerId, BrokerInfo>()
  const list = snapshotArray(value, 'snapshot.brokers')
  if (list.length > brokersMax) throw invalid('controller snapshot has too many brokers', 'snapshot.brokers')
  for (const item of list) {
    const b = snapshotArray(item, 'snapshot.brokers')
    if (b.length !== 6 || typeof b[4] !== 'boolean' || typeof b[5] !== 'boolean') throw invalid('bad broker in controller snapshot', 'snapshot.brokers')
    const id = brokerId(b[0], 'snapshot.brokers')
    if (brokers.has(id)) throw invalid(`controller snapshot repeats broker ${id}`, 'snapshot.brokers')
    const info: BrokerInfo = {
      id,
      httpUrl: httpUrl(b[1]),
      peerUrl: peerUrl(b[2]),
      rack: b[3] === null ? null : rack(b[3]),
      fenced: b[4],
      decommissioning: b[5],
    }
    brokers.set(id, Object.freeze(info))
  }
  return brokers
}

function parseSnapshotTopic(value: unknown, brokers: ReadonlyMap<BrokerId, BrokerInfo>): TopicInfo {
  const o = plainObject(value, 'snapshot.topics')
  onlyKeys(o, ['name', 'id', 'replicationFactor', 'config', 'epoch', 'partitions'], 'snapshot.topics')
  const name = topicName(boundedString(o['name'], 'snapshot.topics.name', 1024))
  const replicationFactor = checkReplicationFactor(o['replicationFactor'])
  const list = snapshotArray(o['partitions'], 'snapshot.topics.partitions')
  if (list.length === 0 || list.length > partitionsPerTopicMax) throw invalid('bad partition count in controller snapshot', 'snapshot.topics')
  const partitions = list.map((item, partition) => {
    const p = snapshotArray(item, 'snapshot.topics.partitions')
    if (p.length !== 2) throw invalid('bad partition in controller snapshot', 'snapshot.topics.partitions')
    const replicas = replicaList(p[1], 'snapshot.topics.partitions')
    if (replicas.length !== replicationFactor || !replicas.every((id) => brokers.has(id))) {
      throw invalid(`bad replica list of ${name}/${partition} in controller snapshot`, 'snapshot.topics.partitions')
    }
    return freezePartition({ partition, replicas, epoch: integer(p[0], 'snapshot.topics.partitions', 0, Number.MAX_SAFE_INTEGER) })
  })
  return Object.freeze({
    name,
    id: integer(o['id'], 'snapshot.topics.id', 1, Number.MAX_SAFE_INTEGER),
    replicationFactor,
    config: Object.freeze(parseTopicConfig(o['config'])),
    partitions: Object.freeze(partitions),
    epoch: integer(o['epoch'], 'snapshot.topics.epoch', 0, Number.MAX_SAFE_INTEGER),
  })
}

function snapshotArray(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw invalid(`${field} must be an array`, field)
  return value
}
