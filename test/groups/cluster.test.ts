/**
 * Consumer groups on three real brokers, over plain HTTP (the SDK has its
 * own tests): the offsets topic appears on first use, a second member gets
 * partitions only after the first gives them up, commits are fenced by
 * ownership, the group survives kill -9 of its coordinator with the same
 * members, generation and offsets, and a silent member expires.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type Answer, type TestCluster } from '../broker/helpers.ts'

/** A group request through any broker: follows 421 to the coordinator, retries 503 and dead brokers (bounded). */
async function groupCall(c: TestCluster, method: string, path: string, body?: unknown): Promise<Answer> {
  let url = c.brokers.find((b) => b.child !== null)!.url
  const end = Date.now() + 30_000
  let last = ''
  for (let i = 0; Date.now() < end; i++) {
    try {
      const r = await call(url, method, path, body, 5000)
      if (r.status === 421 && r.body?.error?.leader?.url) {
        url = r.body.error.leader.url
        continue
      }
      if (r.status !== 503 && r.status !== 421) return r
      last = `${r.status} ${JSON.stringify(r.body)}`
    } catch (error) {
      last = String(error)
    }
    const live = c.brokers.filter((b) => b.child !== null)
    url = live[i % live.length]!.url
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${method} ${path}: no answer: ${last}`)
}

function partitionsOf(a: { assignment: { topic: string; partitions: number[] }[] }): string[] {
  return a.assignment.flatMap((tp) => tp.partitions.map((p) => `${tp.topic}/${p}`)).sort()
}

function owned(keys: string[]): { topic: string; partitions: number[] }[] {
  return keys.length === 0 ? [] : [{ topic: 't', partitions: keys.map((k) => Number(k.split('/')[1])) }]
}

test('consumer groups: incremental assignment, fencing, coordinator failover, expiry', { timeout: 180_000 }, async () => {
  const c = await startCluster({ brokers: 3 })
  try {
    await waitFor(async () => (await call(c.brokers[0]!.url, 'GET', '/v1/metadata')).body.brokers.filter((b: any) => !b.fenced).length === 3, 30_000, 'three brokers registered')
    assert.equal((await call(c.brokers[0]!.url, 'POST', '/v1/topics', { name: 't', partitions: 4, replicationFactor: 3 })).status, 201)
    assert.equal((await call(c.brokers[0]!.url, 'POST', '/v1/topics', { name: '__mine', partitions: 1, replicationFactor: 1 })).status, 400)

    const a = await groupCall(c, 'POST', '/v1/groups/g/members', { topics: ['t'], clientId: 'a', sessionTimeoutMs: 3000 })
    assert.equal(a.status, 200, JSON.stringify(a.body))
    assert.deepEqual(partitionsOf(a.body), ['t/0', 't/1', 't/2', 't/3'])
    const idA: string = a.body.memberId
    const meta = await call(c.brokers[1]!.url, 'GET', '/v1/metadata')
    const internal = meta.body.topics.find((t: any) => t.name === '__consumer_offsets')
    assert.equal(internal?.internal, true)
    assert.equal(internal.partitions.length, 16)
    assert.equal((await call(c.brokers[1]!.url, 'GET', '/v1/topics/__consumer_offsets/partitions/0/records?offset=0')).status, 403)

    // B joins: A is asked to give up two partitions; B gets them only once A confirms.
    const b = await groupCall(c, 'POST', '/v1/groups/g/members', { topics: ['t'], clientId: 'b', sessionTimeoutMs: 3000 })
    const idB: string = b.body.memberId
    assert.deepEqual(partitionsOf(b.body), [])
    const hbA = await groupCall(c, 'POST', `/v1/groups/g/members/${idA}/heartbeat`, { owned: owned(['t/0', 't/1', 't/2', 't/3']), memberEpoch: a.body.memberEpoch })
    const keptA = partitionsOf(hbA.body)
    assert.equal(keptA.length, 2)
    assert.deepEqual(partitionsOf((await groupCall(c, 'POST', `/v1/groups/g/members/${idB}/heartbeat`, { owned: [] })).body), [])
    // While A still holds them, A may commit them, B may not.
    const given = ['t/0', 't/1', 't/2', 't/3'].filter((k) => !keptA.includes(k))
    const gp = Number(given[0]!.split('/')[1])
    assert.equal((await groupCall(c, 'POST', '/v1/groups/g/offsets', { memberId: idA, offsets: [{ topic: 't', partition: gp, offset: 10 }] })).status, 200)
    assert.equal((await groupCall(c, 'POST', '/v1/groups/g/offsets', { memberId: idB, offsets: [{ topic: 't', partition: gp, offset: 11 }] })).body.error.code, 'FENCED_MEMBER')
    await groupCall(c, 'POST', `/v1/groups/g/members/${idA}/heartbeat`, { owned: owned(keptA), memberEpoch: hbA.body.memberEpoch })
    const hbB = await groupCall(c, 'POST', `/v1/groups/g/members/${idB}/heartbeat`, { owned: [] })
    assert.deepEqual(partitionsOf(hbB.body), given)
    assert.equal((await groupCall(c, 'POST', '/v1/groups/g/offsets', { memberId: idA, offsets: [{ topic: 't', partition: gp, offset: 12 }] })).body.error.code, 'FENCED_MEMBER')
    assert.equal((await groupCall(c, 'POST', '/v1/groups/g/offsets', { memberId: idB, offsets: [{ topic: 't', partition: gp, offset: 12 }] })).status, 200)
    const before = (await groupCall(c, 'GET', '/v1/groups/g')).body
    assert.equal(before.members.length, 2)

    // kill -9 the coordinator: the group carries on elsewhere with the same members, generation and offsets.
    await c.kill(before.coordinator)
    const after = await groupCall(c, 'POST', `/v1/groups/g/members/${idB}/heartbeat`, { owned: owned(given) })
    assert.equal(after.status, 200, JSON.stringify(after.body))
    assert.deepEqual(partitionsOf(after.body), given)
    assert.equal(after.body.generation, before.generation)
    const described = (await groupCall(c, 'GET', '/v1/groups/g')).body
    assert.notEqual(described.coordinator, before.coordinator)
    assert.deepEqual(described.offsets.find((o: any) => o.partition === gp), { topic: 't', partition: gp, offset: 12 })
    await groupCall(c, 'POST', `/v1/groups/g/members/${idA}/heartbeat`, { owned: owned(keptA) })

    // B falls silent: after its session it is expired and A gets everything (nothing to give up first).
    await waitFor(
      async () => {
        const r = await groupCall(c, 'POST', `/v1/groups/g/members/${idA}/heartbeat`, { owned: owned(keptA) })
        return partitionsOf(r.body).length === 4
      },
      20_000,
      'B to expire and A to own all four partitions',
    )
    const gone = await groupCall(c, 'POST', `/v1/groups/g/members/${idB}/heartbeat`, { owned: owned(given) })
    assert.equal(gone.body.error.code, 'UNKNOWN_MEMBER')
    assert.equal((await groupCall(c, 'DELETE', `/v1/groups/g/members/${idA}`)).status, 200)
    const empty = (await groupCall(c, 'GET', '/v1/groups/g')).body
    assert.deepEqual(empty.members, [])
    // An empty group takes commits without a member id (tools).
    assert.equal((await groupCall(c, 'POST', '/v1/groups/g/offsets', { offsets: [{ topic: 't', partition: 0, offset: 3 }], allowBackwards: true })).status, 200)
    await c.start(before.coordinator)
  } finally {
    await c.stopAll()
  }
})
