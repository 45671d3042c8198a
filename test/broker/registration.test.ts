/**
 * Registration does not move a live broker (issue 10, hole 1): two
 * registrations moving brokers 1 and 2 to a dead address left a cluster
 * with no controller leader and every produce NOT_LEADER until all brokers
 * were restarted. Here they are sent WITH the cluster MAC (what an insider,
 * a misconfigured second process, or a leaked request could send): a broker
 * that still answers at its registered address keeps it
 * (DUPLICATE_BROKER_REGISTRATION), a new address must prove it is the
 * registering broker, and a broker restarted on new ports (a real move)
 * re-registers at once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { parseBrokerConfig } from '../../src/broker/index.ts'
import { internalHeaders } from '../../src/broker/internal-auth.ts'
import { call, startCluster, waitFor, type TestCluster } from './helpers.ts'

/** The development secret of cluster "rill", as every test broker uses it. */
const secret = parseBrokerConfig(['--id', '1', '--dir', '/nonexistent', '--http', '127.0.0.1:1', '--peer', '127.0.0.1:2', '--seeds', '1@127.0.0.1:2'], {}).secret

/** A registration signed with the cluster secret, as another broker sends it. */
async function register(url: string, body: { id: number; httpUrl: string; peerUrl: string; incarnation?: string }): Promise<{ status: number; body: any }> {
  const text = JSON.stringify({ incarnation: randomBytes(16).toString('hex'), ...body })
  const path = '/internal/v1/brokers'
  const r = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', path, text) },
    body: text,
    signal: AbortSignal.timeout(20_000),
  })
  const answer = await r.text()
  return { status: r.status, body: answer.length === 0 ? null : JSON.parse(answer) }
}

async function brokersSeenBy(url: string): Promise<{ id: number; url: string; fenced: boolean }[]> {
  return (await call(url, 'GET', '/v1/metadata')).body.brokers
}

/** Creates a topic and produces one record through it, following redirects; within 30 s. */
async function produceWorks(c: TestCluster, topic: string): Promise<void> {
  let last = ''
  await waitFor(
    async () => {
      const created = await call(c.brokers[0]!.url, 'POST', '/v1/topics', { name: topic, partitions: 1, replicationFactor: 3 })
      last = JSON.stringify(created.body)
      return created.status === 201 || created.status === 409
    },
    30_000,
    `topic ${topic} created`,
    () => last,
  )
  await waitFor(
    async () => {
      let url = c.brokers[0]!.url
      for (let hop = 0; hop < 3; hop++) {
        const r = await call(url, 'POST', `/v1/topics/${topic}/partitions/0/records`, { records: [{ value: 'v' }] })
        last = `${r.status} ${JSON.stringify(r.body)}`
        if (r.status === 200) return true
        if (r.status !== 421 || typeof r.body?.error?.leader?.url !== 'string') return false
        url = r.body.error.leader.url
      }
      return false
    },
    30_000,
    `a produce to ${topic} acknowledged`,
    () => last,
  )
}

test('a live broker keeps its addresses; an unproven address is refused; a broker restarted on new ports re-registers', { timeout: 180_000 }, async () => {
  const c = await startCluster({ brokers: 4, seeds: 3 })
  try {
    await waitFor(async () => (await brokersSeenBy(c.brokers[0]!.url)).filter((b) => !b.fenced).length === 4, 30_000, 'four brokers registered and unfenced')
    const before = await brokersSeenBy(c.brokers[0]!.url)

    // The two requests, now MACed: brokers 1 and 2 still answer where they are registered.
    for (const id of [1, 2]) {
      const r = await register(c.brokers[2]!.url, { id, httpUrl: 'http://127.0.0.99:9', peerUrl: '127.0.0.99:9' })
      assert.equal(r.status, 409, `broker ${id}: ${JSON.stringify(r.body)}`)
      assert.equal(r.body.error.code, 'DUPLICATE_BROKER_REGISTRATION')
    }
    // A live broker's address, claimed by another incarnation at a reachable address, is refused too.
    const taken = await register(c.brokers[0]!.url, { id: 4, httpUrl: c.brokers[1]!.url, peerUrl: c.brokers[1]!.peer })
    assert.equal(taken.status, 409, JSON.stringify(taken.body))
    assert.deepEqual(await brokersSeenBy(c.brokers[0]!.url), before, 'nothing moved')
    await produceWorks(c, 'after-attack')

    // Broker 4 is gone: its old address no longer answers, but a new address must still prove it is broker 4.
    await c.kill(4)
    for (const [httpUrl, peerUrl] of [
      ['http://127.0.0.99:9', '127.0.0.99:9'],
      [c.brokers[1]!.url, c.brokers[1]!.peer],
    ]) {
      const r = await register(c.brokers[0]!.url, { id: 4, httpUrl: httpUrl!, peerUrl: peerUrl! })
      assert.equal(r.status, 401, `${httpUrl}: ${JSON.stringify(r.body)}`)
      assert.equal(r.body.error.code, 'UNAUTHORIZED')
      assert.match(r.body.error.message, /cannot move to/)
    }
    assert.equal((await brokersSeenBy(c.brokers[0]!.url)).find((b) => b.id === 4)!.url, before.find((b) => b.id === 4)!.url)

    // A real move: broker 4 restarted on new ports registers there, without waiting for its old session to expire.
    const oldUrl = c.brokers[3]!.url
    await c.move(4)
    assert.notEqual(c.brokers[3]!.url, oldUrl)
    await c.start(4)
    await waitFor(
      async () => (await brokersSeenBy(c.brokers[0]!.url)).some((b) => b.id === 4 && b.url === c.brokers[3]!.url && !b.fenced),
      30_000,
      'broker 4 registered at its new address and unfenced',
      () => c.brokers[3]!.output.join(''),
    )
    await waitFor(async () => (await brokersSeenBy(c.brokers[3]!.url)).length === 4, 30_000, 'broker 4 serves the metadata at its new address')
    await produceWorks(c, 'after-move')
  } catch (error) {
    for (const b of c.brokers) process.stderr.write(`--- broker ${b.id} output (tail) ---\n${b.output.join('').slice(-3000)}\n`)
    throw error
  } finally {
    await c.stopAll()
  }
})
