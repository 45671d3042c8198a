/**
 * `--brokers a,b,c` (and --url a,b, RILL_BROKERS) against a real 3-broker
 * cluster with broker 1 stopped (issue 12): every command that used to
 * fail with "no broker answered metadata" when the first URL was down goes
 * on to the next broker.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type TestCluster } from '../broker/helpers.ts'
import { createTopic, runCli } from './helpers.ts'

let cluster: TestCluster
let urls: string[]

before(async () => {
  cluster = await startCluster({ brokers: 3 })
  urls = cluster.brokers.map((b) => b.url)
  await createTopic(urls[1]!, 'orders', 3, 3)
  await cluster.kill(1)
  // Every partition led by a live broker before the commands run (an election takes a moment).
  await waitFor(async () => {
    const m = await call(urls[1]!, 'GET', '/v1/metadata').catch(() => null)
    const t = m?.body?.topics?.find((x: { name: string }) => x.name === 'orders')
    return t !== undefined && t.partitions.every((p: { leader: number | null }) => p.leader !== null && p.leader !== 1)
  }, 60_000, 'leaders of orders away from broker 1')
})

after(async () => {
  await cluster?.stopAll()
})

test('with broker 1 down, produce and consume with --brokers listing all three succeed', { timeout: 180_000 }, async () => {
  const all = urls.join(',')
  const values = Array.from({ length: 200 }, (_, i) => `order ${i}`)
  const p = await runCli(['produce', 'orders', '--brokers', all], { input: values.join('\n') + '\n' })
  assert.equal(p.code, 0, p.stderr)
  const c = await runCli(['consume', 'orders', '--from-beginning', '--max', String(values.length), '--brokers', all])
  assert.equal(c.code, 0, c.stderr)
  assert.deepEqual(c.stdout.trim().split('\n').sort(), [...values].sort())
})

test('with broker 1 down, --url a,b and RILL_BROKERS reach the next broker; status says broker 1 is unreachable', { timeout: 120_000 }, async () => {
  const list = await runCli(['topic', 'list', '--url', `${urls[0]},${urls[2]}`])
  assert.equal(list.code, 0, list.stderr)
  assert.match(list.stdout, /^orders$/m)
  const status = await runCli(['status'], { env: { RILL_BROKERS: urls.join(',') } })
  assert.equal(status.code, 0, status.stderr)
  assert.match(status.stdout, new RegExp(`^1 +${urls[0]!.replace(/[.]/g, '\\.')} +unreachable$`, 'm'))
  assert.match(status.stdout, /BEHIND-LEADER/)
  const describe = await runCli(['topic', 'describe', 'orders', '--brokers', urls.join(',')])
  assert.equal(describe.code, 0, describe.stderr)
  // Broker 1 alone: nothing answers, exit 3.
  const alone = await runCli(['topic', 'list', '--brokers', urls[0]!])
  assert.equal(alone.code, 3, alone.stderr)
  assert.match(alone.stderr, /cannot reach/)
})
