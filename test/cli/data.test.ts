/**
 * The `rill` binary against a real HTTP server (the API over real partition
 * replicas, on a loopback port): topics, produce, consume, status, redirects.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { buildApi } from '../../src/api/index.ts'
import { partitionForKey } from '../../src/wire/index.ts'
import { FollowerService, until } from '../api/helpers.ts'
import { runCli, startServer } from './helpers.ts'

let server: Awaited<ReturnType<typeof startServer>>

before(async () => {
  server = await startServer()
})

after(async () => {
  await server.close()
})

const rill = (args: string[], input?: string) => runCli([...args, '--url', server.url], input === undefined ? {} : { input })

test('topic create, list, describe, delete', async () => {
  const c = await rill(['topic', 'create', 'cli-t', '--partitions', '2', '--replicas', '1', '--persistence', 'memory', '--retention-ms', '60000'])
  assert.equal(c.code, 0, c.stderr)
  assert.match(c.stdout, /created topic cli-t with 2 partitions/)
  const dup = await rill(['topic', 'create', 'cli-t', '--replicas', '1'])
  assert.equal(dup.code, 1)
  assert.match(dup.stderr, /TOPIC_EXISTS/)
  const l = await runCli(['topic', 'list'], { env: { RILL_URL: server.url } })
  assert.equal(l.code, 0, l.stderr)
  assert.ok(l.stdout.split('\n').includes('cli-t'))
  const d = await rill(['topic', 'describe', 'cli-t'])
  assert.equal(d.code, 0, d.stderr)
  assert.match(d.stdout, /topic cli-t {2}partitions 2 {2}replication 1 {2}persistence=memory retentionMs=60000/)
  assert.match(d.stdout, /PARTITION {2}LEADER {2}REPLICAS {2}HIGH-WATERMARK\n0 +1 +1 +0\n1 +1 +1 +0/)
  const del = await rill(['topic', 'delete', 'cli-t'])
  assert.equal(del.code, 0)
  const gone = await rill(['topic', 'describe', 'cli-t'])
  assert.equal(gone.code, 1)
  assert.match(gone.stderr, /UNKNOWN_TOPIC/)
})

test('produce lines, consume them back from every partition', async () => {
  await server.service.createTopic({ name: 'lines', partitions: 3, replicationFactor: 1 })
  const values = Array.from({ length: 2500 }, (_, i) => `line ${i} ✓`)
  const p = await rill(['produce', 'lines', '--verbose'], values.join('\n') + '\n')
  assert.equal(p.code, 0, p.stderr)
  const offsets = p.stdout.trim().split('\n')
  assert.equal(offsets.length, values.length)
  assert.match(offsets[0]!, /^partition [0-2] offset \d+$/)
  const hws = [0, 1, 2].map((i) => server.service.partition('lines', i).state.highWatermark)
  assert.equal(hws.reduce((a, b) => a + b, 0), values.length)
  assert.ok(hws.filter((h) => h > 0).length >= 2, `batches spread over partitions: ${hws}`)
  const c = await rill(['consume', 'lines', '--from-beginning', '--max', String(values.length)])
  assert.equal(c.code, 0, c.stderr)
  const got = c.stdout.split('\n').slice(0, -1)
  assert.deepEqual([...got].sort(), [...values].sort())
  // Within a partition, stdin order is kept.
  const one = await rill(['consume', 'lines', '--from-beginning', '--partition', '0', '--max', String(hws[0])])
  const ids = one.stdout.trim().split('\n').map((l) => Number(l.split(' ')[1]))
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b))
})

test('keyed produce lands on murmur2(key); consume from the end sees only new records', async () => {
  await server.service.createTopic({ name: 'keyed', partitions: 4, replicationFactor: 1 })
  const p = await rill(['produce', 'keyed', '--key', 'user-42', '--acks', 'leader'], 'a\nb\nc\n')
  assert.equal(p.code, 0, p.stderr)
  const expected = partitionForKey(new TextEncoder().encode('user-42'), 4)
  assert.equal(server.service.partition('keyed', expected).state.highWatermark, 3)
  const calls = server.service.fetchCalls
  const tail = rill(['consume', 'keyed', '--max', '2'])
  // Once the consumer long-polls (it starts at the end), produce.
  await until(() => server.service.fetchCalls > calls, 15_000)
  const q = await rill(['produce', 'keyed', '--partition', String(expected)], 'new1\nnew2\n')
  assert.equal(q.code, 0, q.stderr)
  const t = await tail
  assert.equal(t.code, 0, t.stderr)
  assert.equal(t.stdout, 'new1\nnew2\n')
})

test('consume --group continues from committed offsets', async () => {
  await server.service.createTopic({ name: 'grouped', partitions: 1, replicationFactor: 1 })
  await rill(['produce', 'grouped'], '1\n2\n3\n4\n')
  const a = await rill(['consume', 'grouped', '--group', 'g', '--from-beginning', '--max', '2'])
  assert.equal(a.stdout, '1\n2\n')
  const b = await rill(['consume', 'grouped', '--group', 'g', '--max', '2'])
  assert.equal(b.stdout, '3\n4\n')
  // Both left the group: it has no members, its offset is after the fourth record, lag 0.
  const d = await rill(['group', 'describe', 'g'])
  assert.equal(d.code, 0, d.stderr)
  assert.match(d.stdout, /group g: generation \d+, coordinator broker 1, 0 member\(s\)/)
  assert.match(d.stdout, /grouped +0 +4 +4 +0/)
  assert.equal((await rill(['group', 'frobnicate', 'g'])).code, 2)
})

test('status lists brokers, controller and partitions with how far each replica is behind its leader', async () => {
  await server.service.createTopic({ name: 'st', partitions: 2, replicationFactor: 1 })
  const s = await rill(['status'])
  assert.equal(s.code, 0, s.stderr)
  assert.match(s.stdout, /controller leader: 1/)
  assert.match(s.stdout, new RegExp(`1 +${server.url.replace(/[.]/g, '\\.')} +up`))
  assert.match(s.stdout, /HIGH-WATERMARK +BEHIND-LEADER\n/)
  assert.match(s.stdout, /st +1 +1 +1 +0 +1:0/)
})

test('failures exit 1: unknown topic, no follower replica, bad partition', async () => {
  const p = await rill(['produce', 'missing'], 'x\n')
  assert.equal(p.code, 1)
  assert.match(p.stderr, /UNKNOWN_TOPIC/)
  await server.service.createTopic({ name: 'single', partitions: 1, replicationFactor: 1 })
  const f = await rill(['consume', 'single', '--follower', '--max', '1'])
  assert.equal(f.code, 1)
  assert.match(f.stderr, /no follower replica/)
  const bp = await rill(['produce', 'single', '--partition', '5'], 'x\n')
  assert.equal(bp.code, 1)
  assert.match(bp.stderr, /UNKNOWN_PARTITION/)
  const big = await rill(['produce', 'single'], 'x'.repeat(9 * 1024 * 1024) + '\n')
  assert.equal(big.code, 1)
  assert.match(big.stderr, /TOO_LARGE/)
})

test('produce follows a 421 NOT_LEADER redirect to the leader', async () => {
  const follower = new FollowerService()
  const app: FastifyInstance = buildApi({ service: follower })
  try {
    const url = await app.listen({ host: '127.0.0.1', port: 0 })
    follower.url = url
    follower.leaderUrl = server.url
    await follower.createTopic({ name: 'redir', partitions: 1, replicationFactor: 1 })
    await server.service.createTopic({ name: 'redir', partitions: 1, replicationFactor: 1 })
    const p = await runCli(['produce', 'redir', '--url', url, '--verbose'], { input: 'r1\nr2\n' })
    assert.equal(p.code, 0, p.stderr)
    assert.equal(p.stdout, 'partition 0 offset 0\npartition 0 offset 1\n')
    // Node's fetch (undici) itself retries a 421 once on a fresh connection before handing it over: 2 calls, not 1.
    assert.ok(follower.produceCalls >= 1 && follower.produceCalls <= 2, String(follower.produceCalls))
    assert.equal(server.service.partition('redir', 0).state.highWatermark, 2)
  } finally {
    await app.close()
    await follower.close()
  }
})
