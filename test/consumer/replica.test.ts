/** Replica choice per readFrom and rack, skipping fenced and lately failed brokers. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { BrokerInfo } from '../../client/index.ts'
import { chooseReplica } from '../../consumer/replica.ts'

const brokers = new Map<number, BrokerInfo>([
  [1, { id: 1, url: 'http://b1', rack: 'a', fenced: false }],
  [2, { id: 2, url: 'http://b2', rack: 'b', fenced: false }],
  [3, { id: 3, url: 'http://b3', rack: 'c', fenced: false }],
  [4, { id: 4, url: 'http://b4', rack: 'b', fenced: true }],
])
const p = { partition: 0, leader: 1, replicas: [1, 2, 3], highWatermark: 0 }
const none = new Set<number>()

test('leader, follower, nearest', () => {
  assert.equal(chooseReplica(p, brokers, { readFrom: 'leader', rack: 'b', avoid: none })?.id, 1)
  assert.equal(chooseReplica(p, brokers, { readFrom: 'follower', rack: null, avoid: none })?.id, 2)
  assert.equal(chooseReplica(p, brokers, { readFrom: 'nearest', rack: 'c', avoid: none })?.id, 3)
  assert.equal(chooseReplica(p, brokers, { readFrom: 'nearest', rack: 'a', avoid: none })?.id, 1)
  // No replica on the rack, or no rack: the leader.
  assert.equal(chooseReplica(p, brokers, { readFrom: 'nearest', rack: 'z', avoid: none })?.id, 1)
  assert.equal(chooseReplica(p, brokers, { readFrom: 'nearest', rack: null, avoid: none })?.id, 1)
})

test('failed brokers are skipped while another replica is there; fenced ones always', () => {
  assert.equal(chooseReplica(p, brokers, { readFrom: 'follower', rack: null, avoid: new Set([2]) })?.id, 3)
  assert.equal(chooseReplica(p, brokers, { readFrom: 'leader', rack: null, avoid: new Set([1]) })?.id, 2)
  assert.equal(chooseReplica(p, brokers, { readFrom: 'leader', rack: null, avoid: new Set([1, 2, 3]) })?.id, 1)
  const onFenced = { partition: 0, leader: null, replicas: [4, 2], highWatermark: 0 }
  assert.equal(chooseReplica(onFenced, brokers, { readFrom: 'nearest', rack: 'b', avoid: none })?.id, 2)
  assert.equal(chooseReplica({ partition: 0, leader: null, replicas: [9], highWatermark: 0 }, brokers, { readFrom: 'leader', rack: null, avoid: none }), null)
})
