/**
 * Three real broker processes on loopback: create a topic through a
 * non-leader, produce through every broker (following 421 redirects),
 * kill -9 a partition leader and the controller leader while producing,
 * restart them, and check that every acknowledged record is read back once,
 * in order, at one offset, from every replica. Then bad requests and delete.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type TestCluster } from './helpers.ts'

interface Acked {
  partition: number
  offset: number
  value: string
}

/** Produces one record to topic/partition through any broker, following redirects and retrying retriable errors. */
async function produce(c: TestCluster, topic: string, partition: number, value: string, startAt: number): Promise<Acked> {
  let url = c.brokers[startAt % c.brokers.length]!.url
  const end = Date.now() + 30_000
  let last = ''
  while (Date.now() < end) {
    try {
      const r = await call(url, 'POST', `/v1/topics/${topic}/partitions/${partition}/records`, { records: [{ value }], acks: 'all' })
      if (r.status === 200) return { partition, offset: r.body.baseOffset, value }
      last = `${r.status} ${JSON.stringify(r.body)}`
      if (r.status === 421 && r.body?.error?.leader?.url) {
        url = r.body.error.leader.url
        continue
      }
      if (r.status !== 503 && r.status !== 421) throw new Error(`produce failed: ${last}`)
    } catch (error) {
      last = String(error)
    }
    // A dead broker or an election: try another broker after a moment.
    url = c.brokers[Math.floor(Math.random() * c.brokers.length)]!.url
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`produce of ${value} never acknowledged: ${last}`)
}

async function readPartition(url: string, topic: string, partition: number, upTo: number): Promise<{ offset: number; value: string }[]> {
  const out: { offset: number; value: string }[] = []
  let offset = 0
  const end = Date.now() + 30_000
  for (let round = 0; round < 1000 && offset < upTo; round++) {
    const r = await call(url, 'GET', `/v1/topics/${topic}/partitions/${partition}/records?offset=${offset}&maxWaitMs=2000&minCommitted=${upTo}`)
    // A replica restarted a moment ago may still be catching up: wait for it (bounded).
    if (r.status === 503 && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    assert.equal(r.status, 200, `${url} ${topic}/${partition}: ${JSON.stringify(r.body)}`)
    for (const rec of r.body.records) out.push({ offset: rec.offset, value: rec.value })
    if (r.body.nextOffset === offset) break
    offset = r.body.nextOffset
  }
  return out
}

async function metadata(url: string): Promise<any> {
  return (await call(url, 'GET', '/v1/metadata')).body
}

test('a three-broker cluster keeps every acknowledged record through kill -9 of leaders', { timeout: 240_000 }, async () => {
  const c = await startCluster()
  try {
    await waitFor(async () => (await metadata(c.brokers[0]!.url)).brokers.length === 3, 30_000, 'three brokers registered')
    // 503 (an election under way) is retriable, as for any client.
    let created = await call(c.brokers[1]!.url, 'POST', '/v1/topics', { name: 'orders', partitions: 3, replicationFactor: 3 })
    for (let i = 0; i < 50 && created.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 200))
      created = await call(c.brokers[1]!.url, 'POST', '/v1/topics', { name: 'orders', partitions: 3, replicationFactor: 3 })
    }
    assert.equal(created.status, 201, JSON.stringify(created.body))
    assert.deepEqual([created.body.name, created.body.partitions], ['orders', 3])
    const again = await call(c.brokers[2]!.url, 'POST', '/v1/topics', { name: 'orders', partitions: 3, replicationFactor: 3 })
    assert.equal(again.status, 409)
    assert.equal(again.body.error.code, 'TOPIC_EXISTS')
    await waitFor(
      async () => {
        const m = await metadata(c.brokers[0]!.url)
        const t = m.topics.find((x: any) => x.name === 'orders')
        return t !== undefined && t.partitions.every((p: any) => p.leader !== null)
      },
      30_000,
      'partition leaders elected',
    )

    const acked: Acked[] = []
    let n = 0
    const produceSome = async (count: number): Promise<void> => {
      const jobs: Promise<Acked>[] = []
      for (let i = 0; i < count; i++) {
        const k = n++
        jobs.push(produce(c, 'orders', k % 3, `v${k}`, k))
      }
      acked.push(...(await Promise.all(jobs)))
    }
    await produceSome(60)

    // kill -9 the leader of partition 0 while producing.
    const m1 = await metadata(c.brokers[0]!.url)
    const leader0 = m1.topics.find((x: any) => x.name === 'orders').partitions[0].leader as number
    const during = produceSome(60)
    await c.kill(leader0)
    await during
    await produceSome(30)
    await c.start(leader0)

    // kill -9 the controller leader, then create a topic through the survivors.
    const ctl = (await metadata(c.brokers[(leader0 % 3)]!.url)).controller.leader as number
    await c.kill(ctl)
    const survivor = c.brokers.find((b) => b.id !== ctl)!
    await waitFor(async () => {
      const r = await call(survivor.url, 'POST', '/v1/topics', { name: 'after-failover', partitions: 1, replicationFactor: 2 }).catch(() => null)
      return r !== null && (r.status === 201 || r.status === 409)
    }, 30_000, 'topic create after controller failover')
    await produceSome(30)
    await c.start(ctl)

    // Every replica returns every acknowledged record once, at its offset.
    const byPartition = new Map<number, Acked[]>()
    for (const a of acked) byPartition.set(a.partition, [...(byPartition.get(a.partition) ?? []), a])
    for (const [partition, list] of byPartition) {
      const hw = Math.max(...list.map((a) => a.offset)) + 1
      const views = []
      for (const b of c.brokers) views.push(await readPartition(b.url, 'orders', partition, hw))
      for (const v of views) assert.deepEqual(v, views[0], `replicas of partition ${partition} disagree`)
      const seen = new Map(views[0]!.map((r) => [r.offset, r.value]))
      const offsets = views[0]!.map((r) => r.offset)
      assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), 'offsets in order')
      assert.equal(new Set(offsets).size, offsets.length, 'each offset once')
      for (const a of list) assert.equal(seen.get(a.offset), a.value, `acknowledged ${a.value} at ${partition}/${a.offset}`)
    }

    // Bad requests get their codes and change nothing.
    const url = c.brokers[0]!.url
    const before = await metadata(url)
    const bad = [
      await call(url, 'POST', '/v1/topics', { name: 'bad name!', partitions: 1, replicationFactor: 1 }),
      await call(url, 'POST', '/v1/topics', { name: 'x', partitions: 0, replicationFactor: 1 }),
      await call(url, 'POST', '/v1/topics/orders/partitions/0/records', '{"records": [{"value": 1}]}'),
      await call(url, 'POST', '/v1/topics/orders/partitions/0/records', '{not json'),
    ]
    for (const r of bad) {
      assert.equal(r.status, 400, JSON.stringify(r.body))
      assert.equal(r.body.error.code, 'INVALID_REQUEST')
    }
    assert.equal((await call(url, 'GET', '/v1/topics/nope')).body.error.code, 'UNKNOWN_TOPIC')
    assert.equal((await call(url, 'GET', '/v1/topics/orders/partitions/9/records?offset=0')).body.error.code, 'UNKNOWN_PARTITION')
    assert.equal((await call(url, 'GET', '/v1/topics/orders/partitions/0/records?offset=999999')).status, 416)
    const after = await metadata(url)
    assert.deepEqual(after.topics.map((t: any) => t.name), before.topics.map((t: any) => t.name))

    // A broker that stays away is fenced by the controller; back, it unfences itself.
    const away = c.brokers[2]!
    await c.kill(away.id)
    const other = c.brokers[0]!.url
    await waitFor(async () => (await metadata(other)).brokers.find((b: any) => b.id === away.id)?.fenced === true, 30_000, `broker ${away.id} fenced`)
    await c.start(away.id)
    await waitFor(async () => (await metadata(other)).brokers.find((b: any) => b.id === away.id)?.fenced === false, 30_000, `broker ${away.id} unfenced`)

    // Delete.
    const del = await call(c.brokers[2]!.url, 'DELETE', '/v1/topics/orders')
    assert.ok(del.status === 200 || del.status === 204, JSON.stringify(del.body))
    await waitFor(async () => (await metadata(c.brokers[0]!.url)).topics.every((t: any) => t.name !== 'orders'), 20_000, 'topic deleted everywhere')
  } catch (error) {
    for (const b of c.brokers) process.stderr.write(`--- broker ${b.id} output (tail) ---\n${b.output.join('').slice(-4000)}\n`)
    throw error
  } finally {
    await c.stopAll()
  }
})
