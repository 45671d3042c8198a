/**
 * The real coordinator over a real (one-replica) offsets group, driven by
 * simulated members that follow the protocol of docs/groups.md: they take
 * partitions when an answer gives them, give them up before confirming, and
 * drop everything when their own session timer runs out. Members join,
 * leave, fall silent and heartbeat concurrently on a virtual clock, from a
 * seed. What must hold at every moment, not just per generation: no
 * partition is held by two members; a member's commit of what it holds is
 * accepted unless it has been expired; and once the churn stops, every
 * partition is held by exactly one live member, balanced.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { SeededRandom } from '../../src/base/index.ts'
import { GroupCoordinator, OffsetsReplica } from '../../src/groups/index.ts'
import { MemoryLog } from '../../src/log/index.ts'
import { MemorySnapshotStore } from '../../src/partition/index.ts'
import type { MemberAssignmentResponse } from '../../src/wire/index.ts'

interface SimMember {
  readonly name: string
  memberId: string | null
  held: Set<string>
  /** memberEpoch of the latest answer acted on (older answers arriving late are ignored). */
  epoch: number
  /** Virtual time the last successful heartbeat was sent. */
  lastOk: number
  silent: boolean
}

const sessionMs = 3000
const counts = new Map([['t', 12], ['u', 5]])

async function withCoordinator(seed: number, body: (c: GroupCoordinator, replica: OffsetsReplica, clock: { now: number }) => Promise<void>): Promise<void> {
  const replica = await OffsetsReplica.open({
    group: '__consumer_offsets/0',
    replicaId: 1,
    log: new MemoryLog({ name: 'offsets' }),
    snapshots: new MemorySnapshotStore(),
    bootstrap: { voters: [1], learners: [] },
    random: new SeededRandom(seed),
    send: () => {},
    // Small snapshots: restore and compaction run many times during the test.
    snapshotEntries: 20,
  })
  const ticker = setInterval(() => replica.tick(), 2)
  replica.campaign()
  while (!replica.isReadyLeader()) await new Promise((r) => setTimeout(r, 2))
  const clock = { now: 0 }
  const c = new GroupCoordinator(
    { brokerId: 1, offsetsReplicaFor: async () => replica, partitionCount: (t) => counts.get(t) ?? 0 },
    { logger: pino({ level: 'silent' }), now: () => clock.now },
  )
  try {
    await body(c, replica, clock)
  } finally {
    clearInterval(ticker)
    await replica.close()
  }
}

function keys(a: MemberAssignmentResponse): Set<string> {
  return new Set(a.assignment.flatMap((tp) => tp.partitions.map((p) => `${tp.topic}/${p}`)))
}

function ownedOf(held: Set<string>): { topic: string; partitions: number[] }[] {
  const by = new Map<string, number[]>()
  for (const k of held) {
    const [topic, p] = k.split('/') as [string, string]
    by.set(topic, [...(by.get(topic) ?? []), Number(p)])
  }
  return [...by].map(([topic, partitions]) => ({ topic, partitions }))
}

function checkExclusive(members: readonly SimMember[]): void {
  const holder = new Map<string, string>()
  for (const m of members) {
    for (const k of m.held) {
      assert.ok(!holder.has(k), `${k} held by ${holder.get(k)} and ${m.name} at the same time`)
      holder.set(k, m.name)
    }
  }
}

for (const seed of [1, 2, 3, 4, 5]) {
  test(`coordinator: members churn concurrently, no partition is ever held twice (seed ${seed})`, async () => {
    await withCoordinator(seed, async (c, replica, clock) => {
      const rnd = new SeededRandom(seed)
      const members: SimMember[] = []
      const expireOwnSessions = (): void => {
        for (const m of members) if (m.memberId !== null && clock.now - m.lastOk > sessionMs) m.held.clear()
      }
      /** The member's side of an answer: give up what is gone, then take what is new. */
      const adopt = (m: SimMember, a: MemberAssignmentResponse, sentAt: number): void => {
        // An answer for a member that has left since (or an older answer than one acted on) is ignored.
        if (m.memberId !== a.memberId || a.memberEpoch < m.epoch) return
        m.lastOk = Math.max(m.lastOk, sentAt)
        m.epoch = a.memberEpoch
        const now = keys(a)
        for (const k of [...m.held]) if (!now.has(k)) m.held.delete(k)
        for (const k of now) m.held.add(k)
        checkExclusive(members)
      }
      const heartbeat = async (m: SimMember): Promise<void> => {
        if (m.memberId === null) return
        const sentAt = clock.now
        const id = m.memberId
        try {
          adopt(m, await c.heartbeat('g', m.memberId, { owned: ownedOf(m.held), memberEpoch: m.epoch }), sentAt)
        } catch (error) {
          assert.equal((error as { code?: string }).code, 'UNKNOWN_MEMBER', String(error))
          if (m.memberId !== id) return
          // Expired: it must already have dropped everything by its own timer.
          assert.equal(m.held.size, 0, `${m.name} was expired while still holding ${[...m.held]}`)
          m.memberId = null
        }
      }
      for (let step = 0; step < 120; step++) {
        const ops: Promise<void>[] = []
        for (let k = 0; k < 3; k++) {
          const roll = rnd.next()
          const live = members.filter((m) => m.memberId !== null && !m.silent)
          if (roll < 0.15 && members.length < 10) {
            const m: SimMember = { name: `m${members.length}`, memberId: null, held: new Set(), epoch: 0, lastOk: clock.now, silent: false }
            members.push(m)
            const sentAt = clock.now
            ops.push(
              c.join('g', { topics: rnd.next() < 0.7 ? ['t', 'u'] : ['t'], sessionTimeoutMs: sessionMs }).then((a) => {
                m.memberId = a.memberId
                adopt(m, a, sentAt)
              }),
            )
          } else if (roll < 0.22 && live.length > 0) {
            const m = live[rnd.int(live.length)]!
            const id = m.memberId!
            m.held.clear()
            m.memberId = null
            ops.push(c.leave('g', id).catch((e: { code?: string }) => assert.equal(e.code, 'UNKNOWN_MEMBER')))
          } else if (roll < 0.27 && live.length > 0) {
            live[rnd.int(live.length)]!.silent = true
          } else if (roll < 0.4 && live.length > 0) {
            const m = live[rnd.int(live.length)]!
            const k0 = [...m.held][0]
            if (k0 !== undefined) {
              const [topic, p] = k0.split('/') as [string, string]
              ops.push(
                c.commit('g', { memberId: m.memberId!, offsets: [{ topic, partition: Number(p), offset: step }] }).then(
                  () => undefined,
                  (e: { code?: string }) => assert.fail(`${m.name} holds ${k0} but its commit was refused: ${e.code}`),
                ),
              )
            }
          } else {
            for (const m of live) ops.push(heartbeat(m))
          }
        }
        await Promise.all(ops)
        clock.now += rnd.int(800)
        expireOwnSessions()
        c.expireSessions([replica])
        // Let expiries proposed just now apply before the next round.
        await new Promise((r) => setTimeout(r, 5))
        checkExclusive(members)
      }
      // The churn stops: the live members heartbeat until everything settles.
      for (const m of members) m.silent = m.silent || m.memberId === null
      clock.now += sessionMs + 1
      expireOwnSessions()
      c.expireSessions([replica])
      await new Promise((r) => setTimeout(r, 20))
      const live = members.filter((m) => !m.silent)
      for (let round = 0; round < 4; round++) {
        for (const m of live) await heartbeat(m)
        clock.now += 100
      }
      const described = await c.describe('g')
      assert.deepEqual(described.members.map((m) => m.memberId).sort(), live.map((m) => m.memberId).sort())
      if (live.length > 0) {
        const all = live.flatMap((m) => [...m.held])
        const wanted = live.some((m) => described.members.find((d) => d.memberId === m.memberId)!.topics.includes('u')) ? 17 : 12
        assert.equal(all.length, wanted, `every partition held once: ${all.length} of ${wanted}`)
        for (const d of described.members) assert.deepEqual(d.revoking, [], 'nothing left being given up')
      }
      checkExclusive(members)
    })
  })
}

test('coordinator: a restored replica (from its snapshot and log) keeps members, generation and offsets', async () => {
  await withCoordinator(9, async (c, replica) => {
    const a = await c.join('g', { topics: ['t'], sessionTimeoutMs: sessionMs })
    await c.commit('g', { memberId: a.memberId, offsets: [{ topic: 't', partition: 3, offset: 77 }] })
    for (let i = 0; i < 30; i++) await c.heartbeat('g', a.memberId, { owned: ownedOf(keys(a)) })
    const before = await c.describe('g')
    const copy = (await import('../../src/groups/index.ts')).OffsetsState.fromSnapshot(replica.state.snapshot())
    assert.deepEqual(copy.group('g'), replica.state.group('g'))
    assert.equal(before.offsets.find((o) => o.partition === 3)?.offset, 77)
  })
})

test('coordinator: a stale heartbeat (sent before the member saw its revocation) releases nothing', async () => {
  await withCoordinator(10, async (c) => {
    const a = await c.join('g', { topics: ['u'], sessionTimeoutMs: sessionMs })
    assert.equal(keys(a).size, 5)
    const b = await c.join('g', { topics: ['u'], sessionTimeoutMs: sessionMs })
    assert.equal(keys(b).size, 0)
    const revoked = await c.heartbeat('g', a.memberId, { owned: ownedOf(keys(a)), memberEpoch: a.memberEpoch })
    assert.ok(revoked.memberEpoch > a.memberEpoch)
    const given = [...keys(a)].filter((k) => !keys(revoked).has(k))
    assert.equal(given.length, 2)
    // A heartbeat A sent before the revocation, arriving late, says it holds none of them.
    await c.heartbeat('g', a.memberId, { owned: ownedOf(keys(revoked)), memberEpoch: a.memberEpoch })
    assert.equal(keys(await c.heartbeat('g', b.memberId, { owned: [], memberEpoch: b.memberEpoch })).size, 0, 'nothing released by the stale heartbeat')
    // The same, with the epoch of the revocation: now they are B's.
    await c.heartbeat('g', a.memberId, { owned: ownedOf(keys(revoked)), memberEpoch: revoked.memberEpoch })
    assert.deepEqual([...keys(await c.heartbeat('g', b.memberId, { owned: [], memberEpoch: b.memberEpoch }))].sort(), given.sort())
  })
})

test('coordinator: a coordinator cut off from its quorum answers no heartbeat from memory', async () => {
  const cut = new Set<number>()
  const replicas = new Map<number, OffsetsReplica>()
  for (const id of [1, 2, 3]) {
    replicas.set(
      id,
      await OffsetsReplica.open({
        group: '__consumer_offsets/0',
        replicaId: id,
        log: new MemoryLog({ name: `offsets-${id}` }),
        snapshots: new MemorySnapshotStore(),
        bootstrap: { voters: [1, 2, 3], learners: [] },
        random: new SeededRandom(id),
        // A network that loses everything to and from a cut-off replica.
        send: (msgs) => {
          for (const m of msgs) {
            if (cut.has(m.from) || cut.has(m.to)) continue
            queueMicrotask(() => replicas.get(m.to)?.step(m))
          }
        },
      }),
    )
  }
  const ticker = setInterval(() => {
    for (const r of replicas.values()) r.tick()
  }, 2)
  try {
    replicas.get(1)!.campaign()
    while (!replicas.get(1)!.isReadyLeader()) await new Promise((r) => setTimeout(r, 2))
    const old = new GroupCoordinator(
      { brokerId: 1, offsetsReplicaFor: async () => replicas.get(1)!, partitionCount: (t) => counts.get(t) ?? 0 },
      { logger: pino({ level: 'silent' }) },
    )
    const a = await old.join('g', { topics: ['u'], sessionTimeoutMs: sessionMs })
    assert.equal(keys(a).size, 5)
    assert.equal(keys(await old.heartbeat('g', a.memberId, { owned: ownedOf(keys(a)), memberEpoch: a.memberEpoch })).size, 5)
    // Broker 1 is cut off. Until it notices, it still thinks it leads; its answers must not say so.
    cut.add(1)
    await assert.rejects(old.heartbeat('g', a.memberId, { owned: ownedOf(keys(a)), memberEpoch: a.memberEpoch }), (e: { code?: string }) => e.code === 'NO_QUORUM' || e.code === 'NOT_LEADER')
    await assert.rejects(old.offsets('g'), (e: { code?: string }) => e.code === 'NO_QUORUM' || e.code === 'NOT_LEADER')
  } finally {
    clearInterval(ticker)
    for (const r of replicas.values()) await r.close()
  }
})
