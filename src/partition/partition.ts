/**
 * One partition replica: a RaftGroup (Raft + log, see group.ts) running the
 * partition state machine, plus produce and fetch.
 *
 *   produce ──▶ leader: check producer sequence, stamp base offset, propose
 *   RaftGroup ──committed entries──▶ PartitionState (high watermark, producers)
 *                                      ──▶ wake produce (acks=all) and fetch waiters
 *   RaftGroup ──durable──▶ acks=leader waiters
 *
 * Offsets (DESIGN.md decision 4): the leader stamps each batch's base offset
 * when it proposes it, continuing from the last offset in its log; every
 * replica derives the same offsets from the same log. A new leader accepts
 * produce only once it has applied its own no-op: then everything before is
 * committed and applied, so its producer table and next offset are exact.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import type { Runtime, TimerHandle } from '../base/index.ts'
import { systemRuntime } from '../base/index.ts'
import { stageTrace } from '../base/stage-trace.ts'
import type { PartitionLog } from '../log/index.ts'
import type { ConfChange, Entry, LogIndex, NodeId, Ready, Snapshot } from '../raft/index.ts'
import { EntryType, Role } from '../raft/index.ts'
import { HostedGroup, RaftGroup, type ReplicaOptions } from './group.ts'
import type { EntryRecordMeta } from './raft-storage.ts'
import type { BatchHeader, ProducerState, RememberedBatch } from './state.ts'
import { checkSequence, PartitionState, rememberBatch } from './state.ts'

/** What the partition needs of the record batch format (src/wire provides it). */
export interface BatchCodec {
  /** Header fields of a batch already validated at the edge. */
  readHeader(batch: Uint8Array): BatchHeader
  /** Writes the base offset into the batch header in place (not covered by its checksum). */
  stampBaseOffset(batch: Uint8Array, baseOffset: number): void
}

export type Acks = 'all' | 'leader'

export interface ProduceResult {
  readonly baseOffset: number
  readonly lastOffset: number
}

export interface FetchResult {
  /** Stored record batches, back to back in offset order, all committed. */
  readonly batches: Uint8Array[]
  readonly highWatermark: number
  readonly logStartOffset: number
  /** Offset to fetch next. */
  readonly nextOffset: number
}

export interface PartitionOptions extends ReplicaOptions {
  readonly codec: BatchCodec
  /** Produce waiters per partition. Default 10,000. */
  readonly produceWaitersMax?: number
  /** Fetch long-polls per partition. Default 10,000. */
  readonly fetchWaitersMax?: number
  /** Called when role or leader changes. */
  readonly onRoleChange?: (role: Role, leader: NodeId) => void
}

/** Entries scanned for the first record batch when the log start moves. */
const logStartScanMax = 64
/** Longest a produce waits for its commit. */
export const produceWaitMsMax = 30_000
/** Longest a fetch long-polls (maxWaitMs and minCommitted waits are clamped to it). */
export const fetchWaitMsMax = 30_000

interface ProduceWaiter {
  readonly index: LogIndex
  readonly term: number
  readonly acks: Acks
  readonly result: ProduceResult
  readonly resolve: (r: ProduceResult) => void
  readonly reject: (e: RillError) => void
  readonly timer: TimerHandle
}

/** A committed batch read from the replica's recent entries. */
interface RecentBatch {
  readonly baseOffset: number
  readonly recordCount: number
  readonly data: Uint8Array
}

/** Recent entries a fetch looks back through for its offset before it reads the log's files instead. */
const recentScanMax = 256

interface FetchWaiter {
  readonly ready: () => boolean
  readonly wake: () => void
}

export class Partition extends HostedGroup {
  readonly group: string
  state = new PartitionState()
  readonly #log: PartitionLog
  readonly #codec: BatchCodec
  readonly #produceWaitersMax: number
  readonly #fetchWaitersMax: number
  readonly #onRoleChange: ((role: Role, leader: NodeId) => void) | undefined

  #closed = false
  /** Leader: index of this term's no-op; produce waits until it is applied. */
  #leaderReadyIndex: LogIndex = 0
  /** Leader: offset the next accepted batch gets. */
  #nextOffset = 0
  /** Leader: producer table including accepted, uncommitted batches. */
  #pendingProducers: Map<number, ProducerState> | null = null
  #produceWaiters = new Map<LogIndex, ProduceWaiter>()
  #fetchWaiters = new Set<FetchWaiter>()

  readonly #runtime: Runtime

  private constructor(options: PartitionOptions) {
    super()
    this.group = options.group
    this.#log = options.log
    this.#codec = options.codec
    this.#produceWaitersMax = options.produceWaitersMax ?? 10_000
    this.#fetchWaitersMax = options.fetchWaitersMax ?? 10_000
    this.#onRoleChange = options.onRoleChange
    this.#runtime = options.runtime ?? systemRuntime
  }

  /** Opens a replica from its log and snapshot (bootstrapping a founding replica on first start). */
  static async open(options: PartitionOptions): Promise<Partition> {
    const p = new Partition(options)
    p.rg = await RaftGroup.open({
      ...options,
      recordMeta: (e) => recordMeta(options.codec, e),
      machine: {
        apply: (entries) => p.#apply(entries),
        restore: (snap, source) => p.#restore(snap, source),
        snapshotData: () => p.state.snapshot(),
        appliedIndex: () => p.state.appliedIndex,
      },
      onSoftState: (role, leader) => p.#onSoftState(role, leader),
      onPersisted: (rd) => p.#resolveLeaderAcks(rd),
      onFailure: () => p.#failWaiters(),
    })
    return p
  }

  /** Offset after the last committed record. */
  get highWatermark(): number {
    return this.state.highWatermark
  }

  // ───────────────────────────── inputs ─────────────────────────────

  proposeConfChange(cc: ConfChange): void {
    const r = this.rg.proposeConfChange(cc)
    if (!r.ok) throw new RillError(r.code, `${this.group}: ${r.reason}`, { details: { leader: r.leader } })
  }

  /** True when this replica leads and has applied its no-op (it can take produce). */
  isReadyLeader(): boolean {
    // A replica stopped by a storage failure still says Leader (it stopped stepping) but leads nothing.
    return this.raft.role === Role.Leader && this.rg.failure === null && this.state.appliedIndex >= this.#leaderReadyIndex && this.#pendingProducers !== null
  }

  /**
   * Appends one validated record batch. `acks: 'all'` answers once the batch
   * is committed; `'leader'` once it is durable on the leader. A retried batch
   * of an idempotent producer gets its original offsets.
   */
  produce(batch: Uint8Array, acks: Acks): Promise<ProduceResult> {
    return this.#produce(batch, acks, false)
  }

  /**
   * `confirmed`: a quorum confirmed this replica still leads since the
   * sequence check last failed. A sequence error is final for the producer,
   * so it is answered only by a confirmed leader: a deposed one (cut off, not
   * yet stepped down) knows nothing of batches its successor committed and
   * would call the producer's next batch out of order (sim:cluster seed 261:
   * 'sequence 176 skips ahead of 172' from an isolated old leader).
   */
  #produce(batch: Uint8Array, acks: Acks, confirmed: boolean): Promise<ProduceResult> {
    if (this.#closed) return Promise.reject(notLeader(this.raft.lead, `${this.group}: replica closed`))
    if (this.rg.failure !== null) return Promise.reject(notLeader(0, `${this.group}: replica stopped after a storage failure (${this.rg.failure.code})`))
    if (!this.isReadyLeader()) {
      return Promise.reject(notLeader(this.raft.lead, `${this.group}: not the leader${this.raft.role === Role.Leader ? ' yet' : ''}`))
    }
    const pending = this.#pendingProducers!
    const header = this.#codec.readHeader(batch)
    const verdict = checkSequence(pending.get(header.producerId), header)
    if (verdict.kind === 'error') {
      if (confirmed) return Promise.reject(verdict.error)
      return this.rg.confirmLeadership().then(
        () => this.#produce(batch, acks, true),
        () => Promise.reject(notLeader(this.raft.lead, `${this.group}: leadership not confirmed; retry`)),
      )
    }
    if (verdict.kind === 'duplicate') return this.#answerDuplicate(verdict.batch)
    if (this.#produceWaiters.size >= this.#produceWaitersMax) {
      return Promise.reject(new RillError(ErrorCode.TIMEOUT, `${this.group}: too many produce requests waiting`))
    }
    const baseOffset = this.#nextOffset
    this.#codec.stampBaseOffset(batch, baseOffset)
    const r = this.rg.propose([batch])
    if (!r.ok) return Promise.reject(new RillError(r.code, `${this.group}: ${r.reason}`, { details: { leader: r.leader } }))
    this.#nextOffset += header.recordCount
    if (stageTrace.enabled) {
      stageTrace.since('leader.request_to_propose', `${this.group}@request`)
      stageTrace.mark(`${this.group}#${r.index}`)
    }
    rememberBatch(pending, { ...header, baseOffset }, { index: r.index, term: r.term })
    const result: ProduceResult = { baseOffset, lastOffset: baseOffset + header.recordCount - 1 }
    const promise = new Promise<ProduceResult>((resolve, reject) => {
      const timer = this.#runtime.setTimer(() => {
        this.#produceWaiters.delete(r.index)
        reject(new RillError(ErrorCode.TIMEOUT, `${this.group}: produce not committed within ${produceWaitMsMax} ms`))
      }, produceWaitMsMax)
      this.#produceWaiters.set(r.index, { index: r.index, term: r.term, acks, result, resolve, reject, timer })
    })
    return promise
  }

  /**
   * Committed batches from `offset` (up to `bytesMax`, at least one batch if
   * any). Waits up to `waitMs` when nothing is there yet; with
   * `minCommitted`, first waits until the high watermark reaches it (a
   * follower serving read-your-writes).
   */
  async fetch(options: { offset: number; bytesMax: number; waitMs: number; minCommitted?: number }): Promise<FetchResult> {
    const waitMs = Math.min(Math.max(0, options.waitMs), fetchWaitMsMax)
    const minCommitted = options.minCommitted ?? 0
    if (minCommitted > this.state.highWatermark) {
      const ok = await this.#waitFor(() => this.state.highWatermark >= minCommitted, Math.max(waitMs, 1))
      if (!ok) throw new RillError(ErrorCode.TIMEOUT, `${this.group}: offset ${minCommitted} not committed here within ${waitMs} ms`)
    }
    const { offset } = options
    if (offset < this.state.logStartOffset || offset > this.state.highWatermark) {
      throw new RillError(ErrorCode.OFFSET_OUT_OF_RANGE, `${this.group}: offset ${offset} outside [${this.state.logStartOffset}, ${this.state.highWatermark}]`, {
        details: { logStartOffset: this.state.logStartOffset, highWatermark: this.state.highWatermark },
      })
    }
    if (offset === this.state.highWatermark && waitMs > 0) {
      await this.#waitFor(() => this.state.highWatermark > offset, waitMs)
      if (stageTrace.enabled && this.raft.role !== Role.Leader) stageTrace.since('follower.apply_to_fetch_wake', `${this.group}@apply`)
    }
    const hw = this.state.highWatermark
    const start = this.state.logStartOffset
    // A snapshot installed while we waited moves the start past what this log held.
    if (offset < start) throw new RillError(ErrorCode.OFFSET_OUT_OF_RANGE, `${this.group}: offset ${offset} below the log start ${start}`, { details: { logStartOffset: start, highWatermark: hw } })
    if (offset >= hw) return { batches: [], highWatermark: hw, logStartOffset: start, nextOffset: offset }
    const readMs = stageTrace.enabled ? stageTrace.now() : 0
    const entries = this.#readRecent(offset, options.bytesMax) ?? (await this.#log.readByOffset({ offsetStart: offset, bytesMax: options.bytesMax }))
    if (stageTrace.enabled) stageTrace.sinceMs('fetch.read', readMs)
    const batches: Uint8Array[] = []
    let next = offset
    for (const e of entries) {
      // Only what is committed, and only from this replica's log start on (never a stale tail).
      if (e.baseOffset < start || e.baseOffset + e.recordCount > hw) break
      batches.push(e.data)
      next = e.baseOffset + e.recordCount
    }
    return { batches, highWatermark: hw, logStartOffset: this.state.logStartOffset, nextOffset: next }
  }

  /**
   * Applied batches from the one holding `offset` on, out of the entries
   * the replica appended last (kept in memory for replication, see
   * LogRaftStorage.recentEntries), or null when they do not reach back to
   * `offset`: then the log's files are read. A consumer or a follower long
   * poll at the end of the log is answered without a disk read, which goes
   * through the thread pool (fetch.read p50 0.9-1.3 ms on a busy machine in
   * bench/trace.ts, most of the time from produce to a follower's answer).
   * Applied entries are committed: they are what the log holds and never change.
   */
  #readRecent(offset: number, bytesMax: number): RecentBatch[] | null {
    const recent = this.rg.storage.recentEntries()
    const applied = this.state.appliedIndex
    let i = recent.length - 1
    while (i >= 0 && recent[i]!.index > applied) i--
    // Back from the last applied entry to the batch holding `offset` (bounded: a consumer far behind reads the files).
    let first = -1
    for (let scanned = 0; i >= 0 && scanned < recentScanMax; i--, scanned++) {
      const m = recordMeta(this.#codec, recent[i]!)
      if (m.recordCount === 0) continue
      if (m.baseOffset <= offset) {
        if (m.baseOffset + m.recordCount > offset) first = i
        break
      }
    }
    if (first < 0) return null
    const out: RecentBatch[] = []
    let bytes = 0
    for (let k = first; k < recent.length && recent[k]!.index <= applied; k++) {
      const e = recent[k]!
      const m = recordMeta(this.#codec, e)
      if (m.recordCount === 0) continue
      if (out.length > 0 && bytes + e.data.byteLength > bytesMax) break
      out.push({ baseOffset: m.baseOffset, recordCount: m.recordCount, data: e.data })
      bytes += e.data.byteLength
    }
    return out
  }

  /**
   * A retried batch gets the original's offsets — once the original's own
   * entry (index and term) is applied. Waiting for the high watermark alone
   * would answer with whatever another leader committed at those offsets.
   */
  async #answerDuplicate(b: RememberedBatch): Promise<ProduceResult> {
    const result = { baseOffset: b.baseOffset, lastOffset: b.lastOffset }
    const entry = b.entry
    // From the committed producer table: committed already.
    if (entry === undefined) return result
    const term = this.raft.term
    const settled = await this.#waitFor(() => this.state.appliedIndex >= entry.index || this.raft.term !== term || this.#closed, produceWaitMsMax)
    if (!settled) throw new RillError(ErrorCode.TIMEOUT, `${this.group}: the original batch was not committed within ${produceWaitMsMax} ms`)
    if (this.state.appliedIndex >= entry.index && this.raft.log.term(entry.index) === entry.term) return result
    throw notLeader(this.raft.lead, `${this.group}: the original batch was not committed (leadership changed); retry`)
  }

  /** Resolves true once `ready()` holds (checked on every apply), false after `waitMs`. */
  #waitFor(ready: () => boolean, waitMs: number): Promise<boolean> {
    if (ready()) return Promise.resolve(true)
    if (this.#fetchWaiters.size >= this.#fetchWaitersMax) return Promise.resolve(false)
    return new Promise((resolve) => {
      const waiter: FetchWaiter = {
        ready,
        wake: () => {
          timer.cancel()
          this.#fetchWaiters.delete(waiter)
          resolve(true)
        },
      }
      const timer = this.#runtime.setTimer(() => {
        this.#fetchWaiters.delete(waiter)
        resolve(ready())
      }, waitMs)
      this.#fetchWaiters.add(waiter)
    })
  }

  // ─────────────────────────── state machine ───────────────────────────

  #restore(snap: Snapshot, source: 'open' | 'installed'): void {
    this.state = PartitionState.restore(snap.data)
    this.state.appliedIndex = Math.max(this.state.appliedIndex, snap.meta.index)
    if (source === 'installed') {
      // The log is being replaced: nothing before the snapshot is readable here.
      this.state.logStartOffset = this.state.highWatermark
    } else {
      // Our own snapshot: the log holds what retention left; look where it starts.
      this.#refreshLogStart().catch(() => undefined)
    }
    this.#wakeFetchers()
  }

  /**
   * Deletes whole old segments per the topic's retention — never past the
   * last snapshot, so a restart always finds the entries after it — and
   * moves the log start offset. Followers that need what is gone get a
   * snapshot and continue from there. Returns the segments deleted.
   */
  async applyRetention(nowMs: number): Promise<number> {
    if (this.#closed) return 0
    const indexAllowed = this.rg.storage.snapshot().meta.index
    const r = await this.#log.applyRetention({ indexAllowed, nowMs })
    if (r.segmentsDeleted > 0) await this.#refreshLogStart()
    return r.segmentsDeleted
  }

  /** Sets the log start offset from the first record batch this replica still holds. */
  async #refreshLogStart(): Promise<void> {
    let index = this.#log.firstIndex()
    for (let i = 0; i < logStartScanMax && index <= this.#log.lastIndex(); i++) {
      const [e] = await this.#log.read({ indexStart: index, bytesMax: 1 })
      if (e === undefined) break
      if (e.recordCount > 0) {
        this.state.logStartOffset = Math.min(e.baseOffset, this.state.highWatermark)
        return
      }
      index = e.index + 1
    }
    // No records held (or only a long run of non-data entries): nothing below the high watermark is readable here.
    if (index > this.#log.lastIndex()) this.state.logStartOffset = this.state.highWatermark
  }

  #onSoftState(role: Role, leader: NodeId): void {
    if (role === Role.Leader) {
      // Accept produce once our no-op (the last entry now) is applied.
      this.#leaderReadyIndex = this.raft.log.lastIndex()
      this.#pendingProducers = null
    } else {
      this.#pendingProducers = null
      this.#leaderReadyIndex = 0
      this.#failWaiters(leader)
    }
    this.#onRoleChange?.(role, leader)
    // Waiters that depend on who leads (retried batches) look again.
    this.#wakeFetchers()
  }

  #apply(entries: readonly Entry[]): void {
    const hwBefore = this.state.highWatermark
    for (const e of entries) {
      if (e.type === EntryType.Normal && e.data.byteLength > 0) this.state.applyBatch(e.index, this.#codec.readHeader(e.data))
      else this.state.applyOther(e.index)
      const w = this.#produceWaiters.get(e.index)
      if (w !== undefined && w.acks === 'all') {
        if (stageTrace.enabled) {
          stageTrace.since('leader.propose_to_commit', `${this.group}#${e.index}`, true)
          stageTrace.mark(`${this.group}@commit`)
        }
        this.#produceWaiters.delete(e.index)
        w.timer.cancel()
        if (w.term === e.term) w.resolve(w.result)
        else w.reject(notLeader(this.raft.lead, `${this.group}: the batch was replaced by another leader's`))
      }
    }
    if (this.raft.role === Role.Leader && this.#pendingProducers === null && this.state.appliedIndex >= this.#leaderReadyIndex) {
      this.#nextOffset = this.state.highWatermark
      this.#pendingProducers = cloneProducers(this.state.producers)
    }
    if (this.state.highWatermark !== hwBefore) {
      if (stageTrace.enabled && this.raft.role !== Role.Leader) {
        stageTrace.since('follower.commit_learned_to_apply', `${this.group}@commitLearned`)
        stageTrace.mark(`${this.group}@apply`)
      }
      this.#wakeFetchers()
    }
  }

  #wakeFetchers(): void {
    for (const w of this.#fetchWaiters) if (w.ready()) w.wake()
  }

  #resolveLeaderAcks(rd: Ready): void {
    if (rd.entries.length === 0) return
    for (const e of rd.entries) {
      const w = this.#produceWaiters.get(e.index)
      if (w === undefined || w.acks !== 'leader') continue
      this.#produceWaiters.delete(e.index)
      w.timer.cancel()
      if (w.term === e.term) w.resolve(w.result)
      else w.reject(notLeader(this.raft.lead, `${this.group}: the batch was replaced`))
    }
  }

  /** Fails every produce still waiting (leadership lost, replica stopped). */
  #failWaiters(leader: NodeId = this.raft.lead): void {
    for (const w of this.#produceWaiters.values()) {
      w.timer.cancel()
      w.reject(notLeader(leader, `${this.group}: leadership lost before the batch committed`))
    }
    this.#produceWaiters.clear()
  }

  status(): { group: string; role: Role; leader: NodeId; term: number; commit: LogIndex; highWatermark: number; logStartOffset: number } {
    return {
      group: this.group,
      role: this.raft.role,
      leader: this.raft.lead,
      term: this.raft.term,
      commit: this.raft.log.committed,
      highWatermark: this.state.highWatermark,
      logStartOffset: this.state.logStartOffset,
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#failWaiters()
    for (const w of this.#fetchWaiters) w.wake()
    await this.rg.close()
  }
}

function notLeader(leader: NodeId, message: string): RillError {
  return new RillError(ErrorCode.NOT_LEADER, message, { details: { leader } })
}

function recordMeta(codec: BatchCodec, e: Entry): EntryRecordMeta {
  if (e.type !== EntryType.Normal || e.data.byteLength === 0) return { baseOffset: 0, recordCount: 0, timestampMinMs: 0, timestampMaxMs: 0 }
  const h = codec.readHeader(e.data)
  return { baseOffset: h.baseOffset, recordCount: h.recordCount, timestampMinMs: h.firstTimestampMs, timestampMaxMs: h.maxTimestampMs }
}

function cloneProducers(src: Map<number, ProducerState>): Map<number, ProducerState> {
  const out = new Map<number, ProducerState>()
  for (const [id, p] of src) out.set(id, { epoch: p.epoch, batches: p.batches.slice() })
  return out
}
