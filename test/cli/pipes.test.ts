/**
 * The CLI in pipes and under Ctrl-C, against a real broker (issue 12):
 * `rill consume T | head -2` exits 0 (it waited for a 'drain' that never
 * came after EPIPE), `status`, `topic describe`, `group describe` whose
 * reader went away exit 0 without a stack trace, and SIGINT ends consume
 * (leaving its group) and produce promptly with exit 130.
 *
 * A reader going away is simulated by closing the child's stdout read end,
 * as `head` does when it exits.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { call, startCluster, waitFor, type TestCluster } from '../broker/helpers.ts'
import { createTopic, exitOf, putRecords, readLines, spawnCli } from './helpers.ts'

/** Longest a command may take to end after its reader went away or Ctrl-C (generous: a busy 2-core machine). */
const exitWaitMs = 30_000
/** Records in `events`: well over a pipe's 64 KiB buffer, so the consumer is still writing when the reader goes. */
const eventCount = 3000

let cluster: TestCluster
let url: string

before(async () => {
  cluster = await startCluster({ brokers: 1 })
  url = cluster.brokers[0]!.url
  await createTopic(url, 'events')
  for (let base = 0; base < eventCount; base += 500) {
    await putRecords(url, 'events', 0, Array.from({ length: 500 }, (_, i) => ({ value: `event ${base + i} ${'x'.repeat(80)}` })))
  }
})

after(async () => {
  await cluster?.stopAll()
})

test('consume --from-beginning | head -2: exits 0, quietly, once the reader is gone', { timeout: 120_000 }, async () => {
  const child = spawnCli(['consume', 'events', '--from-beginning', '--url', url])
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const lines = await readLines(child, 2, 60_000)
  assert.deepEqual(lines.map((l) => l.slice(0, 8)), ['event 0 ', 'event 1 '])
  child.stdout.destroy()
  const exit = await exitOf(child, exitWaitMs)
  assert.deepEqual(exit, { code: 0, signal: null }, stderr)
  assert.equal(stderr, '')
})

test('status, topic list/describe and group describe whose reader went away exit 0 without a stack trace', { timeout: 120_000 }, async () => {
  // A group to describe: one record consumed and committed.
  const child = spawnCli(['consume', 'events', '--group', 'piped', '--from-beginning', '--max', '1', '--url', url])
  assert.deepEqual(await exitOf(child, 60_000), { code: 0, signal: null })
  for (const args of [['status'], ['topic', 'describe', 'events'], ['topic', 'list'], ['group', 'describe', 'piped']]) {
    const c = spawnCli([...args, '--url', url])
    let stderr = ''
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    c.stdout.destroy() // before the command printed anything: its first line meets EPIPE
    const exit = await exitOf(c, 60_000)
    assert.deepEqual(exit, { code: 0, signal: null }, `rill ${args.join(' ')}: ${stderr}`)
    assert.equal(stderr, '', `rill ${args.join(' ')}`)
  }
})

test('Ctrl-C ends a consume waiting at the end of the log, which leaves its group: exit 130', { timeout: 120_000 }, async () => {
  const child = spawnCli(['consume', 'events', '--group', 'tail', '--url', url])
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const members = async (): Promise<number> => {
    const g = await call(url, 'GET', '/v1/groups/tail')
    return g.status === 200 ? (g.body.members as unknown[]).length : -1
  }
  await waitFor(async () => (await members()) === 1, 60_000, 'the consumer joined group tail', () => stderr)
  child.kill('SIGINT')
  const exit = await exitOf(child, exitWaitMs)
  assert.deepEqual(exit, { code: 130, signal: null }, stderr)
  assert.equal(stderr, '')
  assert.equal(await members(), 0, 'the consumer left its group on the way out')
})

test('Ctrl-C ends a produce still reading stdin: what was read is written, exit 130', { timeout: 120_000 }, async () => {
  await createTopic(url, 'typed')
  const child = spawnCli(['produce', 'typed', '--url', url])
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  child.stdin.write('one\ntwo\nthree\n') // and stdin stays open, as a terminal's does
  const hw = async (): Promise<number> => (await call(url, 'GET', '/v1/metadata')).body.topics.find((t: { name: string }) => t.name === 'typed').partitions[0].highWatermark
  await waitFor(async () => (await hw()) === 3, 60_000, 'three records written', () => stderr)
  child.kill('SIGINT')
  const exit = await exitOf(child, exitWaitMs)
  assert.deepEqual(exit, { code: 130, signal: null }, stderr)
  assert.equal(await hw(), 3)
})
