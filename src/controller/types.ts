/**
 * Types of the controller's metadata state machine: the commands written to
 * the controller's Raft log, the state they build, and the bounds on both.
 *
 * Every command is a plain object with a `type`; the controller leader
 * validates it, encodes it (codec.ts) and proposes it; every replica of the
 * metadata log decodes and applies it in log order (state.ts). Anything that
 * depends on time or chance (liveness, placement) is decided by the leader
 * BEFORE proposing and travels inside the command, so apply is a pure
 * function of (state, command).
 */
import type { RillError } from '../base/index.ts'
import type { AclEntry } from './acl.ts'

/** A broker id (also its Raft NodeId). 0 means "nobody", so ids start at 1. */
export type BrokerId = number

/** Stable id of one incarnation of a topic: a topic deleted and created again gets a new one. */
export type TopicId = number

export const Persistence = {
  /** Acknowledge after fsync (group commit). */
  Sync: 'sync',
  /** Write to the OS, fsync on an interval. */
  Async: 'async',
  /** No disk at all. */
  Memory: 'memory',
} as const
export type Persistence = (typeof Persistence)[keyof typeof Persistence]

/** A retention setting that keeps everything on its axis (Kafka's retention.ms / retention.bytes = -1). */
export const keepForever = -1

/** Per-topic settings. Absent retention, or `keepForever` (-1), means "keep forever" on that axis. */
export interface TopicConfig {
  readonly persistence: Persistence
  /** Delete segments older than this many milliseconds; -1 keeps them forever. */
  readonly retentionMs?: number
  /** Delete the oldest segments once a partition holds more than this many bytes; -1 for no bound. */
  readonly retentionBytes?: number
}

// ---------------------------------------------------------------- bounds

/** Kafka's limit on topic name length (wire's, the one rule the API checks too). */
export { nameCharsMax as topicNameCharsMax } from '../wire/index.ts'
/** Partitions of one topic. */
export const partitionsPerTopicMax = 10_000
/** Partitions in the whole cluster: each is a Raft group somebody must host. */
export const clusterPartitionsMax = 200_000
/** Replicas of one partition (a Raft group of more voters than this is slow and pointless). */
export const replicationFactorMax = 15
/** Registered brokers. */
export const brokersMax = 10_000
/** Largest broker id (fits the transport's u32 NodeId; 0 is "nobody"). */
export const brokerIdMax = 0x7fff_ffff
/** URL and rack string lengths. */
export const urlCharsMax = 2048
export const rackCharsMax = 255
/** Largest encoded command: a CreateTopic of partitionsPerTopicMax x replicationFactorMax fits. */
export const commandBytesMax = 4 * 1024 * 1024

// ---------------------------------------------------------------- commands

export const CommandType = {
  /** A broker announces itself (on every start). It is fenced until the leader unfences it. */
  RegisterBroker: 'RegisterBroker',
  /** The leader stopped hearing a broker: it leads nothing new and is a target of nothing new. */
  FenceBroker: 'FenceBroker',
  /** The leader hears a registered broker again and it has caught up with the metadata log. */
  UnfenceBroker: 'UnfenceBroker',
  /** Drain a broker: placement moves every replica off it. */
  DecommissionBroker: 'DecommissionBroker',
  /** Cancel a decommission. */
  RecommissionBroker: 'RecommissionBroker',
  /** Forget a broker that hosts nothing (after a drain). */
  UnregisterBroker: 'UnregisterBroker',
  CreateTopic: 'CreateTopic',
  DeleteTopic: 'DeleteTopic',
  /** Add partitions to a topic (never removes any, as in Kafka). */
  CreatePartitions: 'CreatePartitions',
  UpdateTopicConfig: 'UpdateTopicConfig',
  /** Set a partition's replica list (membership and order: the first replica is the preferred leader). */
  ReassignPartition: 'ReassignPartition',
  /** Store a bearer token's keyed hash for a principal (security: src/controller/acl.ts). */
  CreateToken: 'CreateToken',
  /** Forget a token: requests carrying it are unauthenticated from then on. */
  RevokeToken: 'RevokeToken',
  /** Add an allow rule. */
  AddAcl: 'AddAcl',
  /** Remove an allow rule. */
  RemoveAcl: 'RemoveAcl',
} as const
export type CommandType = (typeof CommandType)[keyof typeof CommandType]

export interface RegisterBroker {
  readonly type: 'RegisterBroker'
  readonly id: BrokerId
  /** Where clients reach the broker's HTTP API (`http://host:port`). */
  readonly httpUrl: string
  /** Where other brokers reach its peer listener (`host:port`). */
  readonly peerUrl: string
  /** Failure domain; placement puts one partition's replicas on distinct racks while racks suffice. */
  readonly rack?: string
}

export interface FenceBroker {
  readonly type: 'FenceBroker'
  readonly id: BrokerId
}

export interface UnfenceBroker {
  readonly type: 'UnfenceBroker'
  readonly id: BrokerId
}

export interface DecommissionBroker {
  readonly type: 'DecommissionBroker'
  readonly id: BrokerId
}

export interface RecommissionBroker {
  readonly type: 'RecommissionBroker'
  readonly id: BrokerId
}

export interface UnregisterBroker {
  readonly type: 'UnregisterBroker'
  readonly id: BrokerId
}

export interface CreateTopic {
  readonly type: 'CreateTopic'
  readonly name: string
  readonly partitions: number
  readonly replicationFactor: number
  readonly config: TopicConfig
  /** Replica list of each partition, chosen by the leader's placement before proposing. */
  readonly assignment: readonly (readonly BrokerId[])[]
}

export interface DeleteTopic {
  readonly type: 'DeleteTopic'
  readonly name: string
}

export interface CreatePartitions {
  readonly type: 'CreatePartitions'
  readonly name: string
  /** The new total number of partitions (greater than the current one). */
  readonly partitions: number
  /** Replica lists of the added partitions only, in partition order. */
  readonly assignment: readonly (readonly BrokerId[])[]
}

export interface UpdateTopicConfig {
  readonly type: 'UpdateTopicConfig'
  readonly name: string
  /** The whole new config (not a patch: absent retention means unlimited). */
  readonly config: TopicConfig
}

export interface ReassignPartition {
  readonly type: 'ReassignPartition'
  readonly topic: string
  readonly partition: number
  readonly replicas: readonly BrokerId[]
  /**
   * Compare-and-set guards, set by the planners: the command applies only if
   * the topic still has this id and the partition still has this epoch, so a
   * plan computed against an older state cannot undo a newer change.
   */
  readonly topicId?: TopicId
  readonly epoch?: number
}

export interface CreateToken {
  readonly type: 'CreateToken'
  /** 16 hex digits, unique in the cluster. */
  readonly id: string
  readonly principal: string
  /** Keyed hash of the token's secret, 64 hex digits (never the token). */
  readonly hash: string
  /** Wall clock of the issuing broker, ms (decided before proposing: apply reads no clock). */
  readonly createdMs: number
}

export interface RevokeToken {
  readonly type: 'RevokeToken'
  readonly id: string
}

export interface AddAcl {
  readonly type: 'AddAcl'
  readonly acl: AclEntry
}

export interface RemoveAcl {
  readonly type: 'RemoveAcl'
  readonly acl: AclEntry
}

export type Command =
  | RegisterBroker
  | FenceBroker
  | UnfenceBroker
  | DecommissionBroker
  | RecommissionBroker
  | UnregisterBroker
  | CreateTopic
  | DeleteTopic
  | CreatePartitions
  | UpdateTopicConfig
  | ReassignPartition
  | CreateToken
  | RevokeToken
  | AddAcl
  | RemoveAcl

// ---------------------------------------------------------------- state

export interface BrokerInfo {
  readonly id: BrokerId
  readonly httpUrl: string
  readonly peerUrl: string
  readonly rack: string | null
  /** Not heard from (or not yet caught up): leads nothing, receives no new replicas. */
  readonly fenced: boolean
  /** Being drained: receives no new replicas, placement moves its replicas away. */
  readonly decommissioning: boolean
}

export interface PartitionInfo {
  readonly partition: number
  /** Replica brokers; replicas[0] is the preferred leader. */
  readonly replicas: readonly BrokerId[]
  /** Bumped by every reassignment of this partition. */
  readonly epoch: number
}

export interface TopicInfo {
  readonly name: string
  readonly id: TopicId
  readonly replicationFactor: number
  readonly config: TopicConfig
  readonly partitions: readonly PartitionInfo[]
  /** Bumped by config changes and added partitions. */
  readonly epoch: number
}

/** One partition replica a broker must run (what the reconciler works from). */
export interface HostedReplica {
  readonly topic: string
  readonly topicId: TopicId
  readonly partition: number
  readonly replicas: readonly BrokerId[]
  readonly epoch: number
  readonly config: TopicConfig
}

/** Outcome of applying one committed command; a refused command changes nothing. */
export type ApplyResult = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly error: RillError }
