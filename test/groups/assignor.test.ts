/**
 * The assignor, run as the coordinator runs it: members join and leave,
 * topics grow, members confirm (or sit on) revocations. After every step no
 * partition is held by two members, nothing moves without first being
 * given up, and once members confirm, the assignment settles balanced and
 * stays put.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { assignStep, type AssignorMember, parseTpKey } from '../../src/groups/index.ts'

type Members = AssignorMember[]

function holders(members: Members): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of members) {
    for (const k of [...m.assigned, ...m.revoking]) {
      assert.ok(!out.has(k), `${k} held by ${out.get(k)} and ${m.memberId}`)
      out.set(k, m.memberId)
    }
  }
  return out
}

/** One coordinator step, checked against the state before it. */
function step(members: Members, counts: Map<string, number>): Members {
  const before = holders(members)
  const next = assignStep(members, (t) => counts.get(t) ?? 0).map((r) => ({ ...members.find((m) => m.memberId === r.memberId)!, ...r }))
  holders(next)
  for (const m of next) {
    for (const k of m.assigned) {
      const { topic, partition } = parseTpKey(k)
      assert.ok(m.topics.includes(topic) && partition < (counts.get(topic) ?? 0), `${m.memberId} assigned ineligible ${k}`)
      const was = before.get(k)
      assert.ok(was === undefined || was === m.memberId, `${k} moved from ${was} to ${m.memberId} without being given up`)
    }
  }
  return next
}

/** Every member gives up what it was asked to. */
function confirm(members: Members): Members {
  return members.map((m) => ({ ...m, revoking: [] }))
}

test('assignor: exclusive ownership, revoke before reassign, settles balanced and stays put', () => {
  const topicNames = ['a', 'b', 'c']
  const event = fc.oneof(
    fc.record({ kind: fc.constant('join' as const), topics: fc.subarray(topicNames, { minLength: 1 }) }),
    fc.record({ kind: fc.constant('leave' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('grow' as const), topic: fc.constantFrom(...topicNames), by: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant('confirm' as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant('resubscribe' as const), pick: fc.nat(), topics: fc.subarray(topicNames, { minLength: 1 }) }),
  )
  fc.assert(
    fc.property(fc.array(event, { minLength: 1, maxLength: 40 }), fc.boolean(), (events, uniform) => {
      const counts = new Map([['a', 3], ['b', 1], ['c', 0]])
      let members: Members = []
      let nextId = 0
      for (const e of events) {
        if (e.kind === 'join') members.push({ memberId: `m${String(nextId++).padStart(3, '0')}`, topics: uniform ? topicNames : e.topics, assigned: [], revoking: [] })
        else if (e.kind === 'leave' && members.length > 0) members.splice(e.pick % members.length, 1)
        else if (e.kind === 'grow') counts.set(e.topic, counts.get(e.topic)! + e.by)
        else if (e.kind === 'confirm' && members.length > 0) {
          const i = e.pick % members.length
          members[i] = { ...members[i]!, revoking: [] }
        } else if (e.kind === 'resubscribe' && members.length > 0 && !uniform) {
          const i = e.pick % members.length
          members[i] = { ...members[i]!, topics: e.topics }
        }
        members = step(members, counts)
      }
      // Members confirm every revocation: within a few rounds everything eligible is owned, nothing is pending.
      for (let round = 0; round < 3; round++) members = step(confirm(members), counts)
      const settled = step(confirm(members), counts)
      assert.deepEqual(settled, confirm(members), 'a settled assignment must not change again')
      const eligible = new Set<string>()
      for (const m of members) for (const t of m.topics) for (let p = 0; p < counts.get(t)!; p++) eligible.add(`${t}/${p}`)
      const owned = members.flatMap((m) => m.assigned)
      assert.equal(owned.length, eligible.size, 'every eligible partition is owned once')
      if (uniform && members.length > 0) {
        const sizes = members.map((m) => m.assigned.length)
        assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `unbalanced: ${sizes}`)
      }
    }),
    { seed: 20261126, numRuns: 300 },
  )
})

test('assignor: a new member takes partitions only after their owner gives them up', () => {
  const counts = new Map([['t', 4]])
  let members: Members = [{ memberId: 'a', topics: ['t'], assigned: [], revoking: [] }]
  members = step(members, counts)
  assert.deepEqual(members[0]!.assigned, ['t/0', 't/1', 't/2', 't/3'])
  members.push({ memberId: 'b', topics: ['t'], assigned: [], revoking: [] })
  members = step(members, counts)
  // a keeps two and is giving up two; b gets nothing yet.
  assert.equal(members[0]!.assigned.length, 2)
  assert.equal(members[0]!.revoking.length, 2)
  assert.deepEqual(members[1]!.assigned, [])
  // Heartbeats without a confirmation change nothing.
  assert.deepEqual(step(members, counts), members)
  members = step(confirm(members), counts)
  assert.equal(members[1]!.assigned.length, 2)
  assert.deepEqual([...members[0]!.assigned, ...members[1]!.assigned].sort(), ['t/0', 't/1', 't/2', 't/3'])
})
