/**
 * The state machine of one `__consumer_offsets` partition: the consumer
 * groups hashed to it — members, assignments, generation, committed offsets.
 * Every replica applies the same entries in the same order and reaches the
 * same state; the checks that fence stale members run here, at apply, so a
 * new coordinator inherits them exactly (docs/groups.md).
 *
 * Two commands:
 *   members — replaces a group's membership, only if its generation is still
 *             the one the coordinator computed from (else refused: it raced a
 *             change it did not see); the generation goes up by one.
 *   commit  — stores offsets; a member may commit only partitions it owns
 *             (assigned or still giving up), and never backwards unless asked.
 */
import { Packr } from 'msgpackr'
import { ErrorCode, RillError } from '../base/index.ts'
import type { LogIndex } from '../raft/index.ts'
import { type TpKey, tpKey } from './assignor.ts'

export const groupLimits = {
  membersPerGroup: 1000,
  topicsPerMember: 100,
  offsetsPerCommit: 10_000,
  groupsPerPartition: 100_000,
  offsetsPerGroup: 1_000_000,
} as const

export interface MemberState {
  readonly memberId: string
  readonly clientId: string
  readonly rack: string | null
  readonly topics: readonly string[]
  readonly sessionTimeoutMs: number
  /**
   * The generation at which this member's assignment (assigned or revoking)
   * last changed. A heartbeat confirms giving partitions up only if it
   * carries this epoch: one sent before the member saw the change (delayed,
   * reordered, retried) cannot release what the member still holds.
   */
  readonly memberEpoch: number
  readonly assigned: readonly TpKey[]
  readonly revoking: readonly TpKey[]
}

export interface GroupState {
  readonly generation: number
  readonly members: ReadonlyMap<string, MemberState>
  /** Next offset to consume, per partition. */
  readonly offsets: ReadonlyMap<TpKey, number>
}

export type GroupCommand =
  | { readonly type: 'members'; readonly group: string; readonly expectGeneration: number; readonly members: readonly MemberState[] }
  | {
      readonly type: 'commit'
      readonly group: string
      readonly memberId: string | null
      readonly offsets: readonly { readonly topic: string; readonly partition: number; readonly offset: number }[]
      readonly allowBackwards: boolean
    }

export type ApplyResult = { readonly ok: true } | { readonly ok: false; readonly error: RillError }

const packr = new Packr({ useRecords: false, mapsAsObjects: true })
const emptyGroup: GroupState = { generation: 0, members: new Map(), offsets: new Map() }

export class OffsetsState {
  #groups = new Map<string, GroupState>()
  appliedIndex: LogIndex = 0

  group(name: string): GroupState {
    return this.#groups.get(name) ?? emptyGroup
  }

  groupNames(): string[] {
    return [...this.#groups.keys()]
  }

  /** Applies one committed command (a bad one is refused and changes nothing). */
  apply(data: Uint8Array): ApplyResult {
    let cmd: GroupCommand
    try {
      cmd = decodeGroupCommand(data)
    } catch (error) {
      return { ok: false, error: error instanceof RillError ? error : new RillError(ErrorCode.INVALID_REQUEST, String(error)) }
    }
    return cmd.type === 'members' ? this.#applyMembers(cmd) : this.#applyCommit(cmd)
  }

  #applyMembers(cmd: Extract<GroupCommand, { type: 'members' }>): ApplyResult {
    const g = this.group(cmd.group)
    if (g.generation !== cmd.expectGeneration) {
      return refuse(ErrorCode.PROPOSAL_DROPPED, `group ${cmd.group}: generation is ${g.generation}, the change was computed from ${cmd.expectGeneration}; retry`)
    }
    if (!this.#groups.has(cmd.group) && this.#groups.size >= groupLimits.groupsPerPartition) {
      return refuse(ErrorCode.TOO_LARGE, `at most ${groupLimits.groupsPerPartition} groups per offsets partition`)
    }
    if (cmd.members.length > groupLimits.membersPerGroup) return refuse(ErrorCode.TOO_LARGE, `group ${cmd.group}: at most ${groupLimits.membersPerGroup} members`)
    // The invariant the protocol rests on: no partition held by two members.
    const holder = new Map<TpKey, string>()
    for (const m of cmd.members) {
      for (const k of [...m.assigned, ...m.revoking]) {
        const other = holder.get(k)
        if (other !== undefined) return refuse(ErrorCode.INTERNAL, `group ${cmd.group}: ${k} given to both ${other} and ${m.memberId}`)
        holder.set(k, m.memberId)
      }
    }
    this.#groups.set(cmd.group, { generation: g.generation + 1, members: new Map(cmd.members.map((m) => [m.memberId, m])), offsets: g.offsets })
    return { ok: true }
  }

  #applyCommit(cmd: Extract<GroupCommand, { type: 'commit' }>): ApplyResult {
    const g = this.group(cmd.group)
    if (cmd.memberId === null) {
      if (g.members.size > 0) return refuse(ErrorCode.FENCED_MEMBER, `group ${cmd.group} has ${g.members.size} members: commit as one of them (with its memberId)`)
    } else {
      const m = g.members.get(cmd.memberId)
      if (m === undefined) return refuse(ErrorCode.UNKNOWN_MEMBER, `group ${cmd.group} has no member ${cmd.memberId}: rejoin`)
      for (const o of cmd.offsets) {
        const k = tpKey(o.topic, o.partition)
        if (!m.assigned.includes(k) && !m.revoking.includes(k)) {
          return refuse(ErrorCode.FENCED_MEMBER, `member ${cmd.memberId} of group ${cmd.group} does not own ${k}`, { topic: o.topic, partition: o.partition })
        }
      }
    }
    if (!this.#groups.has(cmd.group) && this.#groups.size >= groupLimits.groupsPerPartition) {
      return refuse(ErrorCode.TOO_LARGE, `at most ${groupLimits.groupsPerPartition} groups per offsets partition`)
    }
    const offsets = new Map(g.offsets)
    for (const o of cmd.offsets) {
      const k = tpKey(o.topic, o.partition)
      const current = offsets.get(k)
      if (current !== undefined && o.offset < current && !cmd.allowBackwards) continue
      offsets.set(k, o.offset)
    }
    if (offsets.size > groupLimits.offsetsPerGroup) return refuse(ErrorCode.TOO_LARGE, `group ${cmd.group}: at most ${groupLimits.offsetsPerGroup} committed partitions`)
    this.#groups.set(cmd.group, { generation: g.generation, members: g.members, offsets })
    return { ok: true }
  }

  snapshot(): Uint8Array {
    const groups = [...this.#groups].map(([name, g]) => ({
      name,
      generation: g.generation,
      members: [...g.members.values()],
      offsets: [...g.offsets],
    }))
    return packr.pack({ v: 1, groups })
  }

  static fromSnapshot(data: Uint8Array): OffsetsState {
    const s = new OffsetsState()
    if (data.byteLength === 0) return s
    const raw = packr.unpack(data) as { v?: unknown; groups?: unknown }
    if (raw === null || typeof raw !== 'object' || raw.v !== 1 || !Array.isArray(raw.groups)) {
      throw new RillError(ErrorCode.STORAGE_CORRUPT, 'offsets snapshot: unknown format')
    }
    for (const g of raw.groups as unknown[]) {
      const r = g as { name: unknown; generation: unknown; members: unknown; offsets: unknown }
      if (typeof r.name !== 'string' || !Number.isSafeInteger(r.generation) || !Array.isArray(r.members) || !Array.isArray(r.offsets)) {
        throw new RillError(ErrorCode.STORAGE_CORRUPT, 'offsets snapshot: malformed group')
      }
      const members = (r.members as unknown[]).map((m) => checkMember(m, 'offsets snapshot'))
      const offsets = new Map<TpKey, number>()
      for (const o of r.offsets as unknown[]) {
        if (!Array.isArray(o) || typeof o[0] !== 'string' || !Number.isSafeInteger(o[1])) throw new RillError(ErrorCode.STORAGE_CORRUPT, 'offsets snapshot: malformed offset')
        offsets.set(o[0] as string, o[1] as number)
      }
      s.#groups.set(r.name, { generation: r.generation as number, members: new Map(members.map((m) => [m.memberId, m])), offsets })
    }
    return s
  }
}

function refuse(code: ErrorCode, message: string, details?: Record<string, unknown>): ApplyResult {
  return { ok: false, error: new RillError(code, message, details === undefined ? {} : { details }) }
}

export function encodeGroupCommand(cmd: GroupCommand): Uint8Array {
  return packr.pack(cmd)
}

/** Decodes a command from the log, checking every field (a log entry is input like any other). */
export function decodeGroupCommand(data: Uint8Array): GroupCommand {
  let raw: unknown
  try {
    raw = packr.unpack(data)
  } catch (error) {
    throw bad(`not msgpack: ${(error as Error).message}`)
  }
  if (raw === null || typeof raw !== 'object') throw bad('not an object')
  const r = raw as Record<string, unknown>
  if (typeof r['group'] !== 'string' || r['group'].length === 0) throw bad('group')
  if (r['type'] === 'members') {
    if (!Number.isSafeInteger(r['expectGeneration']) || !Array.isArray(r['members'])) throw bad('members')
    return { type: 'members', group: r['group'], expectGeneration: r['expectGeneration'] as number, members: (r['members'] as unknown[]).map((m) => checkMember(m, 'group command')) }
  }
  if (r['type'] === 'commit') {
    const memberId = r['memberId']
    if (memberId !== null && typeof memberId !== 'string') throw bad('memberId')
    if (!Array.isArray(r['offsets']) || typeof r['allowBackwards'] !== 'boolean') throw bad('offsets')
    const offsets = (r['offsets'] as unknown[]).map((o) => {
      const x = o as Record<string, unknown>
      if (x === null || typeof x !== 'object' || typeof x['topic'] !== 'string' || !isUint(x['partition']) || !isUint(x['offset'])) throw bad('offset entry')
      return { topic: x['topic'], partition: x['partition'] as number, offset: x['offset'] as number }
    })
    return { type: 'commit', group: r['group'], memberId, offsets, allowBackwards: r['allowBackwards'] }
  }
  throw bad(`unknown command type ${JSON.stringify(r['type'])}`)
}

function checkMember(m: unknown, what: string): MemberState {
  const x = m as Record<string, unknown>
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string')
  if (
    x === null ||
    typeof x !== 'object' ||
    typeof x['memberId'] !== 'string' ||
    typeof x['clientId'] !== 'string' ||
    (x['rack'] !== null && typeof x['rack'] !== 'string') ||
    !strings(x['topics']) ||
    !isUint(x['sessionTimeoutMs']) ||
    !isUint(x['memberEpoch']) ||
    !strings(x['assigned']) ||
    !strings(x['revoking'])
  ) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `${what}: malformed member`)
  }
  return {
    memberId: x['memberId'],
    clientId: x['clientId'],
    rack: x['rack'] as string | null,
    topics: x['topics'],
    sessionTimeoutMs: x['sessionTimeoutMs'] as number,
    memberEpoch: x['memberEpoch'] as number,
    assigned: x['assigned'],
    revoking: x['revoking'],
  }
}

function isUint(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0
}

function bad(what: string): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, `group command: ${what}`)
}
