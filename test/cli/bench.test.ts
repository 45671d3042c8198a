/**
 * `rill bench produce | consume | e2e` against a real 3-broker cluster, with
 * small counts (issue 11): produce N leaves exactly N records in the topic,
 * consume reads them back (also from followers), e2e at a low rate ends in
 * bounded time with sane JSON, and bad flags exit 2 before anything is
 * sent. No timing is asserted: these check what was counted, not how fast.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type TestCluster } from '../broker/helpers.ts'
import { exitOf, runCli, spawnCli } from './helpers.ts'
import { LatencyHistogram } from '../../src/cli/bench.ts'

/** Longest one bench run may take here (small counts; a busy 2-core machine). */
const runWaitMs = 120_000
/** Records the produce test writes (over several batches and sends of 100). */
const produceCount = 3_000

let cluster: TestCluster
let brokers: string

before(async () => {
  cluster = await startCluster({ brokers: 3 })
  brokers = cluster.brokers.map((b) => b.url).join(',')
  const url = cluster.brokers[0]!.url
  // A topic of replication 3 needs all three registered.
  await waitFor(async () => (await call(url, 'GET', '/v1/metadata')).body.brokers.filter((b: { fenced?: boolean }) => !b.fenced).length === 3, 60_000, 'brokers registered')
})

after(async () => {
  await cluster?.stopAll()
})

interface LatencyJson {
  p50: number
  p99: number
  p999: number
  max: number
  samples: number
}

function checkLatency(l: LatencyJson, what: string): void {
  assert.ok(l.samples > 0, `${what}: samples`)
  assert.ok(l.p50 > 0 && l.p50 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, `${what}: ${JSON.stringify(l)}`)
}

/** How long a follower may take to learn a commit (it hears of it with the next append or heartbeat), ms. */
const commitSpreadWaitMs = 30_000

/** The topic's records as broker 1 describes them: the sum of its partitions' high watermarks (a fresh topic starts at 0). */
async function recordsIn(topic: string): Promise<number> {
  const t = await call(cluster.brokers[0]!.url, 'GET', `/v1/topics/${topic}`)
  assert.equal(t.status, 200, JSON.stringify(t.body))
  return (t.body.partitions as { highWatermark: number }[]).reduce((sum, p) => sum + p.highWatermark, 0)
}

/** Asserts that the topic holds exactly `n` records (waiting for broker 1 to learn the last commits of partitions it follows). */
async function assertRecordsIn(topic: string, n: number): Promise<void> {
  let last = -1
  await waitFor(async () => (last = await recordsIn(topic)) === n, commitSpreadWaitMs, `${topic} to hold ${n} records`).catch(() => undefined)
  assert.equal(last, n, `records in ${topic}`)
}

test('the latency histogram: quantiles within 1% of the exact ones, weights counted, max exact', () => {
  const h = new LatencyHistogram()
  assert.deepEqual(h.summary(), { p50: 0, p99: 0, p999: 0, max: 0, samples: 0 })
  for (let ms = 1; ms <= 1000; ms++) h.record(ms)
  h.record(0.25, 1000) // as many samples again, all at 0.25 ms: the median moves down to them
  const s = h.summary()
  assert.equal(s.samples, 2000)
  assert.equal(s.max, 1000)
  const near = (got: number, want: number): boolean => got >= want && got <= want * 1.0101
  assert.ok(near(s.p50, 0.25), `p50 ${s.p50}`)
  assert.ok(near(s.p99, 980), `p99 ${s.p99}`)
  assert.ok(near(s.p999, 998), `p99.9 ${s.p999}`)
})

test('produce N creates the topic as asked and leaves exactly N records in it; consume reads them all, from followers too', { timeout: 300_000 }, async () => {
  const r = await runCli(
    ['bench', 'produce', '--brokers', brokers, '--topic', 'bench-p', '--partitions', '3', '--replication-factor', '3', '--persistence', 'async', '--producers', '2', '--count', String(produceCount), '--record-bytes', '200', '--linger-ms', '2', '--batch-bytes', '65536', '--json'],
    { timeoutMs: runWaitMs },
  )
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as Record<string, unknown>
  assert.equal(out.mode, 'produce')
  assert.equal(out.records, produceCount)
  assert.equal(out.bytes, produceCount * 200)
  assert.deepEqual([out.partitions, out.replicationFactor, out.persistence, out.producers, out.acks, out.lingerMs, out.batchBytes], [3, 3, 'async', 2, 'all', 2, 65536])
  assert.ok((out.recordsPerSec as number) > 0 && (out.mbPerSec as number) > 0)
  checkLatency(out.ackLatencyMs as LatencyJson, 'ack latency')
  assert.equal((out.ackLatencyMs as LatencyJson).samples, produceCount)
  assert.match(r.stderr, /creating topic bench-p: 3 partitions, replication factor 3, async/)
  await assertRecordsIn('bench-p', produceCount)

  for (const readFrom of ['leader', 'follower']) {
    const c = await runCli(['bench', 'consume', '--brokers', brokers, '--topic', 'bench-p', '--read-from', readFrom, '--json'], { timeoutMs: runWaitMs })
    assert.equal(c.code, 0, c.stderr)
    const got = JSON.parse(c.stdout) as Record<string, unknown>
    assert.deepEqual([got.mode, got.records, got.bytes, got.recordBytes, got.readFrom, got.interrupted], ['consume', produceCount, produceCount * 200, 200, readFrom, false])
  }

  const some = await runCli(['bench', 'consume', '--brokers', brokers, '--topic', 'bench-p', '--count', '1001', '--json', '--quiet'], { timeoutMs: runWaitMs })
  assert.equal(some.code, 0, some.stderr)
  assert.equal((JSON.parse(some.stdout) as { records: number }).records, 1001, '--count bounds what consume reads')

  // Without --json: one summary line on stdout.
  const again = await runCli(['bench', 'produce', '--brokers', brokers, '--topic', 'bench-p', '--count', '250', '--quiet'], { timeoutMs: runWaitMs })
  assert.equal(again.code, 0, again.stderr)
  assert.match(again.stdout, /^produce bench-p: 250 records of 100 B in [0-9.]+ s: [0-9,]+ records\/s, [0-9.]+ MB\/s; ack latency p50 [0-9.]+ ms p99 [0-9.]+ ms p99\.9 [0-9.]+ ms\n$/)
  assert.equal(again.stderr, '', '--quiet: nothing on stderr')
  await assertRecordsIn('bench-p', produceCount + 250)
})

test('e2e at a low rate ends in bounded time, every acknowledged record received, with sane JSON', { timeout: 300_000 }, async () => {
  const rate = 200
  const durationS = 3
  const r = await runCli(['bench', 'e2e', '--brokers', brokers, '--topic', 'bench-e2e', '--rate', String(rate), '--duration', String(durationS), '--linger-ms', '0', '--read-from', 'follower', '--json'], { timeoutMs: runWaitMs })
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as Record<string, unknown>
  assert.equal(out.mode, 'e2e')
  assert.equal(out.rate, rate)
  const records = out.records as number
  assert.ok(records > 0 && records <= rate * durationS, `records ${records}`)
  assert.equal(out.received, records)
  checkLatency(out.ackLatencyMs as LatencyJson, 'ack latency')
  checkLatency(out.e2eLatencyMs as LatencyJson, 'e2e latency')
  assert.equal((out.e2eLatencyMs as LatencyJson).samples, records)
  assert.deepEqual([out.partitions, out.replicationFactor, out.readFrom], [6, 3, 'follower'])
  await assertRecordsIn('bench-e2e', records)
  // A second run on the same topic starts at its end: only its own records count.
  const second = await runCli(['bench', 'e2e', '--brokers', brokers, '--topic', 'bench-e2e', '--rate', '100', '--count', '50', '--json', '--quiet'], { timeoutMs: runWaitMs })
  assert.equal(second.code, 0, second.stderr)
  const out2 = JSON.parse(second.stdout) as Record<string, unknown>
  assert.deepEqual([out2.records, out2.received], [50, 50])
})

test('Ctrl-C stops a running e2e: the summary of what was done, marked interrupted, exit 130', { timeout: 300_000 }, async () => {
  const child = spawnCli(['bench', 'e2e', '--brokers', brokers, '--topic', 'bench-stop', '--rate', '50', '--duration', '600', '--json'])
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  // Running once its first progress line is out (no sleep: the line is the condition).
  const running = new Promise<void>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (/e2e: \d+ s, /.test(stderr)) resolve()
    })
  })
  await Promise.race([running, exitOf(child, 120_000).then((e) => assert.fail(`exited early ${JSON.stringify(e)}: ${stderr}`))])
  child.kill('SIGINT')
  const exit = await exitOf(child, 60_000)
  assert.deepEqual(exit, { code: 130, signal: null }, stderr)
  const out = JSON.parse(stdout) as Record<string, unknown>
  assert.equal(out.interrupted, true)
  assert.ok((out.records as number) > 0 && (out.records as number) < 50 * 600)
  await assertRecordsIn('bench-stop', out.records as number)
})

test('bad flags exit 2 with the usage, before anything is sent; a missing topic exits 1, no broker 3', { timeout: 300_000 }, async () => {
  const bad: string[][] = [
    ['bench'],
    ['bench', 'fetch'],
    ['bench', 'produce', '--count', '0'],
    ['bench', 'produce', '--count', '100000001'],
    ['bench', 'produce', '--duration', '3601'],
    ['bench', 'produce', '--acks', 'none'],
    ['bench', 'produce', '--persistence', 'disk'],
    ['bench', 'produce', '--record-bytes', '8'],
    ['bench', 'produce', '--producers', '65'],
    ['bench', 'produce', '--rate', '100'],
    ['bench', 'e2e', '--rate', '0'],
    ['bench', 'consume', '--read-from', 'anywhere'],
    ['bench', 'produce', '--topic', 'no/slash'],
    ['bench', 'produce', '--frobnicate'],
  ]
  for (const args of bad) {
    const r = await runCli([...args, '--brokers', brokers])
    assert.equal(r.code, 2, `rill ${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, /usage: rill bench/, args.join(' '))
    assert.equal(r.stdout, '')
  }
  // Nothing was created by the refused runs.
  const topics = await call(cluster.brokers[0]!.url, 'GET', '/v1/topics')
  assert.ok(!(topics.body.topics as { name: string }[]).some((t) => t.name === 'rill-bench'))

  const missing = await runCli(['bench', 'consume', '--topic', 'no-such-topic', '--brokers', brokers])
  assert.equal(missing.code, 1, missing.stderr)
  assert.match(missing.stderr, /UNKNOWN_TOPIC/)

  const unreachable = await runCli(['bench', 'produce', '--brokers', 'http://127.0.0.1:1', '--count', '10'])
  assert.equal(unreachable.code, 3, unreachable.stderr)
})
