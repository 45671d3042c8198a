/**
 * The group member's side of docs/groups.md against a scripted coordinator
 * (no brokers): what it sends and when, for the cases a real cluster cannot
 * stage on demand.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { GroupMember, type GroupHost } from '../../consumer/group.ts'
import type { Coordinator } from '../../consumer/coordinator.ts'
import type { HttpRequest } from '../../client/index.ts'
import type { MemberAssignmentResponse } from '../../src/wire/index.ts'

test('close() while the join is under way: a join the coordinator took is left, not abandoned as a ghost member', async () => {
  const sent: string[] = []
  let answerJoin!: (a: MemberAssignmentResponse) => void
  const coordinator = {
    request: async (req: Omit<HttpRequest, 'url'>): Promise<unknown> => {
      sent.push(`${req.method} ${req.path}`)
      if (req.method === 'POST' && req.path.endsWith('/members')) {
        // The coordinator has taken the join; its answer is still on the way.
        return new Promise((resolve, reject) => {
          answerJoin = resolve
          req.signal?.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { code: 'CLOSED' })))
        })
      }
      return {}
    },
  } as unknown as Coordinator
  const host: GroupHost = { held: () => [], assign: () => {}, dropAll: () => {}, warn: () => {} }
  const member = new GroupMember({ coordinator, groupId: 'g', clientId: 'c', rack: null, sessionTimeoutMs: 10_000, requestTimeoutMs: 5_000 }, host)
  member.subscribe(['t'])
  while (answerJoin === undefined) await new Promise((r) => setTimeout(r, 1))
  const closing = member.close()
  await new Promise((r) => setTimeout(r, 20))
  answerJoin({ memberId: 'm-1', generation: 1, memberEpoch: 1, assignment: [{ topic: 't', partitions: [0] }], heartbeatIntervalMs: 3000, sessionTimeoutMs: 10_000 })
  await closing
  assert.deepEqual(sent, ['POST /v1/groups/g/members', 'DELETE /v1/groups/g/members/m-1'])
})
