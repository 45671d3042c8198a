import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode, RillError } from '../../src/base/index.ts'
import { parseBrokerConfig, quotaThrottleMsMaxLimit } from '../../src/broker/config.ts'
import { throttleMsMaxLimit } from '../../src/api/index.ts'
import { createDevCa } from '../../src/cli/certs.ts'

const bin = new URL('../../bin/rill.mjs', import.meta.url).pathname
const base = ['--id', '1', '--dir', '/tmp/x', '--http', '127.0.0.1:9090', '--peer', '127.0.0.11:9190', '--seeds', '1@127.0.0.11:9190,2@127.0.0.12:9191']

test('flags parse into a checked config with defaults', () => {
  const c = parseBrokerConfig(base, {})
  assert.equal(c.id, 1)
  assert.deepEqual(c.http, { host: '127.0.0.1', port: 9090 })
  assert.deepEqual(c.seeds.map((s) => s.id), [1, 2])
  assert.equal(c.defaultPersistence, 'sync')
  assert.equal(c.secret.byteLength, 32)
  assert.equal(c.secretIsDevelopment, true)
})

test('--shutdown-timeout: 10 s by default; ms or s, from a flag, RILL_SHUTDOWN_TIMEOUT or the config file', () => {
  assert.equal(parseBrokerConfig(base, {}).shutdownTimeoutMs, 10_000)
  assert.equal(parseBrokerConfig(base.concat('--shutdown-timeout', '2500'), {}).shutdownTimeoutMs, 2500)
  assert.equal(parseBrokerConfig(base.concat('--shutdown-timeout', '750ms'), {}).shutdownTimeoutMs, 750)
  assert.equal(parseBrokerConfig(base.concat('--shutdown-timeout', '30s'), { RILL_SHUTDOWN_TIMEOUT: '5s' }).shutdownTimeoutMs, 30_000)
  assert.equal(parseBrokerConfig(base, { RILL_SHUTDOWN_TIMEOUT: '5s' }).shutdownTimeoutMs, 5000)
  const dir = mkdtempSync(join(tmpdir(), 'rill-config-'))
  try {
    const file = join(dir, 'broker.json')
    writeFileSync(file, JSON.stringify({ id: 1, dir: '/d', http: '127.0.0.1:1', peer: '127.0.0.1:2', seeds: '1@127.0.0.1:2', shutdownTimeoutMs: 4000 }))
    assert.equal(parseBrokerConfig(['--config', file], {}).shutdownTimeoutMs, 4000)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('--quota-*: unlimited by default; per second from a flag, RILL_QUOTA_* or the config file; the hold bounded below client timeouts', () => {
  assert.deepEqual(parseBrokerConfig(base, {}).quotas, { produceBytesPerSecond: null, fetchBytesPerSecond: null, requestsPerSecond: null, throttleMsMax: 5000 })
  const q = parseBrokerConfig(base.concat('--quota-produce-bytes', '1048576', '--quota-requests', '100', '--quota-throttle-max', '2s'), { RILL_QUOTA_FETCH_BYTES: '2097152', RILL_QUOTA_REQUESTS: '7' }).quotas
  assert.deepEqual(q, { produceBytesPerSecond: 1_048_576, fetchBytesPerSecond: 2_097_152, requestsPerSecond: 100, throttleMsMax: 2000 })
  assert.equal(parseBrokerConfig(base, { RILL_QUOTA_THROTTLE_MAX: '250ms' }).quotas.throttleMsMax, 250)
  const dir = mkdtempSync(join(tmpdir(), 'rill-config-'))
  try {
    const file = join(dir, 'broker.json')
    writeFileSync(file, JSON.stringify({ id: 1, dir: '/d', http: '127.0.0.1:1', peer: '127.0.0.1:2', seeds: '1@127.0.0.1:2', quotaProduceBytes: 1000, quotaFetchBytes: 2000, quotaRequests: 3, quotaThrottleMaxMs: 4000 }))
    assert.deepEqual(parseBrokerConfig(['--config', file], {}).quotas, { produceBytesPerSecond: 1000, fetchBytesPerSecond: 2000, requestsPerSecond: 3, throttleMsMax: 4000 })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  // One bound for the hold, here and in the HTTP layer.
  assert.equal(quotaThrottleMsMaxLimit, throttleMsMaxLimit)
  for (const [args, pattern] of [
    [['--quota-produce-bytes', '0'], /quota-produce-bytes: must be an integer/],
    [['--quota-fetch-bytes', '1.5'], /quota-fetch-bytes: must be an integer/],
    [['--quota-requests', '-1'], /quota-requests/],
    [['--quota-requests', '1000001'], /quota-requests: must be an integer/],
    [['--quota-throttle-max', '11s'], /quota-throttle-max: must be a duration/],
    [['--quota-throttle-max', '0'], /quota-throttle-max: must be a duration/],
  ] as const) {
    assert.throws(() => parseBrokerConfig(base.concat(...args), {}), (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && pattern.test(e.message), args.join(' '))
  }
})

test('a flag beats the environment, which beats the config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rill-config-'))
  try {
    const file = join(dir, 'broker.json')
    writeFileSync(file, JSON.stringify({ id: 1, dir: '/d', http: '127.0.0.1:1', peer: '127.0.0.1:2', seeds: '1@127.0.0.1:2', tickMs: 40, defaultPersistence: 'async' }))
    const c = parseBrokerConfig(['--config', file, '--tick-ms', '30'], { RILL_PERSISTENCE: 'memory', RILL_TICK_MS: '20' })
    assert.equal(c.tickMs, 30)
    assert.equal(c.defaultPersistence, 'memory')
    assert.equal(c.dir, '/d')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('every bad value is an INVALID_REQUEST naming the field', () => {
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [base.concat('--bogus', 'x'), {}, /--bogus: unknown flag/],
    [['--id', '0', ...base.slice(2)], {}, /id: must be an integer/],
    [base.map((v) => (v === '127.0.0.1:9090' ? 'localhost' : v)), {}, /http: expected HOST:PORT/],
    [base.map((v) => (v === '127.0.0.1:9090' ? '127.0.0.1:70000' : v)), {}, /port 70000 out of range/],
    [base.map((v) => (v.startsWith('1@') ? '1@a:1,1@b:2' : v)), {}, /listed twice/],
    [base, { RILL_SECRET: 'abc' }, /secret: must be 64 hex digits/],
    [base, { RILL_PERSISTENCE: 'fast' }, /persistence: one of sync, async, memory/],
    [base.concat('--heartbeat-ticks', '30'), {}, /heartbeat-ticks: must be below election-ticks/],
    [base.slice(2), {}, /id: is required/],
    [['--config', '/nonexistent/rill.json'], {}, /cannot read/],
    [base.concat('--shutdown-timeout', '10m'), {}, /shutdown-timeout: must be a duration/],
    [base.concat('--shutdown-timeout', '50'), {}, /shutdown-timeout: must be a duration/],
    [base, { RILL_SHUTDOWN_TIMEOUT: '-1s' }, /shutdown-timeout: must be a duration/],
    [base, { RILL_SHUTDOWN_TIMEOUT: '3601s' }, /shutdown-timeout: must be a duration/],
  ]
  for (const [argv, env, message] of cases) {
    assert.throws(
      () => parseBrokerConfig(argv, env),
      (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && message.test(e.message),
      `${argv.join(' ')} ${JSON.stringify(env)}`,
    )
  }
})

/** Issue 10, hole 6: the development secret is public, so it never leaves loopback. */
test('off loopback a broker needs --secret or --secret-file; on loopback the development secret is allowed', () => {
  const at = (httpHost: string, peerHost: string): string[] => [
    '--id', '1', '--dir', '/tmp/x', '--http', `${httpHost}:9090`, '--peer', `${peerHost}:9190`, '--seeds', `1@${peerHost}:9190`,
  ]
  for (const [httpHost, peerHost] of [['127.0.0.1', '127.0.0.11'], ['localhost', 'localhost'], ['[::1]', '[::1]'], ['127.9.9.9', '127.0.0.1']]) {
    const c = parseBrokerConfig(at(httpHost!, peerHost!), {})
    assert.equal(c.secretIsDevelopment, true, `${httpHost} ${peerHost}`)
  }
  for (const [httpHost, peerHost] of [['0.0.0.0', '127.0.0.1'], ['127.0.0.1', '10.0.0.1'], ['[::]', '[::1]'], ['broker1.example', '127.0.0.1'], ['127.0.0.1', 'localhost.example'], ['192.168.1.5', '192.168.1.5']]) {
    assert.throws(
      () => parseBrokerConfig(at(httpHost!, peerHost!), {}),
      (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && /secret: required when a listener is not on loopback/.test(e.message) && e.details['field'] === 'secret',
      `${httpHost} ${peerHost}`,
    )
    const withSecret = parseBrokerConfig(at(httpHost!, peerHost!).concat('--secret', 'ab'.repeat(32)), {})
    assert.equal(withSecret.secretIsDevelopment, false)
    assert.deepEqual([...withSecret.secret], new Array(32).fill(0xab))
    assert.equal(parseBrokerConfig(at(httpHost!, peerHost!), { RILL_SECRET: 'cd'.repeat(32) }).secretIsDevelopment, false)
  }
})

test('--secret-file: 64 hex digits in a file only its owner may read; RILL_SECRET_FILE and the config file too', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rill-secret-'))
  const offLoopback = ['--id', '1', '--dir', '/tmp/x', '--http', '0.0.0.0:9090', '--peer', '10.0.0.1:9190', '--seeds', '1@10.0.0.1:9190']
  const file = (name: string, text: string, mode: number): string => {
    const path = join(dir, name)
    writeFileSync(path, text, { mode })
    chmodSync(path, mode)
    return path
  }
  try {
    const good = file('good', `${'0f'.repeat(32)}\n`, 0o600)
    const c = parseBrokerConfig(offLoopback.concat('--secret-file', good), {})
    assert.equal(c.secretIsDevelopment, false)
    assert.deepEqual([...c.secret], new Array(32).fill(0x0f))
    assert.deepEqual([...parseBrokerConfig(offLoopback, { RILL_SECRET_FILE: good }).secret], new Array(32).fill(0x0f))
    const json = join(dir, 'broker.json')
    writeFileSync(json, JSON.stringify({ id: 1, dir: '/d', http: '0.0.0.0:1', peer: '10.0.0.1:2', seeds: '1@10.0.0.1:2', secretFile: good }))
    assert.equal(parseBrokerConfig(['--config', json], {}).secretIsDevelopment, false)
    assert.equal(parseBrokerConfig(offLoopback.concat('--secret-file', file('readonly', 'ab'.repeat(32), 0o400)), {}).secretIsDevelopment, false)

    const refused: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [offLoopback.concat('--secret-file', file('open', 'ab'.repeat(32), 0o644)), {}, /secret-file: .* is open to group or others \(mode 644\): chmod 600/],
      [offLoopback.concat('--secret-file', file('group', 'ab'.repeat(32), 0o640)), {}, /mode 640/],
      [offLoopback.concat('--secret-file', file('empty', '', 0o600)), {}, /secret-file: .* is empty/],
      [offLoopback.concat('--secret-file', file('blank', ' \n\n', 0o600)), {}, /secret-file: .* is empty/],
      [offLoopback.concat('--secret-file', file('short', 'abc\n', 0o600)), {}, /secret-file: must be 64 hex digits/],
      [offLoopback.concat('--secret-file', file('big', 'a'.repeat(5000), 0o600)), {}, /secret-file: .* holds 5000 bytes/],
      [offLoopback.concat('--secret-file', join(dir, 'missing')), {}, /secret-file: cannot read/],
      [offLoopback.concat('--secret-file', dir), {}, /secret-file: .* (is not a regular file|open to group)/],
      [offLoopback.concat('--secret-file', good, '--secret', 'ab'.repeat(32)), {}, /secret: give --secret or --secret-file, not both/],
      [offLoopback.concat('--secret-file', good), { RILL_SECRET: 'ab'.repeat(32) }, /not both/],
    ]
    for (const [argv, env, message] of refused) {
      assert.throws(
        () => parseBrokerConfig(argv, env),
        (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && message.test(e.message),
        `${argv.slice(-2).join(' ')} ${JSON.stringify(env)}`,
      )
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('rill broker off loopback without a secret exits 2 with one coded line, before touching its data directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rill-nosecret-'))
  try {
    const data = join(dir, 'data')
    const r = spawnSync(process.execPath, [bin, 'broker', '--id', '1', '--dir', data, '--http', '0.0.0.0:0', '--peer', '127.0.0.1:0', '--seeds', '1@127.0.0.1:1'], {
      encoding: 'utf8',
      timeout: 30_000,
    })
    assert.equal(r.status, 2, r.stderr)
    assert.match(r.stderr, /^rill broker: INVALID_REQUEST: secret: required when a listener is not on loopback \(--http 0\.0\.0\.0\)/)
    assert.equal(r.stderr.trim().split('\n').length, 1)
    assert.equal(existsSync(data), false)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('TLS: --tls-cert, --tls-key and --tls-ca turn it on (flags, RILL_TLS_*, or the config file); half a setup or a bad file is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rill-config-'))
  try {
    const ca = await createDevCa({ dir })
    const b1 = await ca.issue({ name: 'broker-1', hosts: ['127.0.0.1', '127.0.0.11'] })
    const wrongHost = await ca.issue({ name: 'broker-2', hosts: ['127.0.0.12'] })
    const tlsFlags = ['--tls-cert', b1.certFile, '--tls-key', b1.keyFile, '--tls-ca', ca.certFile]
    assert.equal(parseBrokerConfig(base, {}).tls, null)
    assert.deepEqual(parseBrokerConfig(base.concat(tlsFlags), {}).tls, { certFile: b1.certFile, keyFile: b1.keyFile, caFile: ca.certFile, clientAuth: 'none' })
    const fromEnv = parseBrokerConfig(base, { RILL_TLS_CERT: b1.certFile, RILL_TLS_KEY: b1.keyFile, RILL_TLS_CA: ca.certFile, RILL_TLS_CLIENT_AUTH: 'required' })
    assert.equal(fromEnv.tls?.clientAuth, 'required')
    const file = join(dir, 'broker.json')
    writeFileSync(file, JSON.stringify({ id: 1, dir: '/d', http: '127.0.0.1:1', peer: '127.0.0.11:2', seeds: '1@127.0.0.11:2', tlsCert: b1.certFile, tlsKey: b1.keyFile, tlsCa: ca.certFile, tlsClientAuth: 'optional' }))
    assert.equal(parseBrokerConfig(['--config', file], {}).tls?.clientAuth, 'optional')

    const cases: [string[], RegExp][] = [
      [base.concat('--tls-cert', b1.certFile, '--tls-ca', ca.certFile), /^tls-key: is required with --tls-cert/],
      [base.concat('--tls-key', b1.keyFile, '--tls-ca', ca.certFile), /^tls-cert: is required with --tls-key/],
      [base.concat('--tls-cert', b1.certFile, '--tls-key', b1.keyFile), /^tls-ca: is required with --tls-cert: brokers verify each other/],
      [base.concat('--tls-ca', ca.certFile), /^tls-ca: needs --tls-cert and --tls-key/],
      [base.concat('--tls-client-auth', 'required'), /^tls-client-auth: needs --tls-cert/],
      [base.concat(tlsFlags, '--tls-client-auth', 'always'), /^tls-client-auth: one of none, optional, required/],
      [base.concat('--tls-cert', join(dir, 'missing.crt'), '--tls-key', b1.keyFile, '--tls-ca', ca.certFile), /^tls-cert: cannot read .*missing\.crt/],
      [base.concat('--tls-cert', wrongHost.certFile, '--tls-key', wrongHost.keyFile, '--tls-ca', ca.certFile), /^tls-cert: .*broker-2\.crt does not name 127\.0\.0\.1 /],
    ]
    for (const [argv, message] of cases) {
      assert.throws(
        () => parseBrokerConfig(argv, {}),
        (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && message.test(e.message),
        argv.slice(base.length).join(' '),
      )
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('connection and partition bounds (issue 10, hole 4): defaults, flags, RILL_*, bad values refused; connections max from the descriptor limit', async () => {
  const { httpConnectionLimits } = await import('../../src/cli/broker.ts')
  const d = parseBrokerConfig(base, {})
  assert.deepEqual(d.httpConnections, { max: null, perAddressMax: 256, idleMs: 60_000, requestMs: 30_000 })
  assert.equal(d.topicPartitionsMax, 1000)
  assert.equal(d.clusterPartitionsMax, 10_000)
  const c = parseBrokerConfig(base.concat('--http-connections-max', '300', '--http-connections-per-address-max', '20', '--http-idle-timeout', '5s', '--http-request-timeout', '2000', '--topic-partitions-max', '50'), { RILL_CLUSTER_PARTITIONS_MAX: '500' })
  assert.deepEqual(c.httpConnections, { max: 300, perAddressMax: 20, idleMs: 5000, requestMs: 2000 })
  assert.equal(c.topicPartitionsMax, 50)
  assert.equal(c.clusterPartitionsMax, 500)
  for (const [flag, value] of [['--http-connections-max', '0'], ['--http-idle-timeout', '5'], ['--topic-partitions-max', '10001'], ['--cluster-partitions-max', 'x']] as const) {
    assert.throws(() => parseBrokerConfig(base.concat(flag, value), {}), (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && e.message.startsWith(flag.slice(2)))
  }
  // Half the descriptor limit, at most 4,096; a flag wins; per address never above the total.
  assert.equal(httpConnectionLimits(d, 1024).connectionsMax, 512)
  assert.equal(httpConnectionLimits(d, 1_000_000).connectionsMax, 4096)
  assert.equal(httpConnectionLimits(d, 256).connectionsPerAddressMax, 128)
  assert.equal(httpConnectionLimits(c, 1024).connectionsMax, 300)
  assert.equal(httpConnectionLimits(c, 1024).headersMs, 2000)
})
