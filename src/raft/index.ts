/**
 * The Raft consensus core: a pure state machine (no I/O, no clock).
 * Drive it with tick/step/propose, take its output with ready(), persist,
 * send, apply, then advance(ready).
 */
export { Raft, contextTransfer, encodeConfChange, decodeConfChange } from './raft.ts'
export type { RaftConfig, RaftResult } from './raft.ts'
export { MemoryStorage, termCompacted, emptyConf, bootstrapSnapshot } from './storage.ts'
export type { Storage } from './storage.ts'
export { ProgressState } from './progress.ts'
export {
  ConfChangeType,
  EntryType,
  MessageType,
  Role,
  emptyEntries,
  entryBytes,
  entryOverheadBytes,
  message,
  messageTypeNames,
  noNode,
} from './types.ts'
export type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  LogIndex,
  Message,
  NodeId,
  ReadState,
  Ready,
  Snapshot,
  SnapshotMeta,
  SoftState,
  Term,
} from './types.ts'
