/**
 * Safety properties of Raft (Figure 3 of the paper), checked by the simulator
 * after every Ready of every node:
 *
 * - Election safety: at most one leader per term.
 * - Leader append-only: a leader never overwrites or deletes its entries.
 * - Log matching: two entries with the same index and term hold the same
 *   data and follow entries of the same term (checked inductively: every
 *   (index, term) seen anywhere maps to one entry and one predecessor term).
 * - Leader completeness: a new leader's log holds every entry known committed.
 * - State machine safety: no two nodes apply different entries at an index
 *   (a rolling hash per index, also checked against installed snapshots).
 *
 * A violation throws SafetyViolation with the virtual time and node.
 */
import type { Entry, LogIndex, NodeId, Raft, Term } from '../raft/index.ts'
import { EntryType, Role } from '../raft/index.ts'

export class SafetyViolation extends Error {
  override name = 'SafetyViolation'
}

export function entryKey(e: Entry): string {
  if (e.type === EntryType.ConfChange) return `${e.term}:cc:${Array.from(e.data).join('.')}`
  if (e.data.byteLength === 0) return `${e.term}:noop`
  return `${e.term}:${hashBytes(e.data)}`
}

/** FNV-1a over bytes: identity of an entry's data for the checks. */
export function hashBytes(data: Uint8Array): number {
  let h = 0x811c9dc5
  for (let i = 0; i < data.byteLength; i++) {
    h ^= data[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

export function chainHash(prev: number, key: string): number {
  let h = prev ^ 0x9e3779b9
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

interface LeaderWatch {
  term: Term
  maxIndex: LogIndex
  maxOwnIndex: LogIndex
}

export class SafetyChecker {
  readonly #now: () => number
  /** term -> leader id */
  readonly #leaders = new Map<Term, NodeId>()
  /** `${index}/${term}` -> the entry's key and its predecessor's term */
  readonly #entries = new Map<string, { key: string; prevTerm: Term }>()
  /** index -> term of the entry known committed there */
  readonly #committedTerm = new Map<LogIndex, Term>()
  /** index -> chain hash of the applied prefix ending there */
  readonly #appliedHash = new Map<LogIndex, number>()
  #maxCommitted = 0
  readonly #watch = new Map<NodeId, LeaderWatch>()
  checks = 0

  constructor(now: () => number) {
    this.#now = now
  }

  get maxCommitted(): LogIndex {
    return this.#maxCommitted
  }

  committedTerm(index: LogIndex): Term | undefined {
    return this.#committedTerm.get(index)
  }

  #fail(node: NodeId, what: string): never {
    throw new SafetyViolation(`t=${this.#now()}ms node ${node}: ${what}`)
  }

  /** Called with each Ready's new entries, before they are persisted. */
  onEntries(id: NodeId, raft: Raft, entries: readonly Entry[]): void {
    if (entries.length === 0) return
    this.checks++
    let prevTerm = raft.log.term(entries[0]!.index - 1)
    for (const e of entries) {
      const k = `${e.index}/${e.term}`
      const key = entryKey(e)
      const seen = this.#entries.get(k)
      if (seen === undefined) {
        this.#entries.set(k, { key, prevTerm })
      } else {
        if (seen.key !== key) this.#fail(id, `log matching: entry ${k} is "${key}" here but "${seen.key}" elsewhere`)
        // prevTerm -1: the predecessor is compacted here and cannot be compared.
        if (prevTerm >= 0) {
          if (seen.prevTerm < 0) seen.prevTerm = prevTerm
          else if (seen.prevTerm !== prevTerm) this.#fail(id, `log matching: entry ${k} follows term ${prevTerm} here but ${seen.prevTerm} elsewhere`)
        }
      }
      if (e.term > raft.term) this.#fail(id, `entry ${k} has a term above the node's term ${raft.term}`)
      prevTerm = e.term
    }
  }

  /** Called after each Ready of `id` is taken, with the node's state then. */
  onState(id: NodeId, raft: Raft, entries: readonly Entry[]): void {
    if (raft.role !== Role.Leader) {
      this.#watch.delete(id)
      return
    }
    const known = this.#leaders.get(raft.term)
    if (known === undefined) this.#leaders.set(raft.term, id)
    else if (known !== id) this.#fail(id, `election safety: term ${raft.term} has leaders ${known} and ${id}`)
    let w = this.#watch.get(id)
    if (w === undefined || w.term !== raft.term) {
      w = { term: raft.term, maxIndex: 0, maxOwnIndex: 0 }
      this.#watch.set(id, w)
      this.#checkCompleteness(id, raft)
    }
    const last = raft.log.lastIndex()
    if (last < w.maxIndex) this.#fail(id, `leader append-only: last index fell from ${w.maxIndex} to ${last}`)
    w.maxIndex = last
    for (const e of entries) {
      if (e.term !== raft.term) continue
      if (e.index <= w.maxOwnIndex) this.#fail(id, `leader append-only: entry ${e.index} of term ${e.term} handed out twice`)
      w.maxOwnIndex = e.index
    }
  }

  #checkCompleteness(id: NodeId, raft: Raft): void {
    const first = raft.log.firstIndex()
    for (let i = Math.max(1, first); i <= this.#maxCommitted; i++) {
      const t = this.#committedTerm.get(i)
      if (t === undefined) continue
      const mine = raft.log.term(i)
      if (mine !== t) this.#fail(id, `leader completeness: committed entry ${i} (term ${t}) is term ${mine} in the new leader's log`)
    }
  }

  /** A node applied entry `e` on top of prefix hash `prevHash`; returns the new hash. */
  onApply(id: NodeId, e: Entry, prevHash: number): number {
    this.checks++
    const h = chainHash(prevHash, entryKey(e))
    const seen = this.#appliedHash.get(e.index)
    if (seen === undefined) this.#appliedHash.set(e.index, h)
    else if (seen !== h) this.#fail(id, `state machine safety: applied prefix at ${e.index} differs between nodes`)
    const t = this.#committedTerm.get(e.index)
    if (t === undefined) this.#committedTerm.set(e.index, e.term)
    else if (t !== e.term) this.#fail(id, `state machine safety: index ${e.index} applied with terms ${t} and ${e.term}`)
    if (e.index > this.#maxCommitted) this.#maxCommitted = e.index
    return h
  }

  /** A node installed a snapshot whose applied prefix hash is `hash`. */
  onSnapshot(id: NodeId, index: LogIndex, hash: number): void {
    const seen = this.#appliedHash.get(index)
    if (seen !== undefined && seen !== hash) this.#fail(id, `state machine safety: snapshot at ${index} differs from applied prefix`)
    if (seen === undefined) this.#appliedHash.set(index, hash)
  }
}
