/**
 * The Raft log as the core sees it: entries already in stable storage, then
 * `Unstable` entries (and perhaps a snapshot) not yet acknowledged as durable.
 *
 *        storage (stable)              unstable
 *   [first ......... offset-1] [offset ... inProgress-1 | inProgress ... last]
 *                               handed to a Ready,       not yet handed out
 *                               write under way
 *
 * Invariants (checked): applied <= committed <= lastIndex; entries are
 * contiguous; committed entries are never truncated.
 */
import { assert } from '../base/index.ts'
import type { Storage } from './storage.ts'
import { termCompacted } from './storage.ts'
import type { Entry, LogIndex, Snapshot, Term } from './types.ts'
import { entryBytes } from './types.ts'

/** Entries and snapshot not yet durable. Mirrors etcd's unstable. */
export class Unstable {
  snapshot: Snapshot | null = null
  entries: Entry[] = []
  /** Index of entries[0] (or where it would be). */
  offset: LogIndex
  /** Entries [offset, offsetInProgress) have been handed to a Ready already. */
  offsetInProgress: LogIndex
  snapshotInProgress = false

  constructor(offset: LogIndex) {
    this.offset = offset
    this.offsetInProgress = offset
  }

  maybeFirstIndex(): LogIndex | undefined {
    return this.snapshot === null ? undefined : this.snapshot.meta.index + 1
  }

  maybeLastIndex(): LogIndex | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1
    return this.snapshot === null ? undefined : this.snapshot.meta.index
  }

  maybeTerm(i: LogIndex): Term | undefined {
    if (i < this.offset) {
      if (this.snapshot !== null && this.snapshot.meta.index === i) return this.snapshot.meta.term
      return undefined
    }
    const last = this.maybeLastIndex()
    if (last === undefined || i > last) return undefined
    return this.entries[i - this.offset]!.term
  }

  /** Entries not yet handed to a Ready. */
  nextEntries(): Entry[] {
    const start = this.offsetInProgress - this.offset
    if (start >= this.entries.length) return []
    return this.entries.slice(start)
  }

  nextSnapshot(): Snapshot | null {
    return this.snapshot === null || this.snapshotInProgress ? null : this.snapshot
  }

  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length
    if (this.snapshot !== null) this.snapshotInProgress = true
  }

  /** Entries up to (i, t) are durable: drop them, unless they were overwritten meanwhile. */
  stableTo(i: LogIndex, t: Term): void {
    const gt = this.maybeTerm(i)
    if (gt === undefined || gt !== t || i < this.offset) return
    const n = i + 1 - this.offset
    this.entries = this.entries.slice(n)
    this.offset = i + 1
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset)
  }

  stableSnapTo(i: LogIndex): void {
    if (this.snapshot !== null && this.snapshot.meta.index === i) {
      this.snapshot = null
      this.snapshotInProgress = false
    }
  }

  restore(s: Snapshot): void {
    this.offset = s.meta.index + 1
    this.offsetInProgress = this.offset
    this.entries = []
    this.snapshot = s
    this.snapshotInProgress = false
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const from = ents[0]!.index
    const last = this.offset + this.entries.length
    if (from === last) {
      for (const e of ents) this.entries.push(e)
    } else if (from <= this.offset) {
      // Replaces everything unstable; storage keeps what is below `from`.
      this.offset = from
      this.entries = ents.slice()
    } else {
      this.entries = this.entries.slice(0, from - this.offset)
      for (const e of ents) this.entries.push(e)
    }
    // Entries at `from` and after must be written again even if a write was under way.
    this.offsetInProgress = Math.min(this.offsetInProgress, from)
  }

  slice(lo: LogIndex, hi: LogIndex): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset)
  }
}

export class RaftLog {
  readonly storage: Storage
  readonly unstable: Unstable
  committed: LogIndex
  /** Highest index handed to the application in a Ready. */
  applied: LogIndex
  readonly #describe: () => string

  constructor(storage: Storage, describe: () => string) {
    this.storage = storage
    this.#describe = describe
    const first = storage.firstIndex()
    this.unstable = new Unstable(storage.lastIndex() + 1)
    this.committed = first - 1
    this.applied = first - 1
  }

  firstIndex(): LogIndex {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  lastIndex(): LogIndex {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  lastTerm(): Term {
    const t = this.term(this.lastIndex())
    assert(t >= 0, () => `${this.#describe()}: last term unavailable`)
    return t
  }

  /** Term of entry i; 0 beyond the last index; termCompacted below the first. */
  term(i: LogIndex): Term {
    const ut = this.unstable.maybeTerm(i)
    if (ut !== undefined) return ut
    if (i > this.lastIndex()) return 0
    if (i < this.firstIndex() - 1) return termCompacted
    // The unstable part may cover [offset, ...]; below it lives in storage.
    if (i > this.storage.lastIndex()) return 0
    return this.storage.term(i)
  }

  matchTerm(i: LogIndex, t: Term): boolean {
    const term = this.term(i)
    return term >= 0 && term === t && (i <= this.lastIndex())
  }

  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const myTerm = this.lastTerm()
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex())
  }

  /**
   * Follower append (AppendEntries): if our log matches (prevIndex, prevTerm),
   * append what is new, truncating a conflicting suffix, and move the commit
   * index. Returns the index of the last new entry, or -1 on mismatch.
   */
  maybeAppend(prevIndex: LogIndex, prevTerm: Term, commit: LogIndex, ents: readonly Entry[]): LogIndex {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1
    const lastNew = prevIndex + ents.length
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      assert(ci > this.committed, () => `${this.#describe()}: entry ${ci} conflicts with committed entry (committed ${this.committed})`)
      this.append(ents.slice(ci - (prevIndex + 1)))
    }
    this.commitTo(Math.min(commit, lastNew))
    return lastNew
  }

  append(ents: readonly Entry[]): LogIndex {
    if (ents.length === 0) return this.lastIndex()
    const after = ents[0]!.index - 1
    assert(after >= this.committed, () => `${this.#describe()}: append after ${after} is below committed ${this.committed}`)
    assert(after <= this.lastIndex(), () => `${this.#describe()}: append after ${after} leaves a gap (last ${this.lastIndex()})`)
    this.unstable.truncateAndAppend(ents)
    return this.lastIndex()
  }

  /** First index where `ents` disagrees with our log or goes past it; 0 if all match. */
  findConflict(ents: readonly Entry[]): LogIndex {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index
    }
    return 0
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`,
   * with its term. Every entry above it, up to `index`, has a term > `term`
   * and so cannot match an entry of the other log with term `term`.
   */
  findConflictByTerm(index: LogIndex, term: Term): [LogIndex, Term] {
    let i = Math.min(index, this.lastIndex())
    const first = this.firstIndex() - 1
    for (; i >= first; i--) {
      const t = this.term(i)
      if (t < 0) return [i, 0]
      if (t <= term) return [i, t]
    }
    return [first, 0]
  }

  commitTo(i: LogIndex): void {
    if (i <= this.committed) return
    assert(i <= this.lastIndex(), () => `${this.#describe()}: commit ${i} beyond last index ${this.lastIndex()}`)
    this.committed = i
  }

  /** Leader: commit `i` if it is from `term` (the Figure 8 rule). */
  maybeCommit(i: LogIndex, term: Term): boolean {
    if (i > this.committed && this.term(i) === term) {
      this.commitTo(i)
      return true
    }
    return false
  }

  /** Highest index that may be handed to the application: committed and durable here. */
  maxAppliableIndex(): LogIndex {
    if (this.unstable.snapshot !== null) return this.applied
    return Math.min(this.committed, this.unstable.offset - 1)
  }

  hasNextCommittedEntries(): boolean {
    return this.maxAppliableIndex() > this.applied
  }

  /** Committed entries to apply next; null if storage cannot serve them yet. */
  nextCommittedEntries(bytesMax: number): Entry[] | null {
    const hi = this.maxAppliableIndex()
    if (hi <= this.applied) return []
    return this.slice(this.applied + 1, hi + 1, bytesMax)
  }

  appliedTo(i: LogIndex): void {
    assert(i <= this.committed && i >= this.applied, () => `${this.#describe()}: applied ${i} out of [${this.applied}, ${this.committed}]`)
    this.applied = i
  }

  /**
   * Entries from `lo` to the end, at most `bytesMax` (at least one).
   * 'compacted' below the first index; null if storage cannot serve them yet.
   */
  entriesFrom(lo: LogIndex, bytesMax: number): Entry[] | 'compacted' | null {
    if (lo > this.lastIndex()) return []
    if (lo < this.firstIndex()) return 'compacted'
    return this.slice(lo, this.lastIndex() + 1, bytesMax)
  }

  /** Entries [lo, hi), at least one, at most bytesMax; null if storage cannot serve them yet. */
  slice(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] | null {
    assert(lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi, () => `${this.#describe()}: slice [${lo}, ${hi}) out of [${this.firstIndex()}, ${this.lastIndex() + 1})`)
    if (lo === hi) return []
    const uOffset = this.unstable.offset
    let out: Entry[] = []
    if (lo < uOffset) {
      const stored = this.storage.entries(lo, Math.min(hi, uOffset), bytesMax)
      if (stored === null) return null
      out = stored
      if (out.length < Math.min(hi, uOffset) - lo) return out
    }
    if (hi > uOffset) {
      let bytes = 0
      for (const e of out) bytes += entryBytes(e)
      const from = Math.max(lo, uOffset)
      for (let i = from; i < hi; i++) {
        const e = this.unstable.entries[i - uOffset]!
        bytes += entryBytes(e)
        if (out.length > 0 && bytes > bytesMax) break
        out.push(e)
      }
    }
    return out
  }

  /** Replaces the log with a snapshot (follower installing it). */
  restore(s: Snapshot): void {
    this.committed = s.meta.index
    this.unstable.restore(s)
  }

  /** True if everything up to `applied` is handed out and nothing unstable waits to be handed out. */
  describe(): string {
    return this.#describe()
  }
}
