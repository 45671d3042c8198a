/**
 * What the CLI prints and selects, against a real broker (issue 12):
 * produce --key-separator and --header, consume --format json/kv, --offset,
 * --from-time, group describe's committed offset / log end / lag, a group
 * that does not exist, --version. Piped, produce adds nothing to stdout or
 * stderr (progress and summaries are for terminals).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { startCluster, type TestCluster } from '../broker/helpers.ts'
import { createTopic as create, putRecords, runCli } from './helpers.ts'

let cluster: TestCluster
let url: string

const rill = (args: string[], input?: string) => runCli([...args, '--url', url], input === undefined ? {} : { input })

const createTopic = (name: string, partitions = 1): Promise<void> => create(url, name, partitions)

before(async () => {
  cluster = await startCluster({ brokers: 1 })
  url = cluster.brokers[0]!.url
})

after(async () => {
  await cluster?.stopAll()
})

test('produce --key-separator --header, then consume --format json and kv', { timeout: 120_000 }, async () => {
  await createTopic('fmt')
  const p = await rill(['produce', 'fmt', '--key-separator', ':', '--header', 'trace=abc', '--header', 'dup=1', '--header', 'dup=2=x'], 'k1:v1\nnokey\nk2:a:b\n')
  assert.equal(p.code, 0, p.stderr)
  assert.equal(p.stdout, '', 'nothing on stdout without --verbose')
  assert.equal(p.stderr, '', 'no progress or summary when stderr is not a terminal')
  const j = await rill(['consume', 'fmt', '--format', 'json', '--from-beginning', '--max', '3'])
  assert.equal(j.code, 0, j.stderr)
  const records = j.stdout.trim().split('\n').map((l) => JSON.parse(l))
  const headers = [{ key: 'trace', value: 'abc' }, { key: 'dup', value: '1' }, { key: 'dup', value: '2=x' }]
  assert.deepEqual(records.map((r) => [r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.encoding]), [
    ['fmt', 0, 0, 'k1', 'v1', headers, 'utf8'],
    ['fmt', 0, 1, null, 'nokey', headers, 'utf8'],
    ['fmt', 0, 2, 'k2', 'a:b', headers, 'utf8'],
  ])
  for (const r of records) {
    assert.ok(Number.isSafeInteger(r.timestamp) && Math.abs(r.timestamp - Date.now()) < 600_000, `timestamp ${r.timestamp}`)
    assert.equal(r.time, new Date(r.timestamp).toISOString())
  }
  const kv = await rill(['consume', 'fmt', '--format', 'kv', '--from-beginning', '--max', '3'])
  assert.equal(kv.code, 0, kv.stderr)
  assert.equal(kv.stdout, 'k1\tv1\n\tnokey\nk2\ta:b\n')
  const eq = await rill(['consume', 'fmt', '--format', 'kv', '--key-separator', ' = ', '--from-beginning', '--max', '1'])
  assert.equal(eq.stdout, 'k1 = v1\n')
  const bad = await rill(['produce', 'fmt', '--header', 'novalue'], 'x\n')
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /--header expects KEY=VALUE/)
})

test('json output of bytes that are not UTF-8 is base64, said by encoding', { timeout: 60_000 }, async () => {
  await createTopic('bin')
  const value = Buffer.from([0xff, 0xfe, 0x00, 0x41]).toString('base64')
  await putRecords(url, 'bin', 0, [{ key: Buffer.from('k').toString('base64'), value }], { encoding: 'base64' })
  const j = await rill(['consume', 'bin', '--format', 'json', '--from-beginning', '--max', '1'])
  assert.equal(j.code, 0, j.stderr)
  const r = JSON.parse(j.stdout)
  assert.deepEqual([r.key, r.value, r.encoding], [Buffer.from('k').toString('base64'), value, 'base64'])
})

test('--offset and --from-time pick the records they name', { timeout: 120_000 }, async () => {
  await createTopic('times', 2)
  // Timestamps set by the producer: partition 0 at 1000, 2000, ... 5000 ms; partition 1 at 1500, 3500.
  const put = async (partition: number, stamps: number[]): Promise<void> => {
    await putRecords(url, 'times', partition, stamps.map((t) => ({ value: `p${partition}@${t}`, timestamp: t })))
  }
  await put(0, [1000, 2000, 3000, 4000, 5000])
  await put(1, [1500, 3500])
  const values = async (args: string[], max: number): Promise<string[]> => {
    const r = await rill(['consume', 'times', ...args, '--max', String(max)])
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    return r.stdout.trim().split('\n')
  }
  assert.deepEqual(await values(['--partition', '0', '--offset', '3'], 2), ['p0@4000', 'p0@5000'])
  assert.deepEqual(await values(['--partition', '0', '--offset', 'beginning'], 1), ['p0@1000'])
  assert.deepEqual(await values(['--partition', '0', '--from-time', '2500'], 3), ['p0@3000', 'p0@4000', 'p0@5000'])
  assert.deepEqual(await values(['--partition', '0', '--from-time', '1970-01-01T00:00:04Z'], 2), ['p0@4000', 'p0@5000'])
  assert.deepEqual(await values(['--partition', '0', '--from-time', '0'], 1), ['p0@1000'])
  // Every partition: p0 from 3000 (3 records), p1 from 3500 (1 record).
  assert.deepEqual((await values(['--from-time', '2500'], 4)).sort(), ['p0@3000', 'p0@4000', 'p0@5000', 'p1@3500'])
  const outside = await rill(['consume', 'times', '--partition', '0', '--offset', '99', '--max', '1'])
  assert.equal(outside.code, 1)
  assert.match(outside.stderr, /OFFSET_OUT_OF_RANGE: times\/0 holds offsets 0 to 5/)
  for (const [args, message] of [
    [['--offset', '1'], /--offset N needs --partition/],
    [['--offset', '1', '--partition', '0', '--from-beginning'], /give one of --from-beginning, --offset, --from-time/],
    [['--from-time', 'yesterday'], /--from-time expects ms since the epoch or an ISO time/],
    [['--offset', '-1', '--partition', '0'], /--offset expects an offset/],
    [['--format', 'xml'], /--format must be one of value, kv, json/],
  ] as [string[], RegExp][]) {
    const r = await rill(['consume', 'times', ...args])
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, message)
  }
})

test('group describe: committed offset, log end offset and lag after a partial consume; no such group exits 1', { timeout: 120_000 }, async () => {
  await createTopic('lagged')
  const p = await rill(['produce', 'lagged'], Array.from({ length: 10 }, (_, i) => `r${i}`).join('\n') + '\n')
  assert.equal(p.code, 0, p.stderr)
  const c = await rill(['consume', 'lagged', '--group', 'lg', '--from-beginning', '--max', '4'])
  assert.equal(c.code, 0, c.stderr)
  assert.equal(c.stdout, 'r0\nr1\nr2\nr3\n')
  const d = await rill(['group', 'describe', 'lg'])
  assert.equal(d.code, 0, d.stderr)
  assert.match(d.stdout, /TOPIC +PARTITION +COMMITTED +LOG-END-OFFSET +LAG +MEMBER\nlagged +0 +4 +10 +6 +-\n/)
  const none = await rill(['group', 'describe', 'nosuchgroup'])
  assert.equal(none.code, 1)
  assert.equal(none.stdout, '')
  assert.equal(none.stderr, 'rill group: GROUP_NOT_FOUND: no group "nosuchgroup" (no members and no committed offsets)\n')
})

test('--version prints the version of package.json', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  for (const flag of ['--version', '-V']) {
    const r = await runCli([flag])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `rill ${pkg.version}\n`)
  }
})
