/**
 * The parts of bench/http.ts, bench/peers and bench/hardware.ts that are not
 * timing: the replayed produce bodies are valid produce requests (posted to
 * a real broker and read back), 421s are followed (and not forever), ratios
 * and fractions are formatted as the tables say, peers are paired with rill
 * by durability, the hardware probe returns numbers — and `bench:http` runs
 * end to end against one broker with a one-second duration. No assertion
 * depends on how fast anything is.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { unpack } from 'msgpackr'
import { request } from 'undici'
import { contentTypes, followerOf, followToLeader, formatFraction, formatRatio, produceBody, quantile, recordValue } from '../../bench/http-lib.ts'
import { durability, rillPeerOf } from '../../bench/peers/run.ts'
import { measureHardware } from '../../bench/hardware.ts'
import { call, startCluster, waitFor, type TestCluster } from '../broker/helpers.ts'

/** Longest wait for a topic to be usable, ms. */
const settleMs = 30_000
/** Deadline of the end-to-end bench:http run (a 1-broker cluster, 4 rows of 1 s), ms. */
const benchRunMs = 120_000

let cluster: TestCluster
let url = ''

before(async () => {
  cluster = await startCluster({ brokers: 1 })
  url = cluster.brokers[0]!.url
  await waitFor(async () => (await call(url, 'GET', '/v1/metadata')).body.brokers?.filter((b: { fenced?: boolean }) => !b.fenced).length === 1, settleMs, 'broker registered')
  const r = await call(url, 'POST', '/v1/topics', { name: 'bodies', partitions: 2, replicationFactor: 1 })
  assert.equal(r.status, 201, JSON.stringify(r.body))
  await waitFor(async () => (await call(url, 'GET', '/v1/topics/bodies')).body.partitions?.every((p: { leader: number | null }) => p.leader !== null) ?? false, settleMs, 'bodies led')
})

after(async () => {
  await cluster?.stopAll()
})

test('recordValue pads to the size and keeps the index', () => {
  assert.equal(recordValue(7, 20), 'record-7-xxxxxxxxxxx')
  assert.equal(recordValue(7, 20).length, 20)
  assert.equal(recordValue(12345, 4), 'record-12345-', 'never cut below its index')
})

test('produceBody refuses counts and sizes that are not positive integers', () => {
  assert.throws(() => produceBody('json', 0, 100), /records must be a positive integer/)
  assert.throws(() => produceBody('msgpack', 10, 1.5), /bytes must be a positive integer/)
})

for (const format of ['json', 'msgpack'] as const) {
  test(`a ${format} produce body is a valid produce request, replayable, read back intact`, async () => {
    const partition = format === 'json' ? 0 : 1
    const body = produceBody(format, 50, 100)
    for (let i = 0; i < 2; i++) {
      const r = await request(`${url}/v1/topics/bodies/partitions/${partition}/records`, { method: 'POST', headers: { 'content-type': contentTypes[format], accept: 'application/json' }, body })
      const answer = (await r.body.json()) as { baseOffset: number; lastOffset: number }
      assert.equal(r.statusCode, 200, JSON.stringify(answer))
      assert.deepEqual([answer.baseOffset, answer.lastOffset], [i * 50, i * 50 + 49], 'the same bytes twice are two batches of 50 (no idempotence fields)')
    }
    const f = await request(`${url}/v1/topics/bodies/partitions/${partition}/records?offset=0&maxRecords=100`, { headers: { accept: 'application/msgpack' } })
    const got = unpack(Buffer.from(await f.body.arrayBuffer())) as { records: { offset: number; value: Buffer }[] }
    assert.equal(f.statusCode, 200)
    assert.equal(got.records.length, 100)
    got.records.forEach((rec, i) => assert.equal(Buffer.from(rec.value).toString(), recordValue(i % 50, 100), `offset ${rec.offset}`))
  })
}

/** Two fake brokers: `a` answers 421 pointing at `b` (or at itself, forever), `b` answers 200. */
async function fakeBrokers(loop: boolean): Promise<{ a: string; b: string; close: () => Promise<void>; hitsA: () => number }> {
  let hits = 0
  const servers: Server[] = []
  const listen = (s: Server): Promise<string> => new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as { port: number }).port}`)))
  const b = createServer((req, res) => {
    req.resume()
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"partition":0,"baseOffset":0,"lastOffset":0}'))
  })
  servers.push(b)
  const bUrl = await listen(b)
  let aUrl = ''
  const a = createServer((req, res) => {
    hits++
    req.resume()
    req.on('end', () => res.writeHead(421, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_LEADER', message: 'not the leader', leader: { id: 2, url: loop ? aUrl : bUrl } } })))
  })
  servers.push(a)
  aUrl = await listen(a)
  return { a: aUrl, b: bUrl, hitsA: () => hits, close: async () => void (await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))) }
}

test('followToLeader follows a 421 to leader.url and counts the hop', async () => {
  const f = await fakeBrokers(false)
  try {
    assert.deepEqual(await followToLeader(f.a, 't', 0), { url: f.b, hops: 1 })
  } finally {
    await f.close()
  }
})

test('followToLeader gives up on a 421 loop after a bounded number of hops', async () => {
  const f = await fakeBrokers(true)
  try {
    await assert.rejects(followToLeader(f.a, 't', 0), /still NOT_LEADER after 5 hops/)
    assert.equal(f.hitsA(), 6)
  } finally {
    await f.close()
  }
})

test('followToLeader at the leader: no hop; an error other than 421 is thrown with its body', async () => {
  assert.deepEqual(await followToLeader(url, 'bodies', 0), { url, hops: 0 })
  await assert.rejects(followToLeader(url, 'no-such-topic', 0), /404/)
})

test('followerOf never picks the leader and spreads over the others', () => {
  const urls = ['u1', 'u2', 'u3']
  assert.equal(followerOf(urls, 'u1', 0), 'u2')
  assert.equal(followerOf(urls, 'u1', 1), 'u3')
  assert.equal(followerOf(urls, 'u2', 2), 'u1')
  assert.throws(() => followerOf(['u1'], 'u1', 0), /at least 2 brokers/)
})

test('ratios and fractions are formatted as the tables print them', () => {
  assert.equal(formatRatio(300, 100), '3.00×')
  assert.equal(formatRatio(1234, 100), '12.3×')
  assert.equal(formatRatio(1, 4), '0.25×')
  assert.equal(formatRatio(1, 0), '–')
  assert.equal(formatRatio(undefined, 5), '–')
  assert.equal(formatRatio(5, Number.NaN), '–')
  assert.equal(formatFraction(41, 1000), '4.1%')
  assert.equal(formatFraction(1, 250), '0.40%')
  assert.equal(formatFraction(2400, 1000), '240%')
  assert.equal(formatFraction(5, 0), '–')
  assert.equal(quantile([1, 2, 3, 4], 0.5), 3)
  assert.equal(quantile([1, 2, 3, 4], 0.99), 4)
  assert.equal(quantile([], 0.5), 0)
})

test('peers are paired with rill by durability at acknowledgement', () => {
  assert.deepEqual(rillPeerOf({ test: 'rabbitmq-quorum', mode: 'quorum', replicas: 3, size: 100 }), { persistence: 'sync', replicas: 3, size: 100 })
  assert.deepEqual(rillPeerOf({ test: 'rabbitmq-stream', mode: 'subentry', replicas: 3, size: 1024 }), { persistence: 'async', replicas: 3, size: 1024 })
  assert.deepEqual(rillPeerOf({ test: 'nats-jetstream', mode: 'raw', replicas: 1, size: 100 }), { persistence: 'async', replicas: 1, size: 100 })
  assert.match(durability('rabbitmq-quorum', 'quorum'), /fsync by a quorum/)
  assert.match(durability('nats-jetstream', 'raw'), /no fsync/)
})

test('measureHardware returns a positive number for every measurement', async () => {
  const h = await measureHardware({ phaseMs: 100, seqMiB: 8 })
  for (const k of ['fsyncPerSec', 'seqWriteMBps', 'tcpMBps', 'tcpRoundTripsPerSec', 'tcpRttP50Us'] as const) assert.ok(h[k] > 0 && Number.isFinite(h[k]), `${k} = ${h[k]}`)
  assert.ok(h.fsyncP99Ms >= h.fsyncP50Ms)
})

test('bench:http runs end to end against one broker and writes its results', async () => {
  const out = mkdtempSync(join(tmpdir(), 'rill-bench-http-'))
  try {
    const env = { ...process.env, HTTP_BROKERS: '1', HTTP_DURATION_S: '1', HTTP_MODES: 'async', HTTP_PARTITIONS: '2', HTTP_CONNECTIONS: '2', HTTP_RECORDS: '100', HTTP_HARDWARE: '0', HTTP_RESULTS_DIR: out }
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/http.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.resume()
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), benchRunMs)
      child.once('exit', (c) => {
        clearTimeout(t)
        resolve(c)
      })
    })
    assert.equal(code, 0, stderr)
    const result = JSON.parse(readFileSync(join(out, 'http.json'), 'utf8')) as { rows: { route: string; format: string; requests: number; failures: Record<string, number>; p50Ms: number }[] }
    assert.deepEqual(result.rows.map((r) => `${r.route} ${r.format}`), ['produce json', 'produce msgpack', 'fetch json', 'fetch msgpack'])
    for (const r of result.rows) {
      assert.ok(r.requests > 0, `${r.route} ${r.format}: no request answered`)
      assert.deepEqual(r.failures, {}, `${r.route} ${r.format}`)
    }
    assert.match(readFileSync(join(out, 'http.md'), 'utf8'), /\| async \| produce \| msgpack \|/)
    assert.match(readFileSync(join(out, 'http.svg'), 'utf8'), /^<svg/)
    assert.match(stderr, /answers\/s/, 'progress while running')
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
})
