import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode, RillError } from '../../src/base/index.ts'
import { parseBrokerConfig } from '../../src/broker/config.ts'
import { createDevCa } from '../../src/cli/certs.ts'

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
