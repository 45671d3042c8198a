/**
 * The producer against three real broker processes (test/broker/helpers.ts):
 *
 * 1. through a fault-injecting proxy (seeded): requests dropped before the
 *    broker sees them, and answers dropped after the broker wrote — every
 *    record must be in its partition exactly once, in send order;
 * 2. a kill -9 of the partition leader mid-stream: everything acknowledged
 *    is there once, in order.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request as httpRequest, Agent, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Packr, Unpackr } from 'msgpackr'
import { SeededRandom } from '../../src/base/index.ts'
import { Producer } from '../../producer/index.ts'
import type { RecordMetadata } from '../../producer/index.ts'
import { createTopic, readAll, startReadyCluster, type TestCluster } from './helpers.ts'

let cluster: TestCluster

before(async () => {
  cluster = await startReadyCluster(3)
})

after(async () => {
  await cluster?.stopAll()
})

const packr = new Packr({ useRecords: false, moreTypes: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false })

interface ProxyStats {
  lostBefore: number
  lostAfter: number
  forwarded: number
}

/**
 * One loopback proxy per broker. Broker URLs in answers (metadata, a
 * NOT_LEADER's leader) are rewritten to the proxies', so the producer never
 * goes around them. Faults are drawn from one seeded generator.
 */
async function startProxies(targets: readonly string[], seed: number, rates: { before: number; after: number }) {
  const random = new SeededRandom(seed)
  const stats: ProxyStats = { lostBefore: 0, lostAfter: 0, forwarded: 0 }
  const agent = new Agent({ keepAlive: true })
  const servers: Server[] = []
  const urlMap = new Map<string, string>()
  for (const target of targets) {
    const server = createServer((req, res) => void handle(target, req, res))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    servers.push(server)
    urlMap.set(target, `http://127.0.0.1:${(server.address() as { port: number }).port}`)
  }
  const rewrite = (value: unknown): unknown => {
    if (typeof value === 'string') return urlMap.get(value) ?? value
    if (Array.isArray(value)) return value.map(rewrite)
    if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewrite(v)]))
    }
    return value
  }
  async function handle(target: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const isProduce = req.method === 'POST' && /\/partitions\/\d+\/records$/.test(req.url ?? '')
    const roll = random.next()
    if (roll < rates.before) {
      stats.lostBefore++
      req.socket.destroy()
      return
    }
    const dropAfter = isProduce && random.next() < rates.after
    const answer = await new Promise<{ status: number; headers: Record<string, string>; body: Buffer } | null>((resolve) => {
      const headers = { ...req.headers }
      delete headers.host
      const out = httpRequest(`${target}${req.url}`, { method: req.method, headers, agent }, (r) => {
        const body: Buffer[] = []
        r.on('data', (d: Buffer) => body.push(d))
        r.on('end', () => resolve({ status: r.statusCode ?? 502, headers: { 'content-type': String(r.headers['content-type'] ?? '') }, body: Buffer.concat(body) }))
        r.on('error', () => resolve(null))
      })
      out.on('error', () => resolve(null))
      out.end(Buffer.concat(chunks))
    })
    if (answer === null || dropAfter) {
      if (dropAfter) stats.lostAfter++
      req.socket.destroy()
      return
    }
    stats.forwarded++
    let body = answer.body
    if (body.length > 0 && (req.url === '/v1/metadata' || answer.status >= 400)) {
      const type = answer.headers['content-type']!
      if (type.startsWith('application/msgpack')) body = packr.pack(rewrite(unpackr.unpack(body)))
      else if (type.startsWith('application/json')) body = Buffer.from(JSON.stringify(rewrite(JSON.parse(body.toString()))))
    }
    res.writeHead(answer.status, { 'content-type': answer.headers['content-type']!, 'content-length': body.length })
    res.end(body)
  }
  return {
    urls: targets.map((t) => urlMap.get(t)!),
    stats,
    async close() {
      for (const s of servers) s.closeAllConnections()
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
      agent.destroy()
    },
  }
}

/** Checks that each partition holds exactly `p{P}-0 .. p{P}-{n-1}`, in order, and that the acknowledged offsets point at them. */
async function checkPartitions(urls: readonly string[], topic: string, sent: Map<number, string[]>, acked: Map<string, RecordMetadata>): Promise<void> {
  for (const [partition, values] of sent) {
    const stored = await readAll(urls, topic, partition)
    assert.equal(stored.length, values.length, `${topic}/${partition}: ${stored.length} stored, ${values.length} sent`)
    assert.deepEqual(stored, values, `${topic}/${partition}: every record once, in send order`)
    for (const [value, m] of acked) if (m.partition === partition) assert.equal(stored[m.offset], value, `${value} acknowledged at offset ${m.offset}`)
  }
}

test('idempotent retries through a proxy that drops requests and answers: every record once, in order', { timeout: 60_000 }, async () => {
  const urls = cluster.brokers.map((b) => b.url)
  await createTopic(cluster, 'faults', 3, 3)
  const proxy = await startProxies(urls, 42, { before: 0.1, after: 0.15 })
  const producer = new Producer({
    brokers: proxy.urls,
    lingerMs: 2,
    batchRecordsMax: 16,
    maxInFlight: 5,
    retryBackoffMs: 10,
    retryBackoffMaxMs: 200,
    requestTimeoutMs: 5_000,
    deliveryTimeoutMs: 45_000,
    random: new SeededRandom(7),
  })
  const sent = new Map<number, string[]>([[0, []], [1, []], [2, []]])
  const acked = new Map<string, RecordMetadata>()
  const calls: Promise<void>[] = []
  try {
    for (let round = 0; round < 100; round++) {
      const records = Array.from({ length: 12 }, (_, i) => {
        const partition = (round + i) % 3
        const list = sent.get(partition)!
        const value = `p${partition}-${list.length}`
        list.push(value)
        return { value, partition }
      })
      calls.push(producer.send('faults', records).then((ms) => ms.forEach((m, i) => acked.set(records[i]!.value, m))))
      if (round % 10 === 9) await new Promise((r) => setTimeout(r, 5))
    }
    await Promise.all(calls)
  } finally {
    await producer.close()
    await proxy.close()
  }
  assert.ok(proxy.stats.lostBefore > 5 && proxy.stats.lostAfter > 5, JSON.stringify(proxy.stats))
  await checkPartitions(urls, 'faults', sent, acked)
})

test('a producer survives kill -9 of the partition leader mid-stream: everything acknowledged is there once, in order', { timeout: 60_000 }, async () => {
  const urls = cluster.brokers.map((b) => b.url)
  await createTopic(cluster, 'failover', 1, 3)
  const producer = new Producer({ brokers: urls, lingerMs: 2, batchRecordsMax: 20, maxInFlight: 5, retryBackoffMs: 20, retryBackoffMaxMs: 300, requestTimeoutMs: 3_000, deliveryTimeoutMs: 45_000 })
  const values: string[] = []
  const acked = new Map<string, RecordMetadata>()
  const calls: Promise<void>[] = []
  let killed = -1
  try {
    for (let round = 0; round < 150; round++) {
      const records = Array.from({ length: 10 }, () => {
        const value = `p0-${values.length}`
        values.push(value)
        return { value, partition: 0 }
      })
      calls.push(producer.send('failover', records).then((ms) => ms.forEach((m, i) => acked.set(records[i]!.value, m))))
      if (round === 50) {
        // Some of the stream is acknowledged; the rest is in flight or queued when the leader dies.
        await calls[40]
        const meta = await fetch(`${urls[0]}/v1/metadata`).then((r) => r.json() as Promise<{ topics: { name: string; partitions: { leader: number }[] }[] }>)
        killed = meta.topics.find((t) => t.name === 'failover')!.partitions[0]!.leader
        await cluster.kill(killed, 'SIGKILL')
      }
      if (round % 5 === 4) await new Promise((r) => setTimeout(r, 5))
    }
    await Promise.all(calls)
  } finally {
    await producer.close()
  }
  assert.ok(killed > 0)
  assert.equal(acked.size, values.length)
  const alive = cluster.brokers.filter((b) => b.id !== killed).map((b) => b.url)
  await checkPartitions(alive, 'failover', new Map([[0, values]]), acked)
})
