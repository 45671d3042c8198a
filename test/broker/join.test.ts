/**
 * A broker that is not a controller voter joins through --join: it
 * registers through another broker, follows the metadata log as a learner,
 * receives replicas of new topics and serves them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor } from './helpers.ts'

test('a fourth broker outside the seeds joins, learns the metadata and hosts replicas', { timeout: 120_000 }, async () => {
  const c = await startCluster({ brokers: 4, seeds: 3 })
  try {
    const fourth = c.brokers[3]!
    await waitFor(async () => {
      const m = (await call(c.brokers[0]!.url, 'GET', '/v1/metadata')).body
      return m.brokers.length === 4 && m.brokers.every((b: any) => b.fenced === false)
    }, 30_000, 'four brokers registered and unfenced')
    // The fourth broker's own copy of the metadata (it follows the controller log as a learner).
    await waitFor(async () => (await call(fourth.url, 'GET', '/v1/metadata')).body.brokers.length === 4, 30_000, 'metadata on broker 4')
    const created = await call(fourth.url, 'POST', '/v1/topics', { name: 'wide', partitions: 4, replicationFactor: 3 })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const meta = (await call(fourth.url, 'GET', '/v1/metadata')).body
    const wide = meta.topics.find((t: any) => t.name === 'wide')
    const onFourth = wide.partitions.filter((p: any) => p.replicas.includes(4))
    assert.equal(onFourth.length, 3, 'placement spreads 12 replicas over 4 brokers: 3 each')
    await waitFor(async () => {
      const m = (await call(fourth.url, 'GET', '/v1/metadata')).body
      return m.topics.find((t: any) => t.name === 'wide').partitions.every((p: any) => p.leader !== null)
    }, 30_000, 'leaders elected', () => JSON.stringify(meta))
    for (const p of onFourth) {
      let url = fourth.url
      let r = await call(url, 'POST', `/v1/topics/wide/partitions/${p.partition}/records`, { records: [{ value: `on-${p.partition}` }] })
      if (r.status === 421) {
        url = r.body.error.leader.url
        r = await call(url, 'POST', `/v1/topics/wide/partitions/${p.partition}/records`, { records: [{ value: `on-${p.partition}` }] })
      }
      assert.equal(r.status, 200, JSON.stringify(r.body))
      const got = await call(fourth.url, 'GET', `/v1/topics/wide/partitions/${p.partition}/records?offset=0&minCommitted=1&maxWaitMs=5000`)
      assert.equal(got.status, 200, JSON.stringify(got.body))
      assert.deepEqual(got.body.records.map((x: any) => x.value), [`on-${p.partition}`])
    }
  } catch (error) {
    for (const b of c.brokers) process.stderr.write(`--- broker ${b.id} output (tail) ---\n${b.output.join('').slice(-3000)}\n`)
    throw error
  } finally {
    await c.stopAll()
  }
})
