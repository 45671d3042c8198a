/**
 * Flag parsing and usage errors: unit tests of parseArgs, and the real
 * `rill` binary exiting 2 with a message naming the bad flag.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { UsageError, brokerUrls, expectPositionals, parseArgs, target } from '../../src/cli/args.ts'
import { brokerArgs } from '../../src/cli/dev.ts'
import { formatBytes, summary } from '../../src/cli/io.ts'
import { parseOffsetFlag, parseTimeFlag } from '../../src/cli/positions.ts'
import { freePort } from '../broker/helpers.ts'
import { runCli } from './helpers.ts'

test('parseArgs: forms, types, bounds', () => {
  const specs = { n: { kind: 'int', min: 1, max: 5 }, s: { kind: 'string', values: ['a', 'b'] }, v: { kind: 'boolean' } } as const
  const p = parseArgs(['X', '--n', '3', '--s=b', '--v', '--url', 'http://h:1/'], specs)
  assert.deepEqual(p.positionals, ['X'])
  assert.deepEqual(p.flags, { n: 3, s: 'b', v: true, url: ['http://h:1'] })
  assert.deepEqual(parseArgs(['--', '--n'], specs).positionals, ['--n'])
  const bad: [string[], RegExp][] = [
    [['--n'], /--n needs a value/],
    [['--n', 'x'], /--n expects an integer/],
    [['--n', '9'], /--n must be in \[1, 5\]/],
    [['--s', 'c'], /--s must be one of a, b/],
    [['--v=1'], /--v takes no value/],
    [['--zz'], /unknown flag --zz/],
    [['-q'], /unknown flag -q/],
    [['--n', '1', '--n', '2'], /--n given twice/],
    [['--url', 'nope'], /--url expects a URL/],
    [['--n', '--v'], /--n needs a value/],
    [['--brokers', 'http://a:1,nope'], /--brokers expects a URL like/],
    [['--brokers', ','], /--brokers expects one or more URLs/],
    [['--brokers', 'http://a:1', '--url', 'http://b:2'], /--url is the old name of --brokers/],
  ]
  for (const [argv, message] of bad) assert.throws(() => parseArgs(argv, specs), (e: unknown) => e instanceof UsageError && message.test(e.message), argv.join(' '))
  assert.throws(() => expectPositionals(parseArgs([], {}), ['TOPIC']), /missing TOPIC/)
  assert.throws(() => expectPositionals(parseArgs(['a', 'b'], {}), ['TOPIC']), /unexpected argument "b"/)
})

test('brokerUrls: --brokers or --url (a comma list), then RILL_BROKERS, then RILL_URL, then the default', () => {
  const flags = (argv: string[]) => parseArgs(argv, {}).flags
  assert.deepEqual(brokerUrls(flags(['--url', 'http://a:1']), { RILL_URL: 'http://b:2' }), ['http://a:1'])
  assert.deepEqual(brokerUrls(flags(['--brokers', 'http://a:1/, http://c:3,http://a:1']), {}), ['http://a:1', 'http://c:3'])
  assert.deepEqual(brokerUrls(flags(['--url=http://a:1,http://c:3']), {}), ['http://a:1', 'http://c:3'])
  assert.deepEqual(brokerUrls({}, { RILL_URL: 'http://b:2/' }), ['http://b:2'])
  assert.deepEqual(brokerUrls({}, { RILL_BROKERS: 'http://d:4,http://e:5', RILL_URL: 'http://b:2' }), ['http://d:4', 'http://e:5'])
  assert.deepEqual(brokerUrls({}, {}), ['http://127.0.0.1:7070'])
  assert.throws(() => brokerUrls({}, { RILL_URL: 'b:2' }), UsageError)
  assert.throws(() => brokerUrls({}, { RILL_BROKERS: 'http://a:1,ftp://b' }), UsageError)
})

test('target: TLS files from --tls-ca/--tls-cert/--tls-key or RILL_TLS_*; a CA alone makes the default URL https; bad files are usage errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rill-args-'))
  try {
    const pem = (name: string): string => {
      const path = join(dir, name)
      writeFileSync(path, `-----BEGIN CERTIFICATE-----\n${name}\n-----END CERTIFICATE-----\n`)
      return path
    }
    const ca = pem('ca.crt')
    const cert = pem('client.crt')
    const key = pem('client.key')
    assert.deepEqual(target({}, {}), { url: 'http://127.0.0.1:7070', urls: ['http://127.0.0.1:7070'], tls: undefined })
    const withCa = target(parseArgs(['--tls-ca', ca], {}).flags, {})
    assert.equal(withCa.url, 'https://127.0.0.1:7070')
    assert.match(String(withCa.tls?.ca), /ca\.crt/)
    assert.equal(withCa.tls?.cert, undefined)
    const fromEnv = target({}, { RILL_URL: 'https://b:2', RILL_TLS_CA: ca, RILL_TLS_CERT: cert, RILL_TLS_KEY: key })
    assert.equal(fromEnv.url, 'https://b:2')
    assert.match(String(fromEnv.tls?.cert), /client\.crt/)
    assert.match(String(fromEnv.tls?.key), /client\.key/)
    // A flag beats the environment.
    assert.match(String(target(parseArgs(['--tls-ca', cert], {}).flags, { RILL_TLS_CA: ca }).tls?.ca), /client\.crt/)
    const bad: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [['--tls-ca', join(dir, 'missing.crt')], {}, /--tls-ca: cannot read .*missing\.crt/],
      [['--tls-cert', cert], {}, /--tls-cert and --tls-key go together/],
      [[], { RILL_TLS_KEY: key }, /--tls-cert and --tls-key go together/],
      [['--tls-ca', join(dir)], {}, /--tls-ca: cannot read/],
    ]
    writeFileSync(join(dir, 'text.txt'), 'not pem')
    bad.push([['--tls-ca', join(dir, 'text.txt')], {}, /--tls-ca: .*text\.txt is not a PEM file/])
    for (const [argv, env, message] of bad) {
      assert.throws(() => target(parseArgs(argv, {}).flags, env), (e: unknown) => e instanceof UsageError && message.test(e.message), argv.join(' '))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('dev: broker arguments, seeds are the first three brokers', () => {
  assert.deepEqual(brokerArgs({ id: 2, brokers: 3, dir: '/d', port: 9090 }), [
    'broker', '--id', '2', '--dir', '/d/broker-2', '--http', '127.0.0.1:9091', '--peer', '127.0.0.1:9191',
    '--seeds', '1@127.0.0.1:9190,2@127.0.0.1:9191,3@127.0.0.1:9192',
  ])
  const five = brokerArgs({ id: 5, brokers: 5, dir: '/d', port: 7000 })
  assert.equal(five[five.indexOf('--seeds') + 1], '1@127.0.0.1:7100,2@127.0.0.1:7101,3@127.0.0.1:7102')
  assert.equal(five[five.indexOf('--http') + 1], '127.0.0.1:7004')
  const tls = { caFile: '/d/tls/ca.crt', broker: (id: number) => ({ certFile: `/d/tls/broker-${id}.crt`, keyFile: `/d/tls/broker-${id}.key` }) }
  const secure = brokerArgs({ id: 4, brokers: 4, dir: '/d', port: 7000, tls })
  assert.deepEqual(secure.slice(secure.indexOf('--join')), ['--join', 'https://127.0.0.1:7000', '--tls-cert', '/d/tls/broker-4.crt', '--tls-key', '/d/tls/broker-4.key', '--tls-ca', '/d/tls/ca.crt'])
})

test('the rill binary: usage errors exit 2 with a message naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['nope'], /rill: unknown command "nope"/],
    [['topic', 'create'], /rill topic create: missing NAME/],
    [['topic', 'create', 'x', '--partitions', '0'], /--partitions must be in \[1, 10000\], got 0/],
    [['topic', 'create', 'x', '--persistence', 'disk'], /--persistence must be one of sync, async, memory/],
    [['topic', 'frobnicate'], /unknown topic command "frobnicate"/],
    [['produce'], /rill produce: missing TOPIC/],
    [['produce', 't', '--acks', 'some'], /--acks must be one of all, leader/],
    [['consume', 't', '--max', 'abc'], /--max expects an integer, got "abc"/],
    [['consume', 't', '--bogus'], /unknown flag --bogus/],
    [['status', '--url', 'ftp://x'], /--url must be an http:\/\/ or https:\/\/ URL/],
    [['dev', '--brokers', '0'], /--brokers must be in \[1, 99\]/],
    [['dev', '--port', '65500'], /--port 65500 leaves no room/],
    [['status', '--tls-ca', '/nonexistent/ca.crt'], /--tls-ca: cannot read \/nonexistent\/ca\.crt/],
    [['topic', 'list', '--tls-key', '/nonexistent/k'], /--tls-cert and --tls-key go together/],
  ]
  await Promise.all(cases.map(async ([args, message]) => {
    const r = await runCli(args)
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, message, args.join(' '))
    assert.match(r.stderr, /usage:/)
  }))
  const help = await runCli(['help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /usage: rill <command>/)
})

test('the rill binary: no broker reachable exits 3, naming each broker tried', async () => {
  // Ports free a moment ago: nothing listens there (port 1 would not do: fetch refuses it as a "bad port" before connecting).
  const [a, b] = [await freePort('127.0.0.1'), await freePort('127.0.0.2')]
  const r = await runCli(['topic', 'list', '--url', `http://127.0.0.1:${a}`])
  assert.equal(r.code, 3, r.stderr)
  assert.match(r.stderr, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${a} \\(ECONNREFUSED\\)`))
  const two = await runCli(['status'], { env: { RILL_BROKERS: `http://127.0.0.1:${a},http://127.0.0.2:${b}` } })
  assert.equal(two.code, 3, two.stderr)
  assert.match(two.stderr, new RegExp(`no broker answered: http://127\\.0\\.0\\.1:${a} \\(ECONNREFUSED\\), http://127\\.0\\.0\\.2:${b} \\(ECONNREFUSED\\)`))
  // Through the producer SDK too.
  const produce = await runCli(['produce', 't', '--brokers', `http://127.0.0.1:${a},http://127.0.0.2:${b}`], { input: 'x\n' })
  assert.equal(produce.code, 3, produce.stderr)
  assert.match(produce.stderr, /no broker answered/)
})

test('--from-time and --offset values: ms, ISO with and without a zone (UTC), beginning/end; bad ones are usage errors', () => {
  assert.equal(parseTimeFlag('1500'), 1500)
  assert.equal(parseTimeFlag('2026-12-05T10:00:00Z'), Date.UTC(2026, 11, 5, 10, 0, 0))
  assert.equal(parseTimeFlag('2026-12-05T10:00:00'), Date.UTC(2026, 11, 5, 10, 0, 0))
  assert.equal(parseTimeFlag('2026-12-05T10:00:00.250+02:00'), Date.UTC(2026, 11, 5, 8, 0, 0, 250))
  assert.equal(parseTimeFlag('2026-12-05'), Date.UTC(2026, 11, 5))
  for (const bad of ['yesterday', '2026-13-45T99:00:00Z', '-5', '']) assert.throws(() => parseTimeFlag(bad), UsageError, bad)
  assert.deepEqual(parseOffsetFlag('42'), { kind: 'offset', offset: 42 })
  assert.deepEqual(parseOffsetFlag('beginning'), { kind: 'beginning' })
  assert.deepEqual(parseOffsetFlag('end'), { kind: 'end' })
  for (const bad of ['-1', '1.5', 'start', '99999999999999999999']) assert.throws(() => parseOffsetFlag(bad), UsageError, bad)
})

test('summary: records, bytes, seconds and rate in one line', () => {
  assert.equal(summary(12_345, 1_234_567, 3_400), '12,345 records, 1.2 MB in 3.4 s (3,631 records/s)')
  assert.equal(formatBytes(999), '999 B')
  assert.equal(formatBytes(1000), '1.0 kB')
})
