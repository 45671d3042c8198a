/**
 * The metadata state machine: apply sequences, every refusal and its code,
 * the leader-only liveness checks, views, and snapshots.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { ErrorCode } from '../../src/base/index.ts'
import { isRillError } from '../../src/base/index.ts'
import type { Command } from '../../src/controller/index.ts'
import { ControllerState, encodeCommand, planCreateTopic, validate } from '../../src/controller/index.ts'
import { addBroker, cluster, commandArb, mustApply, syncConfig } from './helpers.ts'

const topic = (name: string, assignment: number[][], config = syncConfig): Command => ({
  type: 'CreateTopic',
  name,
  partitions: assignment.length,
  replicationFactor: assignment[0]!.length,
  config,
  assignment,
})

/** Apply refuses `cmd` with `code` and changes nothing (snapshot bytes and version equal). */
function refused(state: ControllerState, cmd: Command, code: ErrorCode, reason?: string): void {
  const before = state.snapshot()
  const result = state.apply(cmd)
  assert.equal(result.ok, false, `expected ${code} for ${JSON.stringify(cmd)}`)
  if (result.ok) return
  assert.equal(result.error.code, code, result.error.message)
  if (reason !== undefined) assert.equal(result.error.details['reason'], reason)
  assert.deepEqual(state.snapshot(), before)
}

/** The leader's validate throws `code`. */
function invalidFor(state: ControllerState, cmd: Command, code: ErrorCode): void {
  assert.throws(() => validate(cmd, state), (e: unknown) => isRillError(e, code))
}

test('brokers: register fenced, unfence, fence, decommission, recommission, unregister', () => {
  const s = new ControllerState()
  mustApply(s, { type: 'RegisterBroker', id: 1, httpUrl: 'http://a:1', peerUrl: 'a:2', rack: 'r1' })
  assert.deepEqual(s.broker(1), { id: 1, httpUrl: 'http://a:1', peerUrl: 'a:2', rack: 'r1', fenced: true, decommissioning: false })
  assert.equal(s.version, 1)
  assert.deepEqual(s.activeBrokers(), [])
  mustApply(s, { type: 'UnfenceBroker', id: 1 })
  assert.equal(s.activeBrokers().length, 1)
  // A repeat changes nothing and does not bump the version.
  mustApply(s, { type: 'UnfenceBroker', id: 1 })
  assert.equal(s.version, 2)
  // Re-registration (a restart) fences again and may move the broker.
  mustApply(s, { type: 'RegisterBroker', id: 1, httpUrl: 'http://b:1', peerUrl: 'b:2' })
  assert.deepEqual(s.broker(1), { id: 1, httpUrl: 'http://b:1', peerUrl: 'b:2', rack: null, fenced: true, decommissioning: false })
  mustApply(s, { type: 'UnfenceBroker', id: 1 })
  mustApply(s, { type: 'DecommissionBroker', id: 1 })
  assert.equal(s.broker(1)!.decommissioning, true)
  assert.deepEqual(s.activeBrokers(), [])
  mustApply(s, { type: 'RegisterBroker', id: 1, httpUrl: 'http://b:1', peerUrl: 'b:2' })
  assert.equal(s.broker(1)!.decommissioning, true, 'a restart does not cancel a decommission')
  mustApply(s, { type: 'RecommissionBroker', id: 1 })
  assert.equal(s.broker(1)!.decommissioning, false)
  mustApply(s, { type: 'UnfenceBroker', id: 1 })
  mustApply(s, { type: 'FenceBroker', id: 1 })
  assert.equal(s.broker(1)!.fenced, true)
  mustApply(s, { type: 'UnregisterBroker', id: 1 })
  assert.equal(s.broker(1), undefined)
  assert.equal(s.version, 10)
})

test('topics: create, add partitions, change config, reassign, delete; versions and epochs move', () => {
  const s = cluster(3)
  const v0 = s.version
  mustApply(s, topic('orders', [[1, 2], [2, 3]]))
  const t = s.topic('orders')!
  assert.equal(t.id, 1)
  assert.equal(t.replicationFactor, 2)
  assert.deepEqual(t.partitions.map((p) => p.replicas), [[1, 2], [2, 3]])
  assert.equal(s.version, v0 + 1)
  mustApply(s, { type: 'CreatePartitions', name: 'orders', partitions: 3, assignment: [[3, 1]] })
  assert.equal(s.topic('orders')!.partitions.length, 3)
  assert.equal(s.topic('orders')!.epoch, 1)
  mustApply(s, { type: 'UpdateTopicConfig', name: 'orders', config: { persistence: 'sync', retentionMs: 60_000 } })
  assert.deepEqual(s.topic('orders')!.config, { persistence: 'sync', retentionMs: 60_000 })
  assert.equal(s.topic('orders')!.epoch, 2)
  mustApply(s, { type: 'ReassignPartition', topic: 'orders', partition: 0, replicas: [3, 1], topicId: 1, epoch: 0 })
  assert.deepEqual(s.topic('orders')!.partitions[0], { partition: 0, replicas: [3, 1], epoch: 1 })
  // The same list again: no change, no epoch bump.
  const v = s.version
  mustApply(s, { type: 'ReassignPartition', topic: 'orders', partition: 0, replicas: [3, 1] })
  assert.equal(s.version, v)
  assert.deepEqual(s.hostedBy(2), [
    { topic: 'orders', topicId: 1, partition: 1, replicas: [2, 3], epoch: 0, config: { persistence: 'sync', retentionMs: 60_000 } },
  ])
  assert.equal(s.partitionCount, 3)
  mustApply(s, { type: 'DeleteTopic', name: 'orders' })
  assert.equal(s.topic('orders'), undefined)
  assert.equal(s.partitionCount, 0)
  assert.deepEqual(s.hostedBy(2), [])
  // A topic created again under the same name is a new incarnation.
  mustApply(s, topic('orders', [[1]]))
  assert.equal(s.topic('orders')!.id, 2)
})

test('views are immutable snapshots: a later change does not alter an earlier view', () => {
  const s = cluster(2)
  mustApply(s, topic('a', [[1, 2]]))
  const before = s.topic('a')!
  const hosted = s.hostedBy(1)
  mustApply(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [2, 1] })
  assert.deepEqual(before.partitions[0]!.replicas, [1, 2])
  assert.deepEqual(hosted[0]!.replicas, [1, 2])
  assert.throws(() => (before.partitions[0]!.replicas as number[]).push(3))
})

test('metadataView has the API.md shape, with leaders and high watermarks from the lookup', () => {
  const s = cluster(2, (id) => (id === 1 ? 'r1' : undefined))
  mustApply(s, topic('a', [[1, 2], [2, 1]]))
  const view = s.metadataView({
    controllerLeader: 2,
    partitionState: (t, p) => (t.name === 'a' && p === 0 ? { leader: 1, highWatermark: 42 } : undefined),
  })
  assert.deepEqual(view, {
    version: s.version,
    brokers: [
      { id: 1, url: 'http://127.0.0.1:9001', rack: 'r1', fenced: false, decommissioning: false },
      { id: 2, url: 'http://127.0.0.1:9002', rack: null, fenced: false, decommissioning: false },
    ],
    controller: { leader: 2 },
    topics: [
      {
        name: 'a',
        id: 1,
        replicationFactor: 2,
        config: { persistence: 'sync' },
        partitions: [
          { partition: 0, leader: 1, replicas: [1, 2], highWatermark: 42 },
          { partition: 1, leader: null, replicas: [2, 1], highWatermark: null },
        ],
      },
    ],
  })
})

test('refusals: every code, and a refused command changes nothing', () => {
  const s = cluster(3)
  mustApply(s, topic('a', [[1, 2]]))
  mustApply(s, { type: 'RegisterBroker', id: 9, httpUrl: 'http://z:1', peerUrl: 'z:2' }) // fenced
  // TOPIC_EXISTS
  refused(s, topic('a', [[1]]), 'TOPIC_EXISTS')
  // UNKNOWN_TOPIC
  refused(s, { type: 'DeleteTopic', name: 'nope' }, 'UNKNOWN_TOPIC')
  refused(s, { type: 'UpdateTopicConfig', name: 'nope', config: syncConfig }, 'UNKNOWN_TOPIC')
  refused(s, { type: 'CreatePartitions', name: 'nope', partitions: 2, assignment: [[1, 2]] }, 'UNKNOWN_TOPIC')
  refused(s, { type: 'ReassignPartition', topic: 'nope', partition: 0, replicas: [1, 2] }, 'UNKNOWN_TOPIC')
  refused(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 3], topicId: 99 }, 'UNKNOWN_TOPIC', 'stale')
  // UNKNOWN_PARTITION
  refused(s, { type: 'ReassignPartition', topic: 'a', partition: 1, replicas: [1, 2] }, 'UNKNOWN_PARTITION')
  // INVALID_REQUEST: shapes
  refused(s, topic('bad name', [[1]]), 'INVALID_REQUEST')
  refused(s, topic('x'.repeat(250), [[1]]), 'INVALID_REQUEST')
  refused(s, topic('b', [[1, 1]]), 'INVALID_REQUEST')
  refused(s, { ...topic('b', [[1]]), partitions: 0, assignment: [] } as Command, 'INVALID_REQUEST')
  refused(s, topic('b', [[1]], { persistence: 'sync', retentionMs: 0 }), 'INVALID_REQUEST')
  refused(s, topic('b', [[1]], { persistence: 'sync', retentionBytes: 1.5 }), 'INVALID_REQUEST')
  refused(s, topic('b', [[1]], { persistence: 'fast' } as never), 'INVALID_REQUEST')
  // INVALID_REQUEST: state
  refused(s, topic('b', [[1, 7]]), 'INVALID_REQUEST', 'unknown-broker')
  refused(s, { type: 'FenceBroker', id: 7 }, 'INVALID_REQUEST', 'unknown-broker')
  refused(s, { type: 'UnregisterBroker', id: 1 }, 'INVALID_REQUEST', 'broker-hosts-replicas')
  refused(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 2], epoch: 5 }, 'INVALID_REQUEST', 'stale')
  refused(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 2, 3] }, 'INVALID_REQUEST')
  refused(s, { type: 'CreatePartitions', name: 'a', partitions: 1, assignment: [[1, 2]] }, 'INVALID_REQUEST')
  refused(s, { type: 'CreatePartitions', name: 'a', partitions: 3, assignment: [[1, 2]] }, 'INVALID_REQUEST')
  refused(s, { type: 'CreatePartitions', name: 'a', partitions: 2, assignment: [[1]] }, 'INVALID_REQUEST')
  refused(s, { type: 'UpdateTopicConfig', name: 'a', config: { persistence: 'memory' } }, 'INVALID_REQUEST')
  mustApply(s, { type: 'DecommissionBroker', id: 3 })
  refused(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 3] }, 'INVALID_REQUEST', 'decommissioning')
  refused(s, topic('b', [[3]]), 'INVALID_REQUEST', 'decommissioning')
  // A replica already on a draining broker may stay (reordering is not adding).
  mustApply(s, { type: 'RecommissionBroker', id: 3 })
  mustApply(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 3] })
  mustApply(s, { type: 'DecommissionBroker', id: 3 })
  mustApply(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [3, 1] })
})

test('validate (leader) adds liveness: replication factor within live brokers, no new replica on a fenced broker', () => {
  const s = cluster(2)
  mustApply(s, { type: 'RegisterBroker', id: 3, httpUrl: 'http://c:1', peerUrl: 'c:2' }) // fenced
  mustApply(s, topic('a', [[1, 2]]))
  invalidFor(s, topic('b', [[1, 2, 3]]), 'INVALID_REQUEST')
  invalidFor(s, topic('b', [[3]]), 'INVALID_REQUEST')
  invalidFor(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 3] }, 'INVALID_REQUEST')
  invalidFor(s, topic('a', [[1]]), 'TOPIC_EXISTS')
  invalidFor(s, { type: 'DeleteTopic', name: 'zz' }, 'UNKNOWN_TOPIC')
  // ...but apply takes them: the broker may have been fenced after the leader checked.
  mustApply(s, topic('b', [[3]]))
  mustApply(s, { type: 'ReassignPartition', topic: 'a', partition: 0, replicas: [1, 3] })
  validate({ type: 'DeleteTopic', name: 'b' }, s)
  const e = (() => {
    try {
      planCreateTopic(s, { name: 'c', partitions: 1, replicationFactor: 3, config: syncConfig })
    } catch (error) {
      return error
    }
    return null
  })()
  assert.ok(isRillError(e, 'INVALID_REQUEST') && e.details['reason'] === 'replication-factor')
})

test('applyEntry: empty data is a no-op, junk is refused, a command applies', () => {
  const s = cluster(1)
  const v = s.version
  assert.deepEqual(s.applyEntry(new Uint8Array(0)), { ok: true, version: v })
  const junk = s.applyEntry(new Uint8Array([0xc1, 1, 2]))
  assert.ok(!junk.ok && junk.error.code === 'INVALID_REQUEST')
  assert.equal(s.version, v)
  const r = s.applyEntry(encodeCommand(topic('t', [[1]])))
  assert.deepEqual(r, { ok: true, version: v + 1 })
})

test('random command sequences: apply never throws; replicas agree; snapshots round-trip exactly', () => {
  let appliedTotal = 0
  let commandsTotal = 0
  fc.assert(
    fc.property(fc.array(commandArb, { minLength: 10, maxLength: 60 }), (cmds) => {
      commandsTotal += cmds.length
      const a = cluster(5)
      const b = cluster(5)
      let version = a.version
      let applied = 0
      for (const cmd of cmds) {
        const ra = a.apply(cmd)
        const rb = b.applyEntry(encodeCommand(cmd))
        assert.deepEqual(ra.ok, rb.ok)
        if (ra.ok) applied++
        assert.ok(a.version >= version)
        version = a.version
        checkInvariants(a)
      }
      appliedTotal += applied
      const bytes = a.snapshot()
      assert.deepEqual(b.snapshot(), bytes)
      const restored = ControllerState.fromSnapshot(bytes)
      assert.deepEqual(restored.snapshot(), bytes)
      assert.deepEqual(restored.brokers(), a.brokers())
      assert.deepEqual(restored.topics(), a.topics())
      assert.equal(restored.version, a.version)
      assert.equal(restored.partitionCount, a.partitionCount)
      // The restored state goes on exactly like the original (topic ids included).
      const next = topic('after-restore', [[1]])
      assert.deepEqual(restored.apply(next), a.apply(next))
      assert.deepEqual(restored.snapshot(), a.snapshot())
    }),
    { seed: 5, numRuns: 200 },
  )
  // The generator must exercise apply, not only refusals.
  assert.ok(appliedTotal > commandsTotal / 5, `only ${appliedTotal} of ${commandsTotal} commands applied`)
})

function checkInvariants(s: ControllerState): void {
  let partitions = 0
  for (const t of s.topics()) {
    partitions += t.partitions.length
    t.partitions.forEach((p, i) => {
      assert.equal(p.partition, i)
      assert.equal(p.replicas.length, t.replicationFactor)
      assert.equal(new Set(p.replicas).size, p.replicas.length)
      for (const b of p.replicas) assert.ok(s.broker(b) !== undefined, `replica on unregistered broker ${b}`)
    })
  }
  assert.equal(s.partitionCount, partitions)
}

test('restore refuses bad snapshots with INVALID_REQUEST and keeps the state', () => {
  const s = cluster(3)
  mustApply(s, topic('a', [[1, 2], [2, 3]]))
  const good = s.snapshot()
  const target = cluster(1)
  const before = target.snapshot()
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 0, max: 7 }), fc.boolean(), (at, bit, truncate) => {
      const bytes = new Uint8Array(good)
      const i = at % bytes.length
      const mutated = truncate ? bytes.subarray(0, i) : (bytes[i]! ^= 1 << bit, bytes)
      try {
        target.restore(mutated)
        target.restore(before)
      } catch (e) {
        assert.ok(isRillError(e, 'INVALID_REQUEST'), `unexpected ${String(e)}`)
        assert.deepEqual(target.snapshot(), before)
      }
    }),
    { seed: 6, numRuns: 2000 },
  )
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
      try {
        target.restore(bytes)
        target.restore(before)
      } catch (e) {
        assert.ok(isRillError(e, 'INVALID_REQUEST'), `unexpected ${String(e)}`)
      }
    }),
    { seed: 7, numRuns: 2000 },
  )
})

test('an empty state snapshots and restores', () => {
  const s = new ControllerState()
  const r = ControllerState.fromSnapshot(s.snapshot())
  assert.equal(r.version, 0)
  assert.deepEqual(r.snapshot(), s.snapshot())
  addBroker(r, 1)
  assert.equal(r.brokers().length, 1)
})
