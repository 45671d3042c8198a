/**
 * What the Raft core reads from stable storage. Read-only from the core's side
 * (etcd's Storage): the caller writes to it while persisting a Ready, the core
 * only asks questions. `MemoryStorage` is the in-memory implementation the
 * simulator and the benchmarks use; the broker adapts src/log onto this shape.
 */
import { assert } from '../base/index.ts'
import type { ConfState, Entry, HardState, LogIndex, Snapshot, Term } from './types.ts'
import { entryBytes } from './types.ts'

/** `term(i)` returns this for an index below the first one kept (compacted into a snapshot). */
export const termCompacted: Term = -1

export interface Storage {
  /** Hard state and membership as of the last persisted state. */
  initialState(): { hardState: HardState; conf: ConfState }
  /** Index of the first entry kept (snapshot index + 1). */
  firstIndex(): LogIndex
  /** Index of the last entry kept (the snapshot index if none). */
  lastIndex(): LogIndex
  /** Term of entry i, for i in [firstIndex - 1, lastIndex]; termCompacted below that. */
  term(i: LogIndex): Term
  /**
   * Entries [lo, hi), at least one if any, at most bytesMax total beyond the
   * first; or null if they are not in memory now (a disk-backed storage
   * starts loading them and the core asks again on a later tick).
   */
  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] | null
  /** The latest snapshot (the one the log was compacted to, or newer). */
  snapshot(): Snapshot
}

export const emptyConf: ConfState = { voters: [], learners: [] }

/**
 * The state every founding member of a group starts from: a snapshot at
 * index 1, term 1 holding the initial membership. Members added later start
 * empty; their first contact with the leader finds index 1 compacted and
 * sends them this snapshot (or a newer one), which is how they learn the
 * membership (a log replayed from index 2 would not tell them).
 */
export function bootstrapSnapshot(conf: ConfState): Snapshot {
  return { meta: { index: 1, term: 1, conf }, data: new Uint8Array(0) }
}

/**
 * Entries in an array whose slot 0 is a dummy standing for the snapshot
 * (its index and term), as etcd's MemoryStorage.
 */
export class MemoryStorage implements Storage {
  #hardState: HardState = { term: 0, vote: 0, commit: 0 }
  #snapshot: Snapshot = { meta: { index: 0, term: 0, conf: emptyConf }, data: new Uint8Array(0) }
  /** #ents[0] is the dummy for the snapshot point. */
  #ents: Entry[] = [{ term: 0, index: 0, type: 0, data: new Uint8Array(0) }]

  /** A fresh storage of one of the group's founding members (see `bootstrapSnapshot`). */
  static bootstrap(conf: ConfState): MemoryStorage {
    const s = new MemoryStorage()
    s.applySnapshot(bootstrapSnapshot(conf))
    return s
  }

  initialState(): { hardState: HardState; conf: ConfState } {
    return { hardState: this.#hardState, conf: this.#snapshot.meta.conf }
  }

  hardState(): HardState {
    return this.#hardState
  }

  setHardState(hs: HardState): void {
    this.#hardState = hs
  }

  firstIndex(): LogIndex {
    return this.#ents[0]!.index + 1
  }

  lastIndex(): LogIndex {
    return this.#ents[0]!.index + this.#ents.length - 1
  }

  term(i: LogIndex): Term {
    const offset = this.#ents[0]!.index
    if (i < offset) return termCompacted
    assert(i - offset < this.#ents.length, () => `storage.term(${i}) beyond last index ${this.lastIndex()}`)
    return this.#ents[i - offset]!.term
  }

  /** Test hook: fraction of `entries` calls answered "not in memory yet". */
  unavailableRate = 0
  unavailableRandom: (() => number) | null = null

  entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] | null {
    if (this.unavailableRate > 0 && this.unavailableRandom !== null && this.unavailableRandom() < this.unavailableRate) return null
    const offset = this.#ents[0]!.index
    assert(lo > offset, () => `storage.entries(${lo}) compacted (first ${offset + 1})`)
    assert(hi <= this.lastIndex() + 1, () => `storage.entries hi ${hi} beyond last ${this.lastIndex()}`)
    const out: Entry[] = []
    let bytes = 0
    for (let i = lo; i < hi; i++) {
      const e = this.#ents[i - offset]!
      bytes += entryBytes(e)
      if (out.length > 0 && bytes > bytesMax) break
      out.push(e)
    }
    return out
  }

  snapshot(): Snapshot {
    return this.#snapshot
  }

  /** Replaces everything with the snapshot (a follower installing one). */
  applySnapshot(snap: Snapshot): void {
    if (snap.meta.index <= this.#snapshot.meta.index) return
    this.#snapshot = snap
    this.#ents = [{ term: snap.meta.term, index: snap.meta.index, type: 0, data: new Uint8Array(0) }]
  }

  /** Records a snapshot the application took at `index` (≤ last index); does not compact. */
  createSnapshot(index: LogIndex, conf: ConfState, data: Uint8Array): Snapshot {
    assert(index > this.#snapshot.meta.index, () => `createSnapshot(${index}) not after ${this.#snapshot.meta.index}`)
    assert(index <= this.lastIndex(), () => `createSnapshot(${index}) beyond last ${this.lastIndex()}`)
    const term = this.term(index)
    this.#snapshot = { meta: { index, term, conf }, data }
    return this.#snapshot
  }

  /** Drops entries up to and including `index` (which must be covered by the snapshot). */
  compact(index: LogIndex): void {
    const offset = this.#ents[0]!.index
    if (index <= offset) return
    assert(index <= this.lastIndex(), () => `compact(${index}) beyond last ${this.lastIndex()}`)
    assert(index <= this.#snapshot.meta.index, () => `compact(${index}) beyond snapshot ${this.#snapshot.meta.index}`)
    const e = this.#ents[index - offset]!
    this.#ents.splice(0, index - offset)
    this.#ents[0] = { term: e.term, index: e.index, type: 0, data: new Uint8Array(0) }
  }

  /** Appends entries, truncating any conflicting suffix first. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return
    const first = this.firstIndex()
    const last = entries[0]!.index + entries.length - 1
    if (last < first) return
    // Entries below the first kept index are already in the snapshot.
    const skip = first > entries[0]!.index ? first - entries[0]!.index : 0
    const start = entries[0]!.index + skip
    const offset = this.#ents[0]!.index
    assert(start <= this.lastIndex() + 1, () => `append at ${start} leaves a gap after ${this.lastIndex()}`)
    // Truncate only on conflict: shrinking `length` is slow in V8 and appends are the common case.
    if (start - offset < this.#ents.length) this.#ents.length = start - offset
    for (let i = skip; i < entries.length; i++) this.#ents.push(entries[i]!)
  }
}
