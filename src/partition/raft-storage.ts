/**
 * The Raft core's Storage over a partition's on-disk log (src/log).
 *
 * The core reads synchronously; the log reads from disk asynchronously. So:
 *
 *   term(i), firstIndex(), lastIndex()   the log answers from memory (its index)
 *   entries(lo, hi)                      from the in-memory tail (recent appends),
 *                                        else from the last read-ahead, else
 *                                        null: a read-ahead starts, `onLoaded`
 *                                        fires when it lands and the core asks again
 *
 * A read-ahead that did not load `lo` must not hand straight back to the
 * core, which would ask for `lo` again at once: that loop held a broker at
 * 100% CPU in CI (a read that fails at once never even yields to the event
 * loop), and `npm run sim:cluster -- --seed 1 --faults bad-sectors` shows it
 * with a disk read failing every time. So a failed read is retried after a
 * backoff on the runtime's clock (10 ms doubling to 1 s: bounded work while
 * a disk recovers), and a read that cannot succeed by retrying — the log does
 * not hold `lo` (OFFSET_OUT_OF_RANGE, or nothing there) or its bytes are
 * damaged (STORAGE_CORRUPT) — stops the group with that error (`onFailed`).
 *
 * Writes come from persisting a Ready, one at a time, in order (`persist`):
 * an installed snapshot first, then entries (the log truncates a conflicting
 * suffix itself), then the hard state — written only when term or vote
 * changed: the commit index is an optimisation a restarted node relearns
 * from its leader, and an fsync per Ready for it would halve throughput.
 */
import { assert, ErrorCode, isRillError, noTimer, RillError, systemRuntime } from '../base/index.ts'
import type { Runtime, TimerHandle } from '../base/index.ts'
import { appendBytesMax, appendEntriesMax, entryHeaderBytes, isCutReadFailure, type EntryToAppend, type LogEntry, type PartitionLog } from '../log/index.ts'
import type { ConfState, Entry, HardState, LogIndex, Ready, Snapshot, Storage, Term } from '../raft/index.ts'
import { entryBytes, termCompacted } from '../raft/index.ts'
import type { SnapshotStore } from './snapshot-store.ts'

/** Record metadata the log indexes by (offsets, timestamps); zeros for non-data entries. */
export interface EntryRecordMeta {
  readonly baseOffset: number
  readonly recordCount: number
  readonly timestampMinMs: number
  readonly timestampMaxMs: number
}

export interface LogRaftStorageOptions {
  readonly log: PartitionLog
  readonly snapshots: SnapshotStore
  /** The snapshot loaded at open (its conf is the membership as of it). */
  readonly snapshot: Snapshot
  /** Offsets and timestamps of a data entry, read from its batch header. */
  readonly recordMeta: (e: Entry) => EntryRecordMeta
  /** Called when a read-ahead finished: the owner should let the core try again. */
  readonly onLoaded: () => void
  /** Called when the log cannot serve what the core needs (the owner stops the group). */
  readonly onFailed: (error: RillError) => void
  /** Clock and timers for read retries. Default: the process's. */
  readonly runtime?: Runtime
  /** Bytes of recent entries kept in memory for replication and apply. Default 8 MiB. */
  readonly tailBytesMax?: number
  /** Bytes read from disk per read-ahead. Default 4 MiB. */
  readonly readAheadBytes?: number
}

/** First retry of a failed read-ahead, ms; it doubles per failure in a row, up to the max. */
const readRetryMsMin = 10
const readRetryMsMax = 1000

export class LogRaftStorage implements Storage {
  readonly #log: PartitionLog
  readonly #snapshots: SnapshotStore
  readonly #recordMeta: (e: Entry) => EntryRecordMeta
  readonly #onLoaded: () => void
  readonly #tailBytesMax: number
  readonly #readAheadBytes: number
  #snapshot: Snapshot
  /** Recent entries, contiguous, ending at the log's last index (or empty). */
  #tail: Entry[] = []
  #tailBytes = 0
  /** Last read-ahead result: contiguous entries from disk. */
  #ahead: Entry[] = []
  #loading = false
  /** Read-aheads in a row that did not load what was asked, and the retry armed after the last. */
  #readFailures = 0
  #retryTimer: TimerHandle = noTimer
  /** Batches persisted again in a row after a truncation's read failed (persistMany), and what ends their backoff at close. */
  #persistFailures = 0
  readonly #closing = new AbortController()
  readonly #onFailed: (error: RillError) => void
  readonly #runtime: Runtime
  /** Bumped by every truncation and snapshot install: a read-ahead that started before is stale. */
  #generation = 0
  #persistedHard: HardState
  #closed = false

  constructor(options: LogRaftStorageOptions) {
    this.#log = options.log
    this.#snapshots = options.snapshots
    this.#snapshot = options.snapshot
    this.#recordMeta = options.recordMeta
    this.#onLoaded = options.onLoaded
    this.#onFailed = options.onFailed
    this.#runtime = options.runtime ?? systemRuntime
    this.#tailBytesMax = options.tailBytesMax ?? 8 << 20
    this.#readAheadBytes = options.readAheadBytes ?? 4 << 20
    this.#persistedHard = this.#log.hardState()
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: this.#log.hardState(), conf: this.#snapshot.meta.conf }
  }

  /**
   * The log's first entry, not the snapshot's: for a partition the entries
   * are the records, so a follower catches up from the log as far back as
   * retention kept it, and gets a snapshot only below that.
   */
  firstIndex(): LogIndex {
    return Math.min(this.#log.firstIndex(), this.#snapshot.meta.index + 1)
  }

  lastIndex(): LogIndex {
    return Math.max(this.#log.lastIndex(), this.#snapshot.meta.index)
  }

  term(i: LogIndex): Term {
    if (i === this.#snapshot.meta.index) return this.#snapshot.meta.term
    if (i < this.firstIndex() - 1) return termCompacted
    assert(i <= this.lastIndex(), () => `partition storage: term(${i}) beyond last index ${this.lastIndex()}`)
    // Retention deletes whole segments and does not keep the term of the last
    // entry it deleted (compaction does): below the log's first entry the
    // term may be unknown, which the core treats as compacted (a snapshot).
    if (i < this.#log.firstIndex()) {
      try {
        return this.#log.term(i)
      } catch {
        return termCompacted
      }
    }
    return this.#log.term(i)
  }

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] | null {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex() + 1, () => `partition storage: entries [${lo}, ${hi}) out of range`)
    const fromTail = this.#serve(this.#tail, lo, hi, bytesMax)
    if (fromTail !== null) return fromTail
    const fromAhead = this.#serve(this.#ahead, lo, hi, bytesMax)
    if (fromAhead !== null) return fromAhead
    this.#startReadAhead(lo)
    return null
  }

  snapshot(): Snapshot {
    return this.#snapshot
  }

  /** Serves [lo, hi) from a contiguous cache if it starts at or before lo and covers lo. */
  #serve(cache: readonly Entry[], lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] | null {
    if (cache.length === 0) return null
    const first = cache[0]!.index
    const last = cache[cache.length - 1]!.index
    if (lo < first || lo > last) return null
    const out: Entry[] = []
    let bytes = 0
    for (let i = lo; i < hi && i <= last; i++) {
      const e = cache[i - first]!
      bytes += entryBytes(e)
      if (out.length > 0 && bytes > bytesMax) break
      out.push(e)
    }
    return out
  }

  #startReadAhead(lo: LogIndex): void {
    if (this.#loading || this.#closed) return
    this.#loading = true
    const generation = this.#generation
    this.#log.read({ indexStart: lo, bytesMax: this.#readAheadBytes }).then(
      (got) => {
        this.#loading = false
        if (this.#closed) return
        if (generation !== this.#generation) {
          // Truncated or replaced meanwhile: what the core asks for has changed; ask again soon (through a timer).
          this.#retry(0)
          return
        }
        if (got.length === 0 || got[0]!.index > lo) {
          this.#onFailed(new RillError(ErrorCode.STORAGE_CORRUPT, `partition storage: the log holds no entry ${lo} (it holds ${this.#log.firstIndex()}..${this.#log.lastIndex()}, snapshot at ${this.#snapshot.meta.index})`))
          return
        }
        this.#ahead = got.map(fromLogEntry)
        this.#readFailures = 0
        this.#onLoaded()
      },
      (error: unknown) => {
        this.#loading = false
        this.#ahead = []
        if (this.#closed) return
        if (isRillError(error) && (error.code === ErrorCode.OFFSET_OUT_OF_RANGE || error.code === ErrorCode.STORAGE_CORRUPT)) {
          this.#onFailed(new RillError(error.code, `partition storage: cannot read entry ${lo}: ${error.message}`, { cause: error }))
          return
        }
        this.#readFailures++
        this.#retry(Math.min(readRetryMsMax, readRetryMsMin * 2 ** Math.min(this.#readFailures - 1, 16)))
      },
    )
  }

  /** Lets the core ask again after `ms` (0: at once, but from a timer, never from a promise callback). */
  #retry(ms: number): void {
    this.#retryTimer.cancel()
    this.#retryTimer = this.#runtime.setTimer(() => {
      this.#retryTimer = noTimer
      if (!this.#closed) this.#onLoaded()
    }, ms)
  }

  /** Read-aheads that failed in a row (a disk in trouble; metrics and tests). */
  get readFailures(): number {
    return this.#readFailures
  }

  /**
   * Makes Readies durable (per the log's persistence mode), in order. Their
   * appends are issued back to back without waiting in between, so the log
   * can make them durable with one group commit.
   *
   * A follower's append that replaces a conflicting suffix must first read
   * the segment to find where the cut goes. If that read fails (EIO: bad
   * sectors, a disk in trouble) the log has not changed (isCutReadFailure),
   * so the batch is persisted again after a backoff (10 ms doubling to 1 s,
   * as a failed read-ahead is) until the disk reads again or the storage
   * closes. Before, the failed read was taken for a failed write and the
   * group stopped for good: `npm run sim:cluster -- --seed 11`, a restarted
   * broker whose first segment had bad sectors for ~2 s never applied
   * anything again (hw 0 to the end). Any other error still rejects (the
   * group stops: a failed write cannot be taken back).
   *
   * The retry writes what the whole batch leaves behind (collapse), not the
   * batch as it was: the appends before the failed cut went through, and
   * replaying them on top of what they wrote broke the log (seed 828: 171 and
   * 172 of term 3 were written, then 170 of term 4 could not cut; the retry
   * that finally cut also wrote 171 of term 5, and the next one appended
   * 171 of term 3 after 170 of term 4: an assertion, the replica stopped).
   */
  async persistMany(readies: readonly Ready[]): Promise<void> {
    let batch: readonly Persist[] = readies
    for (;;) {
      try {
        await this.#persistOnce(batch)
        this.#persistFailures = 0
        return
      } catch (error) {
        if (this.#closed || !isCutReadFailure(error)) throw error
        this.#persistFailures++
        batch = collapse(readies)
        await this.#runtime.sleep(Math.min(readRetryMsMax, readRetryMsMin * 2 ** Math.min(this.#persistFailures - 1, 16)), this.#closing.signal)
        // Closed while waiting: the batch is not durable, say why.
        if (this.#closed) throw error
      }
    }
  }

  async #persistOnce(readies: readonly Persist[]): Promise<void> {
    const appends: Promise<void>[] = []
    let hard: HardState | null = null
    // The last index issued so far: the log's own lastIndex lags the appends issued above it.
    let issuedLast = this.#log.lastIndex()
    // The lowest index an append of this batch replaces (Infinity: none).
    let replacedFrom = Infinity
    try {
      for (const rd of readies) {
        if (rd.snapshot !== null) {
          // Rare: keep a snapshot install strictly ordered with the appends around it.
          await settleAll(appends)
          appends.length = 0
          await this.installSnapshot(rd.snapshot)
          issuedLast = this.#log.lastIndex()
        }
        if (rd.entries.length > 0) {
          const first = rd.entries[0]!.index
          if (first <= issuedLast) {
            replacedFrom = Math.min(replacedFrom, first)
            this.#generation++
          }
          issuedLast = rd.entries[rd.entries.length - 1]!.index
          const toLog: EntryToAppend[] = rd.entries.map((e) => ({ ...this.#recordMeta(e), index: e.index, term: e.term, type: e.type, data: e.data }))
          this.#remember(rd.entries)
          appends.push(this.#log.append(toLog))
        }
        if (rd.hardState !== null) hard = rd.hardState
      }
      await settleAll(appends)
    } finally {
      if (replacedFrom !== Infinity) this.#replaced(replacedFrom)
    }
    if (hard !== null && (hard.term !== this.#persistedHard.term || hard.vote !== this.#persistedHard.vote)) {
      await this.#log.setHardState(hard)
      this.#persistedHard = hard
    }
  }

  /** Batches persisted again in a row because a truncation's read failed (a disk in trouble; metrics and tests). */
  get persistFailures(): number {
    return this.#persistFailures
  }

  /** A snapshot from the leader replaces the log (the log continues after it). */
  async installSnapshot(snap: Snapshot): Promise<void> {
    await this.#snapshots.save(snap)
    this.#snapshot = snap
    this.#generation++
    this.#tail = []
    this.#tailBytes = 0
    this.#ahead = []
    // The core installs a snapshot only where our log disagrees with it, so
    // whatever we hold at and after its index is divergent: drop it all.
    if (this.#log.lastIndex() >= snap.meta.index) await this.#log.truncateAfter(this.#log.firstIndex() - 1)
    await this.#log.compact({ index: snap.meta.index, term: snap.meta.term })
  }

  /**
   * The application took a snapshot at `index` (applied, durable): save it,
   * then compact the log up to `compactIndex` (<= index; keeping a little
   * tail lets slow followers catch up without a snapshot).
   */
  async createSnapshot(options: { index: LogIndex; conf: ConfState; data: Uint8Array; compactIndex: LogIndex }): Promise<Snapshot> {
    assert(options.index > this.#snapshot.meta.index, () => `partition storage: snapshot ${options.index} not after ${this.#snapshot.meta.index}`)
    assert(options.compactIndex <= options.index, 'partition storage: compaction beyond the snapshot')
    const snap: Snapshot = { meta: { index: options.index, term: this.#log.term(options.index), conf: options.conf }, data: options.data }
    await this.#snapshots.save(snap)
    this.#snapshot = snap
    if (options.compactIndex >= this.#log.firstIndex()) {
      await this.#log.compact({ index: options.compactIndex, term: this.#log.term(options.compactIndex) })
    }
    return snap
  }

  /**
   * Appends that replaced a suffix from `from` have settled (done or failed).
   * A read-ahead issued while they were queued in the log read the log as it
   * was before their cut: the log's own fence (DiskLog.read) cannot drop what
   * it read before the cut began, and the generation bumped when they were
   * issued does not tell a read that started after that bump. Such a read
   * holds the replaced entries; once the core advances past the append it
   * asks storage for them, and was served the old ones (sim:cluster seed 10
   * --leader-acks: a restarted follower's read-ahead from 2 landed 0.2 ms
   * into the 3.7 ms its append of 138 (a cut of 138..190) took in the log,
   * and it applied its old term-2 entry 138 where the others applied the
   * term-3 one). So what is cached from `from` on is dropped, and a read still in
   * flight is refused when it lands (the generation moves again).
   */
  #replaced(from: LogIndex): void {
    this.#generation++
    const ahead = this.#ahead
    if (ahead.length > 0 && ahead[ahead.length - 1]!.index >= from) {
      this.#ahead = ahead[0]!.index >= from ? [] : ahead.slice(0, from - ahead[0]!.index)
    }
  }

  /** Keeps appended entries in the in-memory tail (truncating a replaced suffix). */
  #remember(ents: readonly Entry[]): void {
    const first = ents[0]!.index
    if (this.#tail.length > 0) {
      const tailFirst = this.#tail[0]!.index
      const keep = first - tailFirst
      if (keep <= 0) {
        this.#tail = []
        this.#tailBytes = 0
      } else if (keep < this.#tail.length) {
        for (let i = keep; i < this.#tail.length; i++) this.#tailBytes -= entryBytes(this.#tail[i]!)
        this.#tail.length = keep
      } else if (keep > this.#tail.length) {
        // A gap (entries before `first` were never seen here): start over.
        this.#tail = []
        this.#tailBytes = 0
      }
    }
    for (const e of ents) {
      this.#tail.push(e)
      this.#tailBytes += entryBytes(e)
    }
    let drop = 0
    while (this.#tailBytes > this.#tailBytesMax && drop < this.#tail.length - 1) {
      this.#tailBytes -= entryBytes(this.#tail[drop]!)
      drop++
    }
    if (drop > 0) this.#tail = this.#tail.slice(drop)
    if (this.#ahead.length > 0 && this.#ahead[this.#ahead.length - 1]!.index >= first) this.#ahead = []
  }

  /**
   * The entries appended last, in index order, ending at the last one
   * appended (empty after a snapshot install). Entries up to the applied
   * index are committed and never change: a partition answers fetches at
   * the end of its log from them instead of reading its files. Read it
   * synchronously; it changes with every append.
   */
  recentEntries(): readonly Entry[] {
    return this.#tail
  }

  close(): void {
    this.#closed = true
    this.#retryTimer.cancel()
    this.#closing.abort()
  }
}

/** What persisting a Ready writes. */
export type Persist = Pick<Ready, 'snapshot' | 'entries' | 'hardState'>

/**
 * What persisting `readies` in order leaves behind, as writes that are
 * correct whatever part of them is already in the log: the last snapshot,
 * then the entries from the lowest index any append (after that snapshot)
 * starts at, each index as the last append wrote it — its first write cuts
 * whatever is there from that index on — then the last hard state.
 */
export function collapse(readies: readonly Persist[]): Persist[] {
  let snapshot: Snapshot | null = null
  let entries: Entry[] = []
  let hardState: HardState | null = null
  for (const rd of readies) {
    if (rd.snapshot !== null) {
      snapshot = rd.snapshot
      entries = []
    }
    if (rd.entries.length > 0) {
      const keep = entries.length === 0 ? 0 : Math.max(0, rd.entries[0]!.index - entries[0]!.index)
      entries = entries.slice(0, keep).concat(rd.entries)
    }
    if (rd.hardState !== null) hardState = rd.hardState
  }
  // Split as the log takes appends (bounded entries and bytes per call).
  const out: Persist[] = []
  let chunk: Entry[] = []
  let bytes = 0
  for (const e of entries) {
    const size = entryHeaderBytes + e.data.byteLength
    if (chunk.length > 0 && (chunk.length === appendEntriesMax || bytes + size > appendBytesMax)) {
      out.push({ snapshot: out.length === 0 ? snapshot : null, entries: chunk, hardState: null })
      chunk = []
      bytes = 0
    }
    chunk.push(e)
    bytes += size
  }
  out.push({ snapshot: out.length === 0 ? snapshot : null, entries: chunk, hardState })
  return out
}

/**
 * Waits for appends issued back to back, rejecting with the first failure
 * like Promise.all; when that failure may be retried (isCutReadFailure) it
 * first lets the others settle (they fail after it: the log did not move),
 * so that a retry never races an append of the failed attempt.
 */
async function settleAll(appends: readonly Promise<void>[]): Promise<void> {
  try {
    await Promise.all(appends)
  } catch (error) {
    if (isCutReadFailure(error)) await Promise.allSettled(appends)
    throw error
  }
}

function fromLogEntry(e: LogEntry): Entry {
  return { index: e.index, term: e.term, type: e.type as Entry['type'], data: e.data }
}
