/**
 * src/log: partition log storage: segments, sparse indexes, checksums, the
 * shared WAL (group commit), persistence modes, crash recovery, retention.
 * Used through this file only.
 */
export type { EntryToAppend, LogEntry, HardState, SnapshotMeta } from './format.ts'
export { formatVersion, entryHeaderBytes, entryBodyBytesMax } from './format.ts'
export type { PersistenceMode, PartitionLog, OpenLogOptions, DamageReport, RetentionResult } from './types.ts'
export type { LogStoreOptions, CrashImage } from './store.ts'
export { openLogStore, LogStore } from './store.ts'
export { MemoryLog, hardStateFileName, hardStateFileBytes, encodeHardStateFile } from './memory-log.ts'
export type { MemoryLogOptions, HardStateFile } from './memory-log.ts'
export type { LogIo, OpenFlags } from './io.ts'
export { nodeIo, storageError, isErrorCode, fsyncDir, mkdirDurable, readFile, readFileSync, writeFileAtomic, writeAllSync } from './io.ts'
export type { Mark } from './disk-log.ts'
export { segmentBytesDefault, indexIntervalBytesDefault, flushIntervalMsDefault } from './disk-log.ts'
export { appendEntriesMax, appendBytesMax, isCutReadFailure } from './checks.ts'
export { walBytesMaxDefault } from './wal.ts'
export { crc32c } from '../base/index.ts'
