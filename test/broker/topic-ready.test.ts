/**
 * `POST /v1/topics` answers 201 once the topic is usable everywhere (issue
 * 12): right after the answer, a produce to ANY broker and a fetch from ANY
 * replica work with no retry. Before, a produce a moment after the 201 got
 * 404 UNKNOWN_TOPIC (a broker that had not applied the creation), 421 with
 * no leader (an election under way) or "no replica" (a replica not open yet).
 * `"wait": false` answers as soon as the controller has the topic.
 *
 * Real brokers (test/broker/helpers.ts). The cluster is first waited for as
 * `rill dev` waits before `ready`: a controller leader known to every broker
 * and every broker registered and unfenced.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type TestCluster } from './helpers.ts'

let cluster: TestCluster

/** Longest wait for the cluster to be as `rill dev` has it at `ready`, ms. */
const clusterReadyWaitMs = 60_000
/** A fetch waits (long-poll) for this long at most for the records to be committed on the replica it asks, ms. */
const fetchWaitMs = 10_000

before(async () => {
  cluster = await startCluster()
  await waitFor(
    async () => {
      for (const b of cluster.brokers) {
        const m = (await call(b.url, 'GET', '/v1/metadata')).body
        if (m.controller.leader === null || m.brokers.length !== cluster.brokers.length || m.brokers.some((x: any) => x.fenced)) return false
      }
      return true
    },
    clusterReadyWaitMs,
    'a controller leader and every broker registered, on every broker',
  )
})

after(async () => {
  await cluster?.stopAll()
})

function urlOf(id: number): string {
  return cluster.brokers[id - 1]!.url
}

/**
 * Creates `name` through broker `via`, then at once (no retry anywhere):
 * three unkeyed records (one per partition, round-robin) produced to each
 * broker's topic route, then every partition read from each of its replicas.
 */
async function createThenUseEverywhere(name: string, via: number, replicationFactor: number): Promise<void> {
  const partitions = 3
  const created = await call(urlOf(via), 'POST', '/v1/topics', { name, partitions, replicationFactor })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  assert.deepEqual(created.body, { name, partitions, ready: true })

  const perPartition = new Map<number, string[]>()
  for (const b of cluster.brokers) {
    const values = [0, 1, 2].map((i) => `${name}-via-${b.id}-${i}`)
    const r = await call(b.url, 'POST', `/v1/topics/${name}/records`, { records: values.map((value) => ({ value })) })
    assert.equal(r.status, 200, `produce to broker ${b.id} right after the create: ${JSON.stringify(r.body)}`)
    assert.deepEqual(r.body.offsets.map((o: any) => o.partition), [0, 1, 2], JSON.stringify(r.body))
    // Round-robin: one record per partition, in partition order from where this broker's counter stood.
    for (const o of r.body.offsets) {
      const list = perPartition.get(o.partition) ?? []
      list.push(`${o.partition}@${o.baseOffset}`)
      perPartition.set(o.partition, list)
    }
  }

  const topic = (await call(urlOf(via), 'GET', `/v1/topics/${name}`)).body
  assert.equal(topic.partitions.length, partitions)
  for (const p of topic.partitions) {
    // The answering broker knows every leader (it polled the brokers it does not share the partition with).
    assert.notEqual(p.leader, null, `partition ${p.partition} of ${name} has no leader in broker ${via}'s metadata`)
    assert.equal(p.replicas.length, replicationFactor)
    const written = perPartition.get(p.partition)!.length
    for (const replica of p.replicas as number[]) {
      const r = await call(urlOf(replica), 'GET', `/v1/topics/${name}/partitions/${p.partition}/records?offset=0&minCommitted=${written}&maxWaitMs=${fetchWaitMs}`)
      assert.equal(r.status, 200, `fetch of ${name}/${p.partition} from replica ${replica}: ${JSON.stringify(r.body)}`)
      assert.equal(r.body.records.length, written, JSON.stringify(r.body))
      for (const record of r.body.records) assert.match(record.value, new RegExp(`^${name}-via-\\d-\\d$`))
    }
  }
}

test('a topic created through the controller leader or another broker is usable on every broker at once (replication 3)', { timeout: 120_000 }, async () => {
  const leader = (await call(urlOf(1), 'GET', '/v1/metadata')).body.controller.leader as number
  const other = leader === 1 ? 2 : 1
  await createThenUseEverywhere('ready-on-leader', leader, 3)
  await createThenUseEverywhere('ready-forwarded', other, 3)
})

test('replication 2 of 3 brokers: the broker with no replica knows the topic and forwards produces at once', { timeout: 120_000 }, async () => {
  await createThenUseEverywhere('ready-rf2', 3, 2)
})

test('"wait": false answers 201 with ready false; the topic exists', { timeout: 60_000 }, async () => {
  const created = await call(urlOf(2), 'POST', '/v1/topics', { name: 'no-wait', partitions: 2, replicationFactor: 3, wait: false })
  assert.equal(created.status, 201, JSON.stringify(created.body))
  assert.deepEqual(created.body, { name: 'no-wait', partitions: 2, ready: false })
  assert.equal((await call(urlOf(2), 'GET', '/v1/topics/no-wait')).status, 200)
  const bad = await call(urlOf(2), 'POST', '/v1/topics', { name: 'bad-wait', partitions: 1, replicationFactor: 1, wait: 'no' })
  assert.equal(bad.status, 400, JSON.stringify(bad.body))
  assert.equal((await call(urlOf(2), 'GET', '/v1/topics/bad-wait')).status, 404)
})
