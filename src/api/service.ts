/**
 * What the HTTP layer (src/api) asks of a broker: the edge owns the
 * interface it calls, so src/broker imports nothing from here and a Broker
 * satisfies BrokerService structurally (checked where src/cli hands one to
 * `buildApi`). src/api turns HTTP requests (JSON or msgpack) into these calls
 * and RillErrors into status codes. Record data crosses this boundary as
 * stored record batches only (DESIGN.md decision 3): JSON bodies are encoded
 * into a batch at the edge.
 *
 * ProduceCall, FetchCall and their outcomes are plain data both sides take
 * from src/wire (api-types.ts).
 */
import type { Registry } from 'prom-client'
import type { AclEntry } from '../controller/index.ts'
import type {
  CommitOffsetsRequest,
  CreateTopicRequest,
  GroupDescription,
  GroupOffsetsResponse,
  HeartbeatRequest,
  InitProducerResponse,
  JoinGroupRequest,
  MemberAssignmentResponse,
  MetadataResponse,
  TopicDescription,
  ProduceCall,
  ProduceOutcome,
  FetchCall,
  FetchOutcome,
} from '../wire/index.ts'

export type { ProduceCall, ProduceOutcome, FetchCall, FetchOutcome } from '../wire/index.ts'

/**
 * Errors are RillErrors: NOT_LEADER carries `details.leader = { id, url }`
 * (the HTTP layer answers 421 with it), UNKNOWN_TOPIC / UNKNOWN_PARTITION,
 * OFFSET_OUT_OF_RANGE, TOPIC_EXISTS, INVALID_REQUEST, OUT_OF_ORDER_SEQUENCE,
 * UNKNOWN_MEMBER, FENCED_MEMBER, FORBIDDEN (internal topics),
 * NO_QUORUM, TIMEOUT, TOO_LARGE, INVALID_PRODUCER_TOKEN.
 */
export interface BrokerService {
  readonly brokerId: number
  /** Metrics of this broker (HTTP layer adds its own and serves /metrics). */
  readonly registry: Registry
  metadata(): MetadataResponse
  /** Creates a topic through the controller leader (forwarding if needed); resolves once applied here. */
  createTopic(request: CreateTopicRequest): Promise<{ name: string; partitions: number }>
  /**
   * Resolves true once topic `name` can be used on every live broker (each
   * knows it; every partition has a leader that all its live replicas
   * follow), false if not within a bound of a few seconds (the topic exists
   * all the same). `POST /v1/topics` waits for it unless told not to.
   */
  waitTopicReady(name: string): Promise<boolean>
  listTopics(): string[]
  describeTopic(name: string): TopicDescription
  deleteTopic(name: string): Promise<void>
  /** Partitions of a topic (for keyed routing on POST /v1/topics/:topic/records). */
  partitionCount(topic: string): number
  /** A fresh idempotent-producer identity, unique in the cluster and not guessable, with the token that proves it was obtained here. */
  /** A new producer identity whose token binds `principal` (null: anonymous). */
  newProducerId(principal?: string | null): Promise<InitProducerResponse>
  /** A batch with a producer id needs `call.producerToken` (INVALID_PRODUCER_TOKEN otherwise, nothing written). */
  produce(call: ProduceCall): Promise<ProduceOutcome>
  fetch(call: FetchCall): Promise<FetchOutcome>
  /** Consumer groups (docs/groups.md). */
  readonly groups: GroupService
  /** Tokens and ACLs in the cluster's metadata (docs/security.md). */
  readonly security: SecurityService
}

/**
 * Tokens and ACLs (src/broker/security.ts implements it). Changes go to the
 * controller leader and resolve once this broker's metadata shows them.
 */
export interface SecurityService {
  /** A new token for `principal`: the answer is the only place the token appears. */
  createToken(principal: string): Promise<{ id: string; principal: string; createdMs: number; token: string }>
  /** False if there is no such token. */
  revokeToken(id: string): Promise<boolean>
  tokens(principal?: string): { id: string; principal: string; createdMs: number }[]
  addAcl(acl: AclEntry): Promise<AclEntry>
  /** False if there was no such ACL. */
  removeAcl(acl: AclEntry): Promise<boolean>
  acls(principal?: string): readonly AclEntry[]
}

/**
 * Consumer groups, answered by the group's coordinator (the leader of its
 * `__consumer_offsets` partition); any other broker throws NOT_LEADER with
 * the coordinator's `{ id, url }`. src/groups' GroupCoordinator implements it.
 */
export interface GroupService {
  join(group: string, request: JoinGroupRequest): Promise<MemberAssignmentResponse>
  heartbeat(group: string, memberId: string, request: HeartbeatRequest): Promise<MemberAssignmentResponse>
  leave(group: string, memberId: string): Promise<void>
  describe(group: string): Promise<GroupDescription>
  /** Stores offsets (fenced by membership); answers the offsets now stored for those partitions. */
  commit(group: string, request: CommitOffsetsRequest): Promise<GroupOffsetsResponse>
  offsets(group: string): Promise<GroupOffsetsResponse>
}
