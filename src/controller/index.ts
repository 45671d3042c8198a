/**
 * The controller: the cluster metadata state machine (brokers, topics,
 * replica sets, configs) applied from the controller Raft group's log, and
 * the placement the controller leader runs before proposing (DESIGN.md,
 * decision 7). Pure and deterministic: no I/O, no clock, no randomness.
 */
export { ControllerState, validate } from './state.ts'
export type { MetadataView, PartitionStateLookup } from './state.ts'
export { encodeCommand, decodeCommand, parseCommand, topicName, parseTopicConfig, parseAcl, principal, tokenId } from './codec.ts'
export {
  aclAllows,
  aclProblem,
  aclsMax,
  clusterResourceName,
  operationsOf,
  patternTypes,
  principalCharsMax,
  principalPattern,
  resourceTypes,
  tokenIdPattern,
  tokensMax,
  wildcardName,
} from './acl.ts'
export type { AclEntry, Operation, PatternType, Resource, ResourceType, TokenInfo } from './acl.ts'
export {
  assignReplicas,
  planCreateTopic,
  planCreatePartitions,
  planRebalance,
  planLeaderBalance,
  leaderTransfersMax,
} from './placement.ts'
export type { PlacementBroker, RebalancePlan, LeaderTransfer } from './placement.ts'
export {
  CommandType,
  Persistence,
  keepForever,
  brokerIdMax,
  brokersMax,
  clusterPartitionsMax,
  commandBytesMax,
  partitionsPerTopicMax,
  rackCharsMax,
  replicationFactorMax,
  topicNameCharsMax,
  urlCharsMax,
} from './types.ts'
export type {
  ApplyResult,
  BrokerId,
  BrokerInfo,
  Command,
  AddAcl,
  CreatePartitions,
  CreateToken,
  CreateTopic,
  DecommissionBroker,
  RemoveAcl,
  RevokeToken,
  DeleteTopic,
  FenceBroker,
  HostedReplica,
  PartitionInfo,
  ReassignPartition,
  RecommissionBroker,
  RegisterBroker,
  TopicConfig,
  TopicId,
  TopicInfo,
  UnfenceBroker,
  UnregisterBroker,
  UpdateTopicConfig,
} from './types.ts'
