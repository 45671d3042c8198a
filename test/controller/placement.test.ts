/**
 * Placement properties (fast-check, fixed seeds): even replica and leader
 * counts, rack awareness, no broker twice in a replica set, determinism, and
 * rebalances that move no more replicas than the lower bound.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { BrokerId, ControllerState } from '../../src/controller/index.ts'
import { assignReplicas, planCreateTopic, planLeaderBalance, planRebalance } from '../../src/controller/index.ts'
import { addBroker, cluster, counts, leaderCounts, mustApply, range, spread, syncConfig } from './helpers.ts'

function createTopic(s: ControllerState, name: string, partitions: number, replicationFactor: number): void {
  mustApply(s, planCreateTopic(s, { name, partitions, replicationFactor, config: syncConfig }))
}

/** Applies a rebalance plan; returns its move count. Every command must apply. */
function rebalance(s: ControllerState, brokers?: BrokerId[]): { moves: number; reorders: number } {
  const plan = planRebalance(s, brokers === undefined ? {} : { brokers })
  for (const cmd of plan.commands) mustApply(s, cmd)
  return { moves: plan.moves, reorders: plan.reorders }
}

/**
 * Fewest replica moves that can leave replicas only on `targets`, evenly:
 * everything outside must move, and each target above its share must shed
 * the excess, where the shares (floor or ceil of the mean) go ceil-first to
 * the most loaded brokers.
 */
function moveLowerBound(s: ControllerState, targets: readonly BrokerId[]): number {
  const all = s.replicaCounts()
  let total = 0
  let outside = 0
  for (const [b, c] of all) {
    total += c
    if (!targets.includes(b)) outside += c
  }
  const inside = targets.map((b) => all.get(b) ?? 0).sort((a, b) => b - a)
  const floor = Math.floor(total / targets.length)
  const ceilCount = total % targets.length
  let excess = 0
  inside.forEach((c, i) => (excess += Math.max(0, c - (i < ceilCount ? floor + 1 : floor))))
  return outside + excess
}

/** Replicas (or preferred leaders) of one topic per broker. */
function topicCounts(s: ControllerState, topic: string, brokers: readonly BrokerId[], leadersOnly: boolean): number[] {
  const m = new Map<BrokerId, number>()
  for (const p of s.topic(topic)!.partitions) {
    for (const b of leadersOnly ? p.replicas.slice(0, 1) : p.replicas) m.set(b, (m.get(b) ?? 0) + 1)
  }
  return brokers.map((b) => m.get(b) ?? 0)
}

function assertWellFormed(s: ControllerState): void {
  for (const t of s.topics()) {
    for (const p of t.partitions) assert.equal(new Set(p.replicas).size, p.replicas.length, `${t.name}/${p.partition}: ${p.replicas}`)
  }
}

test('a new topic on a fresh cluster: replica and leader counts differ by at most one, no duplicates, deterministic', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 80 }), fc.integer({ min: 1, max: 5 }), (n, partitions, rf) => {
      fc.pre(rf <= n)
      const s = cluster(n)
      const cmd = planCreateTopic(s, { name: 't', partitions, replicationFactor: rf, config: syncConfig })
      assert.deepEqual(planCreateTopic(cluster(n), { name: 't', partitions, replicationFactor: rf, config: syncConfig }), cmd)
      mustApply(s, cmd)
      assertWellFormed(s)
      const brokers = range(1, n)
      assert.ok(spread(counts(s, brokers)) <= 1, `replicas ${counts(s, brokers)}`)
      assert.ok(spread(leaderCounts(s, brokers)) <= 1, `leaders ${leaderCounts(s, brokers)}`)
    }),
    { seed: 11, numRuns: 400 },
  )
})

test('many topics in a row: each topic even (replicas and leaders), the cluster within 2', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 3, max: 9 }),
      fc.array(fc.record({ partitions: fc.integer({ min: 1, max: 20 }), rf: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 8 }),
      (n, topics) => {
        const s = cluster(n)
        topics.forEach((t, i) => createTopic(s, `t${i}`, t.partitions, t.rf))
        assertWellFormed(s)
        const brokers = range(1, n)
        // Each topic's evenness comes first; the cluster's is the tie-break, and the "distinct brokers in a
        // partition" rule can cost one more (measured: at most 2).
        assert.ok(spread(counts(s, brokers)) <= 2, `replicas ${counts(s, brokers)}`)
        for (const t of s.topics()) {
          assert.ok(spread(topicCounts(s, t.name, brokers, false)) <= 1, `${t.name} replicas ${topicCounts(s, t.name, brokers, false)}`)
          assert.ok(spread(topicCounts(s, t.name, brokers, true)) <= 1, `${t.name} leaders ${topicCounts(s, t.name, brokers, true)}`)
        }
      },
    ),
    { seed: 12, numRuns: 200 },
  )
})

test('racks: no two replicas of a partition on one rack while racks suffice; otherwise racks used as evenly as possible', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 12 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 5 }),
      (n, rackCount, partitions, rf) => {
        fc.pre(rf <= n)
        const rackOf = (id: BrokerId): string => `rack-${id % rackCount}`
        const s = cluster(n, rackOf)
        createTopic(s, 't', partitions, rf)
        assertWellFormed(s)
        const racksPresent = new Set(range(1, n).map(rackOf)).size
        for (const p of s.topic('t')!.partitions) {
          const perRack = new Map<string, number>()
          for (const b of p.replicas) perRack.set(rackOf(b), (perRack.get(rackOf(b)) ?? 0) + 1)
          assert.ok(Math.max(...perRack.values()) <= Math.ceil(rf / racksPresent), `partition ${p.partition} ${p.replicas} racks ${rackCount}`)
        }
      },
    ),
    { seed: 13, numRuns: 400 },
  )
})

test('racks of equal size: still even replica counts', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 4 }), (racks, perRack, partitions, rf) => {
      const n = racks * perRack
      fc.pre(rf <= racks)
      const s = cluster(n, (id) => `r${id % racks}`)
      createTopic(s, 't', partitions, rf)
      const brokers = range(1, n)
      assert.ok(spread(counts(s, brokers)) <= 1, `replicas ${counts(s, brokers)}`)
      assert.ok(spread(leaderCounts(s, brokers)) <= 1, `leaders ${leaderCounts(s, brokers)}`)
    }),
    { seed: 14, numRuns: 300 },
  )
})

test('brokers join: the rebalance moves exactly the lower bound and leaves counts even', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.record({ partitions: fc.integer({ min: 1, max: 24 }), rf: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 4 }),
      (n, joined, topics) => {
        const s = cluster(n)
        topics.forEach((t, i) => {
          if (t.rf <= n) createTopic(s, `t${i}`, t.partitions, t.rf)
        })
        for (let id = n + 1; id <= n + joined; id++) addBroker(s, id)
        const brokers = range(1, n + joined)
        const bound = moveLowerBound(s, brokers)
        const { moves } = rebalance(s, brokers)
        assert.equal(moves, bound)
        assertWellFormed(s)
        assert.ok(spread(counts(s, brokers)) <= 1, `replicas ${counts(s, brokers)}`)
        // With RF 1 a leader is where its only replica is; replica evenness wins, so leaders are checked for RF >= 2.
        if (s.topics().every((t) => t.replicationFactor >= 2)) {
          assert.ok(spread(leaderCounts(s, brokers)) <= 1, `leaders ${leaderCounts(s, brokers)}`)
        }
        // Balanced is a fixed point: planning again proposes nothing.
        assert.equal(planRebalance(s).commands.length, 0)
      },
    ),
    { seed: 15, numRuns: 300 },
  )
})

test('brokers leave or drain: their replicas move off, with (nearly always) the fewest moves, and counts stay even', () => {
  let exact = 0
  let total = 0
  fc.assert(
    fc.property(
      fc.integer({ min: 3, max: 10 }),
      fc.integer({ min: 1, max: 3 }),
      fc.boolean(),
      fc.array(fc.record({ partitions: fc.integer({ min: 1, max: 24 }), rf: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 4 }),
      (n, leaving, decommission, topics) => {
        const s = cluster(n)
        topics.forEach((t, i) => createTopic(s, `t${i}`, t.partitions, t.rf))
        const gone = range(n - leaving + 1, n)
        const stay = range(1, n - leaving)
        fc.pre(stay.length >= 3)
        const bound = moveLowerBound(s, stay)
        const outside = gone.reduce((n, id) => n + s.hostedBy(id).length, 0)
        let moves: number
        if (decommission) {
          for (const id of gone) mustApply(s, { type: 'DecommissionBroker', id })
          moves = rebalance(s).moves
        } else {
          for (const id of gone) mustApply(s, { type: 'FenceBroker', id })
          moves = rebalance(s, stay).moves
        }
        // A forced move cannot go to a broker that already has that partition, so the bound is not always
        // reachable (e.g. the only under-loaded broker already holds the evicted replica's partition); each
        // forced move costs at most one extra correction.
        assert.ok(moves >= bound && moves <= bound + outside, `moves ${moves}, bound ${bound}, forced ${outside}`)
        if (moves === bound) exact++
        total++
        for (const id of gone) assert.deepEqual(s.hostedBy(id), [])
        assert.ok(spread(counts(s, stay)) <= 1, `replicas ${counts(s, stay)}`)
        if (s.topics().every((t) => t.replicationFactor >= 2)) {
          assert.ok(spread(leaderCounts(s, stay)) <= 1, `leaders ${leaderCounts(s, stay)}`)
        }
        if (decommission) for (const id of gone) mustApply(s, { type: 'UnregisterBroker', id })
      },
    ),
    { seed: 16, numRuns: 300 },
  )
  // Measured: 249 of 300 with this seed.
  assert.ok(exact >= total * 0.8, `lower bound met in ${exact} of ${total}`)
})

test('racks during rebalance: never two replicas of a partition on one rack; even within each rack', () => {
  fc.assert(
    fc.property(fc.integer({ min: 3, max: 4 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 3 }), (racks, partitions, rf) => {
      const rackOf = (id: BrokerId): string => `r${id % racks}`
      const s = cluster(racks * 2, rackOf)
      createTopic(s, 't', partitions, rf)
      for (let id = racks * 2 + 1; id <= racks * 3; id++) addBroker(s, id, rackOf(id))
      rebalance(s)
      mustApply(s, { type: 'DecommissionBroker', id: 1 })
      rebalance(s)
      for (const p of s.topic('t')!.partitions) {
        assert.equal(new Set(p.replicas.map(rackOf)).size, p.replicas.length, `${p.replicas}`)
      }
      // Racks of different sizes cannot be even across racks; within a rack they are.
      for (let r = 0; r < racks; r++) {
        const inRack = range(2, racks * 3).filter((id) => rackOf(id) === `r${r}`)
        assert.ok(spread(counts(s, inRack)) <= 1, `rack r${r}: ${counts(s, inRack)}`)
      }
    }),
    { seed: 17, numRuns: 200 },
  )
})

test('a briefly fenced broker kept in the target set keeps its replicas and receives none', () => {
  const s = cluster(4)
  createTopic(s, 't', 12, 3)
  const before = s.hostedBy(4).length
  mustApply(s, { type: 'FenceBroker', id: 4 })
  addBroker(s, 5)
  const plan = planRebalance(s, { brokers: [1, 2, 3, 4, 5] })
  for (const cmd of plan.commands) {
    const old = s.topic(cmd.topic)!.partitions[cmd.partition]!.replicas
    assert.ok(!cmd.replicas.includes(4) || old.includes(4), 'a fenced broker receives nothing')
    mustApply(s, cmd)
  }
  assert.ok(s.hostedBy(4).length <= before)
  assert.ok(s.hostedBy(5).length >= 7)
})

test('a stale plan is refused by the epoch guard, not applied over a newer change', () => {
  const s = cluster(3)
  createTopic(s, 't', 3, 2)
  addBroker(s, 4)
  const plan = planRebalance(s)
  assert.ok(plan.commands.length > 0)
  const first = plan.commands[0]!
  mustApply(s, { type: 'ReassignPartition', topic: first.topic, partition: first.partition, replicas: [...s.topic(first.topic)!.partitions[first.partition]!.replicas].reverse() })
  const r = s.apply(first)
  assert.ok(!r.ok && r.error.code === 'INVALID_REQUEST' && r.error.details['reason'] === 'stale')
})

test('assignReplicas refuses a replication factor above the brokers it is given', () => {
  assert.throws(() => assignReplicas({ brokers: [{ id: 1, rack: null }], partitions: 1, replicationFactor: 2 }), /replication factor 2/)
})

test('planLeaderBalance asks for a transfer where the preferred replica is active and not leading', () => {
  const s = cluster(3)
  createTopic(s, 't', 6, 3)
  const parts = s.topic('t')!.partitions
  // Broker 1 was away; its partitions failed over to their second replica.
  const leaderOf = (_t: unknown, p: number): BrokerId | null => {
    const r = parts[p]!.replicas
    if (p === 5) return null
    return r[0] === 1 ? r[1]! : r[0]!
  }
  const transfers = planLeaderBalance(s, leaderOf)
  const expected = parts.filter((p) => p.replicas[0] === 1 && p.partition !== 5).map((p) => ({ topic: 't', topicId: 1, partition: p.partition, from: p.replicas[1]!, to: 1 }))
  assert.ok(expected.length > 0)
  assert.deepEqual(transfers, expected)
  assert.equal(planLeaderBalance(s, leaderOf, { transfersMax: 1 }).length, 1)
  // While broker 1 is fenced it is not asked to lead.
  mustApply(s, { type: 'FenceBroker', id: 1 })
  assert.deepEqual(planLeaderBalance(s, leaderOf), [])
})

test('placement at scale: 1,000 partitions x 3 on 3 brokers, then a 4th joins (fast enough for the leader)', () => {
  const s = cluster(3)
  const t0 = performance.now()
  createTopic(s, 'big', 1000, 3)
  addBroker(s, 4)
  const { moves } = rebalance(s)
  const ms = performance.now() - t0
  assert.equal(moves, 750)
  assert.deepEqual(counts(s, [1, 2, 3, 4]), [750, 750, 750, 750])
  assert.deepEqual(leaderCounts(s, [1, 2, 3, 4]), [250, 250, 250, 250])
  assert.ok(ms < 5000, `${ms} ms`)
})
