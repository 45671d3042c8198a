/**
 * Consumer groups (docs/groups.md): the replicated state of the internal
 * `__consumer_offsets` partitions, the assignor, and the coordinator.
 */
export { assignStep, tpKey, parseTpKey } from './assignor.ts'
export type { AssignorMember, AssignorResult, TpKey } from './assignor.ts'
export { OffsetsState, encodeGroupCommand, decodeGroupCommand, groupLimits } from './state.ts'
export type { ApplyResult, GroupCommand, GroupState, MemberState } from './state.ts'
export { OffsetsReplica, groupCommandWaitMsMax } from './replica.ts'
export type { OffsetsReplicaOptions } from './replica.ts'
export { GroupCoordinator, sessionTimeoutMsDefault, sessionTimeoutMsMin, sessionTimeoutMsMax } from './coordinator.ts'
export type { CoordinatorHost } from './coordinator.ts'
