/**
 * The rule behind `POST /v1/topics`' wait (src/broker/topic-readiness.ts),
 * on a controller state and hand-made broker answers: ready only when every
 * live broker knows the topic and each partition's live replicas follow one
 * ready leader, the preferred one when it is live; a broker whose process is
 * gone (connection refused) is not waited for, one that does not answer is.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, RillError, systemRuntime } from '../../src/base/index.ts'
import type { ControllerState } from '../../src/controller/index.ts'
import { httpPeerCalls, parseTopicStatus, type PeerCalls, type TopicStatus } from '../../src/broker/peer-calls.ts'
import { topicReady, waitTopicReady } from '../../src/broker/topic-readiness.ts'
import { cluster, mustApply } from '../controller/helpers.ts'
import { freePort } from './helpers.ts'

/** Brokers 1-3, topic `t` with partitions [1,2,3] and [2,3,1] (preferred replica first). */
function state(): ControllerState {
  const s = cluster(3)
  mustApply(s, { type: 'CreateTopic', name: 't', partitions: 2, replicationFactor: 3, config: { persistence: 'sync' }, assignment: [[1, 2, 3], [2, 3, 1]] })
  return s
}

/** Each broker's answer when partition 0 is led by `leader0` and partition 1 by `leader1`. */
function led(leader0: number, leader1: number): Map<number, TopicStatus | null> {
  const status: TopicStatus = { known: true, partitions: [{ partition: 0, leader: leader0 }, { partition: 1, leader: leader1 }] }
  return new Map([[1, status], [2, status], [3, status]])
}

test('ready: every broker knows the topic, every partition led by its preferred replica, followed by all', () => {
  assert.equal(topicReady(state(), 't', led(1, 2)), true)
  assert.equal(topicReady(state(), 'other', led(1, 2)), false, 'a topic the metadata lacks')
})

test('not ready: a broker without the topic, one not answering, a replica with no leader or another leader, a leader that is not the preferred one', () => {
  const unknown = led(1, 2)
  unknown.set(3, { known: false, partitions: [] })
  assert.equal(topicReady(state(), 't', unknown), false)
  const silent = led(1, 2)
  silent.set(2, null)
  assert.equal(topicReady(state(), 't', silent), false)
  const electing = led(1, 2)
  electing.set(3, { known: true, partitions: [{ partition: 0, leader: 1 }, { partition: 1, leader: 0 }] })
  assert.equal(topicReady(state(), 't', electing), false)
  const split = led(1, 2)
  split.set(2, { known: true, partitions: [{ partition: 0, leader: 3 }, { partition: 1, leader: 2 }] })
  assert.equal(topicReady(state(), 't', split), false)
  // Broker 3 leads partition 0 while its preferred replica (1) is live: the leader balance would move it a moment later.
  assert.equal(topicReady(state(), 't', led(3, 2)), false)
})

test('a broker counted out (not live) is not waited for, and its preferred leadership is not required', () => {
  const statuses = led(2, 2)
  statuses.delete(1)
  assert.equal(topicReady(state(), 't', statuses), true)
})

/** Peer calls answering topic status from `answer` (the broker's id from its URL); nothing else is called. */
function peerCalls(answer: (id: number) => TopicStatus | Error): PeerCalls {
  const never = (): never => {
    throw new Error('not called by the readiness wait')
  }
  return {
    controller: never,
    leaderships: never,
    identity: never,
    topicStatus: async (url) => {
      const a = answer(Number(url.slice(url.lastIndexOf(':') + 1)) - 9000)
      if (a instanceof Error) throw a
      return a
    },
  }
}

const ready0: TopicStatus = { known: true, partitions: [{ partition: 0, leader: 1 }, { partition: 1, leader: 2 }] }

test('the wait: a refused broker is counted out at once; a silent one keeps it waiting until the bound (then false)', async () => {
  const s = state()
  const options = (answer: (id: number) => TopicStatus | Error) => ({
    brokerId: 1, state: () => s, localStatus: () => ready0, peerCalls: peerCalls(answer), runtime: systemRuntime, isStopped: () => false,
  })
  const refused = new RillError(ErrorCode.NO_QUORUM, 'unreachable', { details: { refused: true } })
  // Broker 3 is gone (refused): partitions 0 and 1 are ready on 1 and 2.
  assert.equal(await waitTopicReady(options((id) => (id === 3 ? refused : ready0)), 't', 10_000), true)
  // Broker 3 is there but does not answer in time: not ready within the bound.
  const slow = new RillError(ErrorCode.NO_QUORUM, 'timed out')
  assert.equal(await waitTopicReady(options((id) => (id === 3 ? slow : ready0)), 't', 300), false)
  // A deleted topic ends the wait at once.
  assert.equal(await waitTopicReady(options(() => ready0), 'gone', 10_000), false)
})

test('over HTTP: nothing listening at the address is a refusal (counted out), a malformed answer reads as not known', async () => {
  const port = await freePort('127.0.0.1')
  const calls = httpPeerCalls(Uint8Array.from(Buffer.alloc(32, 5)))
  await assert.rejects(calls.topicStatus(`http://127.0.0.1:${port}`, 't', 5000), (e: unknown) => e instanceof RillError && e.details['refused'] === true)
  assert.deepEqual(parseTopicStatus({ known: true, partitions: [{ partition: 0, leader: 2 }, { partition: 'x', leader: 1 }] }), { known: true, partitions: [{ partition: 0, leader: 2 }] })
  assert.deepEqual(parseTopicStatus('nonsense'), { known: false, partitions: [] })
})
