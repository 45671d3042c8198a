/**
 * One replica of a `__consumer_offsets` partition: a RaftGroup running the
 * OffsetsState machine, plus proposals that wait until they are applied.
 * The broker hosts it like a data partition (same ticks, messages,
 * leadership balancing); the coordinator (coordinator.ts) drives it.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import type { Runtime, TimerHandle } from '../base/index.ts'
import { systemRuntime } from '../base/index.ts'
import { HostedGroup, RaftGroup, type ReplicaOptions } from '../partition/index.ts'
import type { Entry, LogIndex, NodeId, Snapshot } from '../raft/index.ts'
import { EntryType, Role } from '../raft/index.ts'
import { type ApplyResult, encodeGroupCommand, type GroupCommand, OffsetsState } from './state.ts'

/** Longest a group command waits to be applied. */
export const groupCommandWaitMsMax = 10_000
/** Commands waiting to be applied, per replica. */
const waitersMax = 10_000
/** Entries kept below a snapshot so a slightly slow follower catches up without one. */
const compactKeepEntries = 1000

interface Waiter {
  readonly term: number
  readonly resolve: (r: ApplyResult) => void
  readonly timer: TimerHandle
}

export interface OffsetsReplicaOptions extends ReplicaOptions {
  /** Called on role or leader change (the coordinator restarts its sessions on gaining leadership). */
  readonly onRoleChange?: (role: Role, leader: NodeId) => void
}

export class OffsetsReplica extends HostedGroup {
  readonly group: string
  state = new OffsetsState()
  #leaderReadyIndex: LogIndex = 0
  readonly #waiters = new Map<LogIndex, Waiter>()
  readonly #onRoleChange: ((role: Role, leader: NodeId) => void) | undefined

  readonly #runtime: Runtime

  private constructor(options: OffsetsReplicaOptions) {
    super()
    this.group = options.group
    this.#onRoleChange = options.onRoleChange
    this.#runtime = options.runtime ?? systemRuntime
  }

  static async open(options: OffsetsReplicaOptions): Promise<OffsetsReplica> {
    const r = new OffsetsReplica(options)
    r.rg = await RaftGroup.open({
      ...options,
      recordMeta: () => ({ baseOffset: 0, recordCount: 0, timestampMinMs: 0, timestampMaxMs: 0 }),
      snapshotEntries: options.snapshotEntries ?? 1000,
      // The entries are commands whose effect is all in the snapshot: the log need not keep them.
      compactKeepEntries,
      machine: {
        apply: (entries) => r.#apply(entries),
        restore: (snap) => r.#restore(snap),
        snapshotData: () => r.state.snapshot(),
        appliedIndex: () => r.state.appliedIndex,
      },
      onSoftState: (role, leader) => {
        if (role === Role.Leader) r.#leaderReadyIndex = r.rg.raft.log.lastIndex()
        else {
          r.#leaderReadyIndex = 0
          r.#failWaiters(leader)
        }
        r.#onRoleChange?.(role, leader)
      },
      onFailure: () => r.#failWaiters(0),
    })
    return r
  }

  /** Applied entries: what metadata shows as this partition's high watermark. */
  get highWatermark(): number {
    return this.state.appliedIndex
  }

  /** True when this replica leads and has applied everything of earlier terms (its state is current). */
  isReadyLeader(): boolean {
    return this.raft.role === Role.Leader && this.rg.failure === null && this.state.appliedIndex >= this.#leaderReadyIndex && this.#leaderReadyIndex > 0
  }

  /**
   * Resolves once a quorum confirmed this replica still leads and its state
   * is current (ReadIndex): answers read from memory after it are never a
   * deposed coordinator's — one cut off from the others (or quiet, not
   * ticking) would otherwise keep a member believing it owns a partition
   * that the new coordinator has expired and given away.
   */
  confirmLeadership(): Promise<void> {
    return this.rg.confirmLeadership()
  }

  /** Proposes a command and resolves with its outcome once applied here (rejects if leadership moves first). */
  propose(cmd: GroupCommand): Promise<ApplyResult> {
    if (!this.isReadyLeader()) return Promise.reject(new RillError(ErrorCode.NOT_LEADER, `${this.group}: not the ready leader`, { details: { leader: this.raft.lead } }))
    if (this.#waiters.size >= waitersMax) return Promise.reject(new RillError(ErrorCode.NO_QUORUM, `${this.group}: ${waitersMax} group commands already waiting`))
    const r = this.rg.propose([encodeGroupCommand(cmd)])
    if (!r.ok) return Promise.reject(new RillError(r.code, `${this.group}: ${r.reason}`, { details: { leader: r.leader } }))
    return new Promise((resolve) => {
      const timer = this.#runtime.setTimer(() => {
        this.#waiters.delete(r.index)
        resolve({ ok: false, error: new RillError(ErrorCode.TIMEOUT, `${this.group}: group command not applied within ${groupCommandWaitMsMax} ms`) })
      }, groupCommandWaitMsMax)
      this.#waiters.set(r.index, { term: r.term, resolve, timer })
    })
  }

  #apply(entries: readonly Entry[]): void {
    for (const e of entries) {
      this.state.appliedIndex = e.index
      const result: ApplyResult = e.type === EntryType.Normal && e.data.byteLength > 0 ? this.state.apply(e.data) : { ok: true }
      const w = this.#waiters.get(e.index)
      if (w === undefined) continue
      this.#waiters.delete(e.index)
      w.timer.cancel()
      w.resolve(w.term === e.term ? result : { ok: false, error: new RillError(ErrorCode.NOT_LEADER, `${this.group}: leadership changed before the command committed`) })
    }
  }

  #restore(snap: Snapshot): void {
    this.state = OffsetsState.fromSnapshot(snap.data)
    this.state.appliedIndex = snap.meta.index
  }

  #failWaiters(leader: NodeId): void {
    for (const w of this.#waiters.values()) {
      w.timer.cancel()
      w.resolve({ ok: false, error: new RillError(ErrorCode.NOT_LEADER, `${this.group}: leadership lost`, { details: { leader } }) })
    }
    this.#waiters.clear()
  }

  /** Nothing to delete by time or size: the log is compacted below each snapshot instead. */
  async applyRetention(_nowMs: number): Promise<number> {
    return 0
  }

  async close(): Promise<void> {
    this.#failWaiters(0)
    await this.rg.close()
  }
}
