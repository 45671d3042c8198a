/**
 * The README's examples, run as a new user runs them: plain `node` (no tsx)
 * on examples/producer.mjs and examples/consumer.mjs, importing
 * `rill/producer` and `rill/consumer` from the package's dist/, against
 * three real brokers. The consumer prints every record the producer wrote,
 * and Ctrl-C leaves the group's offsets committed after them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { call, startCluster, stopProcess, waitExit, waitFor } from './broker/helpers.ts'

const root = new URL('..', import.meta.url).pathname
/** Longest run of an example (the producer; the consumer after SIGINT), ms. */
const exampleExitMs = 30_000
/** Examples started by the test, stopped (SIGKILL) whatever happens. */
const started: ChildProcess[] = []

function run(file: string, env: Record<string, string>): { lines: string[]; done: () => Promise<number | null>; kill: (s: NodeJS.Signals) => void; output: () => string } {
  const child = spawn(process.execPath, [file], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  started.push(child)
  const lines: string[] = []
  let all = ''
  child.stdout.on('data', (d: Buffer) => {
    all += d.toString()
    lines.splice(0, lines.length, ...all.split('\n').filter((l) => l.length > 0))
  })
  child.stderr.on('data', (d: Buffer) => (all += d.toString()))
  return { lines, done: async () => (await waitExit(child, exampleExitMs, file)).code, kill: (s) => child.kill(s), output: () => all }
}

test('README examples: producer and consumer in plain node against a cluster', { timeout: 120_000 }, async () => {
  const c = await startCluster({ brokers: 3 })
  try {
    const url = c.brokers[0]!.url
    await waitFor(async () => (await call(url, 'GET', '/v1/metadata')).body.brokers.filter((b: any) => !b.fenced).length === 3, 30_000, 'brokers registered')
    assert.equal((await call(url, 'POST', '/v1/topics', { name: 'orders', partitions: 3, replicationFactor: 3 })).status, 201)
    const producer = run('examples/producer.mjs', { RILL_URL: url })
    assert.equal(await producer.done(), 0, producer.output())
    assert.equal(producer.lines.length, 10)
    assert.match(producer.lines[0]!, /^order 0 -> partition \d, offset \d+$/)

    const consumer = run('examples/consumer.mjs', { RILL_URL: c.brokers[1]!.url })
    await waitFor(() => consumer.lines.length >= 10, 60_000, 'the consumer to print ten records', consumer.output)
    const values = consumer.lines.map((l) => l.split(': ')[1]).sort()
    assert.deepEqual(values, Array.from({ length: 10 }, (_, i) => `order ${i}`).sort())
    consumer.kill('SIGINT')
    assert.equal(await consumer.done(), 0, consumer.output())
    let committed = await call(url, 'GET', '/v1/groups/billing/offsets')
    // Any broker answers with the coordinator's address.
    if (committed.status === 421) committed = await call(committed.body.error.leader.url, 'GET', '/v1/groups/billing/offsets')
    const total = committed.body.offsets.reduce((n: number, o: { offset: number }) => n + o.offset, 0)
    assert.equal(total, 10, `committed after every record: ${JSON.stringify(committed.body)}`)
  } finally {
    await Promise.allSettled(started.map((child) => stopProcess(child, { signal: 'SIGKILL' })))
    await c.stopAll()
  }
})
