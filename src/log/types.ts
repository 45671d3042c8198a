/**
 * The interface every partition log offers, whatever its persistence mode,
 * and the options that configure one. The Raft core's entries are adapted
 * onto `EntryToAppend` by the partition layer; src/log knows nothing of Raft
 * beyond index, term and the hard state.
 */
import type { EntryToAppend, HardState, LogEntry, SnapshotMeta } from './format.ts'

/**
 * How appends are made durable (DESIGN.md decision 6):
 * - `sync`: `append` resolves after an fsync (shared with concurrent appends
 *   of every sync log of the store: one WAL, one fsync per cycle);
 * - `async`: resolves once written to the OS; fsync every `flushIntervalMs`
 *   and on close;
 * - `memory`: entries in memory only (a restarted replica refetches them);
 *   opened through a LogStore, the Raft hard state is still kept durable in
 *   one small file, so a restarted replica never votes twice in a term.
 */
export type PersistenceMode = 'sync' | 'async' | 'memory'

/** Where a log is damaged and what must be refetched from the leader. */
export interface DamageReport {
  /** The damaged file. */
  readonly file: string
  /** Byte position of the first bad entry in it. */
  readonly position: number
  /** What failed (checksum mismatch, index out of sequence, ...). */
  readonly reason: string
  /** First index to refetch: the log serves entries before it only. */
  readonly indexFirst: number
  /** Last index the damaged part is known to have held (at least indexFirst); refetch up to the leader's end. */
  readonly indexLast: number
}

/** What one retention pass removed. */
export interface RetentionResult {
  readonly segmentsDeleted: number
  readonly bytesDeleted: number
  /** The log's first index after the pass. */
  readonly firstIndex: number
}

/** Options of one log. */
export interface OpenLogOptions {
  /** Log name, unique in the store; a directory name ([A-Za-z0-9._-], at most 255 bytes). */
  readonly name: string
  /** Persistence mode. */
  readonly mode: PersistenceMode
  /** Size at which a segment is sealed and a new one started. Default 128 MiB. */
  readonly segmentBytesMax?: number
  /** Bytes between two sparse-index points. Default 64 KiB: a read scans at most this far. */
  readonly indexIntervalBytes?: number
  /** `async` mode: how often written entries are fsynced, in ms. Default 100. */
  readonly flushIntervalMs?: number
  /** Retention by time: whole segments whose newest record is older than this go (ms). Default: keep. */
  readonly retentionMs?: number
  /** Retention by size: oldest whole segments go while the log is larger than this. Default: keep. */
  readonly retentionBytes?: number
}

/** One partition replica's Raft log. */
export interface PartitionLog {
  /** The log's name in its store. */
  readonly name: string
  /** How appends are made durable. */
  readonly mode: PersistenceMode
  /** First index that can be read (after compaction and retention). */
  firstIndex(): number
  /** Last index appended (firstIndex() - 1 when empty). */
  lastIndex(): number
  /**
   * Term of entry `index`, for firstIndex() - 1 <= index <= lastIndex()
   * (the term of firstIndex() - 1 is known after a compaction). Throws
   * OFFSET_OUT_OF_RANGE outside that range. No I/O.
   */
  term(index: number): number
  /**
   * Appends contiguous entries. If the first index is <= lastIndex() the
   * suffix from it is dropped first (truncate after a conflict). Resolves
   * when the entries are durable per the mode. Throws STORAGE_READ_ONLY on a
   * damaged or closed log, STORAGE_FULL on ENOSPC (nothing is half-written).
   */
  append(entries: readonly EntryToAppend[]): Promise<void>
  /**
   * Entries from `indexStart`, in order, until their bodies and headers pass
   * `bytesMax` (always at least one if any). Empty if indexStart > lastIndex().
   * Throws OFFSET_OUT_OF_RANGE below firstIndex(), STORAGE_CORRUPT if a
   * checksum fails (the report names file and position).
   */
  read(options: { indexStart: number; bytesMax: number }): Promise<LogEntry[]>
  /**
   * Data entries (recordCount > 0) holding offset `offsetStart` or later, in
   * order, bounded by `bytesMax` like `read`. Non-data entries are skipped.
   */
  readByOffset(options: { offsetStart: number; bytesMax: number }): Promise<LogEntry[]>
  /**
   * Drops every entry after `index` (index >= firstIndex() - 1). On a
   * damaged log, truncating at or below the damage makes it writable again:
   * the caller refetches the rest from the leader.
   */
  truncateAfter(index: number): Promise<void>
  /**
   * Compacts the prefix up to a snapshot: entries <= snapshot.index are gone
   * (whole segments are deleted; the rest is hidden), term(snapshot.index) is
   * kept. A snapshot past lastIndex() empties the log, which then continues
   * at snapshot.index + 1. Durable when it resolves.
   */
  compact(snapshot: SnapshotMeta): Promise<void>
  /**
   * Deletes whole old segments by time (record timestamps vs `nowMs`,
   * wall-clock ms) and size, but only segments whose last index is <=
   * `indexAllowed` (the snapshot / commit point the caller allows). Never the
   * last segment.
   */
  applyRetention(options: { indexAllowed: number; nowMs: number }): Promise<RetentionResult>
  /** The hard state last set (or read at open). */
  hardState(): HardState
  /**
   * Writes the hard state atomically and durably: it resolves once a power
   * loss would keep it (memory mode too when opened through a LogStore; a
   * bare `new MemoryLog` only keeps it in memory). Term never goes down.
   */
  setHardState(state: HardState): Promise<void>
  /** Set if open found damage before the tail; the log is read-only up to it. */
  readonly damage: DamageReport | undefined
  /** Finishes pending writes, fsyncs (disk modes), closes. */
  close(): Promise<void>
}
