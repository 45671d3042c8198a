/**
 * The Raft-aware payload of one frame: everything one broker sends another
 * in one tick, for all Raft groups they share (DESIGN.md decision 5, STYLE.md
 * rule 9).
 *
 *   PeerBatch (wire, one msgpack array per frame)
 *   ┌──────────────────────────────────────────────────────────────────┐
 *   │ groups:     [[groupId, type, term, logTerm, index, commit,       │
 *   │              reject, rejectHint, context, entries, snap, data]…] │
 *   │ heartbeats: [groupIds[], terms[], commits[], contexts[]]         │
 *   │ hbResps:    [groupIds[], terms[], contexts[]]                    │
 *   └──────────────────────────────────────────────────────────────────┘
 *
 * Why this shape:
 * - Positional tuples instead of maps: field names are never on the wire
 *   (what msgpackr records would buy) and there is no per-connection
 *   structure state a stranger could poison or a lost frame could desync.
 * - `from` and `to` are not on the wire: one connection joins exactly two
 *   authenticated brokers, so the decoder fills them in. A peer cannot
 *   speak for a third broker.
 * - Entries are `[term, type, data]`; their index is implied (`index + 1 +
 *   i`, the previous-entry index of an App plus position), so a batch can
 *   never carry a gap or a reordering the core would assert on.
 * - Heartbeats and their answers are the bulk of an idle cluster's traffic
 *   (one per group per tick); they travel as columns of numbers, a few
 *   bytes per group.
 *
 * The decoder is strict: frames come from the network and are untrusted
 * until every field of every message has been checked (types, ranges,
 * sizes, entry shapes, snapshot meta). Anything else is an
 * `INVALID_REQUEST` RillError — never another exception, never a partly
 * accepted batch.
 */
import { Packr } from 'msgpackr'
import { assert, ErrorCode, RillError } from '../base/index.ts'
import {
  EntryType,
  MessageType,
  emptyEntries,
  entryOverheadBytes,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type SnapshotMeta,
} from '../raft/types.ts'

/** Raft group id (a partition's group or the controller's); an unsigned 32-bit number. */
export type GroupId = number

/** Largest group id on the wire. */
export const groupIdMax = 0xffff_ffff
/** Largest broker id on the wire (0 means "nobody" and is never a sender or receiver). */
export const nodeIdMax = 0xffff_ffff
/** Messages (plus heartbeats) in one decoded batch. */
export const batchMessagesMax = 1 << 20
/** Entries in one App message. */
export const messageEntriesMax = 1 << 20
/** Voters plus learners in one snapshot's configuration. */
export const confMembersMax = 1024
/** Upper bound of the encoded bytes of a message besides entry and snapshot data (estimate used by queue bounds). */
export const messageOverheadBytes = 160
/** Upper bound of the encoded bytes of one conf member id. */
const memberBytes = 9

/** One message of one group, as handed to `Transport.send` and out of a decoded batch. */
export interface GroupMessage {
  readonly groupId: GroupId
  readonly message: Message
}

/** Heartbeats (leader → follower) of many groups, as columns of equal length. */
export interface HeartbeatColumns {
  readonly groupIds: GroupId[]
  readonly terms: number[]
  readonly commits: number[]
  readonly contexts: number[]
}

/** Heartbeat answers (follower → leader) of many groups, as columns of equal length. */
export interface HeartbeatRespColumns {
  readonly groupIds: GroupId[]
  readonly terms: number[]
  readonly contexts: number[]
}

/**
 * What one broker sends another in one tick. `groups` holds every message
 * that is not a plain heartbeat, in send order; heartbeats are packed apart.
 * Order between the two parts is not kept (a heartbeat carries nothing an
 * App of the same group depends on arriving first).
 */
export interface PeerBatch {
  readonly groups: GroupMessage[]
  readonly heartbeats: HeartbeatColumns
  readonly heartbeatResps: HeartbeatRespColumns
}

/** Who sent a batch to whom: the two ends of the authenticated connection. */
export interface BatchEnds {
  readonly from: NodeId
  readonly to: NodeId
}

// ---- sizes -----------------------------------------------------------------

/** An upper bound of the bytes `m` adds to an encoded batch (queue accounting). */
export function encodedBytesMax(m: Message): number {
  let bytes = messageOverheadBytes
  for (const e of m.entries) bytes += e.data.byteLength + entryOverheadBytes
  if (m.data !== null) bytes += m.data.byteLength
  if (m.snapshot !== null) bytes += (m.snapshot.conf.voters.length + m.snapshot.conf.learners.length) * memberBytes
  return bytes
}

// ---- encode ----------------------------------------------------------------

/** True for a heartbeat that fits the column form exactly (every other field zero/empty). */
function isPlainHeartbeat(m: Message): boolean {
  return (
    m.logTerm === 0 &&
    m.index === 0 &&
    m.entries.length === 0 &&
    !m.reject &&
    m.rejectHint === 0 &&
    m.snapshot === null &&
    m.data === null &&
    (m.type === MessageType.Heartbeat || m.commit === 0)
  )
}

function wireEntries(entries: readonly Entry[]): unknown[] {
  const out: unknown[] = new Array(entries.length)
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    out[i] = [e.term, e.type, e.data]
  }
  return out
}

function wireSnapshot(s: SnapshotMeta | null): unknown {
  if (s === null) return null
  return [s.index, s.term, s.conf.voters, s.conf.learners]
}

/**
 * The wire value of a batch of `items`, all from `ends.from` to `ends.to`
 * (asserted: the transport routes by `message.to`, a mismatch is a bug).
 */
export function peerBatchValue(items: readonly GroupMessage[], ends: BatchEnds): unknown[] {
  const groups: unknown[] = []
  const hb: [number[], number[], number[], number[]] = [[], [], [], []]
  const hbResp: [number[], number[], number[]] = [[], [], []]
  for (const { groupId, message: m } of items) {
    assert(m.from === ends.from && m.to === ends.to, () => `message ${m.from}->${m.to} in a batch ${ends.from}->${ends.to}`)
    if (m.type === MessageType.Heartbeat && isPlainHeartbeat(m)) {
      hb[0].push(groupId)
      hb[1].push(m.term)
      hb[2].push(m.commit)
      hb[3].push(m.context)
    } else if (m.type === MessageType.HeartbeatResp && isPlainHeartbeat(m)) {
      hbResp[0].push(groupId)
      hbResp[1].push(m.term)
      hbResp[2].push(m.context)
    } else {
      groups.push([
        groupId, m.type, m.term, m.logTerm, m.index, m.commit, m.reject, m.rejectHint, m.context,
        m.entries.length === 0 ? null : wireEntries(m.entries), wireSnapshot(m.snapshot), m.data,
      ])
    }
  }
  return [groups, hb, hbResp]
}

/**
 * Encoder and decoder of one connection direction. msgpackr copies each
 * entry's bytes once into its output buffer; the decoder hands out
 * `Uint8Array` views into the received frame (no copy), so an entry keeps
 * its frame's memory alive until the log has stored it.
 */
export function createPackr(): Packr {
  // useRecords off: tuples already carry no field names, and a decoder
  // that keeps no record state cannot be steered by a peer's definitions.
  return new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number', mapsAsObjects: true })
}

/** Encodes a batch as msgpack bytes (tests, benchmarks; the transport frames it directly). */
export function encodePeerBatch(packr: Packr, items: readonly GroupMessage[], ends: BatchEnds): Uint8Array {
  return packr.pack(peerBatchValue(items, ends))
}

// ---- decode ----------------------------------------------------------------

function invalid(what: string): never {
  throw new RillError(ErrorCode.INVALID_REQUEST, `bad peer batch: ${what}`)
}

function tuple(v: unknown, length: number, what: string): unknown[] {
  if (!Array.isArray(v) || v.length !== length) invalid(`${what} is not a ${length}-tuple`)
  return v
}

function list(v: unknown, lengthMax: number, what: string): unknown[] {
  if (!Array.isArray(v)) invalid(`${what} is not an array`)
  if (v.length > lengthMax) invalid(`${what} has ${v.length} items (max ${lengthMax})`)
  return v
}

/** A non-negative safe integer (terms, indexes, commits, contexts, byte counts). */
function count(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) invalid(`${what} is not a non-negative integer`)
  return v
}

function bounded(v: unknown, max: number, what: string): number {
  const n = count(v, what)
  if (n > max) invalid(`${what} ${n} is above ${max}`)
  return n
}

function bytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) invalid(`${what} is not binary`)
  return v
}

function bool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') invalid(`${what} is not a boolean`)
  return v
}

function messageType(v: unknown): MessageType {
  const t = count(v, 'type')
  // Hup and Beat are local to a node; they never cross the wire.
  if (t < MessageType.App || t > MessageType.ReadIndexResp) invalid(`type ${t} is not a wire message type`)
  return t as MessageType
}

function members(v: unknown, what: string, seen: Set<number>): NodeId[] {
  const ids = list(v, confMembersMax, what)
  const out: NodeId[] = new Array(ids.length)
  for (let i = 0; i < ids.length; i++) {
    const id = bounded(ids[i], nodeIdMax, what)
    if (id === 0) invalid(`${what} holds node 0`)
    if (seen.has(id)) invalid(`${what} repeats node ${id}`)
    seen.add(id)
    out[i] = id
  }
  if (seen.size > confMembersMax) invalid(`conf has more than ${confMembersMax} members`)
  return out
}

function snapshotMeta(v: unknown, term: number): SnapshotMeta {
  const t = tuple(v, 4, 'snapshot meta')
  const index = count(t[0], 'snapshot index')
  const snapTerm = count(t[1], 'snapshot term')
  if (snapTerm > term) invalid(`snapshot term ${snapTerm} is above message term ${term}`)
  const seen = new Set<number>()
  const conf: ConfState = { voters: members(t[2], 'voters', seen), learners: members(t[3], 'learners', seen) }
  if (conf.voters.length === 0) invalid('snapshot conf has no voter')
  return { index, term: snapTerm, conf }
}

function entries(v: unknown, m: { term: number; logTerm: number; index: number }): Entry[] {
  const raw = list(v, messageEntriesMax, 'entries')
  if (raw.length === 0) invalid('entries is empty (null means none)')
  if (!Number.isSafeInteger(m.index + raw.length)) invalid('entries run past the largest index')
  const out: Entry[] = new Array(raw.length)
  let termPrev = m.logTerm
  for (let i = 0; i < raw.length; i++) {
    const t = tuple(raw[i], 3, 'entry')
    const term = count(t[0], 'entry term')
    // Terms never decrease along a log and never exceed the sender's term.
    if (term < termPrev || term > m.term) invalid(`entry term ${term} out of order (previous ${termPrev}, message ${m.term})`)
    const type = t[1]
    if (type !== EntryType.Normal && type !== EntryType.ConfChange) invalid('entry type is unknown')
    out[i] = { term, index: m.index + 1 + i, type, data: bytes(t[2], 'entry data') }
    termPrev = term
  }
  return out
}

function groupMessage(v: unknown, ends: BatchEnds): GroupMessage {
  const t = tuple(v, 12, 'message')
  const groupId = bounded(t[0], groupIdMax, 'group id')
  const type = messageType(t[1])
  const term = count(t[2], 'term')
  const logTerm = count(t[3], 'logTerm')
  const index = count(t[4], 'index')
  const commit = count(t[5], 'commit')
  const reject = bool(t[6], 'reject')
  const rejectHint = count(t[7], 'rejectHint')
  const context = count(t[8], 'context')
  let ents = emptyEntries
  if (t[9] !== null) {
    if (type !== MessageType.App) invalid('entries outside an App message')
    ents = entries(t[9], { term, logTerm, index })
  }
  let snapshot: SnapshotMeta | null = null
  let data: Uint8Array | null = null
  if (type === MessageType.Snap) {
    snapshot = snapshotMeta(t[10], term)
    data = bytes(t[11], 'snapshot chunk')
    // index = byte offset of this chunk, rejectHint = total snapshot bytes.
    if (index + data.byteLength > rejectHint) invalid('snapshot chunk runs past the snapshot size')
  } else if (t[10] !== null || t[11] !== null) {
    invalid('snapshot or data outside a Snap message')
  }
  const message: Message = {
    type, from: ends.from, to: ends.to, term, logTerm, index, entries: ents,
    commit, reject, rejectHint, context, snapshot, data,
  }
  return { groupId, message }
}

function columns(v: unknown, width: number, what: string): unknown[][] {
  const t = tuple(v, width, what)
  const cols: unknown[][] = new Array(width)
  for (let c = 0; c < width; c++) cols[c] = list(t[c], batchMessagesMax, what)
  for (let c = 1; c < width; c++) if (cols[c]!.length !== cols[0]!.length) invalid(`${what} columns differ in length`)
  return cols
}

function numbers(col: unknown[], what: string, max: number): number[] {
  const out: number[] = new Array(col.length)
  for (let i = 0; i < col.length; i++) out[i] = bounded(col[i], max, what)
  return out
}

/**
 * Checks the decoded msgpack value of a batch and builds typed messages
 * with `from`/`to` set to the connection's two ends. Throws an
 * INVALID_REQUEST RillError on anything else.
 */
export function peerBatchFromValue(value: unknown, ends: BatchEnds): PeerBatch {
  const top = tuple(value, 3, 'batch')
  const rawGroups = list(top[0], batchMessagesMax, 'groups')
  const hb = columns(top[1], 4, 'heartbeats')
  const hbResp = columns(top[2], 3, 'heartbeat answers')
  if (rawGroups.length + hb[0]!.length + hbResp[0]!.length > batchMessagesMax) invalid('too many messages')
  const groups: GroupMessage[] = new Array(rawGroups.length)
  for (let i = 0; i < rawGroups.length; i++) groups[i] = groupMessage(rawGroups[i], ends)
  return {
    groups,
    heartbeats: {
      groupIds: numbers(hb[0]!, 'heartbeat group id', groupIdMax),
      terms: numbers(hb[1]!, 'heartbeat term', Number.MAX_SAFE_INTEGER),
      commits: numbers(hb[2]!, 'heartbeat commit', Number.MAX_SAFE_INTEGER),
      contexts: numbers(hb[3]!, 'heartbeat context', Number.MAX_SAFE_INTEGER),
    },
    heartbeatResps: {
      groupIds: numbers(hbResp[0]!, 'heartbeat answer group id', groupIdMax),
      terms: numbers(hbResp[1]!, 'heartbeat answer term', Number.MAX_SAFE_INTEGER),
      contexts: numbers(hbResp[2]!, 'heartbeat answer context', Number.MAX_SAFE_INTEGER),
    },
  }
}

/** Decodes msgpack bytes of a batch strictly (see peerBatchFromValue). */
export function decodePeerBatch(packr: Packr, payload: Uint8Array, ends: BatchEnds): PeerBatch {
  return peerBatchFromValue(unpackValue(packr, payload), ends)
}

/** msgpack bytes → value; any decoder failure becomes INVALID_REQUEST. */
export function unpackValue(packr: Packr, payload: Uint8Array): unknown {
  if (payload.byteLength === 0) invalid('empty payload')
  try {
    return packr.unpack(payload)
  } catch (cause) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `bad peer batch: undecodable msgpack (${(cause as Error)?.message ?? String(cause)})`, { cause })
  }
}

// ---- reading a batch -------------------------------------------------------

/** Number of messages in a batch, heartbeats included. */
export function batchSize(batch: PeerBatch): number {
  return batch.groups.length + batch.heartbeats.groupIds.length + batch.heartbeatResps.groupIds.length
}

/**
 * Calls `fn` for every message of `batch` as a full Raft Message (heartbeat
 * columns expanded): heartbeats first, then answers, then the other
 * messages in send order.
 */
export function forEachMessage(batch: PeerBatch, ends: BatchEnds, fn: (groupId: GroupId, message: Message) => void): void {
  const hb = batch.heartbeats
  for (let i = 0; i < hb.groupIds.length; i++) {
    fn(hb.groupIds[i]!, heartbeat(MessageType.Heartbeat, ends, hb.terms[i]!, hb.commits[i]!, hb.contexts[i]!))
  }
  const hr = batch.heartbeatResps
  for (let i = 0; i < hr.groupIds.length; i++) {
    fn(hr.groupIds[i]!, heartbeat(MessageType.HeartbeatResp, ends, hr.terms[i]!, 0, hr.contexts[i]!))
  }
  for (const { groupId, message } of batch.groups) fn(groupId, message)
}

function heartbeat(type: MessageType, ends: BatchEnds, term: number, commit: number, context: number): Message {
  return {
    type, from: ends.from, to: ends.to, term, logTerm: 0, index: 0, entries: emptyEntries,
    commit, reject: false, rejectHint: 0, context, snapshot: null, data: null,
  }
}
