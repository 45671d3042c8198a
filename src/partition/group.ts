/**
 * Runs one Raft group on a real log: the ready loop and the persistence
 * pipeline shared by partition replicas and the controller group.
 *
 *   tick/step/propose ──▶ Raft ──ready──▶ messages ──▶ send (transport)
 *                           ▲       ├──▶ committed entries ──▶ apply (state machine)
 *                           │       └──▶ persist queue ──▶ LogRaftStorage: every Ready
 *                           └── advance ◀── durable ◀──    queued meanwhile in one go
 *
 * The state machine is the caller's: `apply`, `restore`, `snapshotData`.
 */
import { assert, ErrorCode, RillError } from '../base/index.ts'
import type { Random, Runtime, TimerHandle } from '../base/index.ts'
import { noTimer, systemRuntime } from '../base/index.ts'
import { stageTrace } from '../base/stage-trace.ts'
import type { PartitionLog } from '../log/index.ts'
import type { ConfChange, ConfState, Entry, LogIndex, Message, NodeId, RaftResult, Ready, Snapshot } from '../raft/index.ts'
import { bootstrapSnapshot, MessageType, Raft, Role } from '../raft/index.ts'
import type { EntryRecordMeta } from './raft-storage.ts'
import { LogRaftStorage } from './raft-storage.ts'
import type { SnapshotStore } from './snapshot-store.ts'

export interface StateMachine {
  /** Applies committed entries, in order. */
  apply(entries: readonly Entry[]): void
  /**
   * Replaces the state with a snapshot's: at open ('open', the log still
   * holds what it held) or when the leader sent one ('installed': the log is
   * being replaced and holds nothing before the snapshot).
   */
  restore(snapshot: Snapshot, source: 'open' | 'installed'): void
  /** The state as of the last applied entry, for a snapshot. */
  snapshotData(): Uint8Array
  /** Raft index of the last applied entry. */
  appliedIndex(): LogIndex
}

/** What every replica takes, whatever its state machine (data partition, offsets partition, controller). */
export interface ReplicaOptions {
  /** Names the group in logs and assertions (e.g. "orders/3"). */
  readonly group: string
  readonly replicaId: NodeId
  readonly log: PartitionLog
  readonly snapshots: SnapshotStore
  /** Founding members of a new group; omit for a member joining an existing group. */
  readonly bootstrap?: ConfState
  readonly random: Random
  /** Clock and timers (the simulator passes a virtual one). Default: the process's. */
  readonly runtime?: Runtime
  /** Hands messages to the transport (all of one Ready at once). */
  readonly send: (messages: readonly Message[]) => void
  readonly electionTicks?: number
  readonly heartbeatTicks?: number
  /** Let the group go quiet when idle (RaftConfig.quiesce). Default false. */
  readonly quiesce?: boolean
  /** Applied entries between two snapshots of the state machine. Default 10,000. */
  readonly snapshotEntries?: number
  /** Called when the group stopped for good (a storage failure, a broken invariant): it stays stopped until reopened. */
  readonly onStopped?: (error: RillError) => void
}

export interface GroupOptions extends ReplicaOptions {
  readonly machine: StateMachine
  /** Offsets and timestamps of an entry, for the log's indexes. */
  readonly recordMeta: (e: Entry) => EntryRecordMeta
  /**
   * Compact the log below each snapshot, keeping this many entries (for
   * groups whose entries are commands, all in the snapshot). Omit to keep the
   * log (a partition's entries are its data; only retention deletes them).
   */
  readonly compactKeepEntries?: number
  /** Called when role or leader changes. */
  readonly onSoftState?: (role: Role, leader: NodeId) => void
  /** Called once a Ready is durable here (acks=leader answers hang on it). */
  readonly onPersisted?: (rd: Ready) => void
  /** Called when the group stopped after a storage failure. */
  readonly onFailure?: (error: RillError) => void
}

/** Readies drained per processing pass (the loop never spins). */
const readyPassesMax = 64
/** Callers waiting for a leadership confirmation (ReadIndex); beyond it they are refused. */
const readWaitersMax = 10_000
/** A ReadIndex round not confirmed by a quorum within this fails its callers (NO_QUORUM, retriable). */
const readRoundMsMax = 3000

interface ReadWaiter {
  readonly resolve: () => void
  readonly reject: (e: RillError) => void
}
/** How long close() waits for the write under way. */
const closeWaitMsMax = 10_000

export class RaftGroup {
  readonly group: string
  readonly raft: Raft
  readonly storage: LogRaftStorage
  readonly #options: GroupOptions
  readonly #log: PartitionLog
  readonly #snapshotEntries: number
  #persistQueue: Ready[] = []
  #persisting = false
  #processing = false
  #snapshotting = false
  #closed = false
  /** Set when the group stopped after a storage failure. */
  failure: RillError | null = null
  /** ReadIndex: the round a quorum is confirming now (its context, its waiters), and those for the next. */
  #readContext = 0
  #readInFlight: ReadWaiter[] = []
  #readNext: ReadWaiter[] = []
  /** Confirmed rounds waiting for the state machine to apply their index. */
  #readsApplying: { index: LogIndex; waiters: ReadWaiter[] }[] = []
  #readTimer: TimerHandle = noTimer
  readonly #runtime: Runtime

  private constructor(options: GroupOptions, storage: LogRaftStorage, raft: Raft) {
    this.group = options.group
    this.#options = options
    this.#log = options.log
    this.#snapshotEntries = options.snapshotEntries ?? 10_000
    this.#runtime = options.runtime ?? systemRuntime
    this.storage = storage
    this.raft = raft
  }

  /** Opens a member from its log and snapshot (bootstrapping a founding member on first start). */
  static async open(options: GroupOptions): Promise<RaftGroup> {
    let snapshot = await options.snapshots.load()
    if (snapshot === null) {
      snapshot = options.bootstrap === undefined ? emptySnapshot() : bootstrapSnapshot(options.bootstrap)
      if (options.bootstrap !== undefined) await options.snapshots.save(snapshot)
    }
    // A log that ends before its snapshot (a founding member's first start, or async
    // mode after a power loss took unsynced entries the snapshot covered) continues after it.
    if (options.log.lastIndex() < snapshot.meta.index) await options.log.compact({ index: snapshot.meta.index, term: snapshot.meta.term })
    options.machine.restore(snapshot, 'open')
    let group: RaftGroup | null = null
    const storage = new LogRaftStorage({
      log: options.log,
      snapshots: options.snapshots,
      snapshot,
      recordMeta: options.recordMeta,
      onLoaded: () => group?.processOrFail(),
      onFailed: (error) => group?.fail(error),
      runtime: options.runtime ?? systemRuntime,
    })
    const raft = new Raft({
      id: options.replicaId,
      group: options.group,
      storage,
      random: options.random,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      quiesce: options.quiesce ?? false,
      // The state machine was restored from this snapshot: do not apply its entries twice.
      applied: snapshot.meta.index,
    })
    group = new RaftGroup(options, storage, raft)
    group.process()
    return group
  }

  get closed(): boolean {
    return this.#closed
  }

  tick(): void {
    if (this.#closed) return
    this.raft.tick()
    this.process()
  }

  step(m: Message): void {
    if (this.#closed) return
    if (stageTrace.enabled) return this.#stepTraced(m)
    this.raft.step(m)
    this.process()
  }

  /** `step` with the stage marks of bench/trace.ts (RILL_TRACE_STAGES=1). */
  #stepTraced(m: Message): void {
    const committed = this.raft.log.committed
    if (m.type === MessageType.App && m.entries.length > 0) stageTrace.mark(`${this.group}#${m.entries[m.entries.length - 1]!.index}@recv`)
    if (m.type === MessageType.AppResp && !m.reject && this.raft.role === Role.Leader) stageTrace.since('leader.propose_to_ack_received', `${this.group}#${m.index}`)
    this.raft.step(m)
    if (this.raft.role !== Role.Leader && this.raft.log.committed > committed) {
      stageTrace.since('follower.receive_to_commit_learned', `${this.group}#${this.raft.log.committed}@recv`)
      stageTrace.mark(`${this.group}@commitLearned`)
    }
    this.process()
  }

  campaign(): void {
    if (this.#closed) return
    this.raft.campaign()
    this.process()
  }

  transferLeader(to: NodeId): RaftResult {
    const r = this.raft.transferLeader(to)
    this.process()
    return r
  }

  /**
   * Resolves once a quorum has confirmed this member still leads, and the
   * state machine has applied everything committed when it was asked
   * (Raft's ReadIndex): what is read from the state afterwards is current,
   * never a deposed leader's view. Calls arriving while a round is under way
   * share the next one. Rejects NOT_LEADER if leadership is lost first.
   */
  confirmLeadership(): Promise<void> {
    if (this.#closed || this.raft.role !== Role.Leader) return Promise.reject(new RillError(ErrorCode.NOT_LEADER, `${this.group}: not the leader`, { details: { leader: this.raft.lead } }))
    if (this.#readInFlight.length + this.#readNext.length >= readWaitersMax) {
      return Promise.reject(new RillError(ErrorCode.NO_QUORUM, `${this.group}: ${readWaitersMax} reads already waiting for a quorum`))
    }
    return new Promise((resolve, reject) => {
      this.#readNext.push({ resolve, reject })
      this.#startRead()
    })
  }

  #startRead(): void {
    if (this.#readInFlight.length > 0 || this.#readNext.length === 0) return
    this.#readInFlight = this.#readNext
    this.#readNext = []
    this.#readTimer = this.#runtime.setTimer(() => {
      this.#readTimer = noTimer
      const late = this.#readInFlight
      this.#readInFlight = []
      for (const w of late) w.reject(new RillError(ErrorCode.NO_QUORUM, `${this.group}: no quorum confirmed leadership within ${readRoundMsMax} ms`))
      this.#startRead()
    }, readRoundMsMax)
    const r = this.raft.readIndex(++this.#readContext)
    if (!r.ok) {
      this.#failReads(new RillError(r.code, `${this.group}: ${r.reason}`, { details: { leader: r.leader } }))
      return
    }
    this.process()
  }

  /** Answers confirmed reads whose index is applied, then starts the next round. */
  #releaseReads(): void {
    const applied = this.#options.machine.appliedIndex()
    while (this.#readsApplying.length > 0 && this.#readsApplying[0]!.index <= applied) {
      for (const w of this.#readsApplying.shift()!.waiters) w.resolve()
    }
    this.#startRead()
  }

  #clearReadTimer(): void {
    this.#readTimer.cancel()
    this.#readTimer = noTimer
  }

  /** Leadership lost (or the group stopped): every read waiting is refused. */
  #failReads(error: RillError): void {
    this.#clearReadTimer()
    const all = [...this.#readInFlight, ...this.#readNext, ...this.#readsApplying.flatMap((r) => r.waiters)]
    this.#readInFlight = []
    this.#readNext = []
    this.#readsApplying = []
    for (const w of all) w.reject(error)
  }

  /** Proposes entries; the result names the index of the last one. */
  propose(datas: readonly Uint8Array[]): RaftResult {
    if (this.#closed) return { ok: false, code: ErrorCode.NOT_LEADER, leader: 0, reason: `${this.group}: closed` }
    const r = this.raft.propose(datas)
    if (r.ok) this.process()
    return r
  }

  proposeConfChange(cc: ConfChange): RaftResult {
    if (this.#closed) return { ok: false, code: ErrorCode.NOT_LEADER, leader: 0, reason: `${this.group}: closed` }
    const r = this.raft.proposeConfChange(cc)
    if (r.ok) this.process()
    return r
  }

  /** Drains the core's Readies: send, apply, queue for persistence. */
  process(): void {
    if (this.#closed || this.#processing) return
    this.#processing = true
    try {
      for (let pass = 0; pass < readyPassesMax; pass++) {
        const rd = this.raft.ready()
        if (rd === null) break
        if (stageTrace.enabled && rd.entries.length > 0 && this.raft.role === Role.Leader) stageTrace.since('leader.propose_to_ready', `${this.group}#${rd.entries[rd.entries.length - 1]!.index}`)
        if (rd.messages.length > 0) this.#options.send(rd.messages)
        if (rd.softState !== null) {
          if (rd.softState.role !== Role.Leader) this.#failReads(new RillError(ErrorCode.NOT_LEADER, `${this.group}: leadership lost`, { details: { leader: rd.softState.leader } }))
          this.#options.onSoftState?.(rd.softState.role, rd.softState.leader)
        }
        if (rd.snapshot !== null) this.#options.machine.restore(rd.snapshot, 'installed')
        if (rd.committedEntries.length > 0) this.#options.machine.apply(rd.committedEntries)
        for (const rs of rd.readStates) {
          if (rs.context !== this.#readContext || this.#readInFlight.length === 0) continue
          this.#readsApplying.push({ index: rs.index, waiters: this.#readInFlight })
          this.#readInFlight = []
          this.#clearReadTimer()
        }
        this.#persistQueue.push(rd)
      }
    } finally {
      this.#processing = false
    }
    this.#releaseReads()
    if (this.#persistQueue.length > 0) void this.#pumpPersist()
  }

  /** Persists everything queued as one group of writes, then sends what waited and advances. */
  async #pumpPersist(): Promise<void> {
    if (this.#persisting || this.#persistQueue.length === 0 || this.#closed) return
    this.#persisting = true
    try {
      const batch = this.#persistQueue
      this.#persistQueue = []
      try {
        await this.storage.persistMany(batch)
      } catch (error) {
        this.#fail(error)
        return
      }
      if (this.#closed) return
      if (stageTrace.enabled) this.#traceDurable(batch)
      for (const rd of batch) {
        if (rd.messagesAfterPersist.length > 0) this.#options.send(rd.messagesAfterPersist)
        this.raft.advance(rd)
        this.#options.onPersisted?.(rd)
      }
      await this.#maybeSnapshot()
    } finally {
      this.#persisting = false
    }
    this.processOrFail()
  }

  #traceDurable(batch: readonly Ready[]): void {
    for (const rd of batch) {
      if (rd.entries.length === 0) continue
      const key = `${this.group}#${rd.entries[rd.entries.length - 1]!.index}`
      if (this.raft.role === Role.Leader) stageTrace.since('leader.propose_to_persisted', key)
      else stageTrace.since('follower.receive_to_persisted', `${key}@recv`)
    }
  }

  /** Snapshots the state machine every `snapshotEntries` applied entries (bounds replay at restart). */
  async #maybeSnapshot(): Promise<void> {
    const applied = this.#options.machine.appliedIndex()
    if (this.#snapshotting || applied - this.storage.snapshot().meta.index < this.#snapshotEntries) return
    if (this.raft.log.unstable.snapshot !== null || applied > this.#log.lastIndex()) return
    this.#snapshotting = true
    try {
      const keep = this.#options.compactKeepEntries
      const compactIndex = keep === undefined ? 0 : Math.max(0, applied - keep)
      await this.storage.createSnapshot({ index: applied, conf: this.raft.confState(), data: this.#options.machine.snapshotData(), compactIndex })
    } catch (error) {
      this.#fail(error)
    } finally {
      this.#snapshotting = false
    }
  }

  /** Runs `process` where nobody would catch what it throws (timers, promise callbacks). */
  processOrFail(): void {
    try {
      this.process()
    } catch (error) {
      this.#fail(error)
    }
  }

  /**
   * A write failed (disk full, I/O error): this member can no longer promise
   * anything, so it stops taking part; the others carry on.
   */
  /** Stops the group after an error raised outside its own loop (a message that broke an invariant). */
  fail(error: unknown): void {
    this.#fail(error)
  }

  #fail(error: unknown): void {
    if (this.failure !== null) return
    this.failure = error instanceof RillError ? error : new RillError(ErrorCode.INTERNAL, `${this.group}: ${String(error)}`, { cause: error })
    // A leader that stops must not leave quiet followers waiting for it forever: hand over first.
    if (this.raft.role === Role.Leader) {
      let best: NodeId = 0
      let bestMatch = -1
      for (const [id, pr] of this.raft.progress) {
        if (id !== this.raft.id && this.raft.voters.has(id) && pr.match > bestMatch) {
          best = id
          bestMatch = pr.match
        }
      }
      try {
        if (best !== 0) this.raft.transferLeader(best)
        const rd = this.raft.ready()
        if (rd !== null && rd.messages.length > 0) this.#options.send(rd.messages)
      } catch {
        // Best effort: the followers' failure detection or their periodic wake-up takes over.
      }
    }
    this.#options.onFailure?.(this.failure)
    this.#options.onStopped?.(this.failure)
    this.close().catch(() => undefined)
  }

  /** Stops the group; waits for the write under way so nothing acknowledged is half-written. */
  async close(): Promise<void> {
    if (this.#closed && !this.#persisting) return
    this.#closed = true
    this.#failReads(new RillError(ErrorCode.NOT_LEADER, `${this.group}: closed`, { details: { leader: 0 } }))
    this.storage.close()
    const end = this.#runtime.nowMs() + closeWaitMsMax
    while (this.#persisting && this.#runtime.nowMs() < end) await this.#runtime.sleep(1)
    assert(!this.#persisting, `${this.group}: persistence did not finish within ${closeWaitMsMax} ms of close`)
  }

  isLeader(): boolean {
    return this.raft.role === Role.Leader
  }
}

function emptySnapshot(): Snapshot {
  return { meta: { index: 0, term: 0, conf: { voters: [], learners: [] } }, data: new Uint8Array(0) }
}

/**
 * What the broker drives on every replica it hosts, whatever its state
 * machine (a data partition, an offsets partition): ticks, peer messages,
 * elections, hand-overs, failure. Subclasses open `rg` and add their own
 * reads and writes.
 */
export abstract class HostedGroup {
  protected rg!: RaftGroup

  get raft(): Raft {
    return this.rg.raft
  }

  /** Set when the replica stopped after a storage failure. */
  get failure(): RillError | null {
    return this.rg.failure
  }

  tick(): void {
    this.rg.tick()
  }

  step(m: Message): void {
    this.rg.step(m)
  }

  campaign(): void {
    this.rg.campaign()
  }

  transferLeader(to: NodeId): void {
    this.rg.transferLeader(to)
  }

  /** Stops the replica after an error raised outside its own loop. */
  fail(error: unknown): void {
    this.rg.fail(error)
  }
}
