/**
 * The offsets partition's state machine: the fencing rules applied at commit
 * time, the generation check on membership changes, strict decoding of log
 * entries, and snapshots that restore the same state.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeGroupCommand, encodeGroupCommand, type GroupCommand, type MemberState, OffsetsState } from '../../src/groups/index.ts'

function member(memberId: string, assigned: string[], revoking: string[] = []): MemberState {
  return { memberId, clientId: 'c', rack: null, topics: ['t'], sessionTimeoutMs: 10_000, memberEpoch: 0, assigned, revoking }
}

function apply(s: OffsetsState, cmd: GroupCommand): string {
  const r = s.apply(encodeGroupCommand(cmd))
  return r.ok ? 'ok' : r.error.code
}

const commit = (memberId: string | null, partition: number, offset: number, allowBackwards = false): GroupCommand => ({
  type: 'commit',
  group: 'g',
  memberId,
  offsets: [{ topic: 't', partition, offset }],
  allowBackwards,
})

test('offsets state: membership changes need the generation they were computed from', () => {
  const s = new OffsetsState()
  assert.equal(apply(s, { type: 'members', group: 'g', expectGeneration: 0, members: [member('a', ['t/0'])] }), 'ok')
  assert.equal(s.group('g').generation, 1)
  // Computed from generation 0 again: refused, nothing changes.
  assert.equal(apply(s, { type: 'members', group: 'g', expectGeneration: 0, members: [] }), 'PROPOSAL_DROPPED')
  assert.equal(s.group('g').members.size, 1)
  // A partition given to two members is never applied.
  assert.equal(apply(s, { type: 'members', group: 'g', expectGeneration: 1, members: [member('a', ['t/0']), member('b', [], ['t/0'])] }), 'INTERNAL')
  assert.equal(s.group('g').generation, 1)
})

test('offsets state: commits are fenced by ownership and never go backwards unless asked', () => {
  const s = new OffsetsState()
  assert.equal(apply(s, commit(null, 0, 5)), 'ok', 'an empty group takes commits without a member')
  apply(s, { type: 'members', group: 'g', expectGeneration: 0, members: [member('a', ['t/0'], ['t/1']), member('b', ['t/2'])] })
  assert.equal(apply(s, commit(null, 0, 6)), 'FENCED_MEMBER', 'a group with members takes commits only from them')
  assert.equal(apply(s, commit('zombie', 0, 6)), 'UNKNOWN_MEMBER')
  assert.equal(apply(s, commit('b', 0, 6)), 'FENCED_MEMBER', 'b does not own t/0')
  assert.equal(apply(s, commit('a', 1, 9)), 'ok', 'a partition being given up is still its owner\'s to commit')
  assert.equal(apply(s, commit('a', 0, 7)), 'ok')
  assert.equal(apply(s, commit('a', 0, 3)), 'ok')
  assert.equal(s.group('g').offsets.get('t/0'), 7, 'a lower offset is ignored')
  assert.equal(apply(s, commit('a', 0, 3, true)), 'ok')
  assert.equal(s.group('g').offsets.get('t/0'), 3, 'allowBackwards (after a seek) moves it back')
})

test('offsets state: a snapshot restores the same state', () => {
  const s = new OffsetsState()
  apply(s, { type: 'members', group: 'g', expectGeneration: 0, members: [member('a', ['t/0', 't/1'], ['t/2'])] })
  apply(s, commit('a', 1, 42))
  apply(s, { type: 'members', group: 'other', expectGeneration: 0, members: [] })
  const r = OffsetsState.fromSnapshot(s.snapshot())
  assert.deepEqual(r.groupNames().sort(), ['g', 'other'])
  assert.deepEqual(r.group('g'), s.group('g'))
  assert.deepEqual(r.group('other'), s.group('other'))
  assert.throws(() => OffsetsState.fromSnapshot(new Uint8Array([0x81, 0xa1, 0x76, 0x02])), { code: 'STORAGE_CORRUPT' })
})

test('offsets state: malformed log entries are refused and change nothing', () => {
  const s = new OffsetsState()
  const bad = [
    new Uint8Array([0xc1]),
    encodeGroupCommand({ type: 'nope', group: 'g' } as unknown as GroupCommand),
    encodeGroupCommand({ type: 'commit', group: 'g', memberId: 3, offsets: [], allowBackwards: false } as unknown as GroupCommand),
    encodeGroupCommand({ type: 'commit', group: 'g', memberId: null, offsets: [{ topic: 't', partition: -1, offset: 0 }], allowBackwards: false }),
    encodeGroupCommand({ type: 'members', group: 'g', expectGeneration: 0, members: [{ memberId: 'a' }] } as unknown as GroupCommand),
    encodeGroupCommand({ type: 'members', group: '', expectGeneration: 0, members: [] }),
  ]
  for (const data of bad) {
    assert.throws(() => decodeGroupCommand(data), { code: 'INVALID_REQUEST' })
    const r = s.apply(data)
    assert.equal(r.ok, false)
  }
  assert.deepEqual(s.groupNames(), [])
})
