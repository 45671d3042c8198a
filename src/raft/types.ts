/**
 * Types of the Raft core: ids, entries, messages, hard state, snapshots and
 * the Ready value that carries the core's output to the caller.
 *
 * Messages have one flat shape (as etcd's raftpb.Message): every field is
 * always present, so V8 sees one hidden class on the hot path and the
 * transport can encode them with msgpackr records.
 */

/** A member of a Raft group (a broker id). 0 means "nobody". */
export type NodeId = number
/** Raft term. */
export type Term = number
/** Position in the Raft log (1-based; 0 is "before the first entry"). */
export type LogIndex = number

export const noNode: NodeId = 0

export const EntryType = {
  /** Application data (a record batch); empty data is the leader's no-op. */
  Normal: 0,
  /** A membership change; data is an encoded ConfChange. */
  ConfChange: 1,
} as const
export type EntryType = (typeof EntryType)[keyof typeof EntryType]

export interface Entry {
  readonly term: Term
  readonly index: LogIndex
  readonly type: EntryType
  readonly data: Uint8Array
}

/** Per-entry bytes counted against message and uncommitted-size bounds besides its data. */
export const entryOverheadBytes = 24

export function entryBytes(e: Entry): number {
  return e.data.byteLength + entryOverheadBytes
}

/** Durable state that must reach storage before any message that depends on it is sent. */
export interface HardState {
  readonly term: Term
  readonly vote: NodeId
  readonly commit: LogIndex
}

/** Who is in the group: voters decide, learners only receive the log. */
export interface ConfState {
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
}

export const ConfChangeType = {
  AddVoter: 0,
  AddLearner: 1,
  Remove: 2,
} as const
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType]

/**
 * One server at a time (Ongaro's thesis, 4.1): adding a voter, adding a
 * learner (or demoting a voter to learner), promoting a learner (AddVoter on
 * a learner), removing a member.
 */
export interface ConfChange {
  readonly type: ConfChangeType
  readonly node: NodeId
}

export interface SnapshotMeta {
  readonly index: LogIndex
  readonly term: Term
  readonly conf: ConfState
}

export interface Snapshot {
  readonly meta: SnapshotMeta
  /** The application state at meta.index, opaque to Raft. */
  readonly data: Uint8Array
}

export const MessageType = {
  /** Local: start an election now. */
  Hup: 0,
  /** Local: leader, send heartbeats now. */
  Beat: 1,
  App: 2,
  AppResp: 3,
  Vote: 4,
  VoteResp: 5,
  PreVote: 6,
  PreVoteResp: 7,
  Heartbeat: 8,
  HeartbeatResp: 9,
  /** One chunk of a snapshot. */
  Snap: 10,
  /** Acknowledges snapshot chunks up to `index` bytes (or asks to restart at it when reject). */
  SnapResp: 11,
  TimeoutNow: 12,
  ReadIndex: 13,
  ReadIndexResp: 14,
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

export const messageTypeNames: readonly string[] = Object.keys(MessageType)

/**
 * Fields by type (unused ones are zero / empty):
 * - App: index/logTerm = previous entry, entries, commit.
 * - AppResp: index = last matching index (or rejected probe index), reject,
 *   rejectHint + logTerm = follower's hint for fast backtracking.
 * - Vote/PreVote: index/logTerm = candidate's last entry; context = 1 for a
 *   leadership transfer (bypasses the leader lease).
 * - Heartbeat: commit (min of follower match and leader commit), context = ReadIndex round,
 *   reject = true: "the leader goes quiet" (see RaftConfig.quiesce).
 * - Snap: snapshot meta, index = byte offset of this chunk, data chunk, reject=false,
 *   rejectHint = total snapshot bytes; SnapResp: index = next byte offset wanted.
 * - ReadIndex: context = caller's request id; ReadIndexResp: index = read index.
 */
export interface Message {
  type: MessageType
  from: NodeId
  to: NodeId
  term: Term
  logTerm: Term
  index: LogIndex
  entries: Entry[]
  commit: LogIndex
  reject: boolean
  rejectHint: LogIndex
  context: number
  snapshot: SnapshotMeta | null
  data: Uint8Array | null
}

export const emptyEntries: Entry[] = []

export function message(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    type: fields.type,
    from: fields.from ?? noNode,
    to: fields.to ?? noNode,
    term: fields.term ?? 0,
    logTerm: fields.logTerm ?? 0,
    index: fields.index ?? 0,
    entries: fields.entries ?? emptyEntries,
    commit: fields.commit ?? 0,
    reject: fields.reject ?? false,
    rejectHint: fields.rejectHint ?? 0,
    context: fields.context ?? 0,
    snapshot: fields.snapshot ?? null,
    data: fields.data ?? null,
  }
}

export const Role = {
  Follower: 'follower',
  PreCandidate: 'pre-candidate',
  Candidate: 'candidate',
  Leader: 'leader',
} as const
export type Role = (typeof Role)[keyof typeof Role]

/** Volatile state reported to the caller when it changes (not persisted). */
export interface SoftState {
  readonly leader: NodeId
  readonly role: Role
}

/** A ReadIndex answer: once `applied >= index`, a read for `context` is linearizable. */
export interface ReadState {
  readonly index: LogIndex
  readonly context: number
}

/**
 * The core's output. The caller:
 * 1. sends `messages` at once (they never depend on this node's unpersisted state);
 * 2. persists `snapshot` (if any), then truncates/appends `entries`, then `hardState`;
 * 3. after (2) is durable, sends `messagesAfterPersist` and calls `advance(ready)`;
 * 4. applies `committedEntries` in order (they are already durable locally).
 * Several readies may be outstanding; they must be persisted and advanced in order.
 */
export interface Ready {
  readonly softState: SoftState | null
  readonly hardState: HardState | null
  readonly snapshot: Snapshot | null
  readonly entries: readonly Entry[]
  readonly committedEntries: readonly Entry[]
  readonly messages: readonly Message[]
  readonly messagesAfterPersist: readonly Message[]
  readonly readStates: readonly ReadState[]
}
