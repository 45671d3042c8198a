/**
 * src/partition: one partition replica = a Raft group + its log + the
 * partition state machine (offsets, high watermark, idempotent producers).
 */
export { Partition, produceWaitMsMax, fetchWaitMsMax } from './partition.ts'
export type { Acks, BatchCodec, FetchResult, PartitionOptions, ProduceResult } from './partition.ts'
export { LogRaftStorage } from './raft-storage.ts'
export type { EntryRecordMeta, LogRaftStorageOptions } from './raft-storage.ts'
export { FileSnapshotStore, MemorySnapshotStore, encodeSnapshotFile, decodeSnapshotFile, snapshotFileBytesMax } from './snapshot-store.ts'
export type { SnapshotStore } from './snapshot-store.ts'
export { PartitionState, checkSequence, rememberBatch, producerBatchesRemembered, producersPerPartitionMax } from './state.ts'
export type { BatchHeader, ProducerState, RememberedBatch, SequenceVerdict } from './state.ts'
export { HostedGroup, RaftGroup } from './group.ts'
export type { GroupOptions, ReplicaOptions, StateMachine } from './group.ts'
